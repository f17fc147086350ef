"""Helpers shared by the dataset-adapter tests (tiny files in each real format)."""
from __future__ import annotations

import json
from pathlib import Path


def touch(path: Path, data: bytes = b"\0") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_json(path: Path, obj) -> Path:
    return write_text(path, json.dumps(obj))


def make_video(path: Path, seconds: float = 1.0, size: str = "64x48", rate: int = 10) -> Path:
    """A real tiny H.264 clip made with the ffmpeg that imageio-ffmpeg ships."""
    from pevl_testutils import make_video as _make

    w, h = (int(x) for x in size.split("x"))
    return _make(path, frames=max(1, round(seconds * rate)), size=(w, h), fps=rate)
