"""PeVL (CVPR 2024) as a library: tensors in, similarities / losses / features out.

Call ``pipeline.compat.ensure_torchvision()`` is done for you by :mod:`.clip_loader` before
open_clip is imported. The tiny open_clip config ``PeVL-tiny`` (ViT width 64, 2 layers, 112 px,
patch 16) is registered on first use.
"""
from .clip_loader import TINY_ARCH, load_clip, open_clip_module
from .factory import MODELS, build_model
from .pevl import DEFAULT_MODEL_CFG, PeVL, merge_cfg

__all__ = ["PeVL", "build_model", "MODELS", "DEFAULT_MODEL_CFG", "merge_cfg", "load_clip",
           "open_clip_module", "TINY_ARCH"]
