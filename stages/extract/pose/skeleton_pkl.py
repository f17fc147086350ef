"""mmaction2 / pyskl 2D skeleton pickles (``gym_2d.pkl`` style), read safely.

File format (as mmaction2's ``PoseDataset`` and pyskl read it)::

    {"split": {"train": [frame_dir, ...], "val": [...], ...},
     "annotations": [{"frame_dir": str, "total_frames": int, "img_shape": (h, w),
                      "original_shape": (h, w), "label": int,
                      "keypoint": float array (M, T, V, 2),
                      "keypoint_score": float array (M, T, V)}, ...]}

A bare list of annotation dicts (older files, pyskl's ``custom_2d_skeleton.py``) is accepted too,
and so is one annotation dict on its own: what mmaction2's ``ntu_pose_extraction.py`` writes for
one video. ``--pose-source pkl:DIR`` reads every ``*.pkl`` under a folder (any of the three forms
in each), which is how that script's users keep their poses.

Every field this module uses is checked by type and size before numpy touches it
(:func:`check_annotation`): the name a string, ``keypoint`` and ``keypoint_score`` numeric numpy
arrays of the declared rank and matching shapes (never lists: both toolkits write arrays, and
nested lists may alias one row a billion times), ``img_shape`` two positive integers. A file with
3 values per joint is a 3D skeleton (NTU's ``ntu60_3d.pkl``: x, y, z in metres) and is refused as
such; so is a joint count other than the source's skeleton's.

Which annotation is a clip's: an annotation names its clip by ``filename`` or ``frame_dir``,
chosen as mmaction2's and pyskl's ``PoseDataset`` choose: by ``filename`` when the (file's)
first annotation has one, else by ``frame_dir``. The name, with a video extension dropped, is
known by its whole path and by every trailing part of it (``data/v/c0.mp4``: ``data/v/c0``,
``v/c0``, ``c0``); an annotation read from a folder of per-video files is also known by that
file's path under the folder without ``.pkl``. A clip takes the annotation known by its id, else
by one of the dataset's aliases for it (:meth:`DatasetAdapter.clip_aliases`: FineGym's
``<yt>_<6>_<6>_<4>_<4>`` form of ``gym_2d.pkl``; a custom dataset's video base name). Two clips
that would take one annotation are an error naming both, raised when the extraction is planned.

Coverage is known before any work: :meth:`PickleSkeletonSource.clips_without_poses` lists the
clips no annotation names, and planning stops (or, as asked, leaves them out or fails them
without decoding) instead of failing them one by one.

``img_shape`` (the frame the joints' pixels refer to) is checked against the video when the clip
is extracted (:meth:`PickleSkeletonSource.fit_frame_size`): see the source's ``img_shape`` option.

Pickle is code execution, so these files are only ever read through the restricted unpickler
of :mod:`stages.safe_pickle` (numpy arrays and plain containers; nothing else; bounded memory).

Main-person rule (``max_total_score``): when an annotation holds several persons (M > 1), the
person kept (stage-one setting ``persons`` = 1) is the one with the largest summed joint score over all frames, i.e. the mean joint
score of each frame the person is seen in, times the number of such frames. A person seen
clearly all through the clip wins over one seen briefly or faintly. Ties go to the lower index.
Without ``keypoint_score`` the rule is ``max_visible_frames`` (most frames with any non-zero
joint). The rule name is part of :meth:`PickleSkeletonSource.identity` (so of the cache key) and
the per-clip choice is kept in :attr:`PickleSkeletonSource.selections` for the manifest.

The M "persons" of an annotation are per-frame slots, not people followed over the clip: pyskl's
``custom_2d_skeleton.py`` and mmaction2's ``ntu_pose_extraction.py`` put frame f's j-th detection in
slot j, so one person may sit in slot 0 in one frame and slot 1 in the next. With ``persons`` = 1
the best slot by the rule above is kept, as PoseC3D reads these files (slot 0 is most often each
frame's best detection).

Several people (``persons`` = n > 1): each frame's slots become detections (the box around their
scored joints) linked into tracks over the clip as the HRNet path links its boxes
(:mod:`stages.extract.pose.tracks`: box IoU, frame by frame), and the n tracks of the highest mean
joint score are kept, best first, person-major in the joint axis: ``(T, n * V, 2)``, joint
``p * V + v`` is joint ``v`` of person ``p``. Fewer than n tracks leave the rest as zero-score
joints at 0 (``missing_persons`` in the clip's ``pose_info``). The linking joins the source's
identity (``person_tracks``), so such entries' keys differ from those that kept slots.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from cache.keys import file_sha256
from stages.datasets.base import NAMED_PATH, ClipRecord, DatasetAdapter, PoseTrack
from stages.datasets.names import readable_name
from stages.extract.pose.base import PoseContext, PoseSource, PoseSourceError, PoseSourceOptions
from stages.registry import POSE_SOURCES
from stages.safe_pickle import restricted_load
from stages.settings import field
from stages.skeletons import get_skeleton

PERSON_RULE = "max_total_score"
#: persons > 1: each frame's slots linked into tracks (module docstring); in the identity
PERSON_TRACKS = "slots_linked_by_box_iou"

#: what ``img_shape=`` may say (see :class:`PickleSkeletonSource`)
IMG_SHAPE_MODES = ("check", "file", "video")
#: two frame sizes "agree" when their aspect ratios differ by at most this fraction
ASPECT_TOLERANCE = 0.02
#: joints may lie this fraction of the frame outside it (a person at the edge) and still be "in" it
JOINT_MARGIN = 0.1
#: a clip whose seen joints all lie within this many pixels of the origin has normalised coordinates
NORMALISED_SPAN = 1.5
_MAX_NAME = 4096  # characters of a clip name
_MAX_SIDE = 1 << 16  # pixels of an img_shape side

#: the img_shape (h, w) mmaction2's ntu_pose_extraction.py writes for every video, whatever its size
NTU_STAMP = (1080, 1920)


def _kind(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"a {x.dtype} array of shape {x.shape}"
    return f"a {type(x).__name__}"


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def shape_pair(value: Any) -> Optional[tuple[int, int]]:
    """``img_shape`` / ``original_shape`` as ``(height, width)`` ints, or None when it is not two
    positive integers (a tuple, list or numpy array of two; integral floats allowed)."""
    if isinstance(value, np.ndarray):
        if value.shape != (2,) or value.dtype.kind not in "iuf":
            return None
        value = value.tolist()
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return None
    out = []
    for v in value:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        if not _is_int(v) or not 0 < int(v) <= _MAX_SIDE:
            return None
        out.append(int(v))
    return out[0], out[1]


def check_annotation(a: Any, where: str, ident: str) -> None:
    """``ValueError`` naming ``where`` unless annotation ``a`` holds what this module reads, by
    type and size, before anything converts it (module docstring)."""
    if not isinstance(a, dict):
        raise ValueError(f"{where}: an annotation must be a dict with 'frame_dir' (or 'filename') and 'keypoint', "
                         f"got {_kind(a)}")
    name = a.get(ident)
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise ValueError(f"{where} lacks {ident!r} as a clip name (a string), got {_kind(name)}"
                         + (" (the first annotation has 'filename', so every one is named by it)"
                            if ident == "filename" else ""))
    where = f"{where} ({name[:200]!r})"
    kp = a.get("keypoint")
    if kp is None and ("raw_file" in a or "frame_inds" in a):
        raise ValueError(
            f"{where}: no keypoint but {'raw_file' if 'raw_file' in a else 'frame_inds'}: pyskl's compressed layout "
            "(Kinetics-400's k400_hrnet.pkl: a table of contents whose joints live in separate kpfiles), which this "
            "tool does not read. Write an uncompressed 2D file (keypoint (M, T, V, 2), keypoint_score (M, T, V)) "
            "for these videos, e.g. with pyskl's custom_2d_skeleton.py")
    if not isinstance(kp, np.ndarray):
        raise ValueError(f"{where}: keypoint must be an array (M, T, V, 2) (a numpy array, as mmaction2 and pyskl "
                         f"write it; lists are refused), got {_kind(kp)}")
    if kp.dtype.kind not in "fiu":
        raise ValueError(f"{where}: keypoint must hold numbers, got {_kind(kp)}")
    if kp.ndim == 4 and kp.shape[-1] == 3:
        raise ValueError(
            f"{where}: keypoint is (M, T, V, 3) = {kp.shape}: 3 values per joint, a 3D skeleton (x, y, z, as "
            "NTU's ntu60_3d.pkl holds in metres) or x, y and a score packed together. This tool needs 2D "
            "joints in image pixels: keypoint (M, T, V, 2) with keypoint_score (M, T, V), as ntu60_2d.pkl, "
            "gym_2d.pkl or pyskl's custom_2d_skeleton.py hold them")
    if kp.ndim != 4 or kp.shape[-1] != 2:
        hint = (" (pyskl's --compress layout with frame_inds is not read: write the file without --compress)"
                if "frame_inds" in a else "")
        raise ValueError(f"{where}: keypoint must be an array (M, T, V, 2), got {kp.shape}{hint}")
    score = a.get("keypoint_score")
    if score is not None:
        if not isinstance(score, np.ndarray) or score.dtype.kind not in "fiub":
            raise ValueError(f"{where}: keypoint_score must be a numeric numpy array (M, T, V) (lists are "
                             f"refused), got {_kind(score)}")
        if score.shape != kp.shape[:3]:
            raise ValueError(f"{where}: keypoint_score {score.shape} does not match keypoint {kp.shape} "
                             "(want (M, T, V))")
    for f in ("img_shape", "original_shape"):
        if f in a and shape_pair(a[f]) is None:
            v = a[f]
            got = repr(v)[:100] if isinstance(v, (tuple, list)) and len(v) <= 4 else _kind(v)
            raise ValueError(f"{where}: {f} must be (height, width), two positive integers, got {got}")


def _identifier(anns: list) -> str:
    return "filename" if anns and isinstance(anns[0], dict) and "filename" in anns[0] else "frame_dir"


def load_skeleton_pickle(path: os.PathLike | str) -> dict:
    """Read one mmaction2/pyskl 2D skeleton pickle safely; returns ``{"split", "annotations",
    "identifier"}`` (a single video's annotation dict becomes a one-annotation file).

    Raises :class:`pickle.UnpicklingError` for a file that references anything but numpy arrays
    and plain containers (or would expand beyond its size), and ``ValueError`` naming the file
    for one that is not a 2D skeleton file (:func:`check_annotation`).
    """
    p = Path(path)
    with open(p, "rb") as f:
        try:
            data = restricted_load(f)
        except pickle.UnpicklingError as e:
            raise pickle.UnpicklingError(f"{p}: {e}") from None
    if isinstance(data, list):
        data = {"split": {}, "annotations": data}
    elif isinstance(data, dict) and "annotations" not in data and "keypoint" in data:
        data = {"split": {}, "annotations": [data]}  # one video's annotation (ntu_pose_extraction.py)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        keys = ([repr(k)[:40] for k in list(data)[:8] if isinstance(k, str)] if isinstance(data, dict) else None)
        raise ValueError(
            f"{p}: not a skeleton pickle (expected a dict with an 'annotations' list, a list of annotation "
            f"dicts, or one video's annotation dict with 'keypoint'; got {type(data).__name__}"
            + (f" with keys {', '.join(keys)}" if keys else "") + ")")
    anns = data["annotations"]
    ident = _identifier(anns)
    for i, a in enumerate(anns):
        check_annotation(a, f"{p}: annotation {i}", ident)
    split = data.get("split", {})
    return {"split": split if isinstance(split, dict) else {}, "annotations": anns, "identifier": ident}


_VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
_MAX_PARTS = 8  # trailing path parts an annotation is known by


def _parts(name: str) -> list[str]:
    # Windows separators first; then a part holding a file name's non-UTF-8 bytes (os.listdir's
    # surrogates) is read as clip ids are (its bytes as \\xNN)
    parts = [readable_name(s) for s in str(name).replace("\\", "/").split("/") if s not in ("", ".")]
    if parts:
        stem, ext = os.path.splitext(parts[-1])
        if ext.lower() in _VIDEO_EXTS and stem:
            parts[-1] = stem
    return parts


def annotation_name(name: str) -> str:
    """An annotation's ``filename``/``frame_dir`` as a clip id: folders and a video extension dropped."""
    parts = _parts(name)
    return parts[-1] if parts else str(name)


def _same_folder(annotation: list[str], video: list[str]) -> bool:
    """Whether an annotation's name (parts) is a video's (parts of its path): the same base name,
    and the same folder above it where the annotation names one."""
    return (bool(annotation) and annotation[-1:] == video[-1:]
            and (len(annotation) < 2 or annotation[-2:] == video[-2:]))


def annotation_keys(name: str) -> list[str]:
    """Every name an annotation is known by: its path (video extension dropped) and each trailing
    part of it, longest first (``data/v/c0.mp4`` -> ``data/v/c0``, ``v/c0``, ``c0``)."""
    parts = _parts(name)[-_MAX_PARTS:]
    return ["/".join(parts[i:]) for i in range(len(parts))]


def rank_persons(
    keypoint: np.ndarray, keypoint_score: Optional[np.ndarray] = None
) -> tuple[list[int], str]:
    """The persons of ``keypoint`` (M, T, V, 2), best first, and the rule that ranked them
    (module docstring: the summed joint score over the clip, which ranks the M tracks of one
    annotation as their mean score over the clip does; ties go to the lower index)."""
    kp = np.asarray(keypoint)
    m = int(kp.shape[0])
    if m == 0:
        raise ValueError("no person in the annotation")
    if m == 1:
        return [0], "single_person"
    if keypoint_score is not None:
        sc = np.nan_to_num(np.asarray(keypoint_score, dtype=np.float64), nan=0.0)
        total = sc.reshape(m, -1).sum(axis=1)  # == sum over seen frames of mean score * V
        rule = PERSON_RULE
    else:
        total = np.any(np.abs(kp[..., :2]) > 0, axis=(2, 3)).sum(axis=1)
        rule = "max_visible_frames"
    return [int(i) for i in np.argsort(-total, kind="stable")], rule


def select_main_person(
    keypoint: np.ndarray, keypoint_score: Optional[np.ndarray] = None
) -> tuple[int, str]:
    """Index of the main person in ``keypoint`` (M, T, V, 2) and the rule that chose it."""
    order, rule = rank_persons(keypoint, keypoint_score)
    return order[0], rule


def person_major(per_person: np.ndarray, persons: int) -> np.ndarray:
    """``(k, T, V, ...)`` arrays of k <= ``persons`` people -> ``(T, persons * V, ...)``, person-major
    (joint ``p * V + v`` is joint ``v`` of person ``p``); people beyond ``k`` are zeros."""
    k, t, v = per_person.shape[:3]
    out = np.zeros((persons, t, v) + per_person.shape[3:], per_person.dtype)
    out[:k] = per_person
    return np.moveaxis(out, 0, 1).reshape((t, persons * v) + per_person.shape[3:])


def joint_scores(keypoint: np.ndarray, keypoint_score: Optional[np.ndarray]) -> np.ndarray:
    """The stored scores of ``keypoint`` (M, T, V, 2)'s joints, float32 (M, T, V): the file's,
    NaN as 0 and clipped to [0, 1]; without ``keypoint_score``, 1 for a non-zero joint, else 0."""
    if keypoint_score is not None:
        return np.clip(np.nan_to_num(np.asarray(keypoint_score, np.float32), nan=0.0), 0.0, 1.0)
    return np.any(keypoint != 0, axis=-1).astype(np.float32)


def slot_boxes(keypoint: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Boxes (n, 4) xyxy around the seen joints of n slots of one frame (``keypoint`` (n, V, 2),
    ``seen`` (n, V) bool), widened by a tenth of their larger side so that a person seen by a few
    joints still overlaps their next sighting."""
    out = np.zeros((len(keypoint), 4), np.float32)
    for i, (k, s) in enumerate(zip(keypoint, seen)):
        xy = k[s]
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        pad = 0.1 * float(max(hi - lo)) + 1.0
        out[i] = [lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad]
    return out


def link_slots(keypoint: np.ndarray, keypoint_score: Optional[np.ndarray], persons: int):
    """``keypoint`` (M, T, V, 2) per-frame slots -> the ``persons`` best tracks, person-major
    ``(T, persons * V, 2)`` joints and ``(T, persons * V)`` scores, and a summary (module
    docstring). Joints count as seen where their score (:func:`joint_scores`) is > 0."""
    from stages.extract.pose.tracks import keep_best_tracks, link_boxes

    sc = joint_scores(keypoint, keypoint_score)
    boxes, kps, scs = [], [], []
    for f in range(keypoint.shape[1]):
        seen = sc[:, f] > 0
        here = np.flatnonzero(seen.any(axis=1))
        boxes.append(slot_boxes(keypoint[here, f], seen[here]))
        kps.append(keypoint[here, f])
        scs.append(sc[here, f])
    kp, score, _, summary = keep_best_tracks(link_boxes(boxes), kps, scs, persons)
    return kp, score, summary


@dataclass(frozen=True)
class _Annotation:
    name: str  # as the file gives it
    data: dict = dataclasses.field(repr=False)
    file: str  # the pickle it came from


@dataclass
class SkeletonSet:
    """Every annotation of a skeleton file or folder, by each name it is known by (module
    docstring). ``by_key[k]`` is an annotation or, when several are known by ``k``, their names."""

    sha256: str
    files: list[str]
    annotations: list[_Annotation]
    by_key: dict[str, Any]


def _pickles_under(folder: str) -> list[str]:
    out = []
    for d, subdirs, names in os.walk(folder):
        subdirs.sort()
        out += [os.path.join(d, n) for n in sorted(names) if n.lower().endswith((".pkl", ".pickle"))]
    return out


def _read_set(path: str) -> SkeletonSet:
    """Load a file, or every pickle under a folder, and index the annotations by name."""
    folder = os.path.isdir(path)
    files = _pickles_under(path) if folder else [path]
    if folder and not files:
        raise ValueError(f"{path}: a folder of skeleton pickles holds no *.pkl file")
    anns: list[_Annotation] = []
    by_key: dict[str, Any] = {}
    digest = hashlib.sha256()

    def known_as(key: str, a: _Annotation) -> None:
        had = by_key.get(key)
        if had is None:
            by_key[key] = a
        elif had is not a:
            names = had if isinstance(had, list) else [had.name]
            by_key[key] = names + [a.name] if len(names) < 5 else names

    for f in files:
        data = load_skeleton_pickle(f)
        rel = os.path.relpath(f, path) if folder else None
        if folder:  # the folder's identity: each file's path under it and content
            digest.update(f"{os.fsencode(rel).hex()} {file_sha256(f)}\n".encode())
        for a in data["annotations"]:
            ann = _Annotation(a[data["identifier"]], a, f)
            anns.append(ann)
            for k in annotation_keys(ann.name):
                known_as(k, ann)
            if folder and len(data["annotations"]) == 1:  # one video's file: also by its path
                for k in annotation_keys(os.path.splitext(rel)[0]):
                    known_as(k, ann)
    sha = digest.hexdigest() if folder else file_sha256(path)
    return SkeletonSet(sha, files, anns, by_key)


# Per-process cache: (realpath, size, mtime_ns) -> SkeletonSet (files; a folder is read once per source).
_CACHE: dict[tuple, SkeletonSet] = {}
_CACHE_LOCK = threading.Lock()


def _load_cached(path: str) -> SkeletonSet:
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            hit = _read_set(real)
            for k in [k for k in _CACHE if k[0] == real]:
                del _CACHE[k]
            _CACHE[key] = hit
    return hit


#: how ``pipeline predict``'s videos (named by path) find their annotation: :class:`PickleSkeletonOptions`
PATH_MATCHES = ("folder", "name")


@dataclass(frozen=True)
class PickleSkeletonOptions(PoseSourceOptions):
    path: Optional[str] = field(None, help="The skeleton pickle, or a folder of per-video pickles (--pose-source "
                                "pkl:PATH).")
    skeleton: Optional[str] = field(None, help="Joint layout of the file (default: coco17).")
    img_shape: Literal[IMG_SHAPE_MODES] = field("check", help="Which frame the joints' pixels are in: check (the "
                                                "file's img_shape, when it agrees with the video's aspect and the "
                                                "joints' range; else the clip is refused naming this option), file "
                                                "(the file's, rescaled to the video) or video (the video's own pixels; "
                                                "mmaction2's ntu_pose_extraction.py stamps 1080x1920 on every video).")
    match: Literal[PATH_MATCHES] = field("folder", in_key=False, help="How a clip or video found by its base name "
                                         "takes an annotation: folder (only where the annotation names no folder or "
                                         "the clip's: cam1/clip_001 is not .../cam2/clip_001.mp4) or name (the base "
                                         "name alone: the annotations' folders are where the videos were when the "
                                         "file was made). A clip id the annotation names whole always matches.")


@POSE_SOURCES.register_module("pkl")
class PickleSkeletonSource(PoseSource):
    """Poses from mmaction2/pyskl 2D skeleton pickles (``--pose-source pkl:PATH``): a file, or a
    folder of them (e.g. one ``ntu_pose_extraction.py`` output per video).

    The annotation named like the clip (module docstring) gives the clip's joints; with several
    persons the main one is kept. Coordinates are in the annotation's ``img_shape`` frame, which
    becomes the track's ``frame_size``.

    Options (``--pose-source pkl:PATH,KEY=VALUE``):

    img_shape (str, default ``"check"``): which frame the joints' pixels are in.
        ``check``: the file's ``img_shape``, when it agrees with the video: the same aspect ratio
        (within 2%) and the joints inside it (10% margin); otherwise the clip is refused, naming
        the file and this option. ``file``: the file's ``img_shape``, rescaled to the video
        whatever its aspect (a tool that resized the frames before estimating). ``video``: the
        video's own pixels; ``img_shape`` is ignored (mmaction2's ``ntu_pose_extraction.py``
        stamps ``(1080, 1920)`` on every video). Joins the source's identity (the entry key) only
        when not ``check``.
    """

    name = "pkl"
    needs_frames = False
    multi_person = True
    Options = PickleSkeletonOptions

    @classmethod
    def from_options(cls, options: Any, context: PoseContext) -> "PickleSkeletonSource":
        return cls(**options.to_dict(), persons=context.persons)

    def __init__(self, path: os.PathLike | str | None = None, skeleton: Optional[str] = None,
                 img_shape: str = "check", persons: int = 1, match: str = "folder"):
        if not path:
            raise PoseSourceError("pose source 'pkl' needs a file or folder: --pose-source pkl:PATH")
        self.path = str(Path(path).expanduser().resolve())
        if not os.path.exists(self.path):
            raise PoseSourceError(f"skeleton pickle not found: {self.path}")
        if skeleton:
            self.skeleton = skeleton
        if img_shape not in IMG_SHAPE_MODES:
            raise PoseSourceError(f"pose source pkl: img_shape={img_shape!r}: want one of {', '.join(IMG_SHAPE_MODES)}")
        self.img_shape = img_shape
        if match not in PATH_MATCHES:
            raise PoseSourceError(f"pose source pkl: match={match!r}: want one of {', '.join(PATH_MATCHES)}")
        self.match = match
        self.persons = int(persons)  # people per frame kept (stage-one setting; the settings key has it)
        self.selections: dict[str, dict] = {}
        self._set: Optional[SkeletonSet] = None
        self._matched: dict[str, _Annotation] = {}  # clip id -> its annotation (for fit_frame_size's message)

    @property
    def is_folder(self) -> bool:
        return os.path.isdir(self.path)

    def _data(self) -> SkeletonSet:
        if self.is_folder:  # listing a folder per clip would cost; it is read once per source
            if self._set is None:
                self._set = self._checked(_read_set(self.path))
            return self._set
        s = _load_cached(self.path)
        if s is not self._set:
            self._set = self._checked(s)
        return s

    def _checked(self, s: SkeletonSet) -> SkeletonSet:
        """What depends on this source: the skeleton's joint count, and a frame for the joints."""
        joints = get_skeleton(self.skeleton).num_joints
        for a in s.annotations:
            v = a.data["keypoint"].shape[2]
            if v != joints:
                raise ValueError(f"{a.file}: annotation {a.name!r}: keypoint has {v} joints, the {self.skeleton} "
                                 f"skeleton {joints} (is this file of another skeleton, e.g. NTU's 25 Kinect joints?)")
            if "img_shape" not in a.data and "original_shape" not in a.data:
                raise ValueError(f"{a.file}: annotation {a.name!r} has no img_shape: the frame size its joints' "
                                 "pixels refer to (every mmaction2/pyskl 2D file has one)")
        return s

    def identity(self) -> dict:
        s = self._data()
        ident = {"name": self.name, "path": self.path, "sha256": s.sha256, "person_rule": PERSON_RULE,
                 "skeleton": self.skeleton}
        if self.is_folder:
            ident["files"] = len(s.files)
        if self.img_shape != "check":
            ident["img_shape"] = self.img_shape
        if self.persons > 1:
            ident["person_tracks"] = PERSON_TRACKS
        return ident

    def estimate(
        self,
        clip: ClipRecord,
        frames: Optional[np.ndarray],
        boxes: Optional[np.ndarray],
        dataset: DatasetAdapter,
    ) -> PoseTrack:
        ann = self._annotation(clip, dataset)
        a = ann.data  # checked by type and shape when loaded
        kp = a["keypoint"].astype(np.float32, copy=False)
        score = a.get("keypoint_score")
        score = None if score is None else score.astype(np.float32, copy=False)
        if kp.shape[0] == 0:
            raise PoseSourceError(f"clip {clip.clip_id!r}: no person in {ann.file}")
        if self.persons == 1:  # the best slot, as PoseC3D reads these files
            order, rule = rank_persons(kp, score)
            keypoints = kp[order[0]]  # (T, V, 2)
            scores = joint_scores(kp[order[:1]], None if score is None else score[order[:1]])[0]
            choice = {"person": order[0], "rule": rule, "num_persons": int(kp.shape[0])}
        else:  # several people: the slots linked into tracks, person-major, missing ones with score 0
            try:
                keypoints, scores, summary = link_slots(kp, score, self.persons)
            except ValueError as e:
                raise PoseSourceError(f"clip {clip.clip_id!r}: {ann.file}: {e}") from None
            choice = {"rule": PERSON_TRACKS, "num_persons": int(kp.shape[0]), **summary}
        if self.is_folder:
            choice["file"] = os.path.relpath(ann.file, self.path)
        # the file's own frame count: stages.extract.clip.align_track brings it to the decoded
        # frames (nearest in time, noted), the one rule for every pose source
        shape = shape_pair(a["img_shape"]) if "img_shape" in a else shape_pair(a["original_shape"])
        self.selections[clip.clip_id] = choice
        self._matched[clip.clip_id] = ann
        return PoseTrack(keypoints=keypoints, scores=scores, frame_size=shape)

    def fit_frame_size(self, clip: ClipRecord, track: PoseTrack, video_size: tuple[int, int],
                       stored_size: Optional[tuple[int, int]] = None) -> PoseTrack:
        """The track in the frame the ``img_shape`` option says (class docstring); raises
        :class:`PoseSourceError` naming the file and the option when ``check`` finds that the
        file's ``img_shape`` and the video disagree (an ``img_shape`` equal to the stored pixels
        of a non-square-pixel video, ``stored_size``, agrees), and for every option when the joints
        are fractions of the frame rather than pixels."""
        (ph, pw), (h, w) = track.frame_size, video_size
        seen = track.keypoints[track.scores > 0]
        span = None if seen.size == 0 else (seen.min(axis=0), seen.max(axis=0))
        ann = self._matched.get(clip.clip_id)
        file, name = (ann.file, ann.name) if ann is not None else (self.path, clip.clip_id)
        if len(seen) > 1 and float(np.abs(seen).max()) <= NORMALISED_SPAN and max(ph, pw, h, w) > 8 * NORMALISED_SPAN:
            # pixels of a person in a (ph, pw) frame never all lie within 1.5 pixels of its corner:
            # these are fractions of the frame, which no img_shape mode reads right
            raise PoseSourceError(
                f"clip {clip.clip_id!r}: {file} gives annotation {name!r} joints that all lie in "
                f"[{seen.min():.2f}, {seen.max():.2f}]: coordinates normalised to the frame, not pixels. "
                f"mmaction2 and pyskl files hold pixels of img_shape ({ph}, {pw}); scale the file's keypoint "
                "by (width, height) before reading it")
        if self.img_shape == "video":
            return PoseTrack(track.keypoints, track.scores, frame_size=(h, w))
        if self.img_shape == "file" or (ph, pw) == (h, w):
            return track
        if stored_size is not None and (ph, pw) == tuple(stored_size):
            # the stored pixels of a non-square-pixel video, as decord and PyAV decode it (pyskl's
            # img_shape): the same picture, only wider or narrower; rescaled to the video like `file`
            return track
        aspect_ok = abs((pw / ph) / (w / h) - 1) <= ASPECT_TOLERANCE

        def inside(fh, fw):
            if span is None:
                return True
            (x0, y0), (x1, y1) = span
            return (x0 >= -JOINT_MARGIN * fw and y0 >= -JOINT_MARGIN * fh
                    and x1 <= (1 + JOINT_MARGIN) * fw and y1 <= (1 + JOINT_MARGIN) * fh)

        # mmaction2's stamp, twice the video or more, and every joint of the clip within the video's own
        # frame: its pixels, most likely (ntu_pose_extraction.py writes (1080, 1920) for a 426x240 video:
        # rescaled, the poses shrank 4.5x into the top-left corner, with a note). A file that records
        # real frame sizes (pyskl's) is not taken for one: only this stamp is
        ambiguous = (span is not None and (ph, pw) == NTU_STAMP and min(ph / h, pw / w) >= 2 and inside(h, w))
        if aspect_ok and inside(ph, pw) and not ambiguous:
            return track
        joints = ("" if span is None else
                  f"; its joints span x {span[0][0]:.0f}..{span[1][0]:.0f}, y {span[0][1]:.0f}..{span[1][1]:.0f}")
        why = (f"the aspect ratios differ ({pw}:{ph} against {w}:{h}), so rescaling would distort the poses"
               if not aspect_ok else "the joints lie outside img_shape, so rescaling would misplace them"
               if not inside(ph, pw)
               else f"img_shape is mmaction2's stamp {NTU_STAMP}, at least twice the video, and every joint of the clip "
                    "lies within the video's own frame: rescaled, the poses would shrink into its corner")
        fits_video, fits_file = inside(h, w), inside(ph, pw)
        hint = ("; the joints fit the video's pixels, not img_shape's: img_shape=video is likely right"
                if span is not None and fits_video and not fits_file else
                "; img_shape=video if the file is ntu_pose_extraction.py's, img_shape=file if its frames were "
                "really 1920x1080" if ambiguous else
                "; the joints fit img_shape's pixels, not the video's: img_shape=file is likely right"
                if span is not None and fits_file and not fits_video else "")
        raise PoseSourceError(
            f"clip {clip.clip_id!r}: {file} gives annotation {name!r} img_shape (h, w) = ({ph}, {pw}), but the video "
            f"is ({h}, {w}){joints}: {why}. Say which frame the joints are "
            f"in: --pose-source 'pkl:{self.path},img_shape=video' (the video's pixels; img_shape ignored, as for "
            f"mmaction2's ntu_pose_extraction.py, which writes (1080, 1920) for every video) or "
            f"',img_shape=file' (img_shape's pixels, rescaled to the video){hint}")

    def _names(self, clip: ClipRecord, dataset: Optional[DatasetAdapter]) -> tuple[str, ...]:
        return (clip.clip_id,) + (tuple(dataset.clip_aliases(clip)) if dataset is not None else ())

    def _find(self, clip: ClipRecord, dataset: Optional[DatasetAdapter]) -> tuple[Optional[str], Any]:
        """(the name that matched, the annotation or the names of several), or (None, None)."""
        if dataset is None and clip.extra.get(NAMED_PATH):
            return self._find_by_path(clip.extra[NAMED_PATH], clip.video)
        by_key = self._data().by_key
        for name in self._names(clip, dataset):
            hit = by_key.get(name)
            if hit is not None:
                base = clip.clip_id.rsplit("/", 1)[-1]
                if name in (base, base.split(".")[0]) and name != clip.clip_id and not isinstance(hit, list) \
                        and self.match != "name":  # (a dataset's own alias, FineGym's frame_dir, is unique)
                    self._refuse_other_folder(clip, name, hit)
                return name, hit
        return None, None

    def _known_as(self, hit: Any) -> list[str]:
        """What an annotation names its video by: its name, and its file's path under a folder source."""
        return [hit.name] + ([os.path.splitext(os.path.relpath(hit.file, self.path))[0]] if os.path.isdir(self.path)
                             else [])

    def _refuse_other_folder(self, clip: ClipRecord, name: str, hit: Any) -> None:
        """A clip matched by another name than its id (its base name) takes the annotation only where
        the annotation's folder, when it names one, is the clip's: ``w/demo``'s joints went into
        clip ``v/demo`` (as ``pipeline predict`` refuses; ``match=name`` takes the base name alone)."""
        videos = [_parts(clip.clip_id)] + ([_parts(clip.video), _parts(os.path.realpath(clip.video))]
                                           if clip.video else [])
        # (the base names may differ: a dataset's alias, FineGym's frame_dir; the folder is what is checked)
        if not any(len(a) < 2 or any(len(v) >= 2 and v[-2] == a[-2] for v in videos)
                   for a in map(_parts, self._known_as(hit))):
            raise PoseSourceError(
                f"clip {clip.clip_id!r}: the annotation of {self.path} known by its base name {name!r} is {hit.name!r} "
                f"(in {hit.file}), which names another folder: its poses may be another video's. Name the clip's "
                "folder in the annotation, or, where the file's folders are only where the videos were when it was "
                f"made, --pose-source 'pkl:{self.path},match=name' (the base name alone)")

    def _find_by_path(self, path: str, real: Optional[str] = None) -> tuple[Optional[str], Any]:
        """The annotation of a video named by its path (``pipeline predict``, no dataset to say what
        its clip id is): found by the path's trailing parts, longest first, and taken only where the
        annotation's name agrees with the path (as named, or ``real``: with its symlinks resolved)
        in the folder above the video as well, when it names one. ``cam1/clip_001`` is not the
        poses of ``.../cam2/clip_001.mp4`` (their base names agree): that is refused naming both and
        the option (``match=name``) that takes the base name alone, never read as that video's."""
        by_key = self._data().by_key
        videos = [_parts(p) for p in dict.fromkeys(p for p in (path, real) if p)]
        near = None
        for name in dict.fromkeys(k for p in (path, real) if p for k in annotation_keys(p)):
            hit = by_key.get(name)
            if hit is None or isinstance(hit, list):  # several: _annotation names them
                if hit is not None:
                    return name, hit
                continue
            if self.match == "name" or any(_same_folder(_parts(k), v) for k in self._known_as(hit) for v in videos):
                return name, hit
            near = near or hit
        if near is not None:
            raise PoseSourceError(
                f"video {path}: the only annotation of {self.path} with its name is {near.name!r} (in {near.file}), "
                "which names another folder: its poses may be another video's. Give the video under the folder the "
                "annotation names, or, where the file's folders are only where the videos were when it was made, "
                "--pose-option match=name (the base name alone)")
        return None, None

    def _annotation(self, clip: ClipRecord, dataset: Optional[DatasetAdapter]) -> _Annotation:
        name, hit = self._find(clip, dataset)
        if hit is None:
            raise PoseSourceError(f"clip {clip.clip_id!r} has no annotation in {self.path}")
        if isinstance(hit, list):
            raise PoseSourceError(f"clip {clip.clip_id!r}: several annotations are known as {name!r} in "
                                  f"{self.path}: {', '.join(repr(n) for n in hit)}")
        return hit

    def clips_without_poses(self, clips: list[ClipRecord], dataset: Optional[DatasetAdapter]) -> list[str]:
        """Ids of ``clips`` no annotation is known for, or whose annotation holds no person (M = 0:
        pyskl's custom_2d_skeleton.py writes that for a video in which nothing was detected). Two
        clips that would take one annotation
        (e.g. ``v/c0`` and ``w/c0`` of a custom dataset, both matched by the base name ``c0``) raise
        :class:`PoseSourceError` naming them: neither could be given the right poses."""
        missing, taken, clashes = [], {}, []
        for c in clips:
            name, hit = self._find(c, dataset)
            if hit is None or (not isinstance(hit, list) and hit.data["keypoint"].shape[0] == 0):
                missing.append(c.clip_id)
            elif not isinstance(hit, list):
                other = taken.setdefault(id(hit), (c.clip_id, name, hit))
                if other[0] != c.clip_id:
                    clashes.append((other, (c.clip_id, name)))
        if clashes:
            (c1, n1, a), (c2, n2) = clashes[0]
            raise PoseSourceError(
                f"{len(clashes)} clip(s) would take another clip's poses: clips {c1!r} and {c2!r} both match "
                f"annotation {a.name!r} of {a.file} (as {n1!r} and {n2!r}). Name the annotations apart: "
                "frame_dir (or filename) as the video's path under the dataset root without its extension "
                f"(e.g. {c2!r}), or give the videos distinct base names"
                + (f"; also: {', '.join(f'{x[0][0]!r}/{x[1][0]!r}' for x in clashes[1:4])}" if len(clashes) > 1 else ""))
        return missing

    def clip_info(self, clip: ClipRecord) -> dict:
        return dict(self.selections.get(clip.clip_id, {}))

    def close(self) -> None:
        self.selections.clear()
        self._matched.clear()
