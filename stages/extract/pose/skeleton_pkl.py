"""mmaction2 / pyskl 2D skeleton pickles (``gym_2d.pkl`` style), read safely.

File format (as mmaction2's ``PoseDataset`` and pyskl read it)::

    {"split": {"train": [frame_dir, ...], "val": [...], ...},
     "annotations": [{"frame_dir": str, "total_frames": int, "img_shape": (h, w),
                      "original_shape": (h, w), "label": int,
                      "keypoint": float array (M, T, V, 2),
                      "keypoint_score": float array (M, T, V)}, ...]}

A bare list of annotation dicts (older files) is accepted too. An annotation names its clip by
``filename`` or ``frame_dir``, chosen as mmaction2's and pyskl's ``PoseDataset`` choose: by
``filename`` when the first annotation has one, else by ``frame_dir``. A clip matches an
annotation whose name, with a video extension and any folders stripped, is the clip id or one of
the dataset's aliases for it (:meth:`DatasetAdapter.clip_aliases`: FineGym's
``<yt>_<6>_<6>_<4>_<4>`` form of ``gym_2d.pkl``).

Coverage is known before any work: :meth:`PickleSkeletonSource.clips_without_poses` lists the
clips no annotation names, and planning stops (or, as asked, leaves them out or fails them
without decoding) instead of failing them one by one.

Pickle is code execution, so these files are only ever read through the restricted unpickler
of :mod:`stages.safe_pickle` (numpy arrays and plain containers; nothing else).

Main-person rule (``max_total_score``): when an annotation holds several persons (M > 1), the
person kept is the one with the largest summed joint score over all frames, i.e. the mean joint
score of each frame the person is seen in, times the number of such frames. A person seen
clearly all through the clip wins over one seen briefly or faintly. Ties go to the lower index.
Without ``keypoint_score`` the rule is ``max_visible_frames`` (most frames with any non-zero
joint). The rule name is part of :meth:`PickleSkeletonSource.identity` (so of the cache key) and
the per-clip choice is kept in :attr:`PickleSkeletonSource.selections` for the manifest.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from cache.keys import file_sha256
from stages.datasets.base import ClipRecord, DatasetAdapter, PoseTrack
from stages.extract.pose.base import PoseSource, PoseSourceError, PoseSourceOptions
from stages.registry import POSE_SOURCES
from stages.safe_pickle import restricted_load
from stages.settings import field

PERSON_RULE = "max_total_score"

def load_skeleton_pickle(path: os.PathLike | str) -> dict:
    """Read an mmaction2/pyskl 2D skeleton pickle safely; returns ``{"split", "annotations"}``.

    Raises :class:`pickle.UnpicklingError` for a file that references anything but numpy arrays
    and plain containers, and ``ValueError`` for one that is not a skeleton file.
    """
    p = Path(path)
    with open(p, "rb") as f:
        data = restricted_load(f)
    if isinstance(data, list):
        data = {"split": {}, "annotations": data}
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ValueError(
            f"{p}: not a skeleton pickle (expected a dict with an 'annotations' list, "
            f"got {type(data).__name__})"
        )
    anns = data["annotations"]
    ident = "filename" if anns and isinstance(anns[0], dict) and "filename" in anns[0] else "frame_dir"
    for i, a in enumerate(anns):
        if not isinstance(a, dict) or ident not in a or "keypoint" not in a:
            raise ValueError(f"{p}: annotation {i} lacks {ident!r} or 'keypoint' (the first annotation "
                             f"{'has' if ident == 'filename' else 'lacks'} 'filename', so every one is named by {ident!r})")
        kp = a["keypoint"]
        if not isinstance(kp, np.ndarray) or kp.ndim != 4 or kp.shape[-1] < 2:
            shape = kp.shape if isinstance(kp, np.ndarray) else type(kp).__name__
            raise ValueError(
                f"{p}: annotation {a[ident]!r}: keypoint must be an array (M, T, V, 2), got {shape}"
            )
    data.setdefault("split", {})
    data["identifier"] = ident
    return data


_VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov")


def annotation_name(name: str) -> str:
    """An annotation's ``filename``/``frame_dir`` as a clip id: folders and a video extension dropped."""
    base = str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in _VIDEO_EXTS else base


def select_main_person(
    keypoint: np.ndarray, keypoint_score: Optional[np.ndarray] = None
) -> tuple[int, str]:
    """Index of the main person in ``keypoint`` (M, T, V, 2) and the rule that chose it."""
    kp = np.asarray(keypoint)
    m = int(kp.shape[0])
    if m == 0:
        raise ValueError("no person in the annotation")
    if m == 1:
        return 0, "single_person"
    if keypoint_score is not None:
        sc = np.nan_to_num(np.asarray(keypoint_score, dtype=np.float64), nan=0.0)
        total = sc.reshape(m, -1).sum(axis=1)  # == sum over seen frames of mean score * V
        return int(np.argmax(total)), PERSON_RULE
    visible = np.any(np.abs(kp[..., :2]) > 0, axis=(2, 3)).sum(axis=1)
    return int(np.argmax(visible)), "max_visible_frames"


# Per-process cache: (realpath, size, mtime_ns) -> (sha256, data, {clip name: annotation}).
_CACHE: dict[tuple, tuple[str, dict, dict]] = {}
_CACHE_LOCK = threading.Lock()


def _load_cached(path: str) -> tuple[str, dict, dict]:
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            data = load_skeleton_pickle(real)
            by_dir: dict = {}
            for a in data["annotations"]:
                name = annotation_name(a[data["identifier"]])
                # two annotations for one clip name: neither is taken (found out when the clip asks)
                by_dir[name] = a if name not in by_dir else None
            hit = (file_sha256(real), data, by_dir)
            for k in [k for k in _CACHE if k[0] == real]:
                del _CACHE[k]
            _CACHE[key] = hit
    return hit


@dataclass(frozen=True)
class PickleSkeletonOptions(PoseSourceOptions):
    path: Optional[str] = field(None, help="The skeleton pickle (--pose-source pkl:PATH).")
    skeleton: Optional[str] = field(None, help="Joint layout of the file (default: coco17).")


@POSE_SOURCES.register_module("pkl")
class PickleSkeletonSource(PoseSource):
    """Poses from an mmaction2/pyskl 2D skeleton pickle (``--pose-source pkl:PATH``).

    The annotation named like the clip (module docstring) gives the clip's joints; with several
    persons the main one is kept. Coordinates are in the pickle's
    ``img_shape`` frame, which becomes the track's ``frame_size``.
    """

    name = "pkl"
    needs_frames = False
    Options = PickleSkeletonOptions

    def __init__(self, path: os.PathLike | str | None = None, skeleton: Optional[str] = None):
        if not path:
            raise PoseSourceError("pose source 'pkl' needs a file: --pose-source pkl:PATH")
        self.path = str(Path(path).expanduser().resolve())
        if not os.path.isfile(self.path):
            raise PoseSourceError(f"skeleton pickle not found: {self.path}")
        if skeleton:
            self.skeleton = skeleton
        self.selections: dict[str, dict] = {}

    def _data(self) -> tuple[str, dict, dict]:
        return _load_cached(self.path)

    def identity(self) -> dict:
        sha, _, _ = self._data()
        return {"name": self.name, "path": self.path, "sha256": sha, "person_rule": PERSON_RULE,
                "skeleton": self.skeleton}

    def estimate(
        self,
        clip: ClipRecord,
        frames: Optional[np.ndarray],
        boxes: Optional[np.ndarray],
        dataset: DatasetAdapter,
    ) -> PoseTrack:
        ann = self._annotation(clip, dataset)
        kp = np.asarray(ann["keypoint"], dtype=np.float32)[..., :2]
        score = ann.get("keypoint_score")
        score = None if score is None else np.asarray(score, dtype=np.float32)
        if kp.shape[0] == 0:
            raise PoseSourceError(f"clip {clip.clip_id!r}: no person in {self.path}")
        idx, rule = select_main_person(kp, score)
        keypoints = kp[idx]
        if score is not None:
            scores = np.clip(np.nan_to_num(score[idx], nan=0.0), 0.0, 1.0)
        else:
            scores = np.any(keypoints != 0, axis=-1).astype(np.float32)
        choice = {"person": idx, "rule": rule, "num_persons": int(kp.shape[0])}
        n = keypoints.shape[0]
        if frames is not None and len(frames) != n and n > 0:
            # One pose per decoded frame: map each decoded frame to the nearest pickle frame.
            pick = np.minimum((np.arange(len(frames)) * n) // max(len(frames), 1), n - 1)
            keypoints, scores = keypoints[pick], scores[pick]
            choice["resampled_from"] = n
        shape = ann.get("img_shape") or ann.get("original_shape")
        if shape is None:
            raise PoseSourceError(f"clip {clip.clip_id!r}: annotation has no img_shape in {self.path}")
        self.selections[clip.clip_id] = choice
        return PoseTrack(keypoints=keypoints, scores=scores,
                         frame_size=(int(shape[0]), int(shape[1])))

    def _names(self, clip: ClipRecord, dataset: Optional[DatasetAdapter]) -> tuple[str, ...]:
        return (clip.clip_id,) + (tuple(dataset.clip_aliases(clip)) if dataset is not None else ())

    def _annotation(self, clip: ClipRecord, dataset: Optional[DatasetAdapter]) -> dict:
        _, _, by_name = self._data()
        for name in self._names(clip, dataset):
            if name in by_name:
                if by_name[name] is None:
                    raise PoseSourceError(f"clip {clip.clip_id!r}: several annotations are named {name!r} in {self.path}")
                return by_name[name]
        raise PoseSourceError(f"clip {clip.clip_id!r} has no annotation in {self.path}")

    def clips_without_poses(self, clips: list[ClipRecord], dataset: Optional[DatasetAdapter]) -> list[str]:
        _, _, by_name = self._data()
        return [c.clip_id for c in clips if not any(n in by_name for n in self._names(c, dataset))]

    def clip_info(self, clip: ClipRecord) -> dict:
        return dict(self.selections.get(clip.clip_id, {}))

    def close(self) -> None:
        self.selections.clear()
