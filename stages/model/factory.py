"""``build_model(cfg)``: one factory for PeVL, its text-free linear-head variants and the baseline."""
from __future__ import annotations

from typing import Any, Mapping

from pipeline.registry import Registry

from .pevl import DEFAULT_MODEL_CFG, PeVL, merge_cfg

MODELS: Registry = Registry("model")


@MODELS.register("PeVL")
def _pevl(cfg: dict) -> PeVL:
    return PeVL(cfg)


@MODELS.register("LinearHeadPeVL")
def _linear_head(cfg: dict) -> PeVL:
    """Table 7's V, P, V+P rows (and Table 9): no text, linear head + cross-entropy."""
    cfg = dict(cfg)
    mods = [m for m in cfg.get("modalities", DEFAULT_MODEL_CFG["modalities"]) if m != "text"]
    cfg["modalities"] = mods
    return PeVL(cfg)


@MODELS.register("CLIPBaseline")
def _baseline(cfg: dict) -> PeVL:
    """Table 4's baseline: frozen CLIP video + text encoders, trainable projections, vanilla loss."""
    base = dict(modalities=["video", "text"], adapters=dict(video=False, pose=False, text=False),
                ucmr=dict(num_blocks=0), fusion="concat", sgmc=dict(loss="vanilla"), train_proj=True)
    return PeVL(merge_cfg(base, {k: v for k, v in cfg.items() if k != "type"}))


def _to_dict(cfg: Any) -> dict:
    if hasattr(cfg, "to_dict"):  # mmengine Config / ConfigDict
        cfg = cfg.to_dict()
    if not isinstance(cfg, Mapping):
        raise TypeError(f"model config must be a mapping, got {type(cfg).__name__}")
    out = {}
    for k, v in cfg.items():
        out[k] = _to_dict(v) if isinstance(v, Mapping) or hasattr(v, "to_dict") else (
            list(v) if isinstance(v, tuple) else v)
    return out


def build_model(cfg: Any) -> PeVL:
    """Build from a model config dict (or mmengine ConfigDict); ``type`` picks the registry entry."""
    cfg = _to_dict(cfg)
    kind = cfg.get("type", "PeVL")
    return MODELS.get(kind)(cfg)
