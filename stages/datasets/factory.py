"""Build a dataset adapter by its registered name (``gym99``, ``demo``, ``custom``, ...)."""
from __future__ import annotations

import os
from typing import Any, Optional

from stages.datasets.base import DatasetAdapter
from stages.registry import DATASET_ADAPTERS, get_registered
from stages.settings import SettingsError


def adapter_class(name: str) -> type:
    """The adapter class registered as ``name`` (nothing is parsed or built)."""
    return get_registered(DATASET_ADAPTERS, name)


def create_dataset(name: str, root: Optional[os.PathLike] = None, *, options_source: str = "-o",
                   **options: Any) -> DatasetAdapter:
    """The adapter registered as ``name`` with its options checked (the built-ins register when
    :mod:`stages.datasets` is imported, which importing this module does first)."""
    cls = adapter_class(name)
    try:
        return cls(root=root, options_source=options_source, **options)
    except SettingsError as e:
        raise SettingsError(f"{name}: {e}", e.key, e.source) from None
