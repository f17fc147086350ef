"""What a dataset adapter gives stage one: the clip list, class texts, and optional poses/boxes.

An adapter only *parses* (annotation files, folder layouts); it never decodes video. Everything
that determines the bytes of a cache entry must be visible here: the clip list with each clip's
source file and cut, the class texts, and the annotation files (``source_files``) whose identity
goes into the entry key.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Optional

import numpy as np

from cache import default_root
from stages.settings import Settings, canonical_text, schema_fields

SPLITS = ("train", "val", "test")


class DatasetLayoutError(ValueError):
    """The files under ``--root`` do not look like the dataset: says what was expected where."""


#: ``ClipRecord.extra`` key of a video named on ``pipeline predict``'s command line: its absolute
#: path as named (symlinks not resolved), whose folders a skeleton file's annotation must agree with
NAMED_PATH = "named_path"


@dataclass(frozen=True)
class ClipRecord:
    """One labelled clip. Exactly one of the cut styles is used, or none (the whole file)."""

    clip_id: str
    split: str
    label: int
    video: Optional[str]  # absolute path; may not exist (reported as missing)
    start_time: Optional[float] = None  # seconds, cut from a longer video
    end_time: Optional[float] = None
    start_frame: Optional[int] = None  # decoded-frame range [start_frame, end_frame)
    end_frame: Optional[int] = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def cut(self) -> dict:
        """The cut as plain values, for keys and manifests."""
        return {
            k: v
            for k, v in (
                ("start_time", self.start_time),
                ("end_time", self.end_time),
                ("start_frame", self.start_frame),
                ("end_frame", self.end_frame),
            )
            if v is not None
        }


@dataclass
class PoseTrack:
    """2D joints for every decoded frame of one clip, in the clip's original pixel coordinates."""

    keypoints: np.ndarray  # (F, V, 2) float32, x then y
    scores: np.ndarray  # (F, V) float32 in [0, 1]; 0 = joint not seen
    frame_size: tuple[int, int]  # (height, width) of the frames the coordinates refer to
    # (F, n, 4) xyxy box of each of n people per frame (NaN: absent), when a top-down source kept
    # several people (stage-one setting ``persons``); None otherwise
    person_boxes: Optional[np.ndarray] = None

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        if self.keypoints.ndim != 3 or self.keypoints.shape[-1] != 2:
            raise ValueError(f"keypoints must be (F, V, 2), got {self.keypoints.shape}")
        if self.scores.shape != self.keypoints.shape[:2]:
            raise ValueError(f"scores {self.scores.shape} do not match keypoints {self.keypoints.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass
class DatasetIndex:
    """The parsed dataset: what ``pipeline dataset info`` reports and what extraction iterates."""

    name: str
    classes: list[str]  # label text of class i
    coarse_type: str  # the prompt's "{coarse type}" word, e.g. "gymnastic"
    skeleton: str  # joint layout of dataset-shipped poses (and of the entry): "coco17" | "toyota13"
    clips: list[ClipRecord]
    root: Optional[str] = None
    source_files: list[str] = field(default_factory=list)  # annotation files defining the index
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.clips:
            out[c.split] = out.get(c.split, 0) + 1
        return out

    def missing(self) -> list[ClipRecord]:
        """Clips whose video file is absent (checked with a stat, nothing decoded)."""
        seen: dict[str, bool] = {}
        out = []
        for c in self.clips:
            if c.video is None:
                out.append(c)
                continue
            if c.video not in seen:
                seen[c.video] = os.path.isfile(c.video)
            if not seen[c.video]:
                out.append(c)
        return out

    def select(self, split: Optional[str] = None) -> list[ClipRecord]:
        return [c for c in self.clips if split is None or c.split == split]


@dataclass(frozen=True)
class AdapterOptions(Settings):
    """A dataset adapter's options (``-o KEY=VALUE``, ``data.dataset_options``): each adapter
    declares its own as a subclass (its fields, types, defaults and help are the one place they
    are stated; ``pipeline dataset info --dataset X --options`` lists them)."""

    what = "dataset option"


class DatasetAdapter:
    """Base class of every dataset. Subclasses set the class attributes and implement ``load``.

    ``options`` are checked and converted by the adapter's :attr:`Options` schema (an unknown key or
    a value of the wrong type is an error naming it, ``source`` and the valid keys); the adapter
    reads them as attributes of :attr:`options`.
    """

    #: the adapter's option schema
    Options: ClassVar[type] = AdapterOptions

    name: str = ""
    coarse_type: str = "human"
    skeleton: str = "coco17"
    # Stage-one settings this dataset wants unless the user overrides them (e.g. the demo's
    # pose_source="dataset" and a smaller short side).
    extract_defaults: Mapping[str, Any] = {}
    # Whether the dataset ships its own 2D poses (pose source "dataset").
    has_poses: bool = False
    # How the adapter reads the poses it ships, once that reading has changed from its first: joins
    # the ``dataset`` pose source's identity (so the entry key), so that an entry of the old reading
    # is not taken for one of the new. None: as first released.
    pose_reading: Optional[str] = None
    # Whether those poses hold every person of a clip (:meth:`dataset_people`), so stage one can
    # keep several per frame (setting ``persons``).
    multi_person_poses: bool = False
    needs_root: bool = True

    def __init__(self, root: Optional[os.PathLike] = None, *, options_source: str = "-o", **options: Any):
        self.options = self.check_options(options, source=options_source)
        #: the options that were given (not defaulted): the entry key hashes these (key_options)
        self.given_options = {k: getattr(self.options, k) for k in options}
        if root is None and self.needs_root:
            raise DatasetLayoutError(
                f"dataset {self.name!r} needs --root pointing at the dataset as its publishers distribute it"
            )
        self.root = Path(root).expanduser().resolve() if root is not None else None
        if self.needs_root and not self.root.is_dir():
            raise DatasetLayoutError(f"{self.name}: --root {self.root} is not a folder")

    @classmethod
    def check_options(cls, options: Optional[Mapping[str, Any]], source: str = "-o",
                      where: str = "") -> Any:
        """``options`` checked and converted by :attr:`Options` (an instance; missing keys default)."""
        return cls.Options.from_dict(dict(options or {}), where=where, source_of=lambda _k: source)

    @classmethod
    def key_options(cls, given: Mapping[str, Any]) -> dict[str, str]:
        """The given options as the entry key hashes them: converted, in one text form
        (:func:`stages.settings.canonical_text`), without those that say where or how, not what."""
        fields = schema_fields(cls.Options)
        conv = cls.check_options({k: v for k, v in given.items()}).to_dict()
        return {k: canonical_text(conv[k]) for k in sorted(given) if fields[k].in_key}

    def load(self, progress: Optional[Callable[[int, int], None]] = None) -> DatasetIndex:
        """Parse the dataset. ``progress(done, total)``, if given, is called by adapters that
        prepare data first (the demo generates its videos); it is an argument, not an option,
        so nothing that cannot travel to a worker process is ever stored in the adapter."""
        raise NotImplementedError

    def dataset_poses(self, clip: ClipRecord) -> PoseTrack:
        """The poses the dataset ships for ``clip`` (pose source ``dataset``)."""
        raise NotImplementedError(f"dataset {self.name!r} ships no poses; use --pose-source hrnet")

    def dataset_people(self, clip: ClipRecord) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Every person the dataset's poses hold for ``clip`` (datasets with
        :attr:`multi_person_poses`): joints ``(M, F, V, 2)``, scores ``(M, F, V)`` and the frame
        size (height, width) their pixels refer to."""
        raise NotImplementedError(f"dataset {self.name!r} ships one person's poses per clip")

    def person_boxes(self, clip: ClipRecord) -> Optional[np.ndarray]:
        """Per-frame person boxes ``(F, 4)`` xyxy in original pixels, or None (whole frame)."""
        return None

    def clips_without_poses(self, clips: list[ClipRecord]) -> Optional[list[str]]:
        """Ids of ``clips`` for which :meth:`dataset_poses` has nothing (None: not known before trying)."""
        return None

    def clip_aliases(self, clip: ClipRecord) -> tuple[str, ...]:
        """Other names other toolkits' files (mmaction2/pyskl skeleton pickles) give this clip."""
        return ()


def read_json(path: os.PathLike, kind: type = object, expected: str = "") -> Any:
    """A JSON annotation file, or :class:`DatasetLayoutError` naming it: not JSON, or not a ``kind``
    (``expected`` says what was expected)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except UnicodeDecodeError as e:
        raise DatasetLayoutError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DatasetLayoutError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, kind):
        raise DatasetLayoutError(f"{path}: expected {expected or kind.__name__}, got a {type(data).__name__}")
    return data


def default_data_root(cache_root: Optional[os.PathLike] = None) -> Path:
    """Where generated datasets (the demo) are written: ``$PEVL_DATA``, else ``<cache>/datasets``
    beside the cache they feed."""
    env = os.environ.get("PEVL_DATA")
    if env:
        return Path(env).expanduser()
    return Path(cache_root or default_root()) / "datasets"


def check_labels(index: DatasetIndex) -> None:
    """Fail early on labels outside ``[0, num_classes)`` or unknown split names."""
    n = index.num_classes
    for c in index.clips:
        if not 0 <= c.label < n:
            raise DatasetLayoutError(f"clip {c.clip_id}: label {c.label} outside [0, {n})")
        if c.split not in SPLITS:
            raise DatasetLayoutError(f"clip {c.clip_id}: split {c.split!r} not one of {SPLITS}")
