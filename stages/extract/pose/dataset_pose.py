"""Pose source ``dataset``: the 2D joints a dataset ships (the demo; Toyota-Smarthome)."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

from stages.datasets.base import ClipRecord, DatasetAdapter, PoseTrack
from stages.extract.pose.base import PoseContext, PoseSource, PoseSourceError
from stages.registry import POSE_SOURCES
from stages.settings import SettingsError


@POSE_SOURCES.register_module("dataset")
class DatasetPoseSource(PoseSource):
    name = "dataset"
    needs_frames = False
    multi_person = True  # for datasets whose poses hold every person (DatasetAdapter.multi_person_poses)

    @classmethod
    def from_options(cls, options: Any, context: PoseContext) -> PoseSource:
        return cls(dataset=context.dataset, persons=context.persons)

    def __init__(self, dataset: Optional[DatasetAdapter] = None, persons: int = 1):
        self.dataset = dataset
        self.persons = int(persons)
        self.selections: dict[str, dict] = {}
        if dataset is not None:
            if not dataset.has_poses:
                raise PoseSourceError(
                    f"dataset {dataset.name!r} ships no poses; use --pose-source hrnet or pkl:PATH")
            if self.persons > 1 and not dataset.multi_person_poses:
                raise SettingsError(
                    f"--pose-source dataset: the poses dataset {dataset.name!r} ships hold one person per clip, but the "
                    f"stage-one setting persons={self.persons} (--persons, extract.persons) asks for {self.persons}. "
                    "Use --pose-source hrnet (with --person-detector) or pkl:PATH, or persons=1", "persons")
            self.skeleton = dataset.skeleton

    def identity(self) -> dict:
        # The pose files' identities are part of each clip's source identity (see extraction).
        reading = getattr(self.dataset, "pose_reading", None)
        return {"name": self.name, "skeleton": self.skeleton, **({"reading": reading} if reading else {})}

    def clips_without_poses(self, clips: list[ClipRecord], dataset: Optional[DatasetAdapter]) -> Optional[list[str]]:
        ds = dataset or self.dataset
        return ds.clips_without_poses(clips) if ds is not None else None

    def estimate(self, clip: ClipRecord, frames: Optional[Iterable[np.ndarray]], boxes: Optional[np.ndarray],
                 dataset: DatasetAdapter) -> PoseTrack:
        if self.persons == 1:
            return dataset.dataset_poses(clip)
        # several people: ranked and laid out as a skeleton file's M tracks are
        from stages.extract.pose.skeleton_pkl import person_major, rank_persons

        kp, sc, size = dataset.dataset_people(clip)
        if len(kp) == 0:
            raise PoseSourceError(f"clip {clip.clip_id!r}: the dataset's poses hold no person")
        order, rule = rank_persons(kp, sc)
        kept = order[: self.persons]
        choice = {"persons": kept, "rule": rule, "num_persons": int(len(kp))}
        if len(kept) < self.persons:
            choice["missing_persons"] = self.persons - len(kept)
        self.selections[clip.clip_id] = choice
        return PoseTrack(person_major(kp[kept], self.persons), person_major(np.clip(sc[kept], 0, 1), self.persons),
                         frame_size=tuple(size))

    def clip_info(self, clip: ClipRecord) -> dict:
        return dict(self.selections.get(clip.clip_id, {}))
