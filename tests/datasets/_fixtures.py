"""Helpers shared by the dataset-adapter tests (tiny files in each real format)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path


def touch(path: Path, data: bytes = b"") -> Path:
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
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi",
         "-i", f"testsrc=size={size}:rate={rate}", "-t", str(seconds), "-pix_fmt", "yuv420p",
         str(path)],
        check=True, timeout=60,
    )
    return path
