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
import math
import mmap as mmap_module
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from numcodecs import Blosc, Zstd


class ChunkFormatError(RuntimeError):
    """An array's metadata or chunk file is not what a format-2 clip holds."""


class ChunkDigestError(ChunkFormatError):
    """A chunk file's content does not match the digest its writer recorded: the file is damaged."""


def digest_mismatch(what: str, entry_dir: Any,
                    why: str = "content does not match the digest its writer recorded") -> ChunkDigestError:
    """The error for damaged content ``what`` (a chunk file, or a part of one, or a clip's
    attributes) of the entry in ``entry_dir``, with what to do about it (one place for the hint)."""
    return ChunkDigestError(
        f"{what}: {why} (the file is damaged). "
        f"`pipeline cache repair {entry_dir}` moves the clip aside and `pipeline extract` (the options that made "
        "the entry) extracts it again")


@dataclass(frozen=True)
class ArrayMeta:
    """What the reader needs of one array's Zarr metadata."""

    path: str  # the array's directory
    shape: tuple[int, ...]
    dtype: np.dtype  # little-endian; object for variable-length bytes
    compressor: str  # "" (raw bytes), "blosc", "zstd" or "vlen"
    attrs: dict
    chunk_file: str  # <path>/c/0/0/... : the one chunk (plain strings: this runs per item)


def chunk_file(array_dir: str, ndim: int) -> str:
    """The file of the one chunk of an ``ndim``-dimensional array in ``array_dir`` (Zarr v3's
    default chunk key encoding, ``/`` separated)."""
    return array_dir + "/c/" + "/".join(["0"] * max(1, ndim))


def parse_meta(array_dir: str, meta: dict) -> ArrayMeta:
    """Check that ``meta`` (an array's zarr.json content) is one chunk with known codecs."""
    def bad(why: str) -> ChunkFormatError:
        return ChunkFormatError(f"{array_dir}/zarr.json: {why}")

    if meta.get("node_type") != "array" or meta.get("zarr_format") != 3:
        raise bad("not a Zarr v3 array")
    shape = tuple(meta["shape"])
    grid = meta.get("chunk_grid", {})
    if grid.get("name") != "regular" or tuple(grid.get("configuration", {}).get("chunk_shape", ())) != shape:
        raise bad(f"expected one chunk holding the whole array {shape}, got {grid}")
    cke = meta.get("chunk_key_encoding", {})
    if cke.get("name") != "default" or cke.get("configuration", {}).get("separator", "/") != "/":
        raise bad(f"unexpected chunk key encoding {cke}")
    if meta.get("storage_transformers"):
        raise bad("storage transformers are not expected")
    codecs = [c["name"] for c in meta.get("codecs", [])]
    chunk = chunk_file(array_dir, len(shape))
    attrs = meta.get("attributes", {})
    if meta["data_type"] == "variable_length_bytes":
        if codecs != ["vlen-bytes"]:
            raise bad(f"variable-length bytes with codecs {codecs}, expected ['vlen-bytes']")
        return ArrayMeta(array_dir, shape, np.dtype(object), "vlen", attrs, chunk)
    endian = meta["codecs"][0].get("configuration", {}).get("endian", "little") if codecs else None
    if not codecs or codecs[0] != "bytes" or endian != "little" or len(codecs) > 2 or \
            (len(codecs) == 2 and codecs[1] not in ("blosc", "zstd")):
        raise bad(f"codecs {meta.get('codecs')} are not bytes(little)[+blosc|zstd]")
    return ArrayMeta(array_dir, shape, _dtype(meta["data_type"]), codecs[1] if len(codecs) == 2 else "", attrs, chunk)


_DTYPES: dict[str, np.dtype] = {}
_BLOSC, _ZSTD = Blosc(), Zstd()  # decoding needs no settings: both read them from the frame header


def _dtype(name: str) -> np.dtype:
    d = _DTYPES.get(name)
    if d is None:
        d = _DTYPES[name] = np.dtype(name).newbyteorder("<")
    return d


def read_group_meta(group_dir: Union[str, Path]) -> tuple[dict, dict[str, ArrayMeta]]:
    """A group's attributes and the metadata of its arrays (from the consolidated metadata)."""
    group_dir = os.fspath(group_dir)
    path = os.path.join(group_dir, "zarr.json")
    try:
        meta = json.loads(_read_file(path))
    except ValueError as e:
        raise ChunkFormatError(f"{path}: not valid JSON ({e}): the file is damaged") from None
    cons = (meta.get("consolidated_metadata") or {}).get("metadata")
    if cons is None:
        raise ChunkFormatError(f"{group_dir}/zarr.json: no consolidated metadata (not a format-2 clip)")
    arrays = {name: parse_meta(f"{group_dir}/{name}", m) for name, m in cons.items() if m.get("node_type") == "array"}
    return meta.get("attributes", {}), arrays


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ChunkFormatError(_missing(path)) from None


def _missing(path: str) -> str:
    """What is missing: the file, or the highest folder above it that is gone (a clip removed by
    ``cache repair``, an entry removed by ``cache gc`` or moved while it was read)."""
    what = "metadata file" if os.path.basename(path) == "zarr.json" else "chunk file"
    gone, up = path, os.path.dirname(path)
    while up and up != os.path.dirname(up) and not os.path.exists(up):
        gone, up = up, os.path.dirname(up)
    if gone == path:
        return f"{path}: {what} missing"
    return f"{path}: {what} missing: {gone} is gone (removed or moved while it was in use)"


def _read_file(path: str) -> bytes:
    fd = _open(path)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        while len(data) < size:  # a short read (large files, network filesystems)
            more = os.read(fd, size - len(data))
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)


def read_array(meta: ArrayMeta, mmap: bool = False) -> Any:
    """The array's values: an ndarray (read-only; with ``mmap`` and a raw chunk, a view of the
    memory-mapped file, so only what is later touched is read) or, for variable-length bytes, a
    list of bytes-like objects."""
    f = meta.chunk_file
    if meta.compressor == "vlen":
        return parse_vlen(_read_file(f), f, math.prod(meta.shape))
    n = math.prod(meta.shape) * meta.dtype.itemsize
    if meta.compressor == "":
        if mmap and n:
            return _map(f, n).view(meta.dtype).reshape(meta.shape)
        raw = _read_file(f)
    else:
        data = _read_file(f)
        try:
            raw = (_BLOSC if meta.compressor == "blosc" else _ZSTD).decode(data)
        except Exception as e:  # the codecs' own words name no file
            raise ChunkFormatError(f"{f}: cannot be decompressed ({meta.compressor}: {e}): the file is damaged") from None
    if len(raw) != n:
        raise ChunkFormatError(f"{f}: decodes to {len(raw)} bytes, expected {n} for {meta.shape} {meta.dtype}")
    return np.frombuffer(raw, dtype=meta.dtype).reshape(meta.shape)


def _open_sized(path: str, n: int) -> int:
    """A descriptor of the raw chunk ``path``, which must hold exactly ``n`` bytes (another size:
    the file is damaged, refused naming it)."""
    fd = _open(path)
    size = os.fstat(fd).st_size
    if size != n:
        os.close(fd)
        raise ChunkFormatError(f"{path}: {size} bytes, expected {n} (the file is damaged)")
    return fd


def _map(path: str, n: int) -> np.ndarray:
    """The file as a read-only uint8 array over a memory map (a plain ndarray: np.memmap's
    per-slice Python overhead costs more than the copy of a 224 x 224 crop)."""
    fd = _open_sized(path, n)
    try:
        m = mmap_module.mmap(fd, n, access=mmap_module.ACCESS_READ)
    finally:
        os.close(fd)
    return np.frombuffer(m, dtype=np.uint8)


@dataclass(frozen=True)
class RowReads:
    """Bands of whole rows of frames in a plain uint8 chunk file (raw ``(T, H, W, C)`` frames, or
    yuv420's ``(T, H / 2, 3, W)`` row pairs): one contiguous range per frame (``offsets``,
    ``nbytes`` each), read into a ``shape`` array. A plain record, so
    it can travel (a loader worker names the bytes; the process that needs them reads them)."""

    path: str
    offsets: tuple[int, ...]
    nbytes: int
    shape: tuple[int, ...]  # (len(offsets), rows, W, C), or (len(offsets), row pairs, 3, W)
    file_size: int  # the whole chunk's bytes (T * H * W * C): a file of another size is damaged

    def read(self, out: Any = None) -> np.ndarray:
        """The bands, one ``preadv`` per frame straight into ``out`` (a C-contiguous uint8 array of
        :attr:`shape`; default: a new one); short reads (network filesystems) are continued."""
        if out is None:
            out = np.empty(self.shape, np.uint8)
        if tuple(out.shape) != tuple(self.shape) or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError(f"{self.path}: rows read into a {out.dtype} {tuple(out.shape)} array, expected uint8 "
                             f"{self.shape} (contiguous)")
        fd = _open_sized(self.path, self.file_size)
        try:
            whole, n = memoryview(out).cast("B"), self.nbytes
            for k, off in enumerate(self.offsets):
                _pread_whole(fd, whole[k * n:(k + 1) * n], off, self.path)
        finally:
            os.close(fd)
        return out


def _pread_whole(fd: int, band: memoryview, off: int, path: str) -> None:
    """Fill ``band`` from offset ``off`` of ``fd``; a short read (network filesystems) is
    continued, a file that ends first is refused naming ``path``."""
    got = os.preadv(fd, [band], off)
    while got < len(band):
        more = os.preadv(fd, [band[got:]], off + got)
        if more <= 0:
            raise ChunkFormatError(f"{path}: short read ({got} of {len(band)} bytes at {off})")
        got += more


def band_reads(path: str, shape: tuple[int, ...], indices, first: int, rows: int) -> RowReads:
    """The :class:`RowReads` of rows ``first .. first + rows - 1`` (along axis 1) of the frames
    ``indices`` of a plain uint8 chunk of ``shape`` (frames along axis 0): one range per frame."""
    t, per_frame = int(shape[0]), int(shape[1])
    row = math.prod(shape[2:])
    offsets = []
    for i in indices:  # (a Python loop: numpy's calls cost more for 16 frames)
        i = int(i)
        if not 0 <= i < t:
            raise IndexError(f"frame {i} of {t}")
        offsets.append((i * per_frame + first) * row)
    return RowReads(path, tuple(offsets), rows * row, (len(offsets), rows, *shape[2:]), t * per_frame * row)


@dataclass(frozen=True)
class VlenFiles:
    """Where the elements of a one-chunk ``vlen-bytes`` array lie in its chunk file, from their
    lengths as their writer recorded them: element ``i`` is ``lengths[i]`` bytes at ``offsets[i]``,
    after its ``u32`` length. :meth:`read` reads only the elements asked for."""

    path: str
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]
    file_size: int  # the count, every length and every element: a file of another size is damaged

    def read(self, indices: Any) -> list[memoryview]:
        """The elements ``indices`` (in that order), one ``preadv`` per run of neighbouring ones.
        Each element's stored length must be the recorded one, else the file is damaged (refused,
        naming it)."""
        idx = [int(i) for i in indices]
        n = len(self.lengths)
        for i in idx:
            if not 0 <= i < n:
                raise IndexError(f"{self.path}: element {i} of {n}")
        got: dict[int, memoryview] = {}
        fd = _open_sized(self.path, self.file_size)
        try:
            for first, last in _runs(sorted(set(idx))):
                start = self.offsets[first] - 4
                buf = memoryview(bytearray(self.offsets[last] + self.lengths[last] - start))
                _pread_whole(fd, buf, start, self.path)
                for i in range(first, last + 1):
                    at = self.offsets[i] - start
                    if struct.unpack_from("<I", buf, at - 4)[0] != self.lengths[i]:
                        raise self._not_recorded(i)
                    got[i] = buf[at:at + self.lengths[i]]
        finally:
            os.close(fd)
        return [got[i] for i in idx]

    def read_all(self) -> list[memoryview]:
        """Every element, the file read whole and parsed as zarr does (its count checked), each
        length compared with the recorded one."""
        out = parse_vlen(_read_file(self.path), self.path, len(self.lengths))
        for i, (b, n) in enumerate(zip(out, self.lengths)):
            if len(b) != n:
                raise self._not_recorded(i)
        return out

    def _not_recorded(self, i: int) -> ChunkFormatError:
        return ChunkFormatError(f"{self.path}: element {i} is not the {self.lengths[i]} bytes its writer recorded "
                                "(the file is damaged)")


def vlen_files(path: str, lengths: Any) -> VlenFiles:
    """The :class:`VlenFiles` of a ``vlen-bytes`` chunk file ``path`` whose elements are ``lengths``
    bytes long (the layout in the module docstring)."""
    offsets, pos = [], 4
    for n in lengths:
        offsets.append(pos + 4)
        pos += 4 + int(n)
    return VlenFiles(path, tuple(offsets), tuple(int(n) for n in lengths), pos)


def _runs(sorted_indices: list[int]) -> list[tuple[int, int]]:
    """``(first, last)`` of each run of consecutive integers in ``sorted_indices``."""
    out: list[tuple[int, int]] = []
    for i in sorted_indices:
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def parse_vlen(buf: bytes, f: str, want: int) -> list[bytes]:
    """The ``want`` elements of a ``vlen-bytes`` chunk ``buf`` (the file ``f``, for errors): its
    count, every length and the end of the data checked."""
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
