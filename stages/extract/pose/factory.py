"""Build a pose source from its ``--pose-source`` spec; the built-in sources register on import."""
from __future__ import annotations

from typing import Any

from stages.extract.pose import dataset_pose, hrnet, skeleton_pkl  # noqa: F401  (register the built-ins)
from stages.extract.pose.base import PoseSource
from stages.registry import POSE_SOURCES, lookup


def create_pose_source(spec: str, **options: Any) -> PoseSource:
    """``hrnet`` | ``dataset`` | ``pkl:PATH`` -> a ready :class:`PoseSource`."""
    name, _, arg = spec.partition(":")
    builder = lookup(POSE_SOURCES, name)
    if arg:
        options["path"] = arg
    return builder(**options)
