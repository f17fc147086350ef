"""Config composition for stage two: experiments, their variants, and one variant's run config.

An experiment file ``configs/experiments/<name>.py`` inherits a base model
(``_base_ = ['../_base_/models/pevl_vit_b16.py']``) and defines::

    experiment = dict(name=..., table='Table 5', paper_dataset='Diving48', metric='top1')
    variants = dict(<variant>=dict(paper_top1=<float|None>, model=dict(<overrides of cfg.model>),
                                   [<other top-level overrides>]), ...)   # paper row order

A variant's run config merges (later wins):

1. ``configs/_base_/schedules/adamw_50e.py`` (paper Sec. 4.1) and the dataset config
   ``configs/_base_/datasets/<dataset>.py`` (the experiment's ``data.dataset``, else its
   ``experiment.paper_dataset``);
2. the experiment file with the variant applied (:func:`variant_config`); an experiment may carry
   its own ``train`` / ``data`` / ``runner``; a variant's ``data`` without a ``dataset`` key amends
   the dataset's config (``data=dict(extract=dict(num_frames=32))``: look up a 32-frame entry), here
   and under ``--dataset``;
3. ``--dataset D``: that dataset's config replaces ``data``; ``--dataset demo`` also switches
   to the tiny CLIP and the demo's CPU schedule (``configs/experiments/demo.py``), keeping the
   variant's model switches, then applies the experiment's ``demo_overrides`` (a dict of
   ``model`` / ``train`` overrides for its demo runs, e.g. PGVT's);
4. ``--cfg-options key=value ...`` (mmengine syntax: ``train.lr=1e-4``, ``model.ucmr.num_blocks=2``,
   ``data.root=/data/diving48``, ``train.betas="(0.9,0.98)"``).

The result has ``model`` (``build_model``'s input), ``train``, ``data``, ``runner``,
``experiment``, ``variant`` and the paper's numbers.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from mmengine.config import Config, DictAction

from stages.nested_config import deep_merge, to_plain

log = logging.getLogger(__name__)

#: keys of a variant entry that describe it rather than override the config
_META_KEYS = ("paper_top1", "paper_top5", "paper_gflops", "paper_params_m", "model")


def configs_root() -> Path:
    """The repository's ``configs/`` (``PEVL_CONFIGS`` overrides)."""
    env = os.environ.get("PEVL_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "configs"


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
    """An experiment file (a name under ``configs/experiments/`` or a path) as an mmengine Config."""
    cfg = Config.fromfile(str(resolve_config_path(name_or_path)))
    if "variants" not in cfg or "model" not in cfg:
        raise ValueError(f"{name_or_path}: an experiment config needs `model` (via _base_) and `variants`")
    return cfg


def list_variants(cfg: Config) -> list[str]:
    """Variant names in the file's (paper row) order."""
    return list(cfg["variants"].keys())


def variant_config(cfg: Config, variant: str, **model_overrides: Any) -> Config:
    """The experiment config with one variant applied: its ``model`` overrides deep-merged into
    ``cfg.model`` (lists replaced), its other non-meta keys merged at top level, ``variants``
    dropped and ``variant`` / ``paper_top1`` recorded. ``model_overrides`` are merged last (e.g.
    ``clip=dict(arch='PeVL-tiny', pretrained=None)`` for tests)."""
    variants = cfg["variants"]
    if variant not in variants:
        raise KeyError(f"unknown variant {variant!r}; known: {list_variants(cfg)}")
    v = to_plain(variants[variant])
    d = to_plain(cfg.to_dict())
    d.pop("variants")
    d = {k: val for k, val in d.items() if not k.startswith("_")}  # config-file helpers
    d["model"] = deep_merge(deep_merge(d["model"], v.get("model", {})), to_plain(model_overrides))
    d = deep_merge(d, {k: val for k, val in v.items() if k not in _META_KEYS})
    d["variant"] = variant
    d["paper_top1"] = v.get("paper_top1")
    for k in ("paper_gflops", "paper_params_m", "paper_top5"):
        if k in v:
            d[k] = v[k]
    return Config(d)


PAPER_DATASETS = {"diving48": "diving48", "diving-48": "diving48", "gym99": "gym99", "finegym99": "gym99",
                  "finegym 99": "gym99", "gym288": "gym288", "finegym288": "gym288", "haa500": "haa500",
                  "toyota smarthome": "toyota_smarthome", "toyota-smarthome": "toyota_smarthome",
                  "toyota_smarthome": "toyota_smarthome", "demo": "demo"}

#: what ``--dataset demo`` takes from configs/experiments/demo.py's model (dotted: one nested key)
DEMO_MODEL_KEYS = ("clip", "num_video_frames", "num_pose_frames", "pose.normalize", "pose.motion",
                   "pose.embedding")


def dataset_config(name: str) -> dict:
    """``data`` of ``configs/_base_/datasets/<name>.py``."""
    path = configs_root() / "_base_" / "datasets" / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.py"))
        raise FileNotFoundError(f"no dataset config {path} (known: {known}); write one like "
                                f"configs/_base_/datasets/diving48.py")
    return to_plain(Config.fromfile(str(path)).to_dict())["data"]


def schedule_defaults() -> dict:
    """``train`` and ``runner`` of the paper's schedule, ``configs/_base_/schedules/adamw_50e.py``."""
    d = to_plain(Config.fromfile(str(configs_root() / "_base_" / "schedules" / "adamw_50e.py")).to_dict())
    return {"train": d["train"], "runner": d.get("runner", {})}


def default_dataset(cfg: dict) -> Optional[str]:
    """The dataset an experiment or run config names: ``data.dataset``, else its paper's dataset."""
    if cfg.get("data", {}).get("dataset"):
        return cfg["data"]["dataset"]
    pd = str(cfg.get("experiment", {}).get("paper_dataset") or "").strip().lower()
    return PAPER_DATASETS.get(pd)


def parse_cfg_options(items: Optional[Sequence[str]]) -> dict:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a.b": 1, "c": [1, 2]}`` (mmengine's value parsing)."""
    pairs: list[list[str]] = []
    for it in items or []:
        # one item may hold several pairs ("a=1 b=2"); a piece without '=' continues the last value
        for tok in str(it).split(" "):
            if not tok:
                continue
            key, sep, val = tok.partition("=")
            if sep and key and not any(ch in key for ch in "[](){},'\""):
                pairs.append([key.strip(), val])
            elif pairs:
                pairs[-1][1] += " " + tok
            else:
                raise ValueError(f"--cfg-options wants key=value, got {tok!r}")
    return {k: DictAction._parse_iterable(v.strip()) for k, v in pairs}


def apply_options(cfg: dict, options: dict) -> dict:
    """``cfg`` with ``--cfg-options`` (dotted keys) applied, as mmengine's ``merge_from_dict`` does."""
    c = Config(copy.deepcopy(cfg))
    c.merge_from_dict(options, allow_list_keys=True)
    return to_plain(c.to_dict())


def build_run_config(exp: str, variant: str, dataset: Optional[str] = None,
                     cfg_options: Optional[dict] = None) -> Config:
    """The full config of one variant of experiment ``exp`` (see the module docstring)."""
    exp_cfg = load_experiment(exp)
    vc = to_plain(variant_config(exp_cfg, variant).to_dict())
    base = schedule_defaults()
    ds = dataset or default_dataset(vc)
    if ds is None:
        raise ValueError(f"experiment {exp!r} names no dataset (data.dataset or experiment.paper_dataset); "
                         "pass --dataset")
    # a variant's `data` without a `dataset` (e.g. extract=dict(num_frames=32)) amends the dataset's
    variant_data = to_plain(exp_cfg["variants"][variant]).get("data") or {}
    if not vc.get("data", {}).get("dataset"):
        base["data"] = dataset_config(ds)
    cfg = deep_merge(base, vc)
    demo_overrides = cfg.pop("demo_overrides", None) or {}
    if dataset:
        if dataset == "demo" and default_dataset(vc) != "demo":  # the demo experiments are demo already
            demo = to_plain(variant_config(load_experiment("demo"), "pevl").to_dict())
            cfg["data"] = demo["data"]
            cfg["train"] = deep_merge(cfg["train"], demo["train"])
            for k in DEMO_MODEL_KEYS:
                *path, last = k.split(".")
                src, dst = demo["model"], cfg["model"]
                for p in path:
                    src, dst = src[p], dst.setdefault(p, {})
                if k in ("num_video_frames", "num_pose_frames") and dst.get(last) != src[last]:
                    log.warning("%s/%s on the demo: model.%s=%s (the demo's), not the variant's %s", exp, variant,
                                k, src[last], dst.get(last))
                dst[last] = copy.deepcopy(src[last])
            cfg = deep_merge(cfg, demo_overrides)  # the experiment's own demo settings
            cfg["demo_switch"] = True
        else:
            cfg["data"] = deep_merge(dataset_config(dataset), variant_data if not variant_data.get("dataset") else {})
    cfg.setdefault("runner", {})
    if cfg_options:
        cfg = apply_options(cfg, cfg_options)
    cfg["exp_name"] = exp_cfg.get("experiment", {}).get("name", exp)
    return Config(cfg)
