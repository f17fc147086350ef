"""Frames as a plain uint8 array: ``none`` (raw, the default), ``lz4`` and ``zstd`` (lossless).

* ``none``: raw uint8, one chunk per clip. Reads cost little more than the bytes (the reader maps
  the chunk file and copies only the crop); real footage gains little from lossless byte codecs
  (Blosc-LZ4 stores it at ~0.9 of raw and reads at half the speed), so none is used.
* ``lz4`` / ``zstd``: Blosc-LZ4 / Zstd over the raw frames (kept for the rare footage with large
  flat areas; decompressed whole on every read).
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional

import numpy as np

from cache.digests import array_digest
from cache.frames_codecs.base import FramesCodec, register_frames_codec


class _ArrayFrames(FramesCodec):
    """Frames stored as one ``(T, H, W, 3)`` uint8 chunk with an optional lossless compressor."""

    def compressors(self) -> Optional[list]:
        return None

    def write(self, group: Any, frames: np.ndarray, settings: Any, config: dict) -> str:
        z = group.create_array("frames", shape=frames.shape, chunks=frames.shape, dtype=frames.dtype,
                               compressors=self.compressors(), config=config)
        z[...] = frames
        return array_digest(frames)

    def read(self, meta: Any) -> Any:
        from cache.chunks import read_array

        if meta.compressor == "vlen":
            raise ValueError(f"{meta.path}: variable-length frames in an entry whose codec is {self.name!r}")
        return read_array(meta, mmap=True)

    def digest(self, frames: Any) -> str:
        return array_digest(np.asarray(frames))


@register_frames_codec
class RawFrames(_ArrayFrames):
    name: ClassVar[str] = "none"
    help: ClassVar[str] = "raw uint8 (the default; lossless; the fastest CPU path)"
    digest_on_read: ClassVar[bool] = False  # memory-mapped: an item reads only its crop
    rows_need_frames: ClassVar[bool] = False

    def read_rows(self, clip: Any, indices, top: int, height: int):
        """The rows ``top .. top + height - 1`` of each frame ``indices``, read with one ``preadv``
        per frame from the chunk file (a band of whole rows is contiguous in it): what a view needs,
        copied once, without the page faults of touching a fresh memory map (~30% of a crop's cost)."""
        reads = self.row_reads(clip, indices, top, height)
        if reads is None:
            return super().read_rows(clip, indices, top, height)
        return reads.read(), range(len(indices)), top

    def row_reads(self, clip: Any, indices, top: int, height: int) -> Optional[Any]:
        """What :meth:`read_rows` reads, as a :class:`cache.chunks.RowReads` to read later or
        elsewhere; None when the clip's frames are not a raw chunk file."""
        from cache.chunks import band_reads

        meta = getattr(clip, "frames_meta", None)
        if meta is None or meta.compressor != "":
            return None
        h = meta.shape[1]
        if top < 0 or height < 1 or top + height > h:
            raise ValueError(f"rows {top}..{top + height - 1} outside frames of height {h}")
        return band_reads(meta.chunk_file, meta.shape, indices, top, height)


@register_frames_codec
class Lz4Frames(_ArrayFrames):
    name: ClassVar[str] = "lz4"
    help: ClassVar[str] = "lossless Blosc-LZ4 (real footage barely compresses)"

    def compressors(self) -> Optional[list]:
        from zarr.codecs import BloscCodec

        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]


@register_frames_codec
class ZstdFrames(_ArrayFrames):
    name: ClassVar[str] = "zstd"
    help: ClassVar[str] = "lossless Zstd"

    def compressors(self) -> Optional[list]:
        from zarr.codecs import ZstdCodec

        return [ZstdCodec(level=3)]
