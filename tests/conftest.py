"""Shared fixtures: tiny videos made with ffmpeg, a custom-layout dataset, an isolated cache."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Tests never reach the network and never write into the user's real cache.
os.environ.setdefault("NO_PROXY", "*")
os.environ["HF_HUB_OFFLINE"] = "1"


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


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("PEVL_CACHE", str(root))
    return root


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """Six good 10-frame clips over two classes (both splits)."""
    root = tmp_path / "data"
    clips = []
    for i in range(6):
        rel = f"videos/clip{i}.mp4"
        make_video(root / rel, frames=10 + i % 3, size=(64, 48))
        clips.append((rel, i % 2, "train" if i < 4 else "val"))
    return write_custom_dataset(root, clips, ["raise arms", "kick twice"])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
