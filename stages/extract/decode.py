"""Decoding clips with ffmpeg (through ffmpeg-python), streaming raw RGB frames.

The ffmpeg binary is the static one inside the ``imageio-ffmpeg`` wheel unless ``$PEVL_FFMPEG``
names another, so a plain ``pip install`` brings everything needed. That build has no ffprobe;
:func:`probe` reads the stream header that ``ffmpeg -i`` prints instead.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

import ffmpeg
import numpy as np


class DecodeError(RuntimeError):
    """A clip that cannot be decoded; the message is the reason recorded in the cache."""


def ffmpeg_exe() -> str:
    exe = os.environ.get("PEVL_FFMPEG")
    if exe:
        return exe
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed (after the rotation ffmpeg applies by default)
    height: int
    fps: Optional[float]
    duration: Optional[float]  # seconds, from the container header
    codec: str
    rotation: int = 0


_DUR = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_TBR = re.compile(r"(\d+(?:\.\d+)?)k? tbr")
_ROT = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Invalid" in ln or "not found" in ln or "No such" in ln:
            return re.sub(r"\[[^\]]*@ 0x[0-9a-f]+\] ", "", ln)
    return lines[-1] if lines else "ffmpeg printed nothing"


def probe(path: str) -> VideoInfo:
    """Stream size, frame rate and duration from ``ffmpeg -i``; :class:`DecodeError` if unreadable."""
    if not os.path.isfile(path):
        raise DecodeError(f"video file not found: {path}")
    if os.path.getsize(path) == 0:
        raise DecodeError("empty file (0 bytes)")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True,
                          errors="replace", timeout=120)
    err = proc.stderr
    m = _STREAM.search(err)
    if not m:
        if "moov atom not found" in err:
            raise DecodeError("unreadable mp4: moov atom not found (a truncated file, or not a video at all)")
        if "Error opening input" in err or "Invalid data" in err:
            raise DecodeError(f"not a readable video: {_last_error_line(err)}")
        raise DecodeError(f"no video stream: {_last_error_line(err)}")
    codec, w, h = m.group(1), int(m.group(2)), int(m.group(3))
    line = err[m.start(): err.find("\n", m.start())]
    fm = _FPS.search(line) or _TBR.search(line)
    fps = float(fm.group(1)) if fm else None
    dm = _DUR.search(err)
    duration = int(dm.group(1)) * 3600 + int(dm.group(2)) * 60 + float(dm.group(3)) if dm else None
    rm = _ROT.search(err)
    rot = int(round(float(rm.group(1)))) % 360 if rm else 0
    if rot in (90, 270):
        w, h = h, w
    return VideoInfo(width=w, height=h, fps=fps, duration=duration, codec=codec, rotation=rot)


def read_frames(
    path: str,
    info: VideoInfo,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    start_frame: Optional[int] = None,
    end_frame: Optional[int] = None,
    min_coverage: float = 0.9,
) -> Iterator[np.ndarray]:
    """Yield every frame of the clip as (H, W, 3) uint8 RGB, in order, at the displayed size.

    Time cuts seek in ffmpeg (no intermediate files); frame cuts count decoded frames. Raises
    :class:`DecodeError` at the end if ffmpeg failed or returned clearly fewer frames than the
    header promised (a truncated file decodes partway and stops).
    """
    in_kw: dict = {}
    if start_time is not None:
        in_kw["ss"] = f"{start_time:.3f}"
    if end_time is not None:
        in_kw["to"] = f"{end_time:.3f}"
    w, h = info.width, info.height
    # Passthrough: one output frame per decoded frame (no duplication to a constant rate), and an
    # explicit size so the byte count per frame is known whatever rotation metadata says.
    stream = (
        ffmpeg.input(path, **in_kw)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", fps_mode="passthrough", an=None, sn=None)
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
    )
    proc = stream.run_async(cmd=ffmpeg_exe(), pipe_stdout=True, pipe_stderr=True)
    err_chunks: list[bytes] = []
    t = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    t.start()
    frame_bytes = w * h * 3
    n = 0
    n_out = 0
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            if start_frame is not None and n < start_frame:
                n += 1
                continue
            if end_frame is not None and n >= end_frame:
                break
            n += 1
            n_out += 1
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        if proc.poll() is None:
            proc.stdout.close()
            proc.kill()
        rc = proc.wait()
        t.join(timeout=5)
    stopped_early = end_frame is not None and n >= end_frame
    stderr = b"".join(err_chunks).decode("utf-8", "replace")
    if rc != 0 and not stopped_early and rc > 0:
        raise DecodeError(f"ffmpeg failed (exit {rc}): {_last_error_line(stderr)}")
    if n_out == 0:
        raise DecodeError("no frames decoded" + (f": {_last_error_line(stderr)}" if stderr.strip() else ""))
    expected = _expected_frames(info, start_time, end_time, start_frame, end_frame)
    if expected and n_out < min_coverage * expected - 1:
        why = _last_error_line(stderr) if stderr.strip() else "stream ends early"
        raise DecodeError(f"truncated: decoded {n_out} of ~{expected} frames ({why})")


def _expected_frames(info, start_time, end_time, start_frame, end_frame) -> Optional[int]:
    if start_frame is not None and end_frame is not None:
        return None  # a frame cut past the end is the annotation's business, checked by the caller
    if not info.fps or not info.duration:
        return None
    t0 = start_time or 0.0
    t1 = min(end_time, info.duration) if end_time is not None else info.duration
    return int((t1 - t0) * info.fps) if t1 > t0 else None


def decode_clip(path: str, **cut) -> tuple[VideoInfo, list[np.ndarray]]:
    """Probe and decode a whole clip into memory (tests and small clips)."""
    info = probe(path)
    return info, list(read_frames(path, info, **cut))
