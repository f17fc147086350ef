"""Marks of the processes reading an entry, so ``pipeline cache gc`` does not remove it under them.

A training run reads its entry for hours; ``gc --keep-last`` or ``--incomplete-older-than`` judged
the entry by its own files alone and removed it mid-run (the run then failed on a missing clip,
named as a damaged one). A reader holds a claim-like file ``readers/<tag>.<pid>.<token>`` for as
long as it reads (:func:`reading`), refreshed by a heartbeat; gc leaves an entry with a live mark
alone and removes marks whose reader is gone, by the rules of :mod:`cache.claims`. A cache the
reader cannot write to (read-only for this user) gets no mark, with a warning."""
from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import Iterator

from cache import claims, layout

log = logging.getLogger(__name__)


@contextlib.contextmanager
def reading(entry_dir: os.PathLike, interval: float = 60.0) -> Iterator[None]:
    """Mark this process as a reader of the entry at ``entry_dir`` while the block runs."""
    path = Path(entry_dir) / layout.READERS_DIR / f"{claims.PIDS_TAG}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        # never parents: an entry removed meanwhile must not come back as an empty skeleton
        if not (Path(entry_dir) / layout.ROOT_META).is_file():
            raise FileNotFoundError(f"{entry_dir}: not an entry (removed?)")
        path.parent.mkdir(exist_ok=True)
        token = claims.try_claim(path)
    except OSError as e:  # a cache this user may read, not write: no mark, said (gc by its owner does not see it)
        log.warning("this run could not mark itself as a reader of %s (%s): a `pipeline cache gc` by a user who may "
                    "write there will not know it reads the entry (`pipeline cache doctor` checks a shared root)",
                    entry_dir, e.strerror or e)
        token = None
    beat = claims.Heartbeat(interval)
    if token:
        beat.add(path)
    try:
        yield
    finally:
        beat.stop()
        if token:
            claims.release(path, token)


def reader_marks(entry_dir: os.PathLike, ttl: float = claims.DEFAULT_TTL) -> tuple[list[Path], list[Path]]:
    """``(live, stale)``: the marks of the processes reading the entry now, and those whose reader
    is gone (gc removes them)."""
    d = Path(entry_dir) / layout.READERS_DIR
    try:
        names = sorted(n for n in os.listdir(d) if not n.startswith("."))
    except OSError:
        return [], []
    live, stale = [], []
    for n in names:
        (stale if claims.is_stale(d / n, ttl) else live).append(d / n)
    return live, stale
