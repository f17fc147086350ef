"""Synthetic clips that cost what real footage costs to decode and to store (bench/ only).

A test pattern (``ffmpeg -f lavfi testsrc``) compresses ~50x with any codec and decodes for free,
which flatters every number a data-path benchmark prints. These clips are built like camera
footage instead:

* a scene of 1/f-like texture (four octaves of smooth noise, mostly luminance) with sharp-edged
  shapes, seen through a lens (Gaussian blur, sigma 1 px at 720p);
* a camera that pans and tilts, and a textured "actor" that crosses the scene;
* sensor noise (Gaussian, sigma 2 levels, changing every frame);
* H.264 (libx264, CRF 23, yuv420p), the usual delivery codec.

Stored at short side 256 a frame JPEG-compresses about 7-10x at quality 95 (a real photograph of a
person, matplotlib's ``grace_hopper.jpg``, gives 6x) and Blosc-LZ4 gains ~15%.

:func:`make_dataset` writes a `custom`-layout dataset (``labels.txt``, ``train.csv``,
``val.csv``) of such clips plus an mmaction2-style 2D skeleton pickle whose joints follow the
actor, so extraction needs no pose model (``--pose-source pkl:<root>/skeleton.pkl``).
"""
from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

GENERATOR_VERSION = 1

# COCO-17 joints of a standing figure, as (x, y) fractions of its 160 x 300 box
_POSE = np.array([[.5, .08], [.45, .06], [.55, .06], [.4, .08], [.6, .08], [.3, .25], [.7, .25], [.22, .42],
                  [.78, .42], [.18, .58], [.82, .58], [.38, .6], [.62, .6], [.36, .8], [.64, .8], [.35, .97],
                  [.65, .97]], np.float32)
_ACTOR = (300, 160)  # h, w


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w, 3), np.float32)
    for cells, amp, chroma in ((6, 50, 0.5), (24, 30, 0.3), (96, 20, 0.1), (384, 14, 0.05)):
        g = rng.normal(0, 1, (max(2, cells * h // w), cells, 3)).astype(np.float32)
        g = g[..., :1] + chroma * g  # mostly luminance, a little colour
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    out += 110
    for _ in range(40):  # man-made edges
        c = tuple(int(x) for x in rng.integers(40, 200) + rng.integers(-30, 30, 3))
        p = rng.integers(0, [w, h])
        q = p + rng.integers(20, 300, 2)
        if rng.random() < 0.5:
            cv2.rectangle(out, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), c, -1 if rng.random() < .5 else 3)
        else:
            cv2.line(out, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), c, int(rng.integers(1, 6)))
    return cv2.GaussianBlur(out, (0, 0), 1.0)  # the lens


def scene(seed: int, frames: int, width: int, height: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``frames`` (H, W, 3) uint8 RGB frames and the actor's (17, 2) joints in each."""
    rng = np.random.default_rng(seed)
    pad = max(32, width // 8)
    bg = _texture(rng, height + 2 * pad, width + 2 * pad)
    ah, aw = (min(_ACTOR[0], height * 2 // 3), min(_ACTOR[1], width // 4))
    actor = _texture(rng, ah, aw)
    mask = np.zeros((ah, aw), np.float32)
    cv2.ellipse(mask, (aw // 2, ah // 2), (aw * 7 // 16, ah * 15 // 32), 0, 0, 360, 1, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 3)[..., None]
    noise = [rng.normal(0, 2.0, (height, width, 3)).astype(np.float32) for _ in range(3)]
    tilt = rng.uniform(-0.5, 0.5)
    for t in range(frames):
        ox = int(pad + 0.9 * pad * np.sin(np.pi * t / frames))
        oy = int(pad + tilt * t) % pad
        f = bg[oy:oy + height, ox:ox + width].copy()
        ax = int(width * 0.05 + (width * 0.9 - aw) * t / max(1, frames - 1))
        ay = int(height / 2 - ah / 2 + height / 18 * np.sin(t / 6))
        region = f[ay:ay + ah, ax:ax + aw]
        region[:] = region * (1 - mask) + np.roll(actor, 3 * t, 0) * mask
        f += np.roll(noise[t % 3], int(rng.integers(0, 50)), 1)
        yield np.clip(f, 0, 255).astype(np.uint8), _POSE * np.array([aw, ah], np.float32) + [ax, ay]


def write_clip(path: Path, seed: int, frames: int, width: int, height: int, fps: int) -> np.ndarray:
    """Encode one clip with libx264; returns its joints (frames, 17, 2)."""
    from stages.extract.decode import ffmpeg_exe

    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
                             "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
                             "-c:v", "libx264", "-preset", "fast", "-crf", "23", "-pix_fmt", "yuv420p", str(path)],
                            stdin=subprocess.PIPE)
    joints = []
    for f, j in scene(seed, frames, width, height):
        proc.stdin.write(f.tobytes())
        joints.append(j)
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg could not encode {path}")
    return np.stack(joints)


def make_dataset(root: Path, clips: int = 16, seconds: float = 3.0, width: int = 1280, height: int = 720,
                 fps: int = 30, progress=None) -> Path:
    """A `custom` dataset of ``clips`` synthetic clips under ``root`` (kept and reused when the
    same parameters made it before). Returns the skeleton pickle's path."""
    root = Path(root)
    params = dict(version=GENERATOR_VERSION, clips=clips, seconds=seconds, width=width, height=height, fps=fps)
    marker = root / "synthetic.json"
    pkl = root / "skeleton.pkl"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return pkl
    n = int(round(seconds * fps))
    anns, rows = [], []
    for i in range(clips):
        kp = write_clip(root / f"v{i:02d}.mp4", i, n, width, height, fps)
        anns.append({"frame_dir": f"v{i:02d}", "total_frames": n, "img_shape": (height, width),
                     "original_shape": (height, width), "label": i % 2, "keypoint": kp[None],
                     "keypoint_score": np.full((1, n, 17), 0.9, np.float32)})
        rows.append(f"v{i:02d}.mp4,{i % 2}")
        if progress:
            progress(i + 1, clips)
    (root / "labels.txt").write_text("walk left\nwalk right\n")
    (root / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    (root / "val.csv").write_text("path,label\n")
    with open(pkl, "wb") as f:
        pickle.dump({"split": {"train": [a["frame_dir"] for a in anns]}, "annotations": anns}, f)
    marker.write_text(json.dumps(params))
    return pkl
