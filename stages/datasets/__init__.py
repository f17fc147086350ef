"""Dataset adapters: ``base`` says what an adapter gives stage one, each built-in adapter registers
itself in :data:`stages.registry.DATASET_ADAPTERS` when imported here, ``factory`` builds one by name."""
from stages.datasets import custom, demo, diving48, finegym, haa500, kinetics400, toyota_smarthome  # noqa: F401
from stages.datasets.base import (  # noqa: F401
    ClipRecord,
    AdapterOptions,
    DatasetAdapter,
    DatasetIndex,
    DatasetLayoutError,
    PoseTrack,
    check_labels,
    default_data_root,
)
from stages.datasets.factory import adapter_class, create_dataset  # noqa: F401
from stages.registry import DATASET_ADAPTERS  # noqa: F401
