"""Reading a clip's arrays straight from their chunk files: the fast path of ``read_clip``.

Going through zarr-python costs ~1-1.5 ms per array (its event loop, codec pipeline and metadata
parsing) against well under 0.1 ms of I/O for all but the frames. Every array of a format-2 clip
is a single Zarr v3 chunk with codecs this module knows, and the clip group's ``zarr.json``
carries every array's metadata (zarr's consolidated metadata), so a clip is read as one small
JSON file plus one file per array, decoded with numcodecs, exactly as zarr would decode it:

* ``bytes`` (little-endian), nothing else: the file *is* the array; large ones are memory-mapped
  so a crop copies only what it takes;
* ``bytes`` + ``blosc`` or ``zstd``: decompressed with numcodecs;
* ``vlen-bytes`` (JPEG frames): ``u32 count``, then per element ``u32 length`` + the bytes.

Anything else (another codec chain, several chunks, a missing or short chunk file) raises
:class:`ChunkFormatError` naming the file: never a guess. Plain zarr reads the same files.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import Blosc, Zstd


class ChunkFormatError(RuntimeError):
    """An array's metadata or chunk file is not what a format-2 clip holds."""


@dataclass(frozen=True)
class ArrayMeta:
    """What the reader needs of one array's Zarr metadata."""

    path: Path  # the array's directory
    shape: tuple[int, ...]
    dtype: np.dtype  # little-endian; object for variable-length bytes
    compressor: str  # "" (raw bytes), "blosc", "zstd" or "vlen"
    attrs: dict

    @property
    def chunk_file(self) -> Path:
        return self.path.joinpath("c", *(["0"] * max(1, len(self.shape))))


def parse_meta(array_dir: Path, meta: dict) -> ArrayMeta:
    """Check that ``meta`` (an array's zarr.json content) is one chunk with known codecs."""
    where = f"{array_dir}/zarr.json"
    if meta.get("node_type") != "array" or meta.get("zarr_format") != 3:
        raise ChunkFormatError(f"{where}: not a Zarr v3 array")
    shape = tuple(int(x) for x in meta["shape"])
    grid = meta.get("chunk_grid", {})
    if grid.get("name") != "regular" or tuple(grid.get("configuration", {}).get("chunk_shape", ())) != shape:
        raise ChunkFormatError(f"{where}: expected one chunk holding the whole array {shape}, got {grid}")
    cke = meta.get("chunk_key_encoding", {})
    if cke.get("name") != "default" or cke.get("configuration", {}).get("separator", "/") != "/":
        raise ChunkFormatError(f"{where}: unexpected chunk key encoding {cke}")
    if meta.get("storage_transformers"):
        raise ChunkFormatError(f"{where}: storage transformers are not expected")
    codecs = [c["name"] for c in meta.get("codecs", [])]
    dt = meta["data_type"]
    if dt == "variable_length_bytes":
        if codecs != ["vlen-bytes"]:
            raise ChunkFormatError(f"{where}: variable-length bytes with codecs {codecs}, expected ['vlen-bytes']")
        return ArrayMeta(array_dir, shape, np.dtype(object), "vlen", meta.get("attributes", {}))
    first = meta["codecs"][0] if meta.get("codecs") else {}
    endian = first.get("configuration", {}).get("endian", "little")
    if not codecs or codecs[0] != "bytes" or endian != "little" or len(codecs) > 2 or \
            (len(codecs) == 2 and codecs[1] not in ("blosc", "zstd")):
        raise ChunkFormatError(f"{where}: codecs {meta.get('codecs')} are not bytes(little)[+blosc|zstd]")
    return ArrayMeta(array_dir, shape, np.dtype(dt).newbyteorder("<"), codecs[1] if len(codecs) == 2 else "",
                     meta.get("attributes", {}))


def read_group_meta(group_dir: Path) -> tuple[dict, dict[str, ArrayMeta]]:
    """A group's attributes and the metadata of its arrays (from the consolidated metadata)."""
    with open(group_dir / "zarr.json", "rb") as f:
        meta = json.loads(f.read())
    cons = (meta.get("consolidated_metadata") or {}).get("metadata")
    if cons is None:
        raise ChunkFormatError(f"{group_dir}/zarr.json: no consolidated metadata (not a format-2 clip)")
    arrays = {name: parse_meta(group_dir / name, m) for name, m in cons.items() if m.get("node_type") == "array"}
    return meta.get("attributes", {}), arrays


def _read_file(path: Path) -> bytes:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read()
    except FileNotFoundError:
        raise ChunkFormatError(f"{path}: chunk file missing") from None


def read_array(meta: ArrayMeta, mmap: bool = False) -> Any:
    """The array's values: an ndarray (read-only, memory-mapped with ``mmap`` when the chunk is raw
    bytes) or, for variable-length bytes, a list of ``bytes``."""
    f = meta.chunk_file
    if meta.compressor == "vlen":
        return _parse_vlen(_read_file(f), meta)
    n = int(np.prod(meta.shape, dtype=np.int64)) * meta.dtype.itemsize
    if meta.compressor == "":
        if mmap and n:
            size = _size(f)
            if size != n:
                raise ChunkFormatError(f"{f}: {size} bytes, expected {n} for {meta.shape} {meta.dtype}")
            return np.memmap(f, dtype=meta.dtype, mode="r", shape=meta.shape)
        raw = _read_file(f)
    elif meta.compressor == "blosc":
        raw = Blosc().decode(_read_file(f))
    else:
        raw = Zstd().decode(_read_file(f))
    if len(raw) != n:
        raise ChunkFormatError(f"{f}: decodes to {len(raw)} bytes, expected {n} for {meta.shape} {meta.dtype}")
    a = np.frombuffer(raw, dtype=meta.dtype).reshape(meta.shape)
    return a


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        raise ChunkFormatError(f"{path}: chunk file missing") from None


def _parse_vlen(buf: bytes, meta: ArrayMeta) -> list[bytes]:
    f = meta.chunk_file
    want = int(np.prod(meta.shape, dtype=np.int64))
    if len(buf) < 4 or struct.unpack_from("<I", buf, 0)[0] != want:
        raise ChunkFormatError(f"{f}: not a vlen-bytes chunk of {want} elements")
    out, pos, mv = [], 4, memoryview(buf)
    for _ in range(want):
        if pos + 4 > len(buf):
            raise ChunkFormatError(f"{f}: truncated")
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + n > len(buf):
            raise ChunkFormatError(f"{f}: truncated")
        out.append(mv[pos:pos + n])
        pos += n
    if pos != len(buf):
        raise ChunkFormatError(f"{f}: {len(buf) - pos} bytes after the last element")
    return out
