"""One variant's run config: defaults, dataset, experiment variant, demo switch, --cfg-options.

Merge order (later wins):

1. ``configs/_base_/schedules/adamw_50e.py`` (paper Sec. 4.1) and the dataset config
   ``configs/_base_/datasets/<dataset>.py`` (the experiment's ``data.dataset``, else its
   ``experiment.paper_dataset``);
2. the experiment file with the variant applied (:func:`pipeline.experiments.variant_config`);
   an experiment may carry its own ``train`` / ``data`` / ``runner``;
3. ``--dataset D``: that dataset's config replaces ``data``; ``--dataset demo`` also switches
   to the tiny CLIP and the demo's CPU schedule (``configs/experiments/demo.py``), keeping the
   variant's model switches;
4. ``--cfg-options key=value ...`` (mmengine syntax: ``train.lr=1e-4``, ``model.ucmr.num_blocks=2``,
   ``data.root=/data/diving48``, ``train.betas="(0.9,0.98)"``).

The result has ``model`` (``build_model``'s input), ``train``, ``data``, ``runner``,
``experiment``, ``variant`` and the paper's numbers.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

from mmengine.config import Config, DictAction

from pipeline.experiments import _merge, _plain, configs_root, load_experiment, variant_config

PAPER_DATASETS = {"diving48": "diving48", "diving-48": "diving48", "gym99": "gym99", "finegym99": "gym99",
                  "finegym 99": "gym99", "gym288": "gym288", "finegym288": "gym288", "haa500": "haa500",
                  "toyota smarthome": "toyota_smarthome", "toyota-smarthome": "toyota_smarthome",
                  "toyota_smarthome": "toyota_smarthome", "demo": "demo"}

#: what ``--dataset demo`` takes from configs/experiments/demo.py's model
DEMO_MODEL_KEYS = ("clip", "num_video_frames", "num_pose_frames")


def dataset_config(name: str) -> dict:
    path = configs_root() / "_base_" / "datasets" / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.py"))
        raise FileNotFoundError(f"no dataset config {path} (known: {known}); write one like "
                                f"configs/_base_/datasets/diving48.py")
    return _plain(Config.fromfile(str(path)).to_dict())["data"]


def schedule_defaults() -> dict:
    d = _plain(Config.fromfile(str(configs_root() / "_base_" / "schedules" / "adamw_50e.py")).to_dict())
    return {"train": d["train"], "runner": d.get("runner", {})}


def _default_dataset(cfg: dict) -> Optional[str]:
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
    c = Config(copy.deepcopy(cfg))
    c.merge_from_dict(options, allow_list_keys=True)
    return _plain(c.to_dict())


def build_run_config(exp: str, variant: str, dataset: Optional[str] = None,
                     cfg_options: Optional[dict] = None) -> Config:
    """The full config of one variant of experiment ``exp`` (see the module docstring)."""
    exp_cfg = load_experiment(exp)
    vc = _plain(variant_config(exp_cfg, variant).to_dict())
    base = schedule_defaults()
    ds = dataset or _default_dataset(vc)
    if ds is None:
        raise ValueError(f"experiment {exp!r} names no dataset (data.dataset or experiment.paper_dataset); "
                         "pass --dataset")
    if not vc.get("data"):
        base["data"] = dataset_config(ds)
    cfg = _merge(base, vc)
    if dataset:
        if dataset == "demo" and exp_cfg.get("experiment", {}).get("name") != "demo":
            demo = _plain(variant_config(load_experiment("demo"), "pevl").to_dict())
            cfg["data"] = demo["data"]
            cfg["train"] = _merge(cfg["train"], demo["train"])
            for k in DEMO_MODEL_KEYS:
                cfg["model"][k] = copy.deepcopy(demo["model"][k])
            cfg["demo_switch"] = True
        else:
            cfg["data"] = dataset_config(dataset)
    cfg.setdefault("runner", {})
    if cfg_options:
        cfg = apply_options(cfg, cfg_options)
    cfg["exp_name"] = exp_cfg.get("experiment", {}).get("name", exp)
    return Config(cfg)
