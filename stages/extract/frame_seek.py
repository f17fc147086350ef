"""Frame cuts that seek: where decoded frame ``n`` of a stream is, without decoding frames 0..n-1.

A frame cut ``[start_frame, end_frame)`` counts decoded frames (:func:`stages.extract.decode.read_frames`):
counting from the first frame costs the decode of everything before the cut, so a custom dataset
cutting many clips from one long recording paid O(clips x length) (3.5 s for a cut at frame 5,850
of a 360p video, against 0.09 s for the same cut in seconds).

Frame ``n`` of a stream is its ``n``-th frame in presentation order, and a frame's presentation
timestamp (pts) says where it is, so the cut can seek when the packets' timestamps say for sure which
pts frame ``n`` has. :func:`seek_plan` says so only when all of these hold, else the cut counts from
the first frame as before:

* the stream's packets (read by demuxing, no decoding: ``ffmpeg -c copy -f framecrc``, ~0.1 s for
  6,000 packets) all carry a pts, none flagged corrupt or to be discarded (an MP4 edit list's
  decode-only frames are), and their pts, sorted, step by one constant frame duration that matches
  the header's frame rate (a constant-rate stream: a field-coded stream, with two packets a frame,
  or a variable-rate one, fails this);
* the cut ends inside the packets (a cut past the end counts, and is reported as before);
* the stream's first decoded frame has the smallest pts (a decoder that drops leading frames, as
  HEVC drops an open GOP's leading pictures, would make the count start later).

Then frame ``n`` has the ``n``-th smallest pts ``P``. The cut seeks to the keyframe before ``P`` and
decodes from there; each frame's pts (ffmpeg's ``showinfo``, timestamps kept with ``-copyts``) is
checked as it arrives: frames before ``P`` are dropped, the first one kept must be ``P`` (a seek
that lands after it seeks once more, further back, then falls back to counting, before any frame
was given out), and every later one
the next packet's pts (a damaged stream that loses a frame inside the cut is an error then, never a
shifted cut).
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Optional

import numpy as np

from stages.extract.ffmpeg_binary import ffmpeg_exe

#: a frame cut seeks when it starts at least this far into the stream; nearer, counting is as cheap
SEEK_AFTER_SECONDS = 10.0
#: how much earlier a second seek starts when the first landed after the cut's first frame
EARLIER_SECONDS = 10.0

_TB = re.compile(r"^#tb (\d+): (\d+)/(\d+)", re.M)
# framecrc's packet line: stream, dts, pts, duration, size, crc[, F=flags]
_PACKET = re.compile(r"^(\d+),\s*(-?\d+|NOPTS),\s*(-?\d+|NOPTS),\s*(-?\d+),\s*\d+,\s*0x[0-9a-f]+(?:,\s*F=0x([0-9A-Fa-f]+))?",
                     re.M)
_PKT_CORRUPT, _PKT_DISCARD = 0x2, 0x4
#: showinfo's line for each frame: its index and pts, in the time base of its input, which it says first
SHOWINFO_PTS = re.compile(rb"\bn:\s*(\d+) pts:\s*(-?\d+)\b")
SHOWINFO_TIME_BASE = re.compile(rb"config in time_base: (\d+)/(\d+)")


@dataclass(frozen=True)
class SeekPlan:
    seek_seconds: float  # -ss (with -noaccurate_seek: the keyframe at or before it), from the container's start
    time_base: Fraction  # of the packets' pts
    pts: np.ndarray  # the pts of frames start_frame .. end_frame - 1, in order

    def tries(self) -> list["SeekPlan"]:
        """This seek, then one :data:`EARLIER_SECONDS` earlier (a container whose seek lands after
        the keyframe asked for: MPEG-TS seeks by byte position)."""
        earlier = dataclasses.replace(self, seek_seconds=max(0.0, self.seek_seconds - EARLIER_SECONDS))
        return [self] if earlier.seek_seconds == self.seek_seconds else [self, earlier]

    def time_of(self, k: int) -> Fraction:
        """Frame ``start_frame + k``'s presentation time, seconds (exact)."""
        return int(self.pts[k]) * self.time_base


@dataclass(frozen=True)
class _Packets:
    pts: np.ndarray  # sorted
    time_base: Fraction


def seek_plan(path: str, stream: Optional[str], fps: Optional[float], start: Optional[float], start_frame: int,
              end_frame: int) -> Optional[SeekPlan]:
    """Where frames ``[start_frame, end_frame)`` are, when the stream says for sure (module
    docstring); None: count from the first frame."""
    if not fps or start_frame / fps < SEEK_AFTER_SECONDS or end_frame <= start_frame:
        return None
    st = os.stat(path)
    packets = _packets(path, stream or "0:v:0", fps, st.st_size, st.st_mtime_ns)
    if packets is None or end_frame > len(packets.pts):
        return None
    if _first_frame_time(path, stream or "0:v:0", st.st_size, st.st_mtime_ns) != int(packets.pts[0]) * packets.time_base:
        return None
    # half a frame early: -ss is rounded to microseconds, and the keyframe before it is taken anyway
    half = Fraction(int(packets.pts[1] - packets.pts[0]), 2)
    at = float((int(packets.pts[start_frame]) - half) * packets.time_base) - (start or 0.0)
    return SeekPlan(seek_seconds=max(0.0, at), time_base=packets.time_base, pts=packets.pts[start_frame:end_frame])


def _run(args: list[str]) -> Optional[subprocess.CompletedProcess]:
    """ffmpeg's run (None: it could not run, or ran past 10 minutes: the cut counts instead)."""
    try:
        return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return None


@lru_cache(maxsize=16)
def _packets(path: str, stream: str, fps: float, size: int, mtime_ns: int) -> Optional[_Packets]:
    """The stream's packets' pts, sorted, when they are those of a constant-rate stream with nothing
    to discard (module docstring); None otherwise. ``size`` and ``mtime_ns`` key the cache: a file
    written again is read again."""
    # -copyts: the timestamps as stored, as the cut's decode (also -copyts) reports them
    proc = _run(["-loglevel", "error", "-copyts", "-i", path, "-map", stream, "-c", "copy", "-f", "framecrc", "-"])
    if proc is None or proc.returncode != 0 or proc.stderr.strip():
        return None  # anything ffmpeg complains of: leave it to the counting decode, which reports it
    text = proc.stdout.decode("ascii", "replace")
    tb = _TB.search(text)
    rows = _PACKET.findall(text)
    if tb is None or len(rows) < 2:
        return None
    if any(r[2] == "NOPTS" or (r[4] and int(r[4], 16) & (_PKT_CORRUPT | _PKT_DISCARD)) for r in rows):
        return None
    pts = np.sort(np.array([int(r[2]) for r in rows], np.int64))
    steps = np.diff(pts)
    time_base = Fraction(int(tb.group(2)), int(tb.group(3)))
    if steps[0] <= 0 or not np.all(steps == steps[0]):
        return None
    if abs(float(steps[0] * time_base) * fps - 1.0) > 0.01:  # not one frame per packet at the header's rate
        return None
    return _Packets(pts, time_base)


@lru_cache(maxsize=16)
def _first_frame_time(path: str, stream: str, size: int, mtime_ns: int) -> Optional[Fraction]:
    """The presentation time of the stream's first decoded frame, seconds (None: none decoded)."""
    proc = _run(["-loglevel", "info", "-copyts", "-i", path, "-map", stream, "-vf", "showinfo", "-frames:v", "1",
                 "-f", "null", "-"])
    if proc is None:
        return None
    tb, m = SHOWINFO_TIME_BASE.search(proc.stderr), SHOWINFO_PTS.search(proc.stderr)
    return int(m.group(2)) * Fraction(int(tb.group(1)), int(tb.group(2))) if m and tb else None
