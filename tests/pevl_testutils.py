"""Helpers shared by the tests (and bench/): tiny videos made with ffmpeg, a custom-layout dataset.

A uniquely named module rather than ``conftest``: several test folders have a conftest.py, and
``from conftest import ...`` would pick whichever was imported first.
"""
from __future__ import annotations

import functools
import subprocess
import tempfile
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


def custom_extract_options(tmp_path: Path, clips: list[tuple[str, int, str]], classes: list[str]):
    """ExtractOptions of a small custom dataset under ``tmp_path/data`` (``clips``: video path,
    label, split; each a 6-frame 48x32 video) into ``tmp_path/cache``, posed by the small HRNet."""
    from stages.extract.plan import ExtractOptions

    root = tmp_path / "data"
    for path, _, _ in clips:
        make_video(root / path, frames=6, size=(48, 32))
    write_custom_dataset(root, clips, classes)
    return ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                          pose_options={"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": False},
                          dataset_options={"coarse_type": "x"}, settings={"num_frames": 2})


# -- time-coded videos: each frame shows its own number ----------------------------------------------
TIMECODE_BITS = 10
TIMECODE_STRIPE = 8  # pixels per bit: wide enough to survive any lossy codec


def timecode_frame(k: int, size: tuple[int, int] = (80, 32), noise: bool = False) -> "np.ndarray":
    """An RGB frame whose left ``TIMECODE_BITS`` stripes spell ``k`` in binary (white = 1); with
    ``noise`` the rest is random (a file mostly of frame data, like real footage)."""
    import numpy as np

    w, h = size
    img = np.full((h, w, 3), 64, np.uint8)
    if noise:
        img[:] = np.random.default_rng(k).integers(0, 256, img.shape, dtype=np.uint8)
    for b in range(TIMECODE_BITS):
        img[:, b * TIMECODE_STRIPE:(b + 1) * TIMECODE_STRIPE] = 255 if (k >> b) & 1 else 0
    return img


def read_timecode(frame) -> int:
    """The number :func:`timecode_frame` drew, read back from a decoded frame."""
    row = frame[frame.shape[0] // 2]
    return sum(1 << b for b in range(TIMECODE_BITS)
               if row[int((b + 0.5) * TIMECODE_STRIPE)].mean() > 128)


def make_timecoded_video(path: Path, frames: int, fps: int = 10, size: tuple[int, int] = (80, 32),
                         codec: tuple[str, ...] = ("-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p"),
                         vf: str | None = None, extra: tuple[str, ...] = (), noise: bool = False) -> Path:
    """A video whose frame ``k`` (at ``fps``, i.e. at time ``k / fps``) shows ``k``.

    ``vf`` filters before encoding (e.g. ``select`` for an irregular subset: variable frame rate);
    ``codec`` and ``extra`` are ffmpeg output arguments.
    """
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    raw = np.stack([timecode_frame(k, size, noise) for k in range(frames)]).tobytes()
    cmd = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if vf:
        cmd += ["-vf", vf, "-fps_mode", "passthrough"]
    subprocess.run(cmd + list(codec) + list(extra) + [str(path)], input=raw, check=True)
    return path


def pattern_video(path, size=(64, 48), frames=4, extra=()):
    """A still picture with a bright block in the stored top-left corner (lossless, so exact)."""
    import numpy as np

    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 3, : w // 4] = 255
    raw = np.stack([img] * frames).tobytes()
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
                    "rgb24", "-s", f"{w}x{h}", "-r", "10", "-i", "-", "-c:v", "libx264rgb", "-qp", "0", *extra,
                    str(path)], input=raw, check=True)
    return img


def damaged_transport_stream(tmp_path: Path, frames: int) -> Path:
    """A timecoded MPEG-TS (:func:`make_timecoded_video`, 10 fps) with three 188-byte packets in the
    middle of the file overwritten by random bytes: damage the decoder conceals, frames after it."""
    import numpy as np

    p = make_timecoded_video(tmp_path / "v.ts", frames, size=(160, 64), noise=True, extra=("-g", "10", "-f", "mpegts"))
    data = bytearray(p.read_bytes())
    mid = (len(data) // 188 // 2) * 188
    data[mid:mid + 3 * 188] = np.random.default_rng(0).integers(0, 256, 3 * 188, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.ts"
    damaged.write_bytes(bytes(data))
    return damaged


def remux(src: Path, dst: Path, before_input: tuple[str, ...] = (), after_input: tuple[str, ...] = ()) -> Path:
    """Copy the streams of ``src`` into ``dst`` (e.g. with a display rotation), re-encoding nothing."""
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *before_input, "-i", str(src),
                    *after_input, "-c", "copy", str(dst)], check=True)
    return dst


# -- a small HRNet for tests whose subject is not the pose network ------------------------------------
TINY_HRNET_OVERRIDES = """
# mmpose's HRNet-w32 COCO 256x192 config with one block per branch and an eighth of the channels:
# the same classes, input size, codec and test pipeline, about 8x cheaper per crop on a CPU
model = dict(
    backbone=dict(
        extra=dict(
            stage1=dict(num_blocks=(1, ), num_channels=(16, )),
            stage2=dict(num_blocks=(1, 1), num_channels=(8, 16)),
            stage3=dict(num_modules=1, num_blocks=(1, 1, 1), num_channels=(8, 16, 32)),
            stage4=dict(num_modules=1, num_blocks=(1, 1, 1, 1), num_channels=(8, 16, 32, 64))),
        init_cfg=None),
    head=dict(in_channels=8))
"""


@functools.cache
def tiny_hrnet_config() -> str:
    """``--pose-config`` of the small HRNet (random weights only), written once per test session.

    For tests of the extraction machinery (workers, kills, resumes, repairs): HRNet-w32 on a CPU costs
    ~0.13 s a crop. Tests of the pose network itself keep the real config."""
    from stages.extract.pose.hrnet import mmpose_config_path

    path = Path(tempfile.mkdtemp(prefix="pevl-test-hrnet-")) / "td-hm_hrnet-tiny_coco-256x192.py"
    path.write_text(f"_base_ = [{str(mmpose_config_path())!r}]\n{TINY_HRNET_OVERRIDES}")
    return str(path)
