"""``runner.*``: raw mmengine Runner arguments, their keys checked before the Runner is built.

The typed settings refuse a key they do not know; ``runner.*`` is the escape hatch past them, and
mmengine reads some of it only when it uses it: ``runner.default_hooks.checkpoint.intervl=1``
failed after a whole epoch (``save_checkpoint() got an unexpected keyword argument``), a misspelt
``runner.env_cfg`` key was never read at all. Here every key an override sets is checked against
what takes it: the Runner's own arguments, ``env_cfg``'s keys, and the ``__init__`` of the class a
typed dict (``type=...``) builds; a class that takes ``**kwargs`` is checked no deeper, except
``CheckpointHook``, whose extra keys go to ``Runner.save_checkpoint``.
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

from stages.settings import SettingsError, did_you_mean

#: the keys mmengine's ``Runner.setup_env`` reads of ``env_cfg``
ENV_CFG_KEYS = ("cudnn_benchmark", "mp_cfg", "dist_cfg", "resource_limit")
#: what the optimizer-wrapper builder takes beside the wrapper's own arguments
_OPTIM_BUILDER_KEYS = ("type", "optimizer", "constructor", "paramwise_cfg")
#: Runner arguments the typed ``train.*`` settings make (stages.train.schedule's table): set under
#: ``runner.*`` they won over the typed values while the setup line, the schedule built on them and
#: the run's records kept the typed ones (1 epoch trained on a cosine made for 40, ``seed 0`` recorded)
TYPED_RUNNER_KEYS = {
    "train_cfg.max_epochs": "train.max_epochs", "train_cfg.val_interval": "train.val_interval",
    "optim_wrapper.optimizer.lr": "train.lr", "optim_wrapper.optimizer.betas": "train.betas",
    "optim_wrapper.optimizer.eps": "train.eps", "optim_wrapper.optimizer.weight_decay": "train.weight_decay",
    "optim_wrapper.accumulative_counts": "train.accumulative_counts", "optim_wrapper.clip_grad": "train.clip_grad",
    "optim_wrapper.paramwise_cfg": "train.param_groups and train.no_decay",
    "randomness.seed": "train.seed", "randomness.deterministic": "train.deterministic",
    "train_dataloader.batch_size": "train.batch_size", "val_dataloader.batch_size": "train.test_batch_size",
    "test_dataloader.batch_size": "train.test_batch_size",
    "param_scheduler": "train.warmup_epochs, train.warmup_start_factor and train.max_epochs",
    "default_hooks.checkpoint.max_keep_ckpts": "train.max_keep_ckpts",
    "default_hooks.logger.interval": "train.log_interval",
}


def check_runner_overrides(overrides: dict, merged: dict) -> None:
    """Refuse (:class:`~stages.settings.SettingsError`) a key of ``overrides`` (the run config's
    ``runner``) that nothing takes; ``merged``: the Runner arguments with the overrides merged in
    (where a typed dict's ``type`` is found when the override does not name it)."""
    from mmengine.runner import Runner

    known = _params(Runner.__init__) or ()
    for key, value in overrides.items():
        if key not in known:
            raise SettingsError(f"runner.{key}: " + did_you_mean(key, sorted(known), "mmengine Runner argument"),
                                f"runner.{key}")
        if key == "env_cfg" and isinstance(value, dict):
            _refuse_unknown(value, ENV_CFG_KEYS, "runner.env_cfg", "env_cfg key")
        elif key == "default_hooks" and isinstance(value, dict):
            for name, hook in value.items():
                if isinstance(hook, dict):
                    _check_typed(hook, (merged.get(key) or {}).get(name), f"runner.default_hooks.{name}", "HOOKS")
        elif key in ("train_cfg", "val_cfg", "test_cfg") and isinstance(value, dict):
            _check_typed(value, merged.get(key), f"runner.{key}", "LOOPS")
        elif key == "optim_wrapper" and isinstance(value, dict):
            _check_typed(value, merged.get(key), "runner.optim_wrapper", "OPTIM_WRAPPERS", extra=_OPTIM_BUILDER_KEYS)
            if isinstance(value.get("optimizer"), dict):
                _check_typed(value["optimizer"], (merged.get(key) or {}).get("optimizer"),
                             "runner.optim_wrapper.optimizer", "OPTIMIZERS")


_ABSENT = object()


def refuse_typed_runner_keys(overrides: dict) -> None:
    """Refuse a ``runner.*`` key that a typed ``train.*`` setting makes (:data:`TYPED_RUNNER_KEYS`)."""
    for path, typed in TYPED_RUNNER_KEYS.items():
        node: Any = overrides
        for part in path.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT:
            raise SettingsError(f"runner.{path}: set by the typed setting {typed} (which the setup line, the "
                                "schedule and the run's records follow); set that instead", f"runner.{path}")


def _check_typed(given: dict, merged: Optional[dict], where: str, registry: str, extra=("type",)) -> None:
    """The keys ``given`` sets, against the ``__init__`` of the class its merged dict's ``type`` names."""
    kind = given.get("type") or (merged or {}).get("type")
    if where.endswith("train_cfg") and kind is None:  # mmengine's pick without a type
        kind = "EpochBasedTrainLoop" if (merged or given).get("by_epoch", True) else "IterBasedTrainLoop"
        extra = (*extra, "by_epoch")
    cls = _resolve(registry, kind)
    if cls is None:
        return  # a type no registry here resolves: mmengine names it when it builds
    params = _params(cls.__init__)
    if params is None:
        from mmengine.hooks import CheckpointHook

        if not (isinstance(cls, type) and issubclass(cls, CheckpointHook)):
            return
        from mmengine.runner import Runner

        params = _params(CheckpointHook.__init__, kwargs_ok=True) + (_params(Runner.save_checkpoint) or ())
    _refuse_unknown(given, (*params, *extra), where, f"argument of {getattr(cls, '__name__', kind)}")


def _refuse_unknown(given: dict, known, where: str, what: str) -> None:
    for k in given:
        if k not in known:
            raise SettingsError(f"{where}.{k}: " + did_you_mean(k, sorted(set(known)), what), f"{where}.{k}")


def _resolve(registry: str, kind: Any):
    if not isinstance(kind, str):
        return kind if isinstance(kind, type) else None
    from stages import registry as reg

    try:
        return getattr(reg, registry).get(kind)
    except (KeyError, AttributeError):
        return None


def _params(fn, kwargs_ok: bool = False) -> Optional[tuple[str, ...]]:
    """The named parameters of ``fn`` (without ``self``); None where it also takes ``**kwargs``
    (unless ``kwargs_ok``)."""
    sig = inspect.signature(fn)
    if not kwargs_ok and any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return tuple(n for n, p in sig.parameters.items()
                 if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
