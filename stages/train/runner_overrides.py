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
