"""Build a dataset adapter by its registered name (``gym99``, ``demo``, ``custom``, ...)."""
from __future__ import annotations

import os
from typing import Any, Optional

from stages.datasets.base import DatasetAdapter
from stages.registry import DATASETS, lookup


def create_dataset(name: str, root: Optional[os.PathLike] = None, **options: Any) -> DatasetAdapter:
    """The adapter registered as ``name`` (the built-ins register when :mod:`stages.datasets`
    is imported, which importing this module does first)."""
    return lookup(DATASETS, name)(root=root, **options)
