"""Experiment configs (one file per paper table) and their variants, as mmengine Configs.

An experiment file under ``configs/experiments/<name>.py`` inherits a base model
(``_base_ = ['../_base_/models/pevl_vit_b16.py']``) and defines::

    experiment = dict(name=..., table='Table 5', paper_dataset='Diving48', metric='top1')
    variants = dict(<variant>=dict(paper_top1=<float|None>, model=dict(<overrides of cfg.model>),
                                   [<other top-level overrides>]), ...)   # paper row order
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Union

from mmengine.config import Config

#: keys of a variant entry that describe it rather than override the config
_META_KEYS = ("paper_top1", "paper_top5", "paper_gflops", "paper_params_m", "model")


def configs_root() -> Path:
    """The repository's ``configs/`` (``PEVL_CONFIGS`` overrides)."""
    env = os.environ.get("PEVL_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "configs"


def resolve_config_path(name: Union[str, Path]) -> Path:
    """An existing file path as is, else ``configs/experiments/<name>.py``."""
    p = Path(name)
    if p.suffix == ".py" and p.is_file():
        return p.resolve()
    cand = configs_root() / "experiments" / f"{p.stem if p.suffix == '.py' else name}.py"
    if cand.is_file():
        return cand
    known = sorted(q.stem for q in (configs_root() / "experiments").glob("*.py"))
    raise FileNotFoundError(f"no experiment {str(name)!r} (looked for {cand}); known: {known}")


def load_experiment(name_or_path: Union[str, Path]) -> Config:
    cfg = Config.fromfile(str(resolve_config_path(name_or_path)))
    if "variants" not in cfg or "model" not in cfg:
        raise ValueError(f"{name_or_path}: an experiment config needs `model` (via _base_) and `variants`")
    return cfg


def list_variants(cfg: Config) -> list[str]:
    """Variant names in the file's (paper row) order."""
    return list(cfg["variants"].keys())


def _plain(x: Any) -> Any:
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [_plain(v) for v in x]
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def variant_config(cfg: Config, variant: str, **model_overrides: Any) -> Config:
    """The experiment config with one variant applied: its ``model`` overrides deep-merged into
    ``cfg.model`` (lists replaced), its other non-meta keys merged at top level, ``variants``
    dropped and ``variant`` / ``paper_top1`` recorded. ``model_overrides`` are merged last (e.g.
    ``clip=dict(arch='PeVL-tiny', pretrained=None)`` for tests)."""
    variants = cfg["variants"]
    if variant not in variants:
        raise KeyError(f"unknown variant {variant!r}; known: {list_variants(cfg)}")
    v = _plain(variants[variant])
    d = _plain(cfg.to_dict())
    d.pop("variants")
    d = {k: val for k, val in d.items() if not k.startswith("_")}  # config-file helpers
    d["model"] = _merge(_merge(d["model"], v.get("model", {})), _plain(model_overrides))
    d = _merge(d, {k: val for k, val in v.items() if k not in _META_KEYS})
    d["variant"] = variant
    d["paper_top1"] = v.get("paper_top1")
    for k in ("paper_gflops", "paper_params_m", "paper_top5"):
        if k in v:
            d[k] = v[k]
    return Config(d)
