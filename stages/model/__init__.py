"""PeVL (CVPR 2024) and its sibling PGVT (with AIM's baseline) as a library: tensors in, similarities / losses / features out.

open_clip is imported behind :func:`stages.compat.ensure_torchvision` by :mod:`.clip_loader`. The
tiny open_clip config ``PeVL-tiny`` (ViT width 64, 2 layers, 112 px, patch 16) is registered on
first use.
"""
from .clip_loader import TINY_ARCH, load_clip, open_clip_module
from .factory import build_model, model_settings
from .pevl import PeVL
from .pgvt import PGVT
from .settings import PeVLSettings, PGVTSettings

__all__ = ["PeVL", "PGVT", "build_model", "model_settings", "PeVLSettings", "PGVTSettings", "load_clip",
           "open_clip_module", "TINY_ARCH"]
