"""The optimiser's parameter groups: which named group each tunable parameter belongs to, which
kind of parameter it is (for weight decay), and the torch parameter groups a recipe makes of them.

Groups (a model's :attr:`~stages.model.frozen_clip.FrozenCLIPModel.param_group_rules` name them;
a tunable parameter no rule names is an error, never a silent default):

=========  ====================================================================================
``clip``   the CLIP towers themselves (tunable only with ``model.clip.frozen=False``: the demo)
``video``  the video side: adapters of the video encoder, its projection; PGVT's video embedding,
           norm and MLP adapters, AIM's video stream
``pose``   the pose side: pose embedding, pose encoder adapters, projection; PGVT's pose stream
           (its T-adapter, MLP adapters, norm)
``ucmr``   cross-modal refinement: UCMR (P2V, V2P, eq. 3's temperature); PGVT's R-Adapters
``sgmc``   the text-video similarity's temperature (SGMC has no other parameter)
``text``   the text encoder's adapters and projection
``head``   classifiers and fusion layers
=========  ====================================================================================

Kinds, for weight decay (``train.no_decay`` names the kinds that get none): ``norm`` (parameters
of normalisation layers), ``bias`` (``bias`` and ``*_bias``), ``embedding`` (token, class,
position and background embeddings), ``scalar`` (0-d parameters: temperatures, gates), else
``weight``.

The recipe (:class:`stages.train.schedule.ScheduleSettings`) reaches the constructor as mmengine's
``optim_wrapper.paramwise_cfg`` (:func:`paramwise_cfg`): ``custom_keys`` maps each group name to
its ``lr_mult`` and ``decay_mult`` (mmengine's words; here the keys are group names, not name
substrings) and ``no_decay`` lists the kinds without decay. Each (group, decayed or not) pair
becomes one torch parameter group with its own ``lr`` and ``weight_decay``, so mmengine's
schedulers scale every group's lr by the same factor and the multipliers hold all along.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import torch
from torch import nn

GROUPS = ("clip", "video", "pose", "ucmr", "sgmc", "text", "head")
KINDS = ("norm", "bias", "embedding", "scalar", "weight")
NO_DECAY_KINDS = ("norm", "bias", "embedding", "scalar")

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
#: leaf names of embedding parameters (token, class and position embeddings, learned tokens)
_EMBEDDING_LEAVES = re.compile(r"^(class_embedding|positional_embedding|temporal_pos|joint_pos|pos|token|"
                               r"background|[a-z_]*_embedding)$")


def param_kind(module: nn.Module, leaf: str, param: torch.Tensor) -> str:
    """The kind of parameter ``leaf`` of ``module`` (the module that holds it directly)."""
    if isinstance(module, _NORMS):
        return "norm"
    if param.ndim == 0:
        return "scalar"
    if leaf == "bias" or leaf.endswith("_bias"):
        return "bias"
    if isinstance(module, nn.Embedding) or _EMBEDDING_LEAVES.match(leaf):
        return "embedding"
    return "weight"


def group_of(rules: Sequence[tuple[str, str]], name: str) -> str:
    """The group of parameter ``name`` (relative to the recognizer): the first rule whose regular
    expression matches the start of the name."""
    for pattern, group in rules:
        if re.match(pattern, name):
            return group
    raise KeyError(f"parameter {name!r} is in no optimiser group: add a rule to the model's param_group_rules "
                   f"(groups: {', '.join(GROUPS)})")


def tunable_parameter_table(recognizer: nn.Module) -> list[tuple[str, str, str, nn.Parameter]]:
    """``(name, group, kind, parameter)`` of every tunable parameter of a recognizer (PeVL, PGVT)."""
    rules = getattr(recognizer, "param_group_rules", None)
    if not rules:
        raise TypeError(f"{type(recognizer).__name__} declares no param_group_rules")
    out = []
    for mod_name, module in recognizer.named_modules():
        for leaf, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            name = f"{mod_name}.{leaf}" if mod_name else leaf
            out.append((name, group_of(rules, name), param_kind(module, leaf, p), p))
    return out


def paramwise_cfg(groups: Any, no_decay: Iterable[str]) -> dict:
    """mmengine's ``paramwise_cfg`` of a schedule's groups (``groups``: a ``ParamGroupsSettings``
    or its dict) and no-decay kinds."""
    g = groups if isinstance(groups, dict) else groups.to_dict()
    return {"custom_keys": {name: dict(lr_mult=float(v["lr_mult"]), decay_mult=float(v["decay_mult"]))
                            for name, v in g.items()},
            "no_decay": list(no_decay)}


def build_param_groups(recognizer: nn.Module, base_lr: float, base_wd: float, cfg: dict) -> list[dict]:
    """Torch parameter groups of a recognizer's tunable parameters under ``cfg`` (a
    :func:`paramwise_cfg`): one per (group, decay or not), each with ``name``, ``lr``,
    ``weight_decay`` and ``lr_mult``; empty groups left out. Every tunable parameter is in exactly one."""
    custom = dict(cfg.get("custom_keys") or {})
    unknown = [k for k in custom if k not in GROUPS]
    if unknown:
        raise KeyError(f"paramwise_cfg.custom_keys: unknown group {unknown[0]!r} (groups: {', '.join(GROUPS)})")
    missing = [k for k in GROUPS if k not in custom]
    if missing:  # (the schedule's schema holds each group's default: a resolved config names every group)
        raise KeyError(f"paramwise_cfg.custom_keys: no group {missing[0]!r} (groups: {', '.join(GROUPS)}): give "
                       "paramwise_cfg() a resolved schedule's groups")
    no_decay = set(cfg["no_decay"])  # (the schedule's schema holds its default, as it does each group's)
    bad = no_decay - set(NO_DECAY_KINDS)
    if bad:
        raise KeyError(f"paramwise_cfg.no_decay: unknown kind {sorted(bad)[0]!r} (kinds: {', '.join(NO_DECAY_KINDS)})")
    out: dict[tuple[str, bool], dict] = {}
    for name, group, kind, p in tunable_parameter_table(recognizer):
        lr_mult, decay_mult = float(custom[group]["lr_mult"]), float(custom[group]["decay_mult"])
        decays = kind not in no_decay
        key = (group, decays)
        if key not in out:
            out[key] = dict(params=[], param_names=[], name=group + ("" if decays else ".no_decay"),
                            lr=base_lr * lr_mult, lr_mult=lr_mult,
                            weight_decay=base_wd * decay_mult if decays else 0.0)
        out[key]["params"].append(p)
        out[key]["param_names"].append(name)
    return [out[k] for k in sorted(out, key=lambda k: (GROUPS.index(k[0]), not k[1]))]
