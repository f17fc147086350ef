"""Stage one for one clip: decode, pose, sample, resize, grid. Pure: returns arrays, writes nothing.

Three steps, so decoding can run in another process (:mod:`stages.extract.decode_pool`):
:class:`ClipDecoder` decodes (full-size frames streamed to the pose source, the cached frames
kept), :func:`estimate_track` runs the pose source, :func:`finish_clip` samples and grids.
:func:`extract_clip` chains them in this process.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import cv2
import numpy as np

from stages.datasets.base import ClipRecord, DatasetAdapter, PoseTrack
from stages.extract.decode import (DecodeError, VideoInfo, describe, expected_frames, probe, read_frames,
                                   stored_pixels_size)
from stages.extract.person_boxes import PersonBoxError, dataset_box_notes, default_person_boxes
from stages.extract.pose.base import PoseSource, PoseSourceError
from stages.extract.settings import ExtractSettings  # noqa: F401  (re-exported)
from stages.geometry import joint_patch_grid, resized_size, segment_candidate_indices
from stages.skeletons import get_skeleton


class ClipError(RuntimeError):
    """This clip cannot be extracted; ``str(e)`` is the reason recorded in the cache."""


@dataclass
class ClipCounters:
    """What extraction did (tests check a rerun of a complete entry does none of it)."""

    decoded_clips: int = 0
    decoded_frames: int = 0
    pose_calls: int = 0

    def add(self, other: "ClipCounters") -> None:
        self.decoded_clips += other.decoded_clips
        self.decoded_frames += other.decoded_frames
        self.pose_calls += other.pose_calls


@dataclass
class ClipResult:
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]
    notes: list[str] = field(default_factory=list)


#: how far apart a pose source's frame count and the decoded one may be (either way) to be resampled
MAX_POSE_FRAMES_RATIO = 2


def align_track(track: PoseTrack, num_frames: int, size: tuple[int, int], notes: list[str]) -> PoseTrack:
    """Bring a pose track to the decoded clip: one pose per decoded frame, original pixels.

    Dataset- or file-supplied poses may come from frames extracted by another tool (another frame
    count, a resized image): nearest-in-time resampling and a coordinate rescale fix both, noted; a
    frame count more than :data:`MAX_POSE_FRAMES_RATIO` times apart is refused (:class:`ClipError`).
    Whether the track's ``frame_size`` can be trusted was settled before, by the pose source's
    :meth:`~stages.extract.pose.base.PoseSource.fit_frame_size` (a skeleton file's ``img_shape``).
    """
    k, s = track.keypoints, track.scores
    if track.num_frames != num_frames:
        if track.num_frames == 0:
            raise ClipError("the pose source returned no frames")
        if max(track.num_frames, num_frames) > MAX_POSE_FRAMES_RATIO * min(track.num_frames, num_frames):
            # as for person boxes: another frame rate explains up to 2x; 5 poses for 50 frames is
            # another video (a base name matched the wrong skeleton) or another cut of it
            raise ClipError(f"the pose source has {track.num_frames} frames for the {num_frames} decoded frames of "
                            f"the clip, more than {MAX_POSE_FRAMES_RATIO}x apart: most likely the poses of another "
                            "video or another cut (check which record of the skeleton file matched this clip); not "
                            "stretched onto it")
        src = np.minimum(((np.arange(num_frames) + 0.5) * track.num_frames / num_frames).astype(int),
                         track.num_frames - 1)
        k, s = k[src], s[src]
        notes.append(f"pose frames resampled {track.num_frames} -> {num_frames} (nearest in time)")
    if tuple(track.frame_size) != tuple(size):
        (ph, pw), (h, w) = track.frame_size, size
        k = k * np.array([w / pw, h / ph], np.float32)
        notes.append(f"pose coordinates rescaled from {pw}x{ph} to {w}x{h}")
    boxes = track.person_boxes
    if boxes is not None and (track.num_frames != num_frames or tuple(track.frame_size) != tuple(size)):
        raise ClipError("internal: a track with person boxes must have one pose per decoded frame, in its pixels")
    return PoseTrack(k, s, frame_size=tuple(size), person_boxes=boxes)


@dataclass
class DecodedClip:
    """What decoding keeps of a clip: its header, how many frames it had, and the cached frames."""

    info: VideoInfo
    num_decoded: int
    # (T * K,) int32: the K candidates of each of the T segments of the decoded frames, segment-major
    # (K = 1: the segment middles)
    frame_indices: np.ndarray
    frames: np.ndarray  # (T * K, h, w, 3) uint8: those frames resized (short side ExtractSettings.short_side)
    notes: list[str] = field(default_factory=list)  # what the header and the stream showed (decode.py)


class ClipDecoder:
    """Decodes one clip in one pass: :meth:`frames` streams every frame at full size (what a pose
    source looks at) and keeps a resized copy; :meth:`result` then picks the cached frames.

    Raises :class:`ClipError` (no video) or :class:`DecodeError` (from the constructor: the file's
    header; from :meth:`frames`: the stream). ``info``: the header, known before any frame.
    """

    def __init__(self, clip: ClipRecord, settings: ExtractSettings):
        if clip.video is None:
            raise ClipError("no video file for this clip in the annotations")
        self.clip = clip
        self.settings = settings
        self.info: VideoInfo = probe(clip.video)
        self.notes: list[str] = list(describe(self.info))
        self.size = resized_size(self.info.height, self.info.width, settings.short_side, settings.grid_cell)
        self._small: list[np.ndarray] = []
        self._state = "new"

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame of the clip, (H, W, 3) uint8 RGB at the displayed size, in order."""
        if self._state != "new":
            raise RuntimeError("a clip's frames can be streamed once")
        self._state = "streaming"
        out_h, out_w = self.size
        c = self.clip
        for f in read_frames(c.video, self.info, start_time=c.start_time, end_time=c.end_time,
                             start_frame=c.start_frame, end_frame=c.end_frame, notes=self.notes):
            self._small.append(cv2.resize(f, (out_w, out_h), interpolation=cv2.INTER_AREA))
            yield f
        self._state = "done"

    def result(self) -> DecodedClip:
        """The cached frames (decoding the clip first if nobody streamed it)."""
        if self._state == "new":
            for _ in self.frames():
                pass
        if self._state != "done":
            raise RuntimeError("result() before the frames were streamed to the end")
        n = len(self._small)
        if n < self.settings.min_frames:
            raise ClipError(f"only {n} frame(s) decoded; at least min_frames={self.settings.min_frames} needed")
        idx = segment_candidate_indices(n, self.settings.num_frames, self.settings.frames_per_segment)
        return DecodedClip(self.info, n, idx.astype(np.int32), np.stack([self._small[i] for i in idx]),
                           notes=list(self.notes))


def estimate_track(clip: ClipRecord, dataset: DatasetAdapter, pose: PoseSource,
                   decoder: Any) -> tuple[PoseTrack, dict, Optional[list]]:
    """The pose source's track for the clip, where its person boxes came from, and the boxes used
    (one per frame; None for sources that look at no pixels).

    ``decoder`` (a :class:`ClipDecoder` or a decode worker's stream): a source that looks at pixels
    gets its full-size frames, streamed; its header checks and aligns a dataset's boxes."""
    if not pose.needs_frames:  # poses from a file: its frame size checked against the video's
        track = pose.estimate(clip, None, None, dataset)
        track = pose.fit_frame_size(clip, track, (decoder.info.height, decoder.info.width),
                                    stored_size=stored_pixels_size(decoder.info))
        return track, {"source": None}, None
    # Person boxes: dataset -> detector (on these same streamed frames) -> whole frame.
    chain = getattr(pose, "person_boxes", None) or default_person_boxes()
    info = decoder.info
    frames, boxes, box_info = chain.stream(clip, dataset, decoder.frames(),
                                           expected_frames=expected_frames(info, **clip.cut()),
                                           frame_size=(info.height, info.width))
    return pose.estimate(clip, frames, boxes, dataset), box_info, boxes


def extract_clip(
    clip: ClipRecord,
    dataset: DatasetAdapter,
    pose: PoseSource,
    settings: ExtractSettings,
    counters: Optional[ClipCounters] = None,
    decoder: Any = None,
) -> ClipResult:
    """Everything the cache stores for one clip. Raises :class:`ClipError` with the reason.

    ``decoder``: where the frames come from, a :class:`ClipDecoder` or anything with its
    ``frames()`` / ``result()`` (a decode worker's stream); default: decode here.
    """
    counters = counters if counters is not None else ClipCounters()
    try:
        decoder = decoder if decoder is not None else ClipDecoder(clip, settings)
        counters.decoded_clips += 1
        counters.pose_calls += 1
        if pose.needs_frames:  # the frames stream through the pose source, then the cached ones are kept
            track, box_info, boxes = estimate_track(clip, dataset, pose, decoder)
            decoded = decoder.result()
        else:
            decoded = decoder.result()
            track, box_info, boxes = estimate_track(clip, dataset, pose, decoder)
        counters.decoded_frames += decoded.num_decoded
    except (DecodeError, PoseSourceError, PersonBoxError) as e:
        raise ClipError(str(e)) from e
    except (FileNotFoundError, KeyError) as e:
        raise ClipError(f"{type(e).__name__}: {e}") from e
    return finish_clip(clip, decoded, track, box_info, boxes, pose, settings)


def finish_clip(clip: ClipRecord, decoded: DecodedClip, track: PoseTrack, box_info: dict, boxes: Optional[list],
                pose: PoseSource, settings: ExtractSettings) -> ClipResult:
    """The arrays and attributes of a decoded, posed clip: poses aligned to its frames, the grids,
    the person boxes the pose source used."""
    info = decoded.info
    notes: list[str] = list(decoded.notes)
    n = decoded.num_decoded
    if box_info["source"] == "dataset":
        try:
            notes.extend(dataset_box_notes(clip.clip_id, box_info, n))
        except PersonBoxError as e:
            raise ClipError(str(e)) from e
        stored = stored_pixels_size(info)
        if stored is not None:  # a box file names no image size: which pixels its boxes are in is not known
            notes.append(f"dataset person boxes taken in the decoded {info.width}x{info.height} display pixels; the "
                         f"stream's pixels are not square (SAR {info.sar[0]}:{info.sar[1]}, stored {stored[1]}x"
                         f"{stored[0]}): boxes made on the stored pixels (as decord and PyAV decode) would need x "
                         f"scaled by {info.width / stored[1]:.4g}")
    if box_info.get("persons_note"):
        notes.append(box_info["persons_note"])
    k = max(1, len(decoded.frame_indices) // settings.num_frames)  # (a predict window takes the middles only)
    if n < settings.num_frames * k:
        what = "sampled frames" if k == 1 else "candidate frames"
        notes.append(f"{n} frames < {settings.num_frames * k}: {what} repeat")
    if clip.end_frame is not None and n < clip.end_frame - (clip.start_frame or 0):
        notes.append(f"annotation asks for frames up to {clip.end_frame}, the video has {n + (clip.start_frame or 0)}")
    joints = get_skeleton(pose.skeleton).num_joints * settings.persons
    if track.keypoints.shape[1] != joints:  # a source that ignored the persons setting
        raise ClipError(f"pose source {pose.name!r} gave {track.keypoints.shape[1]} joints per frame; "
                        f"persons={settings.persons} of the {pose.skeleton} skeleton are {joints}")
    track = align_track(track, n, (info.height, info.width), notes)
    idx = decoded.frame_indices
    frames = decoded.frames
    out_h, out_w = frames.shape[1:3]
    sx, sy = out_w / info.width, out_h / info.height
    kp_small = track.keypoints[idx] * np.array([sx, sy], np.float32)
    grids = joint_patch_grid(kp_small, track.scores[idx], (out_h, out_w), settings.grid_cell)
    attrs = {
        "clip_id": clip.clip_id,
        "split": clip.split,
        "label": int(clip.label),
        "cut": clip.cut(),
        "num_frames": n,
        "fps": info.fps,
        "orig_size": [info.height, info.width],
        "frame_size": [out_h, out_w],
        "scale": [sx, sy],
        "codec": info.codec,
        "rotation": info.rotation,
        "sar": list(info.sar),
        "person_boxes": box_info["source"],  # "dataset" | "detector" | "whole frame" | None (no frames used)
        **({"person_boxes_detail": box_info} if box_info["source"] == "detector" else {}),
        **({"person_boxes_detail": {k: box_info[k] for k in ("given", "aligned")}}
           if box_info["source"] == "dataset" else {}),
        "pose_info": pose.clip_info(clip),
        "notes": notes,
    }
    arrays = {
        "frames": frames,
        "frame_indices": idx,
        "keypoints": track.keypoints.astype(np.float32),
        "scores": track.scores.astype(np.float32),
        "grids": grids,
    }
    if box_info["source"] in ("dataset", "detector") and track.person_boxes is not None:
        # several people: each kept person's box, (F, n, 4), NaN where absent (cache/layout.py)
        arrays["person_boxes"] = track.person_boxes.astype(np.float32)
    elif box_info["source"] in ("dataset", "detector"):
        # the boxes HRNet used, one per decoded frame (optional array; see cache/layout.py)
        used = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(used) != n:
            raise ClipError(f"internal: {len(used)} person boxes used for {n} decoded frames")
        arrays["person_boxes"] = used
    return ClipResult(arrays=arrays, attrs=attrs, notes=notes)
