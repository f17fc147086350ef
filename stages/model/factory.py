"""``build_model(cfg)``: one factory for PeVL, its text-free and baseline variants, and PGVT / AIM.

The builders register in :data:`stages.registry.MODELS` (the mmengine-facing model registry,
scope ``stages``), each with the schema of its config (:mod:`.settings`); ``cfg['type']`` picks
one. :func:`model_settings` checks a config against its type's schema: an unknown key at any
depth, or a value of the wrong type, is an error that names it and where it came from.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Optional

from stages.nested_config import deep_merge, to_plain
from stages.registry import MODELS, get_registered
from stages.settings import SettingsError

from .frozen_clip import FrozenCLIPModel
from .pevl import PeVL
from .pgvt import PGVT
from .settings import PeVLSettings, PGVTSettings


def _register(name: str, settings: type, fixed: Optional[Callable[[dict], dict]] = None,
              fixed_why: str = "") -> Callable:
    """Register a builder under ``name`` with its config schema (``builder.settings``) and, for a
    type whose definition fixes some switches, ``fixed(cfg)``: those switches, merged over the
    config before it is checked (:func:`model_settings`), so that the config printed, saved and
    hashed is the model built; ``fixed_why`` says what the type is."""
    def deco(fn: Callable) -> Callable:
        fn.settings = settings
        fn.fixed = fixed
        fn.fixed_why = fixed_why
        MODELS.register_module(name, module=fn)
        return fn
    return deco


@_register("PeVL", PeVLSettings)
def _pevl(**cfg) -> PeVL:
    return PeVL(cfg)


def _without_text(cfg: dict) -> dict:
    return {"modalities": [m for m in cfg.get("modalities", PeVLSettings().modalities) if m != "text"]}


@_register("LinearHeadPeVL", PeVLSettings, fixed=_without_text,
           fixed_why="Table 7's and Table 9's text-free rows: a linear head and cross-entropy, no text")
def _linear_head(**cfg) -> PeVL:
    """Table 7's V, P, V+P rows (and Table 9): no text, linear head + cross-entropy."""
    return PeVL(cfg)


#: What Table 4's baseline is; these switches win over whatever the experiment's model config says.
BASELINE_SWITCHES = dict(modalities=["video", "text"], adapters=dict(video=False, pose=False, text=False),
                         ucmr=dict(num_blocks=0), fusion="concat", sgmc=dict(loss="vanilla"), train_proj=True)


@_register("CLIPBaseline", PeVLSettings, fixed=lambda cfg: copy.deepcopy(BASELINE_SWITCHES),
           fixed_why="Table 4's baseline: frozen CLIP, video and text, a trainable projection, the vanilla loss")
def _baseline(**cfg) -> PeVL:
    """Table 4's baseline: "the frozen CLIP model with a trainable projection layer", video + text
    encoders, 16 frames, vanilla contrastive loss. The switches (:data:`BASELINE_SWITCHES`) are the
    type's definition, so :func:`model_settings` merges them over the experiment's model config
    (which holds the full PeVL's values); the rest (CLIP weights, frame counts, prompt, class
    count) comes from the config."""
    return PeVL(cfg)


@_register("PGVT", PGVTSettings)
def _pgvt(**cfg) -> PGVT:
    """PGVT, or AIM's baseline with ``blocks='aim'`` (PGVT Table 4 (1)-(3))."""
    return PGVT(cfg)


def model_settings(cfg: Any, where: str = "model", source_of: Optional[Callable] = None) -> Any:
    """``cfg`` checked against the schema of its ``type`` (default PeVL): a typed settings object."""
    cfg = to_plain(cfg)
    if not isinstance(cfg, Mapping):
        raise TypeError(f"model config must be a mapping, got {type(cfg).__name__}")
    name = cfg.get("type", "PeVL")
    try:
        builder = get_registered(MODELS, name)
    except KeyError as e:
        raise SettingsError(f"{where}.type: {e.args[0]}", f"{where}.type") from None
    schema = getattr(builder, "settings", None)
    if schema is None:
        raise SettingsError(f"{where}.type: {name!r} is not a model of this project (no config schema)")
    cfg = with_fixed_switches(cfg, builder)
    kw = {"where": where}
    if source_of is not None:
        kw["source_of"] = source_of
    return schema.from_dict(cfg, **kw)


def with_fixed_switches(cfg: Mapping, builder: Optional[Callable] = None) -> dict:
    """A model config (plain) with the switches its type fixes merged in (a copy): what
    :func:`model_settings` checks, and what a config recorded before those switches were written
    into it (a checkpoint's run record, a finished run's hashed config) is compared as."""
    cfg = to_plain(cfg)
    if builder is None:
        try:
            builder = get_registered(MODELS, cfg.get("type", "PeVL"))
        except KeyError:
            return dict(cfg)
    fixed = getattr(builder, "fixed", None)
    return deep_merge(cfg, fixed(cfg)) if fixed is not None else dict(cfg)


def fixed_switches(model_type: str) -> tuple[dict, str]:
    """``(switches, what the type is)``: the switches type ``model_type`` fixes whatever its config
    says (``{}`` for a type that fixes none); ``switches`` as they are for a full PeVL config."""
    builder = get_registered(MODELS, model_type)
    if getattr(builder, "fixed", None) is None:
        return {}, ""
    return builder.fixed({}), builder.fixed_why


def build_model(cfg: Any) -> FrozenCLIPModel:
    """Build from a model config dict (or mmengine ConfigDict); ``type`` picks the registry entry."""
    s = model_settings(cfg)
    return get_registered(MODELS, s.type)(**s.to_dict())
