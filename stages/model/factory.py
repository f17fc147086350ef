"""``build_model(cfg)``: one factory for PeVL, its text-free linear-head variants and the baseline.

The builders register in :data:`stages.registry.MODELS` (the mmengine-facing model registry,
scope ``stages``); ``cfg['type']`` picks one. Each takes the config's keys as keyword arguments,
so ``MODELS.build(cfg)`` works as well as :func:`build_model`.
"""
from __future__ import annotations

from typing import Any, Mapping

from stages.nested_config import deep_merge, to_plain
from stages.registry import MODELS, lookup

from .pevl import DEFAULT_MODEL_CFG, PeVL


@MODELS.register_module("PeVL")
def _pevl(**cfg) -> PeVL:
    return PeVL(cfg)


@MODELS.register_module("LinearHeadPeVL")
def _linear_head(**cfg) -> PeVL:
    """Table 7's V, P, V+P rows (and Table 9): no text, linear head + cross-entropy."""
    mods = [m for m in cfg.get("modalities", DEFAULT_MODEL_CFG["modalities"]) if m != "text"]
    cfg["modalities"] = mods
    return PeVL(cfg)


#: What Table 4's baseline is; these switches win over whatever the experiment's model config says.
BASELINE_SWITCHES = dict(modalities=["video", "text"], adapters=dict(video=False, pose=False, text=False),
                         ucmr=dict(num_blocks=0), fusion="concat", sgmc=dict(loss="vanilla"), train_proj=True)


@MODELS.register_module("CLIPBaseline")
def _baseline(**cfg) -> PeVL:
    """Table 4's baseline: "the frozen CLIP model with a trainable projection layer", video + text
    encoders, 16 frames, vanilla contrastive loss. The switches are the type's definition, so they
    are merged over the experiment's model config (which holds the full PeVL's values); the rest
    (CLIP weights, frame counts, prompt, class count) comes from the config."""
    return PeVL(deep_merge({k: v for k, v in cfg.items() if k != "type"}, BASELINE_SWITCHES))


def build_model(cfg: Any) -> PeVL:
    """Build from a model config dict (or mmengine ConfigDict); ``type`` picks the registry entry."""
    if not (isinstance(cfg, Mapping) or hasattr(cfg, "to_dict")):
        raise TypeError(f"model config must be a mapping, got {type(cfg).__name__}")
    cfg = to_plain(cfg)
    return lookup(MODELS, cfg.get("type", "PeVL"))(**cfg)
