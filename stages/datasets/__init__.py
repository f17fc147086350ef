"""Dataset adapters. Importing this package registers the built-in ones."""
from stages.datasets.base import (  # noqa: F401
    DATASETS,
    ClipRecord,
    DatasetAdapter,
    DatasetIndex,
    DatasetLayoutError,
    PoseTrack,
    create_dataset,
)

# Built-in adapters register themselves on import. Missing ones are added as they land.
import importlib as _importlib

for _mod in ("demo", "finegym", "diving48", "haa500", "toyota_smarthome", "custom"):
    try:
        _importlib.import_module(f"stages.datasets.{_mod}")
    except ModuleNotFoundError as _e:  # only tolerate the adapter module itself being absent
        if _e.name != f"stages.datasets.{_mod}":
            raise
