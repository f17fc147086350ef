"""Experiment trackers (``pipeline train --tracker``) as mmengine visualisation backends.

mmengine's ``LoggerHook`` sends every logged scalar (loss, lr, the validation's top-1 ...) to the
Runner's visualiser, and the visualiser to each backend; a tracker is one more backend:

===============  ====================================================================================
``tensorboard``  ``TensorboardVisBackend``: event files in ``<work dir>/<time>/vis_data/`` (default)
``mlflow``       :class:`RunMLflowVisBackend`: experiment = the experiment's work-dir name, run = the
                 variant; ``$MLFLOW_TRACKING_URI`` when set (a lab's server), else a local file store
                 ``W/NAME/mlruns`` shared by the experiment's variants (``mlflow ui --backend-store-uri
                 W/NAME/mlruns``); at the end the run's log, scalars and config as artifacts
``wandb``        :class:`RunWandbVisBackend`: project ``$WANDB_PROJECT`` (default ``pevl``), group = the
                 experiment, name = the variant, files under ``vis_data/wandb/``;
                 ``WANDB_MODE=offline`` writes an offline run there to ``wandb sync`` later; quiet
                 unless ``-v``
===============  ====================================================================================

The run's own JSON scalars (``LocalVisBackend``: ``curves.png`` is drawn from them) are always on.
The packages are optional (``pip install -e .[trackers]``); a tracker whose package is missing is
refused before training starts.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

from mmengine.visualization import MLflowVisBackend, WandbVisBackend
from mmengine.visualization.vis_backend import force_init_env

from stages.registry import VISBACKENDS

#: tracker name -> (the package it needs, the mmengine backend type)
TRACKERS = {
    "tensorboard": ("tensorboard", "TensorboardVisBackend"),
    "mlflow": ("mlflow", "RunMLflowVisBackend"),
    "wandb": ("wandb", "RunWandbVisBackend"),
}
DEFAULT_TRACKERS = ("tensorboard",)


def parse_trackers(values: Optional[Iterable[str]]) -> tuple[str, ...]:
    """``--tracker`` values (repeatable, or comma lists) as tracker names; ``none`` for none;
    nothing given: :data:`DEFAULT_TRACKERS`. An unknown name or a missing package is an error."""
    from stages.settings import did_you_mean

    if values is None:
        return DEFAULT_TRACKERS
    names: list[str] = []
    for v in values:
        for name in str(v).split(","):
            name = name.strip().lower()
            if name and name not in names:
                names.append(name)
    if names == ["none"]:
        return ()
    for name in names:
        if name not in TRACKERS:
            raise ValueError(did_you_mean(name, list(TRACKERS) + ["none"], "tracker"))
        _require(name)
    return tuple(names)


def _require(name: str) -> None:
    import importlib.util

    pkg = TRACKERS[name][0]
    if importlib.util.find_spec(pkg) is None:
        hint = "pip install -e '.[trackers]'" if name != "tensorboard" else "pip install tensorboard"
        raise ValueError(f"--tracker {name} needs the {pkg} package, which is not installed ({hint})")


def vis_backends(trackers: Sequence[str], exp_name: str, variant: str, work_dir: os.PathLike,
                 tags: Optional[dict] = None) -> list[dict]:
    """The mmengine ``vis_backends`` of a run: the local JSON scalars, then each tracker."""
    out: list[dict] = [dict(type="LocalVisBackend")]
    for name in trackers:
        kind = TRACKERS[name][1]
        if name == "mlflow":
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:
                uri = (Path(work_dir).resolve().parent / "mlruns").as_uri()
                # MLflow 3 refuses its file store unless asked for; it is the local, offline store here
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            out.append(dict(type=kind, exp_name=exp_name, run_name=variant, tracking_uri=uri,
                            tags={str(k): str(v) for k, v in (tags or {}).items()}))
        elif name == "wandb":
            init = dict(project=os.environ.get("WANDB_PROJECT", "pevl"), group=exp_name, name=variant,
                        tags=[str(v) for v in (tags or {}).values()])
            if not logging.getLogger("stages").isEnabledFor(logging.DEBUG):  # its banner and summary only at -v
                init["settings"] = dict(silent=True)
            out.append(dict(type=kind, init_kwargs=init))
        else:
            out.append(dict(type=kind))
    return out


@VISBACKENDS.register_module()
class RunMLflowVisBackend(MLflowVisBackend):
    """mmengine's MLflow backend, with the run's files as artifacts: its log, scalars and config
    from the run's log folder (mmengine's own reads ``cfg.work_dir``, which a run config has not)."""

    def close(self) -> None:
        if not hasattr(self, "_mlflow"):
            return
        run_dir = Path(self._save_dir).parent  # <work dir>/<time>/
        for path in sorted(run_dir.rglob("*")):
            if path.is_file() and path.suffix in (".json", ".log", ".py") and "mlruns" not in path.parts:
                rel = path.parent.relative_to(run_dir)
                self._mlflow.log_artifact(str(path), None if str(rel) == "." else str(rel))
        self._mlflow.end_run()


@VISBACKENDS.register_module()
class RunWandbVisBackend(WandbVisBackend):
    """mmengine's W&B backend without uploading the current folder's code (mmengine's
    ``add_config`` logs every .py file under the working directory, virtual environment included)."""

    @force_init_env
    def add_config(self, config, **kwargs) -> None:
        allow = (self._init_kwargs or {}).get("allow_val_change", False)
        self._wandb.config.update(config.to_dict(), allow_val_change=allow)
