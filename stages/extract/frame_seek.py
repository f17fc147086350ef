"""Cuts that seek: where a cut's first frame is, without decoding the stream up to it; each frame
told by its presentation timestamp (ffmpeg's ``showinfo``, timestamps kept with ``-copyts``).

**Time cuts** ``[start_time, end_time)`` (:class:`TimeWindow`) keep the frames whose presentation
time, counted from the container's start as ffmpeg's ``-ss`` counts it, lies in the interval (a
microsecond's leeway either side, the precision of ffmpeg's own times). Decoding starts from the
keyframe before ``start_time - 0.1 s`` (``-noaccurate_seek``). A seek *misses* when its first
frame comes after ``start_time`` (MPEG-TS seeks by byte position and may land a whole GOP late) or
when no clean start (``showinfo``'s ``iskey``, or an I picture) comes before the cut's first frame
(an intra-refresh stream's, or a keyframe-less MP4's, "keyframes" are not: what follows them is
built on references the seek skipped); a miss seeks 2, 10 and 30 s further back, then decodes
from the first frame, and costs a frame's decode. ffmpeg's own cut (an input ``-ss``/``-to`` pair,
the times written to the millisecond) ended the cut at its first frame's time plus
``end - start``, a frame late when the start fell between frames, rounded starts on frame times to
the millisecond (frame 44 at 30 fps, 1.4667 s, was cut as 1.467 and lost), and started late in
MPEG-TS and HEVC open GOPs.

**Frame cuts** ``[start_frame, end_frame)``: frame ``n`` is the stream's ``n``-th frame in
presentation order. Counting decoded frames from the first costs the decode of everything before
the cut, so a custom dataset cutting many clips from one long recording paid O(clips x length)
(3.5 s for a cut at frame 5,850 of a 360p video, against 0.09 s for the same cut in seconds). A
frame's presentation timestamp (pts) says where it is, so the cut seeks when the packets'
timestamps say for sure which pts frame ``n`` has. :func:`seek_plan` says so only when all of
these hold, else the cut counts from the first frame as before:

* the stream's packets (read by demuxing, no decoding: ``ffmpeg -c copy -f framecrc``, ~0.1 s for
  6,000 packets) all carry a pts, none flagged corrupt or to be discarded (an MP4 edit list's
  decode-only frames are), and their pts, sorted, step by one constant frame duration that matches
  the header's frame rate (a constant-rate stream: a field-coded stream, with two packets a frame,
  or a variable-rate one, fails this);
* the cut ends inside the packets (a cut past the end counts, and is reported as before);
* the stream's first decoded frame has the smallest pts (a decoder that drops leading frames, as
  HEVC drops an open GOP's leading pictures, would make the count start later).

Then frame ``n`` has the ``n``-th smallest pts ``P``. The cut seeks to the keyframe before ``P``;
frames before ``P`` are dropped; a seek misses (as a time cut's) when its first frame comes after
``P`` or no clean start comes before it, and seeks further back, then counts, before any frame was
given out; every frame kept must have the next packet's pts (a damaged stream that loses a frame
inside the cut is an error then, never a shifted cut).
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

from stages.extract.ffmpeg_binary import ffmpeg_exe, ffmpeg_path

#: a frame cut seeks when it starts at least this far into the stream; nearer, counting is as cheap
SEEK_AFTER_SECONDS = 10.0
#: how much earlier each further seek starts when one missed: landed after the cut's first frame (an
#: MPEG-TS seek, by byte position, lands up to a GOP late), or on a frame that is no clean start (an
#: intra-refresh stream, an MP4 without its keyframe table, whose every frame is flagged a keyframe).
#: A miss costs one frame's decode.
EARLIER_SECONDS = (2.0, 10.0, 30.0)

_TB = re.compile(r"^#tb (\d+): (\d+)/(\d+)", re.M)
# framecrc's packet line: stream, dts, pts, duration, size, crc[, F=flags]
_PACKET = re.compile(r"^(\d+),\s*(-?\d+|NOPTS),\s*(-?\d+|NOPTS),\s*(-?\d+),\s*\d+,\s*0x[0-9a-f]+(?:,\s*F=0x([0-9A-Fa-f]+))?",
                     re.M)
_PKT_CORRUPT, _PKT_DISCARD = 0x2, 0x4
#: showinfo's line for each frame: its index and pts, in the time base of its input, which it says first,
#: and whether it is a clean start: a keyframe, or an intra picture (an open GOP's recovery point), which
#: the frames after it in display order do not reach past
SHOWINFO_PTS = re.compile(rb"\bn:\s*(\d+) pts:\s*(-?\d+)\b.*?\biskey:(\d) type:(\w)")
SHOWINFO_TIME_BASE = re.compile(rb"config in time_base: (\d+)/(\d+)")


@dataclass(frozen=True)
class SeekPlan:
    seek_seconds: float  # -ss (with -noaccurate_seek: the keyframe at or before it), from the container's start
    time_base: Fraction  # of the packets' pts
    pts: np.ndarray  # the pts of frames start_frame .. end_frame - 1, in order

    def tries(self) -> list["SeekPlan"]:
        """This seek, then each :data:`EARLIER_SECONDS` earlier while above 0 s (then the cut counts)."""
        return [dataclasses.replace(self, seek_seconds=at) for at in _earlier(self.seek_seconds, (0.0, *EARLIER_SECONDS))]

    def time_of(self, k: int) -> Fraction:
        """Frame ``start_frame + k``'s presentation time, seconds (exact)."""
        return int(self.pts[k]) * self.time_base


#: how a time cut is read, recorded with each time-cut clip's source (so in the entry key): entries of
#: the rule before (ffmpeg's input -ss/-to pair, a frame late at the end when the start fell between
#: frames) are other entries, never resumed with clips cut by this one
TIME_CUT_RULE = "frame times in [start, end), from the container's start (2026-12-06)"
#: a time cut's first seek starts this far before its start (the frames from the keyframe before it are
#: decoded, as ffmpeg's own seek decodes them); the next ones :data:`EARLIER_SECONDS` before
TIME_MARGIN_SECONDS = 0.1
#: leeway in comparing a frame's time with a cut's ends: ffmpeg's own times are microseconds
_LEEWAY = Fraction(1, 1_000_000)


@dataclass(frozen=True)
class TimeWindow:
    """A time cut ``[start, end)`` (seconds from the container's start; ``end`` None: to the end),
    decoded from the keyframe before ``seek_seconds`` (0: from the first frame)."""

    start: Fraction
    end: Optional[Fraction]
    seek_seconds: float

    def before(self, t: Fraction) -> bool:
        return t < self.start - _LEEWAY

    def after(self, t: Fraction) -> bool:
        return self.end is not None and t >= self.end - _LEEWAY

    def __str__(self) -> str:
        return f"[{float(self.start):.3f}, {'end' if self.end is None else f'{float(self.end):.3f}'}) s"

    def starts_late(self, t: Fraction) -> bool:
        """Whether a seek whose first frame is at ``t`` landed after the cut's start."""
        return self.seek_seconds > 0 and t > self.start + _LEEWAY


def exact_seconds(seconds: Optional[float]) -> Fraction:
    """A time as its decimal reads, exactly (0.1 is 1/10, not the binary float nearest it): a cut's
    ends as given, a container's start as ffmpeg printed it (microseconds). None: 0."""
    return Fraction(repr(float(seconds or 0.0)))


def time_windows(start_time: Optional[float], end_time: Optional[float]) -> list[TimeWindow]:
    """The tries of a time cut, each seeking further back, the last from the first frame."""
    start = exact_seconds(start_time)
    end = exact_seconds(end_time) if end_time is not None else None
    # the last try decodes from the first frame: it cannot land late
    return [TimeWindow(start, end, at) for at in _earlier(float(start), (TIME_MARGIN_SECONDS, *EARLIER_SECONDS))] \
        + [TimeWindow(start, end, 0.0)]


def _earlier(at: float, offsets: tuple[float, ...]) -> list[float]:
    """``at`` less each offset, those above 0 s, in order, without repeats."""
    out: list[float] = []
    for o in offsets:
        t = at - o
        if t > 0 and t not in out:
            out.append(t)
    return out


@dataclass(frozen=True)
class _Packets:
    pts: np.ndarray  # sorted
    time_base: Fraction


def _file_key(path: str, stream: Optional[str]) -> Optional[tuple[str, str, int, int]]:
    """``(path, stream, size, mtime_ns)``: what the per-file caches below are keyed by (a file
    written again is read again); None where the file cannot be looked at (the decode says why)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return path, stream or "0:v:0", st.st_size, st.st_mtime_ns


def seek_plan(path: str, stream: Optional[str], fps: Optional[float], start: Optional[float], start_frame: int,
              end_frame: int) -> Optional[SeekPlan]:
    """Where frames ``[start_frame, end_frame)`` are, when the stream says for sure (module
    docstring); None: count from the first frame."""
    if not fps or start_frame / fps < SEEK_AFTER_SECONDS or end_frame <= start_frame:
        return None
    key = _file_key(path, stream)
    packets = _packets(key, fps) if key else None
    if packets is None or end_frame > len(packets.pts):
        return None
    if _first_frame_time(*key) != int(packets.pts[0]) * packets.time_base:
        return None
    # half a frame early: -ss is rounded to microseconds, and the keyframe before it is taken anyway
    half = Fraction(int(packets.pts[1] - packets.pts[0]), 2)
    at = float((int(packets.pts[start_frame]) - half) * packets.time_base - exact_seconds(start))
    return SeekPlan(seek_seconds=max(0.0, at), time_base=packets.time_base, pts=packets.pts[start_frame:end_frame])


def _run(args: list[str]) -> Optional[subprocess.CompletedProcess]:
    """ffmpeg's run (None: it could not run, or ran past 10 minutes: the cut counts instead)."""
    try:
        return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return None


@dataclass(frozen=True)
class _Listing:
    """A stream's packets as the demuxer gives them (``ffmpeg -copyts -c copy -f framecrc``: no
    decoding), in decode order."""

    complaints: bool  # ffmpeg failed or said anything (at level error)
    time_base: Optional[Fraction]
    rows: tuple  # (stream, dts, pts, duration, flags) as framecrc writes them (dts, pts may be NOPTS)


@lru_cache(maxsize=16)
def _listing(path: str, stream: str, size: int, mtime_ns: int) -> Optional[_Listing]:
    """The stream's packets (None: ffmpeg could not run). ``size`` and ``mtime_ns`` key the cache."""
    # -copyts: the timestamps as stored, as the cut's decode (also -copyts) reports them
    proc = _run(["-loglevel", "error", "-copyts", "-i", ffmpeg_path(path), "-map", stream, "-c", "copy", "-f", "framecrc", "-"])
    if proc is None:
        return None
    text = proc.stdout.decode("ascii", "replace")
    tb = _TB.search(text)
    return _Listing(complaints=proc.returncode != 0 or bool(proc.stderr.strip()),
                    time_base=Fraction(int(tb.group(2)), int(tb.group(3))) if tb else None,
                    rows=tuple(_PACKET.findall(text)))


def _packets(key: tuple[str, str, int, int], fps: float) -> Optional[_Packets]:
    """The stream's packets' pts, sorted, when they are those of a constant-rate stream with nothing
    to discard (module docstring); None otherwise."""
    listing = _listing(*key)
    if listing is None or listing.complaints:
        return None  # anything ffmpeg complains of: leave it to the counting decode, which reports it
    rows, time_base = listing.rows, listing.time_base
    if time_base is None or len(rows) < 2:
        return None
    if any(r[2] == "NOPTS" or (r[4] and int(r[4], 16) & (_PKT_CORRUPT | _PKT_DISCARD)) for r in rows):
        return None
    pts = np.sort(np.array([int(r[2]) for r in rows], np.int64))
    steps = np.diff(pts)
    if steps[0] <= 0 or not np.all(steps == steps[0]):
        return None
    if abs(float(steps[0] * time_base) * fps - 1.0) > 0.01:  # not one frame per packet at the header's rate
        return None
    return _Packets(pts, time_base)


#: input formats whose timestamps may restart mid-file (MPEG transport and program streams: joined
#: recordings, broadcast captures); a time cut in one is checked against every packet first
DISCONTINUOUS_FORMATS = ("mpegts", "mpeg")


def timestamps_go_back(path: str, stream: Optional[str], container: Optional[str]) -> Optional[str]:
    """Where the stream's packet timestamps go back (``"at packet N: from A s to B s"``), for a
    container of :data:`DISCONTINUOUS_FORMATS`; None: they do not, or the container's cannot."""
    if not container or not set(container.split(",")) & set(DISCONTINUOUS_FORMATS):
        return None
    key = _file_key(path, stream)
    listing = _listing(*key) if key else None
    if listing is None or listing.time_base is None:
        return None
    dts = [int(r[1]) for r in listing.rows if r[1] != "NOPTS"]
    for i in range(1, len(dts)):
        if dts[i] <= dts[i - 1]:
            unit = listing.time_base
            return f"at packet {i}: from {float(dts[i - 1] * unit):.3f} s to {float(dts[i] * unit):.3f} s"
    return None


def first_frame_offset(path: str, stream: Optional[str], start: Optional[float]) -> Optional[Fraction]:
    """How long after the container's start the stream's first frame is stamped (None: not known)."""
    key = _file_key(path, stream)
    t = _first_frame_time(*key) if key else None
    return None if t is None else t - exact_seconds(start)


@lru_cache(maxsize=16)
def _first_frame_time(path: str, stream: str, size: int, mtime_ns: int) -> Optional[Fraction]:
    """The presentation time of the stream's first decoded frame, seconds (None: none decoded)."""
    proc = _run(["-loglevel", "info", "-copyts", "-i", ffmpeg_path(path), "-map", stream, "-vf", "showinfo=checksum=0", "-frames:v",
                 "1", "-f", "null", "-"])
    if proc is None:
        return None
    tb, m = SHOWINFO_TIME_BASE.search(proc.stderr), SHOWINFO_PTS.search(proc.stderr)
    return int(m.group(2)) * Fraction(int(tb.group(1)), int(tb.group(2))) if m and tb else None
