"""Pose sources: HRNet through mmpose, the poses a dataset ships, mmaction2/pyskl skeleton files.

``base`` says what a source is, the implementations register in
:data:`stages.registry.POSE_SOURCES`, ``factory`` builds one from a ``--pose-source`` spec.
"""
from stages.extract.pose.base import PoseSource, PoseSourceError  # noqa: F401
from stages.extract.pose.factory import create_pose_source  # noqa: F401
