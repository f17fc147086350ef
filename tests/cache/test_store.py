"""cache.store: where the cache is by default."""
import os
import subprocess
import sys

import pytest

from cache.store import default_root
from pevl_testutils import REPO


def test_default_root_follows_pevl_cache_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("PEVL_CACHE", str(tmp_path / "lab"))
    assert default_root() == tmp_path / "lab"
    monkeypatch.delenv("PEVL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "pevl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".cache" / "pevl"


def test_no_home_is_said_not_taken_for_a_folder_named_tilde(monkeypatch):
    """HOME unset and a uid without a passwd entry (a bare container): the default root was the
    relative path '~/.cache/pevl', made under whatever folder the command ran in."""
    monkeypatch.delenv("PEVL_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda p: p)
    with pytest.raises(RuntimeError, match="set PEVL_CACHE"):
        default_root()


def test_the_cli_says_so_before_anything_imports(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to run as a uid without a passwd entry")
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "PEVL_CACHE")}
    env["PYTHONPATH"] = str(REPO)
    res = subprocess.run(["setpriv", "--reuid", "12345", "--regid", "12345", "--clear-groups", sys.executable, "-m",
                          "pipeline", "cache", "ls"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 1 and "no home folder" in res.stderr and "Traceback" not in res.stderr, res.stderr
