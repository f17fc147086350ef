"""``--dataset demo``: a small synthetic fine-grained action dataset, generated on first use.

An articulated figure performs compositional actions (class texts are sentences of shared
sub-action phrases, as in FineGym); three class pairs differ only in a fast motion (zero vs two
turns, two vs three kicks or waves) that 16 evenly spaced frames alias but 48 pose frames resolve.
The dataset ships ground-truth COCO-17 joints as its own poses. See ``docs/demo.md``.

Options: :class:`DemoOptions`. ``load(progress=callable(done, total))`` reports generation progress.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from stages.datasets.base import (
    AdapterOptions,
    ClipRecord,
    DatasetAdapter,
    DatasetIndex,
    DatasetLayoutError,
    PoseTrack,
    default_data_root,
)
from stages.devices import usable_cpus
from stages.registry import DATASET_ADAPTERS
from stages.settings import field
from stages.datasets.demo import generate as gen
from stages.datasets.demo import skeleton_motion

log = logging.getLogger(__name__)

__all__ = ["DemoDataset", "gen", "skeleton_motion"]


_D = gen.DEFAULT_CONFIG


@dataclass(frozen=True)
class DemoOptions(AdapterOptions):
    seed: int = field(_D["seed"], help="Generator seed.")
    clips_per_class: tuple[int, ...] = field(tuple(_D["clips_per_class"]),
                                             help="Clips per class: train,val (or N: N train, N/3 val).")
    num_frames: tuple[int, ...] = field(tuple(_D["num_frames"]),
                                        help="Frame counts a clip draws from (each >= 32; multiples of 16 keep the "
                                             "16-frame aliasing exact).")
    size: tuple[int, int] = field(tuple(_D["size"]), help="Frame width,height (even).")
    fps: int = field(_D["fps"], help="Frames per second of the generated videos.")
    bystanders: float = field(gen.OPTIONAL_CONFIG["bystanders"], help="Fraction of the clips with a second, idle "
                              "figure standing beside and behind the performer (for --persons 2; 0: none, the "
                              "dataset of before).")
    data_root: Optional[Path] = field(None, in_key=False, help="Where generated datasets live (default: $PEVL_DATA, "
                                                               "else <cache root>/datasets).")
    workers: Optional[int] = field(None, in_key=False, help="Processes generating the videos (default: up to 2).")


@DATASET_ADAPTERS.register_module("demo")
class DemoDataset(DatasetAdapter):
    name = "demo"
    coarse_type = "gymnastic"
    skeleton = "coco17"
    has_poses = True
    multi_person_poses = True  # the performer and any idle bystander (option bystanders)
    needs_root = False
    extract_defaults = dict(pose_source="dataset", short_side=128)
    Options = DemoOptions

    def __init__(self, root: Optional[os.PathLike] = None, **options: Any):
        super().__init__(root, **options)
        o = self.options
        self.workers = o.workers or min(2, usable_cpus())
        cpc = o.clips_per_class
        self.config = gen.normalize_config(seed=o.seed, clips_per_class=cpc[0] if len(cpc) == 1 else list(cpc),
                                           num_frames=list(o.num_frames), size=list(o.size), fps=o.fps,
                                           bystanders=o.bystanders)
        if self.root is None:
            base = o.data_root or default_data_root()
            self.root = (base / gen.config_tag(self.config)).expanduser().resolve()
        self._frame_size = (self.config["size"][1], self.config["size"][0])

    def load(self, progress: Optional[Callable[[int, int], None]] = None) -> DatasetIndex:
        gen.ensure(self.root, self.config, progress=progress, workers=self.workers)
        ann_path = self.root / gen.ANNOTATIONS
        try:
            ann = json.loads(ann_path.read_text())
        except (OSError, ValueError) as e:
            raise DatasetLayoutError(f"cannot read {ann_path}: {e}") from e
        classes = [c["label"] for c in sorted(ann["classes"], key=lambda c: c["id"])]
        clips = [
            ClipRecord(
                clip_id=c["id"],
                split=c["split"],
                label=int(c["label"]),
                video=str(self.root / c["video"]),
                extra={"poses": str(self.root / c["poses"]), "num_frames": int(c["num_frames"]),
                       "fps": ann["fps"]},
            )
            for c in ann["clips"]
        ]
        self._frame_size = tuple(ann["frame_size"])  # type: ignore[assignment]
        return DatasetIndex(
            name=self.name,
            classes=classes,
            coarse_type=ann.get("coarse_type", self.coarse_type),
            skeleton=self.skeleton,
            clips=clips,
            root=str(self.root),
            source_files=[str(ann_path)],
            meta={
                "fps": ann["fps"],
                "frame_size": list(ann["frame_size"]),
                "generator_version": ann["generator_version"],
                "seed": ann["seed"],
                "class_keys": [c["key"] for c in sorted(ann["classes"], key=lambda c: c["id"])],
                "sub_actions": [c["sub_actions"] for c in sorted(ann["classes"], key=lambda c: c["id"])],
                "aliasing_pairs": ann["aliasing_pairs"],
            },
        )

    def _pose_path(self, clip: ClipRecord) -> Path:
        p = clip.extra.get("poses") if clip.extra else None
        return Path(p) if p else self.root / "poses" / f"{clip.clip_id}.npz"

    def dataset_poses(self, clip: ClipRecord) -> PoseTrack:
        path = self._pose_path(clip)
        try:
            kp, sc = gen.read_poses(path)
        except (OSError, KeyError, ValueError) as e:
            raise DatasetLayoutError(f"demo clip {clip.clip_id}: cannot read poses {path}: {e}") from e
        return PoseTrack(keypoints=kp, scores=sc, frame_size=tuple(self._frame_size))

    def dataset_people(self, clip: ClipRecord) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """The performer and the bystander, if the clip has one: ``(M, F, 17, 2)``, ``(M, F, 17)``."""
        path = self._pose_path(clip)
        try:
            kp, sc = gen.read_people(path)
        except (OSError, KeyError, ValueError) as e:
            raise DatasetLayoutError(f"demo clip {clip.clip_id}: cannot read poses {path}: {e}") from e
        return kp, sc, tuple(self._frame_size)

    def person_boxes(self, clip: ClipRecord) -> Optional[np.ndarray]:
        """Ground-truth boxes around the seen joints (plus a head/limb margin), xyxy per frame."""
        track = self.dataset_poses(clip)
        h, w = track.frame_size
        kp, sc = track.keypoints, track.scores
        seen = sc > 0
        big = np.where(seen[..., None], kp, np.nan)
        with np.errstate(all="ignore"), _quiet_nan():
            lo = np.nanmin(big, axis=1)
            hi = np.nanmax(big, axis=1)
        margin = 0.12 * np.nan_to_num(hi[:, 1] - lo[:, 1], nan=h / 2)[:, None] + 4.0
        boxes = np.concatenate([lo - margin, hi + margin], axis=1)
        boxes = np.where(np.isnan(boxes), np.array([0, 0, w, h], dtype=np.float32), boxes)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return boxes.astype(np.float32)


class _quiet_nan:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)
