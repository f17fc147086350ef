"""A trained model on new videos: stage one on the fly, then the model's test protocol.

For each video, stage one runs with the settings of the entry the model was trained on
(:class:`~stages.data.entry_record.EntryRecord`: frames, short side, grid, frames codec, pose
source and options with its person-box chain): :func:`~stages.extract.clip.extract_clip` on a
:class:`~stages.extract.clip.ClipDecoder` or a decode worker's stream
(:mod:`stages.extract.decode_pool`), or, for a long video, its windows (:mod:`.windows`). The
fresh arrays become a :class:`cache.ClipData`, so stage two's own
:meth:`~stages.data.dataset.CacheClipDataset.make_item` makes the test views (the 3 crops of
evaluation), and the Runner model's ``test_step`` scores them as ``pipeline eval`` does (views
averaged: eq. 7's similarities for PeVL, softmax probabilities for a classifier, PGVT / AIM). A
video already in the cache reuses its poses (:mod:`.reuse`).

Decoding runs ahead in worker processes (``decode_workers``; by default 2 with a CUDA device, as
for extraction), the pose model batches each clip's frames on the device, and the recognizer
scores clips of several videos in one batch. A video that cannot be read is reported with its
reason and the others go on.
"""
from __future__ import annotations

import collections
import logging
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from cache.chunks import ChunkFormatError
from cache.entry import ClipData
from cache.frames_codecs import frames_codec
from cache.layout import clip_uid
from stages.data.dataset import CacheClipDataset
from stages.datasets.base import NAMED_PATH, ClipRecord
from stages.extract.clip import ClipError, ClipResult, extract_clip
from stages.extract.decode import DecodeError, probe
from stages.extract.pose.base import PoseSource
from stages.predict.inputs import VideoInput
from stages.predict.reuse import CachedPoseIndex, CachedPoseSource, same_poses
from stages.predict.trained import TrainedRun, load_model
from stages.predict.windows import VIDEO_DELAY, windowed_clips

log = logging.getLogger(__name__)

#: the split and label a new video's clip carries (it is in no dataset)
PREDICT_SPLIT = "predict"
NO_LABEL = -1


@dataclass
class PredictOptions:
    top_k: int = 5
    batch_size: int = 8  # clips (each 3 views) per forward pass of the recognizer
    device: str = "cpu"
    decode_workers: Optional[int] = None  # None: 2 with a CUDA device, else 0 (decoding in this process)
    pose_source: Optional[str] = None  # None: the training entry's
    pose_options: dict = field(default_factory=dict)
    reuse_poses: bool = True
    cache_root: Optional[str] = None
    window: Optional[float] = None  # seconds; None: each video is one clip
    stride: Optional[float] = None  # seconds; default: the window
    keep_clips: bool = False  # keep each video's ClipData (a window: its middle frame, drawn) for pictures


@dataclass
class Label:
    class_id: int
    label: str
    score: float


@dataclass
class WindowResult:
    start_frame: int
    end_frame: int
    start_s: Optional[float]
    end_s: Optional[float]
    scores: Optional[np.ndarray] = None
    top: list = field(default_factory=list)
    picture: Optional[np.ndarray] = None  # with keep_clips: the middle cached frame, poses drawn (RGB)


@dataclass
class VideoResult:
    video: str
    name: str
    error: Optional[str] = None
    scores: Optional[np.ndarray] = None  # (num_classes,) for a whole clip
    top: list = field(default_factory=list)
    poses: str = ""  # where the poses came from
    sha256: Optional[str] = None  # the file's, when it was computed (looking for it in the cache)
    notes: list = field(default_factory=list)
    clip: Optional[ClipData] = None  # with keep_clips (pictures)
    windows: Optional[list] = None  # WindowResult per window (--window)
    fps: Optional[float] = None
    num_frames: Optional[int] = None
    whole: bool = True  # False: windows kept from a video whose decoding stopped early (not saved for reuse)
    _outstanding: int = 0
    _closed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def clip_data(res: ClipResult, settings: Any) -> ClipData:
    """The :class:`cache.ClipData` a cache reader would return for this clip after stage one wrote
    it: the same arrays, the frames through the entry's codec (a lossy codec's frames are what the
    model was trained on)."""
    a, attrs = res.arrays, res.attrs
    codec = frames_codec(settings.frames_codec)
    # a whole video: the entry's K candidates per segment; a window (stages.predict.windows): the middles
    k, odd = divmod(len(a["frame_indices"]), int(settings.num_frames))
    if odd or k not in (1, settings.frames_per_segment):
        raise ValueError(f"clip {attrs['clip_id']}: {len(a['frame_indices'])} frames are not "
                         f"{settings.num_frames} segments of 1 or {settings.frames_per_segment} candidates")
    return ClipData(clip_id=attrs["clip_id"], uid=clip_uid(attrs["clip_id"]), split=attrs["split"],
                    label=int(attrs["label"]), frames=codec.as_read(a["frames"], settings.to_dict()),
                    frame_indices=a["frame_indices"], keypoints=a["keypoints"], scores=a["scores"], grids=a["grids"],
                    grid_cell=int(settings.grid_cell), attrs=dict(attrs), person_boxes=a.get("person_boxes"),
                    frames_per_segment=k)


def top_labels(scores: np.ndarray, classes: Sequence[str], k: int) -> list[Label]:
    """The ``k`` best classes, ties to the lower class id (as the metrics rank them)."""
    order = sorted(range(len(scores)), key=lambda c: (-float(scores[c]), c))[: max(1, k)]
    return [Label(int(c), classes[c], float(scores[c])) for c in order]


class Predictor:
    """A trained run's model with stage one of its training entry (module docstring)."""

    def __init__(self, run: TrainedRun, options: Optional[PredictOptions] = None):
        from stages.extract.pose.factory import create_pose_source
        from stages.train.runner import item_kwargs, test_item_kwargs

        self.run = run
        self.o = options or PredictOptions()
        self.record = run.record
        self.classes = list(run.record.classes)
        self.settings = run.record.extract_settings()
        self.model, crop = load_model(run, self.o.device)
        self.items = CacheClipDataset.for_new_clips(run.record, **item_kwargs(run.cfg, crop, int(self.settings.grid_cell)),
                                                    **test_item_kwargs(run.cfg))
        self.notes: list[str] = []
        if run.trained_on is not None:  # --entry named another entry than training's: its stage one runs
            was, now = run.trained_on.extract_settings().as_dict(), self.settings.as_dict()
            differ = [f"{k} {now.get(k)!r} (trained: {was.get(k)!r})" for k in sorted(set(was) | set(now))
                      if was.get(k) != now.get(k)]
            if differ:
                self.notes.append(f"stage one as entry {run.record.key} (--entry), the model was trained on entry "
                                  f"{run.trained_on.key}: " + ", ".join(differ))
        # the pose source: the training entry's (checked to be the same), or the one asked for
        spec = self.o.pose_source or run.record.pose_spec
        options = dict(self.o.pose_options) if self.o.pose_source else {**run.record.pose_options,
                                                                            **self.o.pose_options}
        self.pose_spec = spec
        try:
            self.pose: PoseSource = create_pose_source(spec, options, dataset=None, device=self.o.device,
                                                       source="--pose-source / --pose-option",
                                                       persons=self.settings.persons)
        except FileNotFoundError as e:  # e.g. HRNet's weights are elsewhere on this machine
            said = "--pose-option checkpoint=PATH" in str(e)  # (HRNet's message names it already)
            raise FileNotFoundError(f"{e}" + ("" if said else " (pipeline predict: --pose-option checkpoint=PATH)")) \
                from None
        ident = self.pose.identity()
        if self.o.pose_source is None and not same_poses(ident, run.record.pose) and not self.o.pose_options:
            raise ValueError(
                f"the model was trained on poses from {_describe_identity(run.record.pose)}, but here the pose source "
                f"{spec!r} is {_describe_identity(ident)}. Point it at the same weights (e.g. --pose-option "
                "checkpoint=PATH), or name the pose source to use with --pose-source / --pose-option (the model then "
                "sees poses from another source than it was trained on)")
        if ident != run.record.pose:
            self.notes.append(f"poses from {_describe_identity(ident)}; the model was trained on poses from "
                              f"{_describe_identity(run.record.pose)}")
        self.pose_identity = ident
        self.cached = (CachedPoseIndex(self.o.cache_root, ident, run.record.skeleton, prefer=run.record.key,
                                       persons=self.settings.persons)
                       if self.o.reuse_poses else None)
        self._index = 0

    def close(self) -> None:
        self.pose.close()

    # -- per video -------------------------------------------------------------------------------
    def _prepare(self, v: VideoInput) -> tuple[VideoResult, ClipRecord, PoseSource]:
        """The result to fill, the clip record and the pose source of one video (the cached poses
        when the video is in the cache)."""
        res = VideoResult(video=v.path, name=v.name)
        clip = ClipRecord(clip_id=v.clip_id, split=PREDICT_SPLIT, label=NO_LABEL, video=v.path,
                          extra={NAMED_PATH: v.named or v.path})
        pose, damaged = self.pose, None
        if self.cached is not None:
            try:
                hit, res.sha256 = self.cached.find(v.path)
            except OSError as e:
                hit = None
                res.notes.append(f"not looked up in the cache: {e}")
            if hit is not None:
                try:  # the cached poses whole and as written, or the video's poses estimated anew
                    pose = CachedPoseSource(hit)
                except (OSError, ChunkFormatError) as e:
                    damaged = f"cached clip {hit.clip_id} of entry {hit.entry.key} cannot be read ({e})"
                    res.notes.append(f"{damaged}; poses estimated anew with {self.pose_spec}")
        res.poses = pose.describe() if isinstance(pose, CachedPoseSource) else f"estimated: {self.pose_spec}"
        if not isinstance(pose, CachedPoseSource) and _needs_dataset(pose):
            try:  # a file that cannot be read is reported as such, not as one without poses
                probe(v.path)
            except DecodeError as e:
                res.error = str(e)
                return res, clip, pose
            where = (f"its clip in the cache cannot be read: {damaged}" if damaged else
                     "this video is in no cache entry made with them (found by its content)")
            res.error = (f"no poses: the model was trained on poses its dataset ships (pose source "
                         f"{self.pose_spec!r}), and {where}. Give --pose-source hrnet (with --pose-option "
                         "checkpoint=...) or pkl:PATH (the model then sees poses from another source than it was "
                         "trained on)")
        return res, clip, pose

    def _extract(self, res: VideoResult, clip: ClipRecord, pose: PoseSource, decoder=None) -> Optional[ClipResult]:
        try:
            return extract_clip(clip, None, pose, self.settings, decoder=decoder)
        except ClipError as e:
            res.error = str(e)
        except Exception as e:  # noqa: BLE001  (one video's surprise must not stop the others)
            log.debug("predict %s:\n%s", res.video, traceback.format_exc())
            res.error = f"internal error: {type(e).__name__}: {e}"
        return None

    def _item(self, cd: ClipData) -> dict:
        self._index += 1
        return self.items.make_item(cd, self._index, None)

    def _decode_workers(self) -> int:
        from stages.extract.decode_pool import decode_pool_available

        n = self.o.decode_workers
        if n is None:
            n = 2 if str(self.o.device).startswith("cuda") else 0
        if n and decode_pool_available():
            log.warning("decoding in this process: %s", decode_pool_available())
            n = 0
        return max(0, int(n))

    def _clips(self, videos: Sequence[VideoInput]) -> Iterator[tuple[VideoResult, Iterator[tuple[ClipData, Any]]]]:
        """(result, its one clip) per video, decoded ahead by worker processes when there are any."""
        prepared = (self._prepare(v) for v in videos)
        workers = self._decode_workers()
        if not workers:
            for res, clip, pose in prepared:
                yield res, self._one_clip(res, clip, pose, None)
            return
        from stages.extract.decode_pool import DecodePool

        with DecodePool(workers, self.settings, send_frames=self.pose.needs_frames) as pool:
            ahead: collections.deque = collections.deque()
            todo = iter(prepared)
            while True:
                while len(ahead) < 2 * workers:
                    nxt = next(todo, None)
                    if nxt is None:
                        break
                    res, clip, pose = nxt
                    ahead.append((res, clip, pose, None if res.error else pool.submit(clip)))
                if not ahead:
                    return
                res, clip, pose, stream = ahead.popleft()
                yield res, self._one_clip(res, clip, pose, stream)

    def _one_clip(self, res: VideoResult, clip: ClipRecord, pose: PoseSource, stream) -> Iterator:
        if res.error:
            if stream is not None:
                stream.discard()
            return
        try:
            out = self._extract(res, clip, pose, stream)
        finally:
            if stream is not None:
                stream.discard()
        if out is None:
            return
        res.notes.extend(out.notes)
        res.fps, res.num_frames = out.attrs.get("fps"), out.attrs.get("num_frames")
        cd = clip_data(out, self.settings)
        if self.o.keep_clips:
            res.clip = cd

        def put(scores: np.ndarray) -> None:
            res.scores = scores
            res.top = top_labels(scores, self.classes, self.o.top_k)

        yield cd, put

    def _windowed(self, videos: Sequence[VideoInput], on_frames) -> Iterator[tuple[VideoResult, Iterator]]:
        for v in videos:
            res, clip, pose = self._prepare(v)
            yield res, self._windows(res, clip, pose, on_frames)

    def _windows(self, res: VideoResult, clip: ClipRecord, pose: PoseSource, on_frames) -> Iterator:
        if res.error:
            return
        res.windows = []
        stride = self.o.stride or self.o.window
        try:
            for (s, e), out in windowed_clips(clip, pose, self.settings, self.o.window, stride,
                                              on_frames=(lambda d, t: on_frames(res.name, d, t)) if on_frames else None):
                fps, delay = out.attrs.get("fps"), out.attrs.get(VIDEO_DELAY, 0.0)
                w = WindowResult(s, e, delay + s / fps if fps else None, delay + e / fps if fps else None)
                res.windows.append(w)
                res.fps, res.num_frames = fps, e
                if not res.notes:
                    res.notes.extend(n for n in out.notes)
                cd = clip_data(out, self.settings)
                if self.o.keep_clips:
                    from stages.show import frame_overlay

                    w.picture = frame_overlay(cd, len(cd.frame_indices) // 2, self.items.skeleton)

                def put(scores: np.ndarray, w=w) -> None:
                    w.scores = scores
                    w.top = top_labels(scores, self.classes, self.o.top_k)

                yield cd, put
        except ClipError as e:
            if res.windows and isinstance(e.__cause__, DecodeError):
                # a tail cut off or damaged: the windows decoded whole before it stand, said (poses that
                # do not cover the video, or any other fault, fail it as before)
                res.whole = False
                res.notes.append(f"decoding stopped early ({e}): the {len(res.windows)} whole window(s) before it, "
                                 f"frames 0-{res.num_frames}, are kept")
            else:
                res.error = str(e)
        except Exception as e:  # noqa: BLE001
            log.debug("predict %s:\n%s", res.video, traceback.format_exc())
            res.error = f"internal error: {type(e).__name__}: {e}"

    # -- the model ---------------------------------------------------------------------------------
    def score(self, items: list[dict]) -> list[np.ndarray]:
        """View-averaged class scores of items (the Runner model's ``test_step``, as evaluation)."""
        from stages.data.device_frames import collate_items

        with torch.no_grad():
            out = self.model.test_step(collate_items(items))
        return [o["scores"].float().numpy() for o in out]

    def predict(self, videos: Sequence[VideoInput], progress: Optional[Callable[[int, int], None]] = None,
                on_frames: Optional[Callable[[str, int, Optional[int]], None]] = None) -> Iterator[VideoResult]:
        """One result per video, in order, each as soon as it (and those before it) is done.
        ``progress(done, total)`` after each video; ``on_frames(name, decoded, expected)`` through a
        long video (``window``)."""
        waiting: collections.deque = collections.deque()
        batch: list[tuple[dict, Callable, VideoResult]] = []
        done = 0

        def flush() -> None:
            if not batch:
                return
            for (_, put, res), scores in zip(batch, self.score([it for it, _, _ in batch])):
                put(scores)
                res._outstanding -= 1
            batch.clear()

        def finished() -> Iterator[VideoResult]:
            nonlocal done
            while waiting and waiting[0]._closed and waiting[0]._outstanding == 0:
                res = waiting.popleft()
                if res.error is not None:
                    res.windows, res.clip, res.scores, res.top = None, None, None, []
                done += 1
                if progress:
                    progress(done, len(videos))
                yield res

        source = self._windowed(videos, on_frames) if self.o.window else self._clips(videos)
        for res, clips in source:
            waiting.append(res)
            for cd, put in clips:
                try:
                    item = self._item(cd)
                except Exception as e:  # noqa: BLE001  (this video's clip does not fit: say so, go on)
                    log.debug("predict %s:\n%s", res.video, traceback.format_exc())
                    res.error = f"internal error making the model's views: {type(e).__name__}: {e}"
                    continue
                batch.append((item, put, res))
                res._outstanding += 1
                if len(batch) >= self.o.batch_size:
                    flush()
                    yield from finished()
            res._closed = True
            yield from finished()
        flush()
        yield from finished()


def _needs_dataset(pose: PoseSource) -> bool:
    """A source that reads poses its dataset ships: it has none for a video of no dataset."""
    from stages.extract.pose.dataset_pose import DatasetPoseSource

    inner = getattr(pose, "inner", pose)
    return isinstance(inner, DatasetPoseSource)


def _describe_identity(ident: dict) -> str:
    parts = [str(ident.get("name", "?"))]
    for k in ("checkpoint", "checkpoint_sha256", "path", "sha256", "config", "flip_test", "precision", "person_detector"):
        if ident.get(k) is not None:
            v = ident[k]
            parts.append(f"{k}={v[:12] + '...' if isinstance(v, str) and k.endswith('sha256') else v}")
    return " ".join(parts)
