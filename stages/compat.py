"""Import guards for the CPU machines this project is installed on.

Two known breakages, each repaired only when exactly that breakage is present, so a GPU server
with a matching torchvision and a full mmcv is left untouched:

* torchvision 0.28.0 (the only build for torch 2.13) is a CUDA build; on a CPU-only torch its
  import fails with ``operator torchvision::nms does not exist``. Nothing here needs torchvision's
  compiled ops, so we declare the two missing op schemas and import again.
* mmcv-lite lacks ``mmcv._ext``; ``mmpose.apis`` imports ``mmcv.ops`` at import time (for a head
  HRNet never uses). We install a stand-in ``mmcv.ops`` whose every attribute raises when used.
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


class _MissingOps(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def _unavailable(*args, **kwargs):
            raise RuntimeError(
                f"mmcv.ops.{name} needs full mmcv with compiled ops; this install has mmcv-lite. "
                "HRNet top-down pose does not use it. On a GPU server install full mmcv<2.2."
            )

        return _unavailable


def ensure_mmpose() -> None:
    """Make ``import mmpose.apis`` work with mmcv-lite (and with torchvision on a CPU torch)."""
    ensure_torchvision()
    try:
        importlib.import_module("mmcv.ops")
    except (ImportError, ModuleNotFoundError, OSError):
        stub = _MissingOps("mmcv.ops")
        stub.__path__ = []  # a package, so "from mmcv.ops.x import y" resolves to the stub
        sys.modules["mmcv.ops"] = stub
        import mmcv

        mmcv.ops = stub
