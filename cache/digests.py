"""Content digests of a clip's arrays: written beside them, compared by the reader and by
``pipeline cache verify``."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import numpy as np


def array_digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (recorded by the writer, compared by the reader
    and by ``pipeline cache verify``)."""
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).data if a.flags.c_contiguous else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


def encoded_digest(encoded: Sequence[Any]) -> str:
    """sha256 of a sequence of byte strings (their count, lengths and bytes): e.g. JPEG frames."""
    h = hashlib.sha256(f"bytes{len(encoded)}".encode())
    for b in encoded:
        b = memoryview(b).cast("B")  # no copy: the bytes as they are
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:32]


def file_digest(data: Any) -> str:
    """sha256 of one stored file's bytes (e.g. one JPEG frame: recorded per frame so that a read
    of some frames checks just those)."""
    return hashlib.sha256(memoryview(data).cast("B")).hexdigest()[:32]


def uids_digest(uids: Sequence[str]) -> str:
    """sha256 of a list of clip ids in order (an item index's row order, the clips a run trained on)."""
    return hashlib.sha256(json.dumps(list(uids)).encode()).hexdigest()[:32]


def attrs_digest(attrs: dict) -> str:
    """sha256 of a clip's attributes as its ``zarr.json`` holds them, all but ``attrs_digest``
    itself (recorded by the writer from what it read back, compared by the reader)."""
    from cache.keys import canonical_json

    body = {k: v for k, v in attrs.items() if k != "attrs_digest"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:32]
