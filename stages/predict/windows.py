"""Long, untrimmed videos: stage one over windows that slide along the video.

A window of ``S`` seconds every ``S'`` seconds is a clip of its own: its frames are the segment
middles of the window's frames, its poses the window's slice of the video's track, and stage
one's :func:`~stages.extract.clip.finish_clip` makes its grids and attributes as for any clip; so
a window that covers exactly the frames of a clip gives exactly that clip's item. The video is
decoded and posed once, front to back, and each window is finished as soon as its last frame is
posed: memory holds the video's poses and the last window's worth of resized frames, not the video.

Which windows: ``[s, s + W)`` for ``s = 0, St, 2 St, ...`` (``W``, ``St``: the window and the
stride in frames, seconds times the header's frame rate, rounded), as long as they fit; when they
leave the end of the video uncovered, one more window ends at the last frame; a video shorter
than one window is one window. A variable-frame-rate video's window times are frame counts over
its average rate (noted).
"""
from __future__ import annotations

from itertools import islice
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from stages.datasets.base import ClipRecord, PoseTrack
from stages.extract.clip import ClipDecoder, ClipError, ClipResult, DecodedClip, finish_clip
from stages.extract.decode import DecodeError, expected_frames, read_frames, stored_pixels_size
from stages.extract.person_boxes import PersonBoxError, default_person_boxes
from stages.extract.pose.base import PoseSource, PoseSourceError
from stages.extract.settings import ExtractSettings
from stages.geometry import segment_middle_indices


def window_lengths(fps: Optional[float], window_s: float, stride_s: float) -> tuple[int, int]:
    """(window, stride) in frames at ``fps``."""
    if window_s <= 0 or stride_s <= 0:
        raise ValueError(f"--window and --stride must be positive seconds, got {window_s} and {stride_s}")
    if not fps:
        raise ClipError("the video's header gives no frame rate, so windows in seconds cannot be placed")
    return max(1, int(round(window_s * fps))), max(1, int(round(stride_s * fps)))


def windows_of(num_frames: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Every window ``[start, end)`` of a video of ``num_frames`` frames (module docstring)."""
    if num_frames <= window:
        return [(0, num_frames)]
    out = [(s, s + window) for s in range(0, num_frames - window + 1, stride)]
    if out[-1][1] < num_frames:
        out.append((num_frames - window, num_frames))
    return out


class _RecentFramesDecoder(ClipDecoder):
    """A :class:`ClipDecoder` that keeps the resized copies of the last ``keep`` frames only."""

    def __init__(self, clip: ClipRecord, settings: ExtractSettings, keep: int):
        super().__init__(clip, settings)
        self.keep = keep
        self.count = 0
        self._recent: dict[int, np.ndarray] = {}

    def frames(self) -> Iterator[np.ndarray]:
        out_h, out_w = self.size
        c = self.clip
        for f in read_frames(c.video, self.info, start_time=c.start_time, end_time=c.end_time,
                             start_frame=c.start_frame, end_frame=c.end_frame, notes=self.notes):
            self._recent[self.count] = cv2.resize(f, (out_w, out_h), interpolation=cv2.INTER_AREA)
            self._recent.pop(self.count - self.keep, None)
            self.count += 1
            yield f

    def small(self, i: int) -> np.ndarray:
        try:
            return self._recent[i]
        except KeyError:
            raise RuntimeError(f"internal: frame {i} is no longer kept (kept: the last {self.keep})") from None


class _Track:
    """A pose track that grows chunk by chunk (amortised appends)."""

    def __init__(self):
        self.kp: Optional[np.ndarray] = None
        self.sc: Optional[np.ndarray] = None
        self.n = 0

    def append(self, kp: np.ndarray, sc: np.ndarray) -> None:
        if self.kp is None:
            self.kp, self.sc = np.zeros((0,) + kp.shape[1:], np.float32), np.zeros((0,) + sc.shape[1:], np.float32)
        if self.n + len(kp) > len(self.kp):
            cap = max(2 * len(self.kp), self.n + len(kp), 256)
            new_kp = np.zeros((cap,) + kp.shape[1:], np.float32)
            new_sc = np.zeros((cap,) + sc.shape[1:], np.float32)
            new_kp[: self.n], new_sc[: self.n] = self.kp[: self.n], self.sc[: self.n]
            self.kp, self.sc = new_kp, new_sc
        self.kp[self.n: self.n + len(kp)] = kp
        self.sc[self.n: self.n + len(sc)] = sc
        self.n += len(kp)


#: a window result's attribute: seconds from the file's start to its video's first frame
VIDEO_DELAY = "video_delay_s"


def windowed_clips(clip: ClipRecord, pose: PoseSource, settings: ExtractSettings, window_s: float, stride_s: float,
                   on_frames: Optional[Callable[[int, Optional[int]], None]] = None,
                   ) -> Iterator[tuple[tuple[int, int], ClipResult]]:
    """``((start, end), result)`` of each window of ``clip``'s video, in order, as they are posed.
    Raises :class:`ClipError` (with the reason) when the video cannot be read or posed;
    ``on_frames(decoded, expected)`` reports progress through a long video."""
    try:
        yield from _windowed(clip, pose, settings, window_s, stride_s, on_frames)
    except (DecodeError, PoseSourceError, PersonBoxError) as e:
        raise ClipError(str(e)) from e
    except (FileNotFoundError, KeyError) as e:
        raise ClipError(f"{type(e).__name__}: {e}") from e


def _windowed(clip, pose, settings, window_s, stride_s, on_frames):
    if clip.video is None:
        raise ClipError("no video file")
    if pose.needs_frames and settings.persons > 1:
        # people are linked into tracks over the whole clip; a long video posed chunk by chunk would
        # order them chunk by chunk
        raise ClipError(f"windows of a long video with a pose model and persons={settings.persons} (the model's "
                        "entry keeps several people per frame) are not supported: predict without --window, or "
                        "with poses from a skeleton file (--pose-source pkl:PATH)")
    chunk = max(32, int(getattr(pose, "batch_size", 32) or 32))
    decoder = _RecentFramesDecoder(clip, settings, keep=0)  # probes the header (raises DecodeError)
    info = decoder.info
    win, stride = window_lengths(info.fps, window_s, stride_s)
    decoder.keep = win + 2 * chunk + 64  # a window, and what the pose chunk and the detector read ahead
    expected = expected_frames(info, **clip.cut())
    size = (info.height, info.width)
    track = _Track()
    done = 0  # regular windows finished
    notes: list[str] = []
    if info.variable_frame_rate:
        notes.append(f"variable frame rate: window times are frame counts over the average rate {info.fps:g} fps")
    if info.video_delay:
        notes.append(f"the video stream starts {info.video_delay:.3f} s into the file (after its other streams): "
                     "window times are on the file's timeline, as a player shows them")

    def finish(s: int, e: int, box_info: dict, boxes) -> tuple[tuple[int, int], ClipResult]:
        n = e - s
        if n < settings.min_frames:
            raise ClipError(f"only {n} frame(s) decoded; at least min_frames={settings.min_frames} needed")
        idx = segment_middle_indices(n, settings.num_frames).astype(np.int32)
        frames = np.stack([decoder.small(s + int(i)) for i in idx])
        decoded = DecodedClip(info, n, idx, frames, notes=list(decoder.notes) + notes)
        wclip = ClipRecord(clip_id=f"{clip.clip_id}@{s}-{e}", split=clip.split, label=clip.label, video=clip.video,
                           start_frame=s, end_frame=e)
        t = PoseTrack(track.kp[s:e], track.sc[s:e], frame_size=frame_size)
        wboxes = None if boxes is None else list(boxes[s:e])
        out = finish_clip(wclip, decoded, t, box_info, wboxes, pose, settings)
        out.attrs[VIDEO_DELAY] = info.video_delay  # (a window's, never cached)
        return (s, e), out

    def ready(posed: int, box_info: dict, boxes) -> Iterator:
        nonlocal done
        while done * stride + win <= posed:
            s = done * stride
            done += 1
            yield finish(s, s + win, box_info, boxes)

    def tail(n: int, box_info: dict, boxes) -> Iterator:
        for s, e in windows_of(n, win, stride)[done:]:
            yield finish(s, e, box_info, boxes)

    if pose.needs_frames:
        frame_size = size
        chain = getattr(pose, "person_boxes", None) or default_person_boxes()
        frames, boxes, box_info = chain.stream(clip, None, decoder.frames(), expected_frames=expected, frame_size=size)
        while True:
            part = list(islice(frames, chunk))
            if not part:
                break
            at = track.n
            used = None if boxes is None else np.asarray(boxes[at: at + len(part)], np.float32)
            got = pose.estimate(clip, part, used, None)
            if got.num_frames != len(part):
                raise PoseSourceError(f"the pose source gave {got.num_frames} poses for {len(part)} frames")
            if tuple(got.frame_size) != size:
                raise PoseSourceError(f"the pose source's frames are {got.frame_size}, the video's {size}")
            track.append(got.keypoints, got.scores)
            if on_frames:
                on_frames(track.n, expected)
            yield from ready(track.n, box_info, boxes)
        yield from tail(track.n, box_info, boxes)
        return
    # poses from a file (or the cache): the whole track first, then the frames
    whole = pose.fit_frame_size(clip, pose.estimate(clip, None, None, None), size, stored_size=stored_pixels_size(info))
    frame_size = tuple(whole.frame_size)
    track.append(whole.keypoints, whole.scores)
    box_info = {"source": None}
    n = 0
    for _ in decoder.frames():
        n += 1
        if n % chunk == 0:
            if on_frames:
                on_frames(n, expected)
            yield from ready(min(n, track.n), box_info, None)
    if n != track.n:
        raise ClipError(f"the poses cover {track.n} frames, the video decoded {n}: windows need one pose per decoded "
                        "frame (poses of another cut or frame rate?)")
    if on_frames:
        on_frames(n, expected)
    yield from tail(n, box_info, None)
