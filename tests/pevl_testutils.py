"""Helpers shared by the tests (and bench/): tiny videos made with ffmpeg, a custom-layout dataset.

A uniquely named module rather than ``conftest``: several test folders have a conftest.py, and
``from conftest import ...`` would pick whichever was imported first.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ffmpeg_exe() -> str:
    from stages.extract.decode import ffmpeg_exe as exe

    return exe()


def make_video(path: Path, frames: int = 12, size: tuple[int, int] = (64, 48), fps: int = 12,
               faststart: bool = False) -> Path:
    """An H.264 mp4 of a moving test pattern: ``size`` is (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    cmd = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
           f"testsrc=size={w}x{h}:rate={fps}", "-frames:v", str(frames),
           # odd sizes need a pixel format without chroma subsampling
           "-pix_fmt", "yuv444p" if (w % 2 or h % 2) else "yuv420p"]
    if faststart:
        cmd += ["-movflags", "+faststart"]
    subprocess.run(cmd + [str(path)], check=True)
    return path


def write_custom_dataset(root: Path, clips: list[tuple[str, int, str]], classes: list[str]) -> Path:
    """``clips``: (relative video path, label, split) in the `custom` adapter's layout."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("\n".join(classes) + "\n")
    for split in ("train", "val"):
        rows = [f"{p},{lab}" for p, lab, s in clips if s == split]
        (root / f"{split}.csv").write_text("path,label\n" + "\n".join(rows) + ("\n" if rows else ""))
    return root
