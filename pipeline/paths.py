"""Default locations: the lab-shared cache and where generated/built-in datasets live."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_root() -> Path:
    """``$PEVL_CACHE``, else the per-user cache directory (``$XDG_CACHE_HOME/pevl``)."""
    env = os.environ.get("PEVL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pevl"


def default_data_root(cache_root: os.PathLike | None = None) -> Path:
    """Where generated datasets (the demo) are written: ``$PEVL_DATA``, else ``<cache>/datasets``."""
    env = os.environ.get("PEVL_DATA")
    if env:
        return Path(env).expanduser()
    return Path(cache_root or default_cache_root()) / "datasets"
