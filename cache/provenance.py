"""Who, when and with what: the provenance fields of a manifest."""
from __future__ import annotations

import getpass
import importlib.metadata as md
import os
import socket
import subprocess
import time
from pathlib import Path

_PACKAGES = ("pevl-pipeline", "torch", "mmpose", "mmengine", "mmcv", "mmcv-lite", "open_clip_torch",
             "zarr", "numcodecs", "numpy", "opencv-python", "ffmpeg-python", "imageio-ffmpeg")


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


#: the revision a non-editable install was built from (setup.py writes it)
BUILD_REVISION = Path(__file__).resolve().parent / "build_revision.txt"


def git_revision() -> str | None:
    """The code's git revision (``abc1234``, ``-dirty`` with uncommitted changes): of the checkout
    it runs from, else the one a non-editable install was built from (``abc1234 (built)``)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        try:
            rev = BUILD_REVISION.read_text().strip()
        except OSError:
            return None
        return f"{rev} (built)" if rev else None
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def who_when() -> dict:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"host": socket.gethostname(), "user": user, "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
