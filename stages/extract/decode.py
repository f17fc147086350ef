"""Decoding clips with ffmpeg (through ffmpeg-python), streaming RGB frames.

The ffmpeg binary is the static one inside the ``imageio-ffmpeg`` wheel unless ``$PEVL_FFMPEG``
names another, so a plain ``pip install`` brings everything needed. That build has no ffprobe;
:func:`probe` reads the stream header that ``ffmpeg -i`` prints instead.

What real footage carries, and what decoding does with it (docs/extraction.md, "Real videos"):

* **Rotation** (a phone's display matrix): frames come out in the *displayed* orientation, as
  ffmpeg autorotates by default; :func:`probe` reports the displayed size, and every decoded
  frame is checked against it, so a rotation the probe missed is an error, never a squeezed frame.
* **Non-square pixels** (sample aspect ratio, SAR, other than 1:1): frames are resampled to square
  pixels at the display aspect ratio (the width is scaled by the SAR, the height kept). mmaction2's
  decord and PyAV backends return the stored pixels and ignore the SAR, which shows people
  stretched or squeezed to HRNet; we give the picture as a player shows it, with a note.
* **Variable frame rate**: frames are passed through as stored (no duplication or dropping to a
  constant rate); ``VideoInfo.fps`` is the header's average rate, and time cuts select by
  timestamp.
* **Truncation vs. a wrong container duration**: a file is *truncated* when ffmpeg reports that
  the data ends early (a partial file, a corrupt packet at the end of the data), or when the
  decoded stream covers clearly less time than the header states *and* ffmpeg reported errors. A
  stream that decodes cleanly but ends before the container's duration (an audio track longer
  than the video, a wrong header) is taken as complete, with a note; so is one with a corrupt
  packet that ffmpeg places well inside what decoded (damage the decoder concealed).
* **A frame size that changes mid-stream** is an error: ffmpeg would scale the later frames to the
  first one's size without a word (its notice, at level info, names the new size).
* **Frame cuts** count decoded frames, seeking to a cut far into the stream where its packets say
  where each frame is (:mod:`stages.extract.frame_seek`).
* Open-GOP / B-frame streams, odd frame sizes, MPEG-4 part 2 (XVID) in AVI decode like any other
  stream; a file without a video stream (cover art does not count) is an error that says so.

Frames travel from ffmpeg as PPM images (``image2pipe``), each with its own size in its header, so
the size of every frame is ffmpeg's word, checked against the probe, not an assumption.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import threading
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Optional

import ffmpeg
import numpy as np

from stages.extract import frame_seek
from stages.extract.ffmpeg_binary import ffmpeg_exe, ffmpeg_path


class DecodeError(RuntimeError):
    """A clip that cannot be decoded; the message is the reason recorded in the cache."""


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as decoded: displayed orientation, square pixels (see the module docstring)
    height: int
    fps: Optional[float]  # the header's average frame rate
    duration: Optional[float]  # seconds, from the container header (all streams)
    codec: str
    rotation: int = 0  # degrees the display matrix turns the stored picture (0, 90, 180, 270)
    sar: tuple[int, int] = (1, 1)  # sample aspect ratio of the stored pixels
    stored_size: Optional[tuple[int, int]] = None  # (width, height) as stored, before rotation and SAR
    stream: Optional[str] = None  # ffmpeg's "file:stream" index of the video stream decoded
    tbr: Optional[float] = None  # ffmpeg's guess of the base frame rate (differs from fps when variable)
    tbn: Optional[float] = None  # ticks per second of the stream's timestamps (its time base's inverse)
    start: Optional[float] = None  # the container's start time, seconds (timestamps count from it)
    container: Optional[str] = None  # ffmpeg's name of the input format ("mov,mp4,...", "mpegts", ...)
    stream_start: Optional[float] = None  # the video stream's own start, where ffmpeg prints one

    @property
    def video_delay(self) -> float:
        """Seconds from the file's start (what a player shows as 0) to the video stream's first
        frame: > 0 where the video starts after the file's other streams (audio recorded first,
        an edit list); frame k is then shown at ``video_delay + k / fps``."""
        if self.stream_start is None:
            return 0.0
        return max(0.0, self.stream_start - (self.start or 0.0))

    @property
    def variable_frame_rate(self) -> bool:
        return bool(self.fps and self.tbr and abs(self.fps - self.tbr) > 0.01 * self.tbr)

    @property
    def square_pixels(self) -> bool:
        return self.sar[0] == self.sar[1]


_DUR = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_INPUT_FORMAT = re.compile(r"^Input #0, (.+?), from ", re.M)
_STREAM = re.compile(r"Stream #(\d+):(\d+)[^:]*: Video: (\w+)(.*)")
_SIZE = re.compile(r", (\d{1,5})x(\d{1,5})\b")
_SAR = re.compile(r"SAR (\d+):(\d+)")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_TBR = re.compile(r"(\d+(?:\.\d+)?)(k?) tbr")
_TBN = re.compile(r"(\d+(?:\.\d+)?)(k?) tbn")
_START = re.compile(r"Duration: [^,\n]*, start: (-?\d+(?:\.\d+)?)")
_STREAM_START = re.compile(r"\bstart (-?\d+(?:\.\d+)?)")  # a stream's own start, in its line
_ROT = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.I)
_ROT_TAG = re.compile(r"^\s*rotate\s*:\s*(-?\d+)", re.M)  # ffmpeg < 5 printed the mp4 tag
# ffmpeg's words for data that ends early (a truncated file): the demuxer read past the end.
_EOF_WORDS = re.compile(r"partial file|ended prematurely|Truncating packet|end of file", re.I)
# ffmpeg's words for a damaged packet: the end of a truncated file, or damage mid-stream that the
# decoder conceals; truncation only when the frames also stop short of the expected span
_CORRUPT_WORDS = re.compile(r"Packet corrupt|corrupt input packet", re.I)
_CORRUPT_AT = re.compile(r"Packet corrupt \(stream = (\d+), dts = (-?\d+)\)")
# ffmpeg's own notice (level info) that the decoded frames' parameters changed mid-stream: it then
# scales every later frame to the first one's size by itself, silently
_RECONFIGURED = re.compile(r"Reconfiguring filter graph because video parameters changed to .*?, (\d+)x(\d+)\b")
_LEVEL = re.compile(r"\[(trace|debug|verbose|info|warning|error|fatal|panic)\] ")
_PROGRESS_LINE = re.compile(r"^(frame|fps|stream_\d+_\d+_q|bitrate|total_size|out_time(_us|_ms)?|dup_frames|"
                            r"drop_frames|speed|progress)=")


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Invalid" in ln or "not found" in ln or "No such" in ln:
            return _clean(ln)
    return _clean(lines[-1]) if lines else "ffmpeg printed nothing"


def _clean(line: str) -> str:
    return _LEVEL.sub("", re.sub(r"\[[^\]]*@ 0x[0-9a-f]+\] ", "", line.strip()), count=1)


#: warnings ffmpeg prints for every healthy file of a kind, about itself, not the file's damage: a packed
#: XVID AVI's B-frames ("packed bitstream"), and the full-range YUV that MJPEG decodes to
_ROUTINE = re.compile(r"Discarding excessive bitstream in packed xvid|deprecated pixel format used")


def _problem_lines(stderr: str) -> list[str]:
    """ffmpeg's warnings and errors (lines logged at level warning or above), cleaned; not its
    progress reports or its info lines, nor the routine warnings of :data:`_ROUTINE`. A line
    without a level continues the last one that had one (a metadata value's second line in the
    stream dump, "Last message repeated"); before any, it counts as a problem."""
    out, level, routine = [], None, False
    for ln in stderr.splitlines():
        ln = ln.strip()
        if not ln or _PROGRESS_LINE.match(ln):
            continue
        tag = _LEVEL.search(ln)
        if tag is not None:
            level, routine = tag.group(1), bool(_ROUTINE.search(ln))
        if level not in ("trace", "debug", "verbose", "info") and not routine:
            out.append(_clean(ln))
    return out


def _stream_blocks(err: str) -> list[tuple[re.Match, str]]:
    """Each video stream line of ``ffmpeg -i`` with the text up to the next stream (its side data)."""
    starts = [m for m in re.finditer(r"^\s*Stream #", err, re.M)]
    out = []
    for i, s in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(err)
        block = err[s.start():end]
        m = _STREAM.search(block.splitlines()[0])
        if m and "(attached pic)" not in m.group(0):
            out.append((m, block))
    return out


def displayed_size(width: int, height: int, rotation: int, sar: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of decoded frames: turned by ``rotation``, then the (turned) SAR applied to
    the width, rounded half up -- the same arithmetic as the scale filter :func:`read_frames` adds."""
    num, den = sar
    if rotation in (90, 270):
        width, height, num, den = height, width, den, num
    if num != den:
        width = int(math.floor(width * num / den + 0.5))
    return width, height


def _rate(m: Optional[re.Match]) -> Optional[float]:
    """A ``tbr`` / ``tbn`` figure of ``ffmpeg -i`` (``90k`` is 90000), or None."""
    return float(m.group(1)) * (1000 if m.group(2) else 1) if m else None


def _near_names(path: str) -> str:
    """``; did you mean 'x'?`` for a file beside ``path`` whose name is close to its (a typo in an
    annotation file), else nothing."""
    import difflib

    slashed = path.replace("\\", "/")
    if slashed != path and os.path.isfile(slashed):  # a path written on Windows
        return f"; did you mean {slashed!r} (a path's folders are separated by '/')?"
    folder, name = os.path.split(path)
    try:
        names = [n for n in os.listdir(folder or ".") if n != name]
    except OSError:
        return ""
    for form in ("NFC", "NFD"):  # the same name composed otherwise (files copied from a Mac are NFD)
        other = unicodedata.normalize(form, name)
        if other != name and other in names:
            return (f"; did you mean {other!r}? It is the same name in Unicode's {form} form, other bytes (files "
                    f"copied from macOS are often NFD): rename the file or the annotation's entry to one form")
    # the name without its extension (an annotation that lists ids, not files), else a typo
    close = sorted(n for n in names if os.path.splitext(n)[0] == name) or \
        difflib.get_close_matches(name, names, n=1, cutoff=0.8)
    return f"; did you mean {close[0]!r}?" if close else ""


def probe(path: str) -> VideoInfo:
    """Stream size, frame rate and duration from ``ffmpeg -i``; :class:`DecodeError` if unreadable."""
    if os.path.isdir(path):
        raise DecodeError(f"{path} is a folder, not a video file")
    if not os.path.isfile(path):
        raise DecodeError(f"video file not found: {path}{_near_names(path)}")
    if os.path.getsize(path) == 0:
        raise DecodeError("empty file (0 bytes)")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", ffmpeg_path(path)], capture_output=True, text=True,
                          errors="replace", timeout=120)
    err = proc.stderr
    blocks = _stream_blocks(err)
    if not blocks:
        if "moov atom not found" in err:
            raise DecodeError("unreadable mp4: moov atom not found (a truncated file, or not a video at all)")
        if "Error opening input" in err or "Invalid data" in err:
            raise DecodeError(f"not a readable video: {_last_error_line(err)}")
        streams = re.findall(r"Stream #\d+:\d+[^:]*: (\w+):(.*)", err)
        kinds = sorted({"cover art" if "(attached pic)" in rest else k.lower() for k, rest in streams})
        raise DecodeError("no video stream" + (f" (the file has only {', '.join(kinds)})"
                                               if kinds else f": {_last_error_line(err)}"))
    m, block = blocks[0]
    rest = m.group(4)
    sm = _SIZE.search(rest)
    if not sm:
        raise DecodeError(f"video stream without a frame size: {_clean(m.group(0))}")
    w, h = int(sm.group(1)), int(sm.group(2))
    sar_m = _SAR.search(rest)
    sar = (int(sar_m.group(1)), int(sar_m.group(2))) if sar_m else (1, 1)
    if sar[0] <= 0 or sar[1] <= 0:  # "SAR 0:1": unknown, i.e. square
        sar = (1, 1)
    fm = _FPS.search(rest)
    fps = float(fm.group(1)) if fm else None
    tbr, tbn = _rate(_TBR.search(rest)), _rate(_TBN.search(rest))
    st = _START.search(err)
    if fps is None:
        fps = tbr
    fm_ = _INPUT_FORMAT.search(err)
    dm = _DUR.search(err)
    duration = int(dm.group(1)) * 3600 + int(dm.group(2)) * 60 + float(dm.group(3)) if dm else None
    rm = _ROT.search(block) or _ROT_TAG.search(block)
    rot = int(round(float(rm.group(1)))) % 360 if rm else 0
    if rot not in (0, 90, 180, 270):
        raise DecodeError(f"display matrix rotates by {rot} degrees; only multiples of 90 are supported")
    dw, dh = displayed_size(w, h, rot, sar)
    return VideoInfo(width=dw, height=dh, fps=fps, duration=duration, codec=m.group(3), rotation=rot, sar=sar,
                     stored_size=(w, h), stream=f"{m.group(1)}:{m.group(2)}", tbr=tbr, tbn=tbn,
                     start=float(st.group(1)) if st else None, container=fm_.group(1) if fm_ else None,
                     stream_start=float(ss.group(1)) if (ss := _STREAM_START.search(rest)) else None)


def stored_pixels_size(info: VideoInfo) -> Optional[tuple[int, int]]:
    """(height, width) of the stored pixels of a stream whose pixels are not square and which no
    display matrix rotates: the frame decord and PyAV decode it at (they ignore the SAR), which
    then differs from the decoded frame only by a horizontal scale. None otherwise."""
    if info.square_pixels or info.rotation or not info.stored_size:
        return None
    return int(info.stored_size[1]), int(info.stored_size[0])


def describe(info: VideoInfo) -> list[str]:
    """Notes on what decoding does with this stream's quirks (kept with the clip)."""
    notes = []
    if info.rotation:
        notes.append(f"display matrix rotates the picture {info.rotation} degrees: frames and poses are "
                     "in the displayed (upright) orientation")
    if not info.square_pixels and info.stored_size:
        sw, sh = info.stored_size
        notes.append(f"non-square pixels (SAR {info.sar[0]}:{info.sar[1]}): frames resampled from the stored "
                     f"{sw}x{sh} to {info.width}x{info.height} square pixels (display aspect)")
    if info.variable_frame_rate:
        notes.append(f"variable frame rate (average {info.fps:g} fps, base {info.tbr:g}): frames passed "
                     "through as stored")
    return notes


def read_frames(
    path: str,
    info: VideoInfo,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    start_frame: Optional[int] = None,
    end_frame: Optional[int] = None,
    min_coverage: float = 0.9,
    notes: Optional[list] = None,
) -> Iterator[np.ndarray]:
    """Yield every frame of the clip as (H, W, 3) uint8 RGB, in order, at ``info``'s size.

    Time cuts keep the frames whose presentation times lie in ``[start_time, end_time)``, seeking
    to the keyframe before and telling each frame by its timestamp; frame cuts give decoded frames
    ``[start_frame, end_frame)``, seeking to them where the stream's packets say for sure where they
    are, else counting from the first frame (:mod:`stages.extract.frame_seek`).
    Raises :class:`DecodeError` if ffmpeg failed, a frame's size differs from the probe's, or the
    file is truncated (module docstring). ``notes``, if given, receives what a reader of the
    cache should know (a wrong container duration, errors ffmpeg concealed).
    """
    tries: list = []
    if start_time is not None or end_time is not None:
        tries = frame_seek.time_windows(start_time, end_time)  # the last one never misses
        back = frame_seek.timestamps_go_back(path, info.stream, info.container)
        if back:
            raise _timestamps_go_back(f"the stream's packet timestamps go back {back}")
        late = frame_seek.first_frame_offset(path, info.stream, info.start) if notes is not None else None
        if late is not None and late > _frame_time(info) / 2:
            # a cut's times are the file's clock (as ffmpeg's -ss reads them); a stream stamped late
            # (audio first; a packed-B-frame AVI, whose frames ffmpeg stamps a few frames late)
            # starts its frame 0 later than a count of frames would
            notes.append(f"the video's first frame is stamped {float(late):.3f} s after the file's start; the cut "
                         "keeps the frames stamped in it")
    elif start_frame and end_frame is not None:
        seek = frame_seek.seek_plan(path, info.stream, info.fps, info.start, start_frame, end_frame)
        tries = seek.tries() if seek is not None else []
    for plan in tries:
        try:
            yield from _read_frames(path, info, start_time, end_time, start_frame, end_frame, min_coverage, notes,
                                    plan)
            return
        except _SeekMissed:
            pass  # nothing was given out: seek further back, then count from the first frame
    yield from _read_frames(path, info, None, None, start_frame, end_frame, min_coverage, notes, None)


class _SeekMissed(Exception):
    """A cut's seek did not land on or before its first frame (:mod:`stages.extract.frame_seek`)."""


#: what showinfo itself writes after a frame's type (checksums off): the rest of a line is another's
_SHOWINFO_REST = re.compile(rb"\s*(checksum:\S+|plane_checksum:\[[^\]]*\]|mean:\[[^\]]*\]|stdev:\[[^\]]*\]|"
                            rb"color_range:\S+|color_space:\S+|color_primaries:\S+|color_trc:\S+)")


class _StderrLines(threading.Thread):
    """ffmpeg's stderr, read line by line as it comes: all of it kept, and the frames' pts from
    ``showinfo`` lines handed to the reader of the frames, which waits for frame ``k``'s."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.lines = pipe, []
        self.time_base: Optional[Fraction] = None
        self._pts: list[int] = []
        self._key: list[bool] = []  # showinfo's iskey or type I: a frame the decoder made without references
        self._done = False
        self._cond = threading.Condition()

    def run(self) -> None:
        try:
            for line in iter(self.pipe.readline, b""):
                m = frame_seek.SHOWINFO_PTS.search(line)
                if m:  # another thread's message written into showinfo's line (it writes it in parts)
                    rest = line[m.end():]
                    mixed = _SHOWINFO_REST.sub(b"", rest).strip()
                    if mixed:
                        line = line[:m.end()] + b"\n" + b"[warning] " + mixed + b"\n"
                self.lines.extend(line.splitlines(keepends=True))
                tb = None if m else frame_seek.SHOWINFO_TIME_BASE.search(line)
                if m or tb:
                    with self._cond:
                        if m:
                            self._pts.append(int(m.group(2)))
                            self._key.append(m.group(3) == b"1" or m.group(4) == b"I")
                        elif self.time_base is None:
                            self.time_base = Fraction(int(tb.group(1)), int(tb.group(2)))
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def frame_time(self, k: int, timeout: float = 60.0) -> Optional[Fraction]:
        """Output frame ``k``'s presentation time (showinfo logs a frame before ffmpeg writes it);
        None if ffmpeg ended without saying."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._pts) > k or self._done, timeout)
            if len(self._pts) <= k or self.time_base is None:
                return None
            return self._pts[k] * self.time_base

    def clean_start(self, k: int) -> bool:
        """Whether output frame ``k`` (its time asked for before) is a keyframe as decoded."""
        with self._cond:
            return len(self._key) > k and self._key[k]

    def text(self) -> str:
        return b"".join(self.lines).decode("utf-8", "replace")


def _read_frames(path: str, info: VideoInfo, start_time: Optional[float], end_time: Optional[float],
                 start_frame: Optional[int], end_frame: Optional[int], min_coverage: float,
                 notes: Optional[list], seek) -> Iterator[np.ndarray]:
    """:func:`read_frames` with one way of finding the cut (``seek``): a
    :class:`~stages.extract.frame_seek.TimeWindow` (a time cut), a
    :class:`~stages.extract.frame_seek.SeekPlan` (a frame cut that seeks), or None (the whole
    stream, or a frame cut counted from the first frame). A seek that does not land on or before the
    cut's first frame raises :class:`_SeekMissed` before any frame is given out."""
    window = seek if isinstance(seek, frame_seek.TimeWindow) else None
    plan = seek if isinstance(seek, frame_seek.SeekPlan) else None
    seeking = seek is not None and seek.seek_seconds > 0  # (else from the first frame)
    in_kw: dict = {}
    if seeking:  # from the keyframe before; the frames told by their pts
        in_kw.update(ss=f"{seek.seek_seconds:.6f}", noaccurate_seek=None)
    # frames timed as the demuxer has them: with the encoder's default time base (1 / a guessed rate)
    # a variable-rate stream's close frames collide and our own muxer complains of them
    out_kw: dict = dict(format="image2pipe", vcodec="ppm", pix_fmt="rgb24", fps_mode="passthrough",
                        enc_time_base="demux")
    if info.stream:
        out_kw["map"] = info.stream
    filters = []
    if seeking:
        # the frames between the keyframe and the cut are decoded but not converted and piped, but
        # for clean starts (keyframes, I pictures: the seek's check needs to see one); half a frame
        # before the cut's first time, so none of the cut is in doubt (our own check is exact)
        first = (frame_seek.exact_seconds(info.start) + window.start) if window is not None else plan.time_of(0)
        filters.append(f"select=gte(t\\,{float(first) - _frame_time(info) / 2:.6f})+key+eq(pict_type\\,PICT_TYPE_I)")
    if seek is not None:
        filters.append("showinfo=checksum=0")  # its checksums cost ~40% of a 360p decode
    if not info.square_pixels:
        # after ffmpeg's autorotation, so the SAR is the turned one; same arithmetic as displayed_size
        filters.append("scale=floor(iw*sar+0.5):ih,setsar=1")
    if filters:
        out_kw["vf"] = ",".join(filters)
    # ffmpeg-python hashes its arguments as UTF-8; a file name that is not (os.listdir's surrogates
    # for a latin-1 name, stages/datasets/names.py) goes in as a stand-in swapped in the argument list
    name = file_arg = ffmpeg_path(path)
    try:
        file_arg.encode("utf-8")
    except UnicodeEncodeError:
        name = "pevl-input-not-utf8"
    stream = (
        ffmpeg.input(name, **in_kw)
        .output("pipe:", an=None, sn=None, dn=None, **out_kw)
        # level info (tagged): ffmpeg's notice of a frame size change mid-stream is at that level
        .global_args("-hide_banner", "-nostdin", "-loglevel", "level+info", "-nostats", "-progress", "pipe:2",
                     *(["-copyts"] if seek is not None else []))
    )
    args = stream.compile(cmd=ffmpeg_exe())
    args[args.index(name)] = file_arg  # subprocess passes it as the file's own bytes
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = _StderrLines(proc.stderr)
    err.start()
    w, h = info.width, info.height
    header = f"P6\n{w} {h}\n255\n".encode()
    frame_bytes = w * h * 3
    n = seek_from = start_frame if plan is not None else 0
    n_out = 0
    k = -1  # the output frame of ffmpeg's (the seek's frames before the cut included)
    zero = frame_seek.exact_seconds(info.start)  # a time cut's times count from it, as -ss does
    before_t = last_t = None  # a time cut's last frame before its start, and last frame kept (seconds)
    clean = False  # a seek's output reached a clean start (a keyframe as decoded)
    prev_at = None  # the last output frame's time (a seek's frames come in presentation order)
    cut_ended = False  # the cut's end was reached: we stop ffmpeg (its complaints about that are ours)
    lines_from, lines_at_end = 0, None
    try:
        while True:
            head = proc.stdout.readline()
            if not head:
                break
            head += proc.stdout.readline() + proc.stdout.readline()
            if head != header:
                got = head.decode("ascii", "replace").split()
                size = f"{got[1]}x{got[2]}" if len(got) >= 3 else repr(head[:32])
                raise DecodeError(
                    f"decoded frame {n} is {size}, but the stream header says {w}x{h} (stored "
                    f"{info.stored_size}, rotation {info.rotation}, SAR {info.sar[0]}:{info.sar[1]}); "
                    "the frame size changes mid-stream or the rotation was not understood")
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            k += 1
            if seek is not None:
                at = err.frame_time(k)
                clean = clean or err.clean_start(k)
                if at is not None and prev_at is not None and at <= prev_at:
                    # with -copyts nothing evens out a timestamp discontinuity (recordings joined by
                    # `cat`, an MPEG-TS restart): a time would name two moments of the file
                    raise _timestamps_go_back(f"timestamps go back at decoded frame {k}, from {_seconds(prev_at)} to "
                                              f"{_seconds(at)}")
                prev_at = at
            if window is not None:
                if at is None:
                    raise DecodeError(f"ffmpeg gave decoded frame {k} without its timestamp (showinfo)")
                t = at - zero
                if k == 0 and window.starts_late(t):
                    raise _SeekMissed()  # landed after the cut's start: frames of the cut may be missing
                if window.before(t):
                    before_t = t
                    continue
                if window.after(t):
                    cut_ended = True
                    break
                last_t = t
            elif plan is not None:
                if at is not None and at < plan.time_of(0):
                    continue  # between the keyframe and the cut
                if n >= end_frame:
                    cut_ended = True
                    break
                if at != plan.time_of(n - seek_from):
                    if n_out == 0:
                        raise _SeekMissed()
                    raise DecodeError(
                        f"frame {n} of the cut [{start_frame}, {end_frame}) decoded at {_seconds(at)}, where the "
                        f"stream's packets put it at {float(plan.time_of(n - seek_from)):.6f} s: a frame of the "
                        "cut is lost or added in decoding (a damaged stream)")
            elif start_frame is not None and n < start_frame:
                n += 1
                continue
            if end_frame is not None and n >= end_frame:
                cut_ended = True
                break
            if n_out == 0 and seeking:
                if not clean:
                    # no clean start before the cut's first frame (a seek onto a frame the container calls
                    # a keyframe but is not: an intra-refresh stream, an MP4 without its keyframe table:
                    # what follows is built on references the seek skipped)
                    raise _SeekMissed()
                # what the decoder said until now of an open GOP's leading pictures (decoded without
                # their references, before the cut) is not the cut's damage (_cut_problems)
                lines_from = len(err.lines)
            n += 1
            n_out += 1
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        lines_at_end = len(err.lines)
        if proc.poll() is None:
            proc.stdout.close()
            proc.kill()
        rc = proc.wait()
        err.join(timeout=5)
    stderr = err.text()
    # also for a cut stopped early (ffmpeg decodes a little ahead: a change just after the cut
    # refuses it too, as the file does change size)
    _check_frame_size_kept(stderr, info)
    if cut_ended and n_out == 0 and window is not None:
        raise DecodeError(f"no frame in the cut {window}: the next frame is at {_seconds(at - zero)}"
                          + (f", the one before at {_seconds(before_t)}" if before_t is not None else ""))
    if cut_ended or (end_frame is not None and n >= end_frame):
        # we closed the pipe: ffmpeg's complaints after that are ours, not the file's; what it said
        # while the cut's frames came is the file's (damage the decoder concealed inside the cut)
        said = _cut_problems(err.lines[:lines_at_end], lines_from)
        if notes is not None and said:
            notes.append(f"ffmpeg reported {len(said)} problem line(s) while decoding, concealed by the "
                         f"decoder: {said[0]}")
        return
    # a seek that reached a clean start and then the stream's end, every frame before the cut, is
    # conclusive (seeking further back would find the same, decoding more): judged below, after the
    # checks that tell a file cut short from a cut past its end
    past_end = n_out == 0 and window is not None and before_t is not None and (clean or not seeking)
    if n_out == 0 and not past_end and (plan is not None or (window is not None and seeking)):
        raise _SeekMissed()  # nothing came at or after the cut's start: the next try says what is wrong
    messages = _cut_problems(err.lines, lines_from)
    if window is not None:  # the cut's time covered (the end of its last frame), from the frames' own times
        span = None if last_t is None else float(last_t - window.start) + _frame_time(info)
    else:
        span = _decoded_span(stderr)
    expected = _expected_span(info, start_time, end_time, start_frame, end_frame)
    short = expected is not None and span is not None and span < min_coverage * expected - _frame_time(info)
    # frames missing at the end: more than a frame and a half short of the span the header states
    ends_early = expected is None or span is None or span < expected - 1.5 * _frame_time(info)
    # corrupt packets: the file's end unless each one ffmpeg places lies inside what was decoded
    # (the decoder's "corrupt input packet" lines repeat the demuxer's placed ones)
    corrupt = [ln for ln in messages if _CORRUPT_WORDS.search(ln)]
    placed = [ln for ln in corrupt if _CORRUPT_AT.search(ln)]
    if placed and not ends_early:
        # packets are placed by their dts, the span by the frames' stamps: a decoder with a delay (a
        # packed-B-frame AVI: 3 frames) stamps every frame late, which made the last packet of a file
        # cut short look like damage inside what decoded
        lag = max(0.0, float(frame_seek.first_frame_offset(path, info.stream, info.start) or 0))
        cut = not all(_damage_inside(ln, info, span - lag, start_time) for ln in placed)
    else:
        cut = True
    eof = [ln for ln in messages if _EOF_WORDS.search(ln) or (cut and ln in corrupt)]
    if eof or (short and messages):
        seen = f" ({span:.2f} s of ~{expected:.2f} s)" if short else ""
        raise DecodeError(f"truncated: decoded {n_out} frames{seen}; ffmpeg: {(eof or messages)[0]}")
    if rc > 0:
        raise DecodeError(f"ffmpeg failed (exit {rc}): {_last_error_line(stderr)}")
    if n_out == 0:
        if past_end:
            raise DecodeError(f"no frame in the cut {window}: the stream ends before it")
        whole = expected_frames(info) if start_frame is not None else None  # (a frame cut past the end)
        raise DecodeError("no frames decoded" + (f": {_last_error_line(chr(10).join(messages))}" if messages else "")
                          + (f" (the cut starts at frame {start_frame}; the header says the video has ~{whole} "
                             "frames)" if whole is not None and start_frame >= whole else ""))
    if notes is not None:
        if short:
            notes.append(f"the container says the clip lasts ~{expected:.2f} s, the video stream ends after "
                         f"{span:.2f} s; it decoded without errors, so it is taken as complete (a longer "
                         "audio track or a wrong header duration)")
        elif expected and info.fps and not info.variable_frame_rate and n_out < 0.8 * expected * info.fps:
            # a header that states one rate for a stream whose frames come irregularly (a variable-
            # rate mkv: ffmpeg reports the time base's rate); describe() cannot tell from the header
            notes.append(f"decoded {n_out} frames where the header's {info.fps:g} fps over {expected:.2f} s promise "
                         f"~{expected * info.fps:.0f}: the frame rate varies (frames dropped or held); frames are "
                         "as stored, their times the stream's own")
        if messages:
            notes.append(f"ffmpeg reported {len(messages)} problem line(s) while decoding, concealed by the "
                         f"decoder: {messages[0]}")


#: what the decoders say of an open GOP's leading pictures when a seek skipped their references
_LEADING_PICTURES = re.compile(r"mmco: unref short failure|co located POCs unavailable|Missing reference picture|"
                               r"Could not find ref with POC|Error constructing the frame RPS|reference picture missing")


def _cut_problems(lines: list[bytes], seek_lines: int) -> list[str]:
    """ffmpeg's problem lines (:func:`_problem_lines`) of a decode; of the first ``seek_lines``
    (printed before a seek's first frame of the cut), those about leading pictures left out. The
    decoder runs ahead of the frames we read, so complaints about the cut's own frames may be among
    the first lines: only the leading-picture kind is left out, everything else counts."""
    before = [ln for ln in _problem_lines(b"".join(lines[:seek_lines]).decode("utf-8", "replace"))
              if not _LEADING_PICTURES.search(ln)]
    return before + _problem_lines(b"".join(lines[seek_lines:]).decode("utf-8", "replace"))


def _timestamps_go_back(where: str) -> DecodeError:
    return DecodeError(f"{where} (joined recordings?): a time in this file names two moments; re-mux it with fresh "
                       "timestamps, or cut it into files first")


def _seconds(t: Optional[Fraction]) -> str:
    return "no time (ffmpeg did not say)" if t is None else f"{float(t):.6f} s"


def _damage_inside(line: str, info: VideoInfo, span: Optional[float], start_time: Optional[float]) -> bool:
    """Whether ffmpeg's corrupt-packet ``line`` names a packet of the decoded video stream more than
    two frames before the end of what was decoded: damage the decoder concealed, with frames after
    it. A corrupt packet at the end (a file cut off, even where the header's duration was estimated
    from what is left), of another stream, or one that cannot be placed is not."""
    m = _CORRUPT_AT.search(line)
    if not (m and info.stream and info.tbn and span is not None):
        return False
    if int(m.group(1)) != int(info.stream.split(":")[1]):
        return False
    at = int(m.group(2)) / info.tbn - (info.start or 0.0) - (start_time or 0.0)
    return at < span - 2 * _frame_time(info)


def _check_frame_size_kept(stderr: str, info: VideoInfo) -> None:
    """Refuse a stream whose frame size changes mid-stream (a concatenated or adaptive-bitrate
    recording): ffmpeg scales the later frames to the first one's size without a word, which
    squeezes them. Its notice of the change (level info) names the new size."""
    first = info.stored_size or ((info.height, info.width) if info.rotation % 180 else (info.width, info.height))
    for m in _RECONFIGURED.finditer(stderr):
        size = (int(m.group(1)), int(m.group(2)))
        if size != tuple(first):
            raise DecodeError(f"the frame size changes mid-stream, from {first[0]}x{first[1]} to {size[0]}x{size[1]} "
                              "(as stored): ffmpeg would scale the later frames to the first size, squeezing them; "
                              "re-encode the clip at one size, or cut it where the size changes")


def _frame_time(info: VideoInfo) -> float:
    return 1.0 / info.fps if info.fps else 0.1


def _decoded_span(stderr: str) -> Optional[float]:
    """Seconds of stream ffmpeg delivered (end of its last frame), from ``-progress``'s last report."""
    vals = re.findall(r"^out_time_us=(\d+)", stderr, re.M)
    return int(vals[-1]) / 1e6 if vals else None


def _expected_span(info, start_time, end_time, start_frame, end_frame) -> Optional[float]:
    if start_frame is not None or end_frame is not None:
        return None  # a frame cut past the end is the annotation's business, checked by the caller
    if not info.duration:
        return None
    t0 = start_time or 0.0
    t1 = min(end_time, info.duration) if end_time is not None else info.duration
    return t1 - t0 if t1 > t0 else None


def expected_frames(info: VideoInfo, start_time=None, end_time=None, start_frame=None,
                    end_frame=None) -> Optional[int]:
    """How many frames the header promises for this cut (None when it cannot tell). A promise, not a
    count: a variable rate or a wrong container duration make it differ from what decodes."""
    if start_frame is not None and end_frame is not None:
        return max(0, end_frame - start_frame)
    span = _expected_span(info, start_time, end_time, start_frame, end_frame)
    return int(round(span * info.fps)) if span and info.fps else None


def decode_clip(path: str, notes: Optional[list] = None, **cut) -> tuple[VideoInfo, list[np.ndarray]]:
    """Probe and decode a whole clip into memory (tests and small clips)."""
    info = probe(path)
    return info, list(read_frames(path, info, notes=notes, **cut))
