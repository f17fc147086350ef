"""Which run a checkpoint comes from, and its model, ready to predict.

``pipeline train`` writes into every checkpoint the record of its run
(:func:`stages.train.hooks.run_record`): the experiment and variant, the resolved run config, and
the record of the cache entry it was trained on (:class:`~stages.data.entry_record.EntryRecord`:
stage one's settings and pose source, the class texts). :func:`resolve_run` reads it, or takes
what the user names instead (``--exp`` / ``--variant`` / ``--entry``); a checkpoint written before
runs were recorded gets an error naming what is missing and the options that supply it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mmengine.config import Config

from stages.data.entry_record import EntryRecord
from stages.settings import COMMAND_LINE
from stages.train.checkpoints import read_checkpoint_meta


class CheckpointRecordMissing(ValueError):
    """The checkpoint lacks what prediction needs; the message names it and the options that supply it."""


@dataclass
class TrainedRun:
    """A checkpoint and everything prediction needs to run its model on new videos."""

    checkpoint: Path
    cfg: Config  # the resolved run config
    record: EntryRecord  # the cache entry the model was trained on
    experiment: str
    variant: str
    #: where each part came from, for messages: {"run config": ..., "entry": ...}
    sources: dict = field(default_factory=dict)
    #: the entry the checkpoint records, where ``--entry`` named another (``record``)
    trained_on: Optional[EntryRecord] = None


def _config_from_record(run_config: dict, cfg_options: Optional[dict], where: str) -> Config:
    """The recorded run config with ``--cfg-options`` applied, checked again by the run-config schema."""
    from stages.train.config import apply_options, check_run_config, refuse_command_named

    refuse_command_named(cfg_options)
    d = apply_options(run_config, cfg_options) if cfg_options else dict(run_config)
    prov = {k: COMMAND_LINE for k in (cfg_options or {})}

    def source_of(key: str) -> str:
        return prov.get(key) or where

    return Config(check_run_config(d, source_of).to_dict())


def resolve_run(checkpoint: os.PathLike, *, exp: Optional[str] = None, variant: Optional[str] = None,
                dataset: Optional[str] = None, cfg_options: Optional[dict] = None, entry: Optional[str] = None,
                cache_root: Optional[str] = None) -> TrainedRun:
    """The run ``checkpoint`` belongs to: from its record, or from ``exp`` / ``variant`` (and
    ``dataset``, ``cfg_options``: as ``pipeline eval`` takes them) and ``entry`` (a cache entry's
    key, prefix or path) where given."""
    from stages.train.hooks import RUN_RECORD_KEY, RUN_RECORD_VERSION

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path}")
    meta = read_checkpoint_meta(path)
    rec = meta.get(RUN_RECORD_KEY)
    if rec is not None and rec.get("version") != RUN_RECORD_VERSION:
        raise ValueError(f"checkpoint {path}: run record version {rec.get('version')!r}, this code reads version "
                         f"{RUN_RECORD_VERSION} (written by a newer pipeline?)")
    sources: dict[str, str] = {}
    # -- the run config ---------------------------------------------------------------------------
    if exp:
        from stages.train.config import build_run_config, list_variants, load_experiment

        own = rec.get("variant") if rec and rec.get("experiment") == Path(exp).stem else None
        v = variant or own or list_variants(load_experiment(exp))[0]
        cfg = build_run_config(exp, v, dataset=dataset, cfg_options=cfg_options)
        from stages.train.runner import check_trained_model_type

        check_trained_model_type(rec, cfg, path, exp)
        sources["run config"] = f"--exp {exp} --variant {v}"
    elif rec is not None:
        if variant and variant != rec.get("variant"):
            raise ValueError(f"--variant {variant}: checkpoint {path} was trained as variant {rec.get('variant')!r} "
                             "of its experiment; give --exp too to run it as another variant's config")
        if dataset:
            raise ValueError("--dataset changes the run config: give --exp (and --variant) with it")
        cfg = _config_from_record(rec["run_config"], cfg_options, f"the run config recorded in {path.name}")
        sources["run config"] = "the checkpoint"
    else:
        trained_as = meta.get("experiment_name")
        raise CheckpointRecordMissing(
            f"checkpoint {path} carries no run record (meta.run_record: the run config and the cache entry it was "
            "trained on; checkpoints written before 2026-12 have none). Give the experiment and variant it was "
            "trained with: --exp EXPERIMENT --variant VARIANT"
            + (f" (mmengine named the run {trained_as!r}: <experiment>_<variant>_<id>)" if trained_as else "")
            + ", and, unless the cache entry it names is in this cache, --entry KEY (`pipeline cache ls`).")
    # -- the entry it was trained on -----------------------------------------------------------------
    record = trained_on = None
    trained_classes = (meta.get("dataset_meta") or {}).get("classes")
    if entry:
        from stages.data.entry_lookup import find_entry

        e = find_entry(cfg.data.to_dict(), cache_root=cache_root, entry=entry)
        record = EntryRecord.from_entry(e)
        sources["entry"] = f"cache entry {e.key} (--entry)"
        if rec is not None and (rec.get("entry") or {}).get("key") not in (None, e.key):
            trained_on = EntryRecord.from_dict(rec["entry"], where=f"checkpoint {path}")
    elif rec is not None:
        record = EntryRecord.from_dict(rec["entry"], where=f"checkpoint {path}")
        sources["entry"] = f"the checkpoint (cache entry {record.key})"
    else:
        record = _entry_named_by_mmengine(meta, cfg, cache_root, sources)
        if record is None:
            key = (meta.get("dataset_meta") or {}).get("entry")
            raise CheckpointRecordMissing(
                f"checkpoint {path} does not record the cache entry it was trained on (its stage-one settings, pose "
                "source and class texts)" + (f"; it names entry {key}, which is not in this cache" if key else "")
                + ". Give --entry KEY (the key, a unique prefix or the path of an entry with the same settings and "
                "classes: `pipeline cache ls`).")
    if exp and rec is not None and rec.get("run_config"):
        # the model the weights belong to and the run's test views, as `pipeline eval` builds them: the
        # experiment's defaults otherwise (a size mismatch at best, another model silently at worst)
        from stages.train.config import build_run_config
        from stages.train.runner import trained_model_settings

        taken, _ = trained_model_settings(rec["run_config"], cfg, record, dict(cfg_options or {}))
        if taken:
            cfg = build_run_config(exp, str(cfg.get("variant")), dataset=dataset,
                                   cfg_options={**(cfg_options or {}), **taken})
            sources["run config"] += " with the checkpoint's " + ", ".join(f"{k}={v!r}" for k, v in taken.items())
    if trained_classes is not None and list(trained_classes) != list(record.classes):
        raise ValueError(f"cache entry {record.key} has other classes than checkpoint {path} was trained on "
                         f"({len(record.classes)} vs {len(trained_classes)}, e.g. "
                         f"{_first_difference(record.classes, trained_classes)}): give --entry of the training entry")
    from stages.train.config import refuse_idle_overrides

    refuse_idle_overrides(cfg, cfg_options or {}, f"the model of {path.name}")
    return TrainedRun(path, cfg, record, experiment=str(cfg.get("exp_name") or ""), variant=str(cfg.get("variant") or ""),
                      sources=sources, trained_on=trained_on)


def _entry_named_by_mmengine(meta: dict, cfg: Config, cache_root: Optional[str], sources: dict) -> Optional[EntryRecord]:
    """An old checkpoint's entry: the one mmengine's ``dataset_meta`` names, else the run config's
    lookup (``find_entry``), when it is in this cache."""
    from cache import CacheStore, EntryNotFoundError
    from stages.data.entry_lookup import find_entry

    key = (meta.get("dataset_meta") or {}).get("entry")
    if key:
        try:
            e = CacheStore(cache_root).open(key)
            sources["entry"] = f"cache entry {e.key} (named by the checkpoint's dataset_meta)"
            return EntryRecord.from_entry(e)
        except Exception:  # noqa: BLE001  (not in this cache: the error below says what to give)
            return None
    try:
        e = find_entry(cfg.data.to_dict(), cache_root=cache_root)
    except EntryNotFoundError:
        return None
    sources["entry"] = f"cache entry {e.key} (the run config's lookup)"
    return EntryRecord.from_entry(e)


def _first_difference(a: list, b: list) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"class {i}: {x!r} vs {y!r}"
    return f"class {min(len(a), len(b))} on one side only"


def load_model(run: TrainedRun, device: str) -> tuple[Any, int]:
    """The run's Runner model with the checkpoint's weights, in eval mode on ``device``, and its
    crop size. Refuses a model whose patches do not line up with the entry's grid."""
    from stages.train.checkpoints import load_checkpoint_into
    from stages.train.runner import build_wrapped_model, model_input_size

    model = build_wrapped_model(run.cfg, run.record, device)
    crop, patch = model_input_size(model)
    cell = int(run.record.settings["grid_cell"])
    if cell != patch:
        raise ValueError(f"the run config's model reads {patch}-pixel patches, but cache entry {run.record.key} it was "
                         f"trained on has {cell}-pixel grid cells: is the run config the one the checkpoint was "
                         "trained with?")
    load_checkpoint_into(model, run.checkpoint)
    model.to(device).eval()
    return model, crop
