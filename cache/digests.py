"""Content digests of a clip's arrays: written beside them, re-checked by ``pipeline cache verify``."""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np


def array_digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


def encoded_digest(encoded: Sequence[Any]) -> str:
    """sha256 of a sequence of byte strings (their count, lengths and bytes): e.g. JPEG frames."""
    h = hashlib.sha256(f"bytes{len(encoded)}".encode())
    for b in encoded:
        b = bytes(b)
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:32]
