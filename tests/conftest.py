"""Shared fixtures and test-session settings (helpers live in pevl_testutils)."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Tests never reach the network and never write into the user's real cache.
os.environ.setdefault("NO_PROXY", "*")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["PEVL_CACHE"] = tempfile.mkdtemp(prefix="pevl-test-cache-")
# (removed when the session ends: every run left one behind in /tmp)
atexit.register(shutil.rmtree, os.environ["PEVL_CACHE"], ignore_errors=True)
os.environ.pop("PEVL_DATA", None)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
