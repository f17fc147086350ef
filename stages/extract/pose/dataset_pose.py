"""Pose source ``dataset``: the 2D joints a dataset ships (the demo; Toyota-Smarthome)."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

from stages.datasets.base import ClipRecord, DatasetAdapter, PoseTrack
from stages.extract.pose.base import PoseContext, PoseSource, PoseSourceError
from stages.registry import POSE_SOURCES


@POSE_SOURCES.register_module("dataset")
class DatasetPoseSource(PoseSource):
    name = "dataset"
    needs_frames = False

    @classmethod
    def from_options(cls, options: Any, context: PoseContext) -> PoseSource:
        return cls(dataset=context.dataset)

    def __init__(self, dataset: Optional[DatasetAdapter] = None):
        self.dataset = dataset
        if dataset is not None:
            if not dataset.has_poses:
                raise PoseSourceError(
                    f"dataset {dataset.name!r} ships no poses; use --pose-source hrnet or pkl:PATH")
            self.skeleton = dataset.skeleton

    def identity(self) -> dict:
        # The pose files' identities are part of each clip's source identity (see extraction).
        return {"name": self.name, "skeleton": self.skeleton}

    def clips_without_poses(self, clips: list[ClipRecord], dataset: Optional[DatasetAdapter]) -> Optional[list[str]]:
        ds = dataset or self.dataset
        return ds.clips_without_poses(clips) if ds is not None else None

    def estimate(self, clip: ClipRecord, frames: Optional[Iterable[np.ndarray]], boxes: Optional[np.ndarray],
                 dataset: DatasetAdapter) -> PoseTrack:
        return dataset.dataset_poses(clip)
