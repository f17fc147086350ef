"""What a training item reads of a clip besides its pixels, for all of an entry's clips at once.

A loader item needs a clip's frame indices, its poses, the scale from original to cached pixels and
where its frames' bytes are. Read per clip (:meth:`cache.CacheEntry.read_clip`) that is a JSON
file, three small arrays and their digests: ~0.09 ms an item, about a quarter of what a loader worker does
for an item whose rows the pinning thread reads (docs/benchmarks.md). A finished entry's ``index/``
(written once, by the writer that completes the entry) holds them for every clip as flat arrays;
:class:`ItemIndex` loads the clips of one split once, checks the digests the writer recorded, and
hands out :class:`cache.ClipData` without opening a clip file. Entries whose poses exceed
:data:`MAX_POSE_BYTES` are read per clip; :meth:`ItemIndex.current` tells a long-running reader
when the index it loaded is gone (docs/cache.md: when that happens and what readers do).

Index arrays (``index/``, beside the flat poses; written since store format 3's item index
version :data:`ITEM_INDEX_VERSION`, recorded in the index's ``items`` attribute with the arrays'
digests; an index without it is read per clip as before, nothing else changes):

* ``frame_indices`` (sum T_v * K,) int32 and ``frame_offsets`` (N + 1,) int64: each clip's
  ``frame_indices``;
* ``scale`` (N, 2) float64: each clip's ``scale`` attribute (original to cached pixels);
* ``frames_shape`` (N, 4) int64: the shape of each clip's frames chunk (``(T, H, W, 3)`` for codec
  ``none``, ``(T, H / 2, 3, W)`` for ``yuv420``); written only when every clip's frames are one
  uncompressed 4-d uint8 chunk (codecs ``none`` and ``yuv420``), the case in which
  an item's frames are plain byte ranges of a file named by the clip's uid
  (:meth:`cache.frames_codecs.FramesCodec.row_reads`). A chunk file of another size is refused by
  the reader, naming it.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Optional, Sequence

import numpy as np

from cache import layout
from cache.chunks import ArrayMeta, chunk_file
from cache.digests import array_digest, uids_digest
from cache.entry import CacheEntry, ClipData

#: the layout of the item arrays in ``index/`` (attribute ``items``: version and digests)
ITEM_INDEX_VERSION = 1
#: the most pose bytes (the whole entry's keypoints and scores) a dataset holds in memory: every
#: split's poses are read and their digests checked at load (a chunk at a time: the load's peak is
#: about what it keeps), and a split's copy is held per process (shared with forked workers).
#: FineGym, Diving48 and HAA500 hold a few hundred MB; an entry past this (Kinetics-400: ~15 GB)
#: reads each clip's poses per item as before.
MAX_POSE_BYTES = 1 << 30
ITEM_ARRAYS = ("keypoints", "scores", "offsets", "frame_indices", "frame_offsets", "scale", "frames_shape")
_FRAMES_DTYPE = np.dtype("uint8")

log = logging.getLogger(__name__)


class ItemIndexError(RuntimeError):
    """The index's item arrays disagree with their recorded digests or with each other."""


def item_arrays(clips: Sequence[ClipData]) -> dict[str, np.ndarray]:
    """The item arrays of ``clips`` (read with their ``frame_indices``, ``keypoints`` and ``scores``),
    in order, for the writer of ``index/`` (beside its flat ``keypoints``, ``scores``, ``offsets``)."""
    fi = [np.asarray(c.frame_indices) for c in clips]
    out = {
        "frame_indices": np.concatenate(fi).astype(np.int32) if fi else np.zeros(0, np.int32),
        "frame_offsets": np.cumsum([0] + [len(f) for f in fi]).astype(np.int64),
        "scale": np.asarray([c.scale for c in clips], np.float64).reshape(-1, 2),
    }
    metas = [c.frames_meta for c in clips]
    if all(m is not None and m.compressor == "" and m.dtype == _FRAMES_DTYPE and len(m.shape) == 4 for m in metas):
        out["frames_shape"] = np.asarray([m.shape for m in metas], np.int64).reshape(-1, 4)
    return out


def item_attrs(arrays: dict[str, np.ndarray], uids: Sequence[str]) -> dict:
    """The index's ``items`` attribute: version and the digests of the item arrays present and of
    the clip order (``uids``: which clip each row of them is)."""
    digests = {k: array_digest(np.asarray(a)) for k, a in sorted(arrays.items()) if k in ITEM_ARRAYS}
    digests["uids"] = uids_digest(uids)
    return {"version": ITEM_INDEX_VERSION, "digests": digests}


class ItemIndex:
    """The item arrays of the clips ``uids`` of a finished entry, held in memory (compact: only
    those clips; read-only), so that :meth:`clip` costs no file access. Build with :meth:`load`.

    The index is written once and removed (never rewritten in place) before any of the entry's
    clips is moved aside or extracted again, so :meth:`current` (the index file still the one
    loaded) tells a long-running reader whether the arrays still describe the clips."""

    def __init__(self, entry: CacheEntry, rows: Sequence[dict], arrays: dict[str, np.ndarray], identity: tuple):
        for a in arrays.values():
            a.flags.writeable = False  # shared by every item made from them
        self.identity = identity
        self._meta_file = os.fspath(entry.path / layout.INDEX_DIR / layout.ROOT_META)
        self.entry_path = os.fspath(entry.path)
        self.grid_cell = entry.grid_cell
        self.frames_per_segment = entry.frames_per_segment
        self.codec = entry.codec
        self._rows = {r["uid"]: (i, r) for i, r in enumerate(rows)}
        self.keypoints, self.scores = arrays["keypoints"], arrays["scores"]
        self.pose_offsets = arrays["offsets"]
        self.frame_indices, self.frame_offsets = arrays["frame_indices"], arrays["frame_offsets"]
        self.scale = [(float(sx), float(sy)) for sx, sy in arrays["scale"]]
        self.frames_shape = [tuple(int(v) for v in s) for s in arrays["frames_shape"]]

    @classmethod
    def load(cls, entry: CacheEntry, rows: Sequence[dict]) -> Optional["ItemIndex"]:
        """The item arrays of the clips ``rows`` (plan rows) of ``entry``, or None where the entry
        has no index (not finished), an index written before the item arrays, or frames that are not
        plain chunks (codecs none and yuv420). Raises :class:`ItemIndexError` naming the index when
        its arrays do not match the digests the writer recorded or do not cover ``rows``."""
        idx_dir = entry.path / layout.INDEX_DIR
        try:
            identity = _identity(os.stat(idx_dir / layout.ROOT_META))
        except FileNotFoundError:
            return None
        try:
            return cls._load(entry, rows, idx_dir, identity)
        except PermissionError as e:  # another user's index with restrictive modes: the clips may still be readable
            log.warning("entry %s: its index cannot be read (%s): items read each clip instead (slower); "
                        "`pipeline cache doctor` checks a shared root's modes", entry.key, e)
            return None
        except ValueError as e:  # a damaged zarr.json (JSONDecodeError and zarr's metadata errors)
            raise ItemIndexError(f"{idx_dir}: its metadata is unreadable ({type(e).__name__}: {e}); the index is "
                                 f"damaged: `pipeline cache repair {entry.path}` writes it again") from e

    @classmethod
    def _load(cls, entry: CacheEntry, rows: Sequence[dict], idx_dir, identity) -> Optional["ItemIndex"]:
        import zarr

        g = zarr.open_group(idx_dir, mode="r")
        items = g.attrs.get("items")
        if not isinstance(items, dict) or items.get("version") != ITEM_INDEX_VERSION:
            return None  # written before the item arrays (or by a newer layout): read per clip
        digests = items.get("digests") or {}
        if "frames_shape" not in digests:
            return None

        def damaged(what: str) -> ItemIndexError:
            return ItemIndexError(f"{idx_dir}/{what} (the index is damaged; `pipeline cache repair {entry.path}` "
                                  "writes it again)")

        absent = [name for name in ITEM_ARRAYS if name not in g]
        if absent:
            raise damaged(f"{absent[0]}: missing")
        poses = g["keypoints"].nbytes + g["scores"].nbytes
        if poses > MAX_POSE_BYTES:
            log.info("entry %s: its poses (%.1f GB) exceed the item index's bound (%.1f GB): items read each clip",
                     entry.key, poses / 1e9, MAX_POSE_BYTES / 1e9)
            return None
        uids = list(g.attrs.get("uids") or [])
        if uids_digest(uids) != digests.get("uids"):
            raise damaged("zarr.json: its clip list does not match the digest its writer recorded")
        # The per-clip arrays are small: read whole and checked. The ragged ones (poses: nearly all the
        # bytes) are streamed below, so that the whole entry's poses are never in memory beside the
        # split's copy (per dataset and per DDP rank).
        per_clip = {}
        for name in ("offsets", "frame_offsets", "scale", "frames_shape"):
            a = g[name][...]
            if array_digest(a) != digests.get(name):
                raise damaged(f"{name}: content does not match the digest its writer recorded")
            per_clip[name] = a
        pos = {u: i for i, u in enumerate(uids)}
        n = len(pos)
        offsets, frame_offsets = per_clip["offsets"], per_clip["frame_offsets"]
        if len(offsets) != n + 1 or len(frame_offsets) != n + 1 \
                or len(per_clip["scale"]) != n or len(per_clip["frames_shape"]) != n \
                or not _covers(offsets, g["keypoints"].shape[0]) or g["scores"].shape[0] != g["keypoints"].shape[0] \
                or not _covers(frame_offsets, g["frame_indices"].shape[0]):
            raise ItemIndexError(f"{idx_dir}: item arrays of other lengths than its {n} clips")
        missing = [r["uid"] for r in rows if r["uid"] not in pos]
        if missing:
            raise ItemIndexError(f"{idx_dir}: no item arrays for clips {missing[:5]} (the index is older than the "
                                 f"clips; `pipeline cache repair {entry.path}` writes it again)")
        take = np.asarray([pos[r["uid"]] for r in rows], np.int64)

        def taken(name: str, ragged_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            values, value_offsets, digest = _take_ragged(g[name], ragged_offsets, take)
            if digest != digests.get(name):
                raise damaged(f"{name}: content does not match the digest its writer recorded")
            return values, value_offsets

        kept: dict[str, Any] = {"scale": per_clip["scale"][take], "frames_shape": per_clip["frames_shape"][take]}
        kept["keypoints"], kept["offsets"] = taken("keypoints", offsets)
        kept["scores"], _ = taken("scores", offsets)
        kept["frame_indices"], kept["frame_offsets"] = taken("frame_indices", frame_offsets)
        return cls(entry, rows, kept, identity)

    def __contains__(self, uid: str) -> bool:
        return uid in self._rows

    def current(self) -> bool:
        """Whether the entry's index is still the one these arrays were loaded from (a stat): False
        once it was removed (the entry reopened: a clip moved aside or missing) or written anew."""
        try:
            return _identity(os.stat(self._meta_file)) == self.identity
        except FileNotFoundError:
            return False

    def clip(self, uid: str) -> ClipData:
        """The clip ``uid`` as :meth:`cache.CacheEntry.read_clip` reads it with ``frame_indices``,
        ``keypoints`` and ``scores`` (frames not read: ``frames_meta`` names their chunk)."""
        i, row = self._rows[uid]
        p0, p1 = self.pose_offsets[i], self.pose_offsets[i + 1]
        f0, f1 = self.frame_offsets[i], self.frame_offsets[i + 1]
        path = f"{self.entry_path}/{layout.CLIPS_DIR}/{uid}/frames"
        shape = self.frames_shape[i]
        meta = ArrayMeta(path, shape, _FRAMES_DTYPE, "", {}, chunk_file(path, len(shape)))
        return ClipData(clip_id=row.get("clip_id", uid), uid=uid, split=row.get("split"), label=int(row["label"]),
                        frames=None, frame_indices=self.frame_indices[f0:f1], keypoints=self.keypoints[p0:p1],
                        scores=self.scores[p0:p1], grids=None, grid_cell=self.grid_cell,
                        attrs={"scale": self.scale[i]}, frames_per_segment=self.frames_per_segment,
                        frames_meta=meta, frame_shape=self.codec.frame_shape(meta))


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def _covers(offsets: np.ndarray, length: int) -> bool:
    """Whether ``offsets`` (N + 1, from 0, never decreasing) split exactly ``length`` rows."""
    return len(offsets) > 0 and offsets[0] == 0 and offsets[-1] == length and bool(np.all(offsets[1:] >= offsets[:-1]))


#: the least bytes one read of a streamed array takes (whole chunks): fewer zarr calls for small chunks
_STREAM_BYTES = 8 << 20


def _take_ragged(array: Any, offsets: np.ndarray, take: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """The rows ``offsets[t]:offsets[t + 1]`` of ``array`` (a zarr array, clips ragged along axis 0)
    for each ``t`` of ``take``, in that order, their offsets, and the whole array's digest
    (:func:`cache.digests.array_digest`'s, which the caller compares before using the rows).

    Read whole chunks at a time in order, each hashed and its taken rows copied out, so that only the
    taken rows and one read are in memory (reading the array whole and then copying its rows peaked
    at ~2.5x what was kept: 547 MB for 223 MB at 20k clips)."""
    starts, ends = offsets[take], offsets[take + 1]
    lens = ends - starts
    out_offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    total, row_shape, dtype = int(array.shape[0]), tuple(array.shape[1:]), np.dtype(array.dtype)
    out = np.empty((int(out_offsets[-1]), *row_shape), dtype)
    # as array_digest hashes the whole array: its dtype and shape, then its bytes (chunk after chunk)
    digest = hashlib.sha256(f"{dtype.str}{tuple(array.shape)}".encode())
    # the taken clips by their place in the index: both their starts and their ends never decrease
    order = np.argsort(take, kind="stable")
    sorted_starts, sorted_ends = starts[order], ends[order]
    row_bytes = max(1, dtype.itemsize * int(np.prod(row_shape, dtype=np.int64)))
    chunk_rows = max(1, int(array.chunks[0]))
    step = chunk_rows * max(1, _STREAM_BYTES // (chunk_rows * row_bytes))
    for c0 in range(0, total, step):
        c1 = min(c0 + step, total)
        block = np.ascontiguousarray(array[c0:c1])
        digest.update(block.data)
        # the taken clips with rows in [c0, c1): the part of each inside it, copied in one gather
        sel = order[np.searchsorted(sorted_ends, c0, side="right"):np.searchsorted(sorted_starts, c1, side="left")]
        first, last = np.maximum(starts[sel], c0), np.minimum(ends[sel], c1)
        n = last - first
        within = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
        out[np.repeat(out_offsets[sel] + first - starts[sel], n) + within] = block[np.repeat(first - c0, n) + within]
    return out, out_offsets, digest.hexdigest()[:32]
