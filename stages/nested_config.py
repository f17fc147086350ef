"""Nested config dictionaries: the one deep merge, the one conversion to plain Python, and their dotted leaves.

Model, experiment and run configs are mmengine ``Config`` / ``ConfigDict`` objects or plain
dicts; code that merges or hashes them first makes them plain with :func:`to_plain`.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Optional


def to_plain(x: Any) -> Any:
    """mmengine Config / ConfigDict / mappings -> dicts, tuples -> lists, recursively."""
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if isinstance(x, Mapping):
        return {k: to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    return x


def deep_merge(base: Mapping, override: Optional[Mapping]) -> dict:
    """A deep copy of ``base`` with ``override`` merged in: dicts merge key by key (override
    wins), everything else (lists included) is replaced."""
    out = copy.deepcopy(dict(base))
    for k, v in (override or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def dotted_get(d: Any, dotted: str) -> Any:
    """The value at ``dotted`` (``"ucmr.num_blocks"``) in a nested dict; None where a part is missing."""
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, Mapping) else None
    return d


def dotted_leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every leaf of a nested dict (lists and empty dicts are leaves)."""
    if not isinstance(d, Mapping) or (not d and prefix):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(dotted_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    return out
