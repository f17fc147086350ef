"""Every registry of the project, in one leaf module (mmaction2's ``registry.py`` pattern).

The project's registries are mmengine :class:`~mmengine.registry.Registry` objects in scope
``stages`` (this package, so mmengine can ``import stages.registry`` from the scope name).

* ``DATASET_ADAPTERS``: dataset adapters, the parsers of a dataset's files (``gym99``, ``demo``,
  ...; not torch datasets), built by :func:`stages.datasets.create_dataset`;
* ``POSE_SOURCES``: where joints come from (``hrnet``, ``dataset``, ``pkl``), built by
  :func:`stages.extract.pose.create_pose_source`;
* the mmengine-facing ones, children of mmengine's root registries: ``MODELS`` (PeVL and its
  variants, the Runner's model wrapper and data preprocessor), ``MODEL_WRAPPERS``, ``HOOKS``,
  ``METRICS``, ``DATA_SAMPLERS``, ``OPTIM_WRAPPER_CONSTRUCTORS``, and children of the other
  registries mmengine's Runner builds from, so a Runner started with ``default_scope='stages'``
  finds our classes first and mmengine's otherwise.

Implementations register into these; factories build from them. This module imports nothing
of the project: the ``locations`` below are imported lazily, on a registry's first lookup.
"""
from __future__ import annotations

from typing import Any

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

#: The scope of every registry here; mmengine's Runner takes it as ``default_scope``.
SCOPE = "stages"

# -- the project's own -------------------------------------------------------------------------
DATASET_ADAPTERS = Registry("dataset adapter", scope=SCOPE, locations=["stages.datasets"])
POSE_SOURCES = Registry("pose source", scope=SCOPE, locations=["stages.extract.pose"])

# -- mmengine-facing (children of mmengine's root registries) -------------------------------------
MODELS = Registry("model", parent=MMENGINE_MODELS, scope=SCOPE,
                  locations=["stages.model", "stages.train.runner_model"])
MODEL_WRAPPERS = Registry("model wrapper", parent=MMENGINE_MODEL_WRAPPERS, scope=SCOPE,
                          locations=["stages.train.runner_model"])
OPTIM_WRAPPER_CONSTRUCTORS = Registry("optimizer wrapper constructor", parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope=SCOPE, locations=["stages.train.runner_model"])
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope=SCOPE,
                 locations=["stages.train.runner", "stages.train.checkpoints"])
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope=SCOPE, locations=["stages.train.metrics"])
DATA_SAMPLERS = Registry("data sampler", parent=MMENGINE_DATA_SAMPLERS, scope=SCOPE,
                         locations=["stages.data.epoch_sampler"])
# Nothing of ours in these; they exist so that building under scope 'stages' finds a registry
# node in every tree the Runner uses (mmengine warns when a scope has no node in a tree).
RUNNERS = Registry("runner", parent=MMENGINE_RUNNERS, scope=SCOPE)
LOOPS = Registry("loop", parent=MMENGINE_LOOPS, scope=SCOPE)
LOG_PROCESSORS = Registry("log processor", parent=MMENGINE_LOG_PROCESSORS, scope=SCOPE)
OPTIMIZERS = Registry("optimizer", parent=MMENGINE_OPTIMIZERS, scope=SCOPE)
OPTIM_WRAPPERS = Registry("optim wrapper", parent=MMENGINE_OPTIM_WRAPPERS, scope=SCOPE)
PARAM_SCHEDULERS = Registry("parameter scheduler", parent=MMENGINE_PARAM_SCHEDULERS, scope=SCOPE)
EVALUATOR = Registry("evaluator", parent=MMENGINE_EVALUATOR, scope=SCOPE)
VISUALIZERS = Registry("visualizer", parent=MMENGINE_VISUALIZERS, scope=SCOPE)
VISBACKENDS = Registry("vis backend", parent=MMENGINE_VISBACKENDS, scope=SCOPE, locations=["stages.train.trackers"])
WEIGHT_INITIALIZERS = Registry("weight initializer", parent=MMENGINE_WEIGHT_INITIALIZERS, scope=SCOPE)
FUNCTIONS = Registry("function", parent=MMENGINE_FUNCTIONS, scope=SCOPE)


def get_registered(registry: Registry, name: str) -> Any:
    """The entry ``name`` of ``registry`` or of its parents, else a KeyError with the closest names.

    Unlike mmengine's ``get``, which returns None for an unknown name or, worse, any importable
    object of that dotted name (``get('json')`` is the json module), this finds registered
    entries only."""
    registry.import_from_location()
    reg: Any = registry
    while reg is not None:
        if name in reg.module_dict:
            return reg.module_dict[name]
        reg = reg.parent
    from stages.settings import did_you_mean

    raise KeyError(did_you_mean(name, names(registry), registry.name))


def names(registry: Registry) -> list[str]:
    """The names registered in ``registry`` itself (not its parents), sorted."""
    registry.import_from_location()
    return sorted(registry.module_dict)
