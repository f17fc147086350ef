"""Entry keys: a hash of everything that determines an entry's bytes."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Optional

from cache.layout import FORMAT_VERSION


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stable_hash(obj: Any, n: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj`` (key order and whitespace do not matter)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def file_sha256(path: os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_identity(path: Optional[os.PathLike], root: Optional[os.PathLike] = None) -> dict:
    """Path (relative to ``root`` when inside it), size and mtime: a change to any is a new file.

    A missing file has an identity too ("missing"), so adding it later changes the key.
    """
    if path is None:
        return {"path": None, "missing": True}
    p = os.fspath(path)
    rel = os.path.relpath(p, root) if root and p.startswith(os.fspath(root)) else p
    try:
        st = os.stat(p)
    except OSError:
        return {"path": rel, "missing": True}
    return {"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def settings_digest(dataset: str, settings: dict, fmt: Any = None) -> str:
    """The ``settings_hash`` of one dataset x stage-one setting (``settings``: what
    :func:`key_settings` makes) in store format ``fmt`` (default: this code's)."""
    return stable_hash({"format": FORMAT_VERSION if fmt is None else fmt, "dataset": dataset, "settings": settings})


def key_settings(settings: dict, pose: Any, skeleton: str, dataset_options: Any) -> dict:
    """What an entry's ``settings_hash`` hashes besides the dataset and format: the stage-one
    settings, the pose source's identity, the dataset's skeleton and the dataset options given.
    One place, for the writer (stages/extract/plan.py) and for the check of an entry's own
    metadata against its key (:func:`cache.entry.identity_problems`)."""
    return {**settings, "pose": pose, "skeleton": skeleton, "dataset_options": dataset_options}


def key_of(settings_hash: str, sources_hash: str) -> str:
    return stable_hash([settings_hash, sources_hash])


def entry_key(dataset: str, settings: dict, sources: Iterable[dict]) -> tuple[str, str, str]:
    """``(key, settings_hash, sources_hash)`` for one dataset x stage-one setting x source set.

    ``settings_hash`` alone finds the entries of a setting whatever the source files; the full
    key also pins every source file's identity and the store format version.
    """
    settings_hash = settings_digest(dataset, settings)
    sources_hash = stable_hash(list(sources))
    return key_of(settings_hash, sources_hash), settings_hash, sources_hash
