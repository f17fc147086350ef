"""Import guards for the CPU machines this project is installed on.

Two known breakages, each repaired only when exactly that breakage is present, so a GPU server
with a matching torchvision and a full mmcv is left untouched:

* torchvision 0.28.0 (the only build for torch 2.13) is a CUDA build; on a CPU-only torch its
  import fails with ``operator torchvision::nms does not exist``. Nothing here needs torchvision's
  compiled ops, so we declare the two missing op schemas and import again.
* mmcv-lite lacks ``mmcv._ext``; ``mmpose.apis`` imports ``mmcv.ops`` at import time (for a head
  HRNet never uses). We install a stand-in ``mmcv.ops`` whose every attribute raises when used.
* ``xtcocotools`` (a compiled package mmpose imports for its COCO datasets and metrics, which top-down
  inference never uses) may be missing where it could not be built (a GPU image without Python's
  headers: ``bench/gpu_check.sh`` builds it from source there). Only when it cannot be imported,
  stand-ins of its three modules take its place, raising when used.
"""
from __future__ import annotations

import importlib
import sys
import types

_TV_FIXED = False


def ensure_torchvision() -> None:
    """Make ``import torchvision`` work on a CPU-only torch. Call before anything imports it."""
    global _TV_FIXED
    if _TV_FIXED or "torchvision" in sys.modules:
        return
    try:
        importlib.import_module("torchvision")
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        import torch.library

        lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - must stay alive
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        globals()["_TV_LIB"] = lib
        importlib.import_module("torchvision")
    _TV_FIXED = True


class _Missing(types.ModuleType):
    """A stand-in module whose every attribute raises, saying why, when used."""

    def __init__(self, name: str, why: str):
        super().__init__(name)
        self._why = why

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        why = self._why

        def _unavailable(*args, **kwargs):
            raise RuntimeError(f"{self.__name__}.{name}: {why}")

        return _unavailable


_NO_MMCV_OPS = ("needs full mmcv with compiled ops; this install has mmcv-lite. HRNet top-down pose does not "
                "use it. On a GPU server install full mmcv<2.2.")
_NO_XTCOCOTOOLS = ("xtcocotools is not installed (it could not be built here); mmpose's COCO datasets and "
                   "metrics need it, top-down pose inference does not. pip install xtcocotools")


def _ensure_xtcocotools() -> None:
    try:
        importlib.import_module("xtcocotools")
    except ModuleNotFoundError as e:
        if e.name != "xtcocotools":  # installed, but broken inside: say so, as mmpose would
            raise
        root = _Missing("xtcocotools", _NO_XTCOCOTOOLS)
        root.__path__ = []
        sys.modules["xtcocotools"] = root
        for sub in ("coco", "cocoeval", "mask"):
            mod = _Missing(f"xtcocotools.{sub}", _NO_XTCOCOTOOLS)
            sys.modules[mod.__name__] = mod
            setattr(root, sub, mod)


def ensure_mmpose() -> None:
    """Make ``import mmpose.apis`` work with mmcv-lite (and with torchvision on a CPU torch), and
    without xtcocotools where it could not be built."""
    ensure_torchvision()
    _ensure_xtcocotools()
    try:
        importlib.import_module("mmcv.ops")
    except (ImportError, ModuleNotFoundError, OSError):
        stub = _Missing("mmcv.ops", _NO_MMCV_OPS)
        stub.__path__ = []  # a package, so "from mmcv.ops.x import y" resolves to the stub
        sys.modules["mmcv.ops"] = stub
        import mmcv

        mmcv.ops = stub
