"""Imports every built-in pose source so it registers itself in ``POSE_SOURCES``."""
import importlib

from stages.extract import dataset_pose, hrnet  # noqa: F401

try:  # mmaction2/pyskl skeleton files
    importlib.import_module("stages.extract.skeleton_pkl")
except ModuleNotFoundError as e:
    if e.name != "stages.extract.skeleton_pkl":
        raise
