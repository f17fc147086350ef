"""Frames as 8-bit YUV 4:2:0, one plain chunk per clip: ``--frames-codec yuv420``.

Half the bytes of raw RGB (1.5 a pixel): half the storage, half of what an item copies, half of
what a cold read takes from the disk, at a small loss (docs/cache.md): the chroma of each 2x2 block
of pixels is shared, as in the H.264 streams the frames were decoded from and in the short-side-256
copies mmaction2's tools make. Measured on the synthetic 720p clips' cached frames: 41 dB PSNR
against the RGB frames, as JPEG at quality 95 (docs/benchmarks.md).

The conversion is OpenCV's (``COLOR_RGB2YUV_I420`` / ``COLOR_YUV2RGB_I420``: ITU-R BT.601, video
range, Y in 16..235, nearest chroma upsampling). :func:`yuv420_to_rgb_int` is the same arithmetic,
integer for integer (:data:`BT601_YUV_TO_RGB`), which the training device runs
(:mod:`stages.data.device_frames`): both give the same pixels.

Layout (the array's shape says everything; no attribute): a clip's ``(T, H, W, 3)`` RGB frames,
``H`` and ``W`` even, are stored as a ``(T, H / 2, 3, W)`` uint8 array, one row per pair of frame
rows: sub-row 0 is luma row ``2r``, sub-row 1 luma row ``2r + 1``, sub-row 2 the pair's chroma,
``W / 2`` Cb samples then ``W / 2`` Cr. A band of frame rows starting and ending on even rows is
therefore one contiguous byte range per frame, as for raw frames: a training item reads its views'
rows with one ``preadv`` per frame (:meth:`Yuv420Codec.row_reads`, its band widened to even rows
by :meth:`Yuv420Codec.row_band`), and the device converts them. Cached frame sides are multiples of
the grid cell (:func:`stages.geometry.resized_size`), so any even cell gives even sides; an odd
cell is refused when the settings are checked.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from cache.digests import array_digest
from cache.frames_codecs.base import FramesCodec, LazyFrames, register_frames_codec

#: OpenCV's integer BT.601 video-range YUV -> RGB (``modules/imgproc/src/color_yuv.simd.hpp``):
#: ``c = clamp((max(Y - 16, 0) * CY + 2**(SHIFT - 1) + C_U * (U - 128) + C_V * (V - 128)) >> SHIFT)``
BT601_YUV_TO_RGB = {"CY": 1220542, "CUB": 2116026, "CUG": -409993, "CVG": -852492, "CVR": 1673527, "SHIFT": 20}


#: how the stored array reads, for those who meet it outside this code (HDF5 export's attribute)
LAYOUT = ("yuv420: (T, H/2, 3, W) uint8, per pair of frame rows: luma row 2r, luma row 2r+1, then W/2 Cb and W/2 Cr "
          "(each shared by a 2x2 block); BT.601 video range (OpenCV's COLOR_RGB2YUV_I420)")


def _check_shape(shape: Sequence[int], where: str) -> None:
    if len(shape) != 4 or shape[2] != 3 or shape[3] % 2 or shape[3] < 2:
        raise ValueError(f"{where}: yuv420 frames must be stored as (T, H/2, 3, W) with W even, got {tuple(shape)}")


def pack_yuv420(frames: np.ndarray, where: str = "frames") -> np.ndarray:
    """(T, H, W, 3) uint8 RGB, H and W even -> the stored (T, H / 2, 3, W) uint8 (module docstring)."""
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{where}: expected (T, H, W, 3) uint8 RGB frames, got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{where}: yuv420 needs even frame sides, got {w}x{h} (extract with an even grid cell, "
                         "or another --frames-codec)")
    out = np.empty((t, h // 2, 3, w), np.uint8)
    for k, f in enumerate(frames):
        i420 = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2YUV_I420).reshape(-1)  # Y, then U, then V planes
        y = i420[:h * w].reshape(h // 2, 2, w)
        chroma = h * w // 4
        out[k, :, :2] = y
        out[k, :, 2, :w // 2] = i420[h * w:h * w + chroma].reshape(h // 2, w // 2)
        out[k, :, 2, w // 2:] = i420[h * w + chroma:].reshape(h // 2, w // 2)
    return out


def unpack_yuv420(packed: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The stored (n, h / 2, 3, W) rows (a whole clip or a band of even rows) -> (n, h, W, 3)
    uint8 RGB, by OpenCV (:data:`BT601_YUV_TO_RGB`'s arithmetic)."""
    import cv2

    n, h2, _, w = packed.shape
    h = 2 * h2
    if out is None:
        out = np.empty((n, h, w, 3), np.uint8)
    i420 = np.empty(h * w * 3 // 2, np.uint8)  # one frame's planes, as OpenCV wants them
    chroma = h * w // 4
    y, u, v = (i420[:h * w].reshape(h2, 2, w), i420[h * w:h * w + chroma].reshape(h2, w // 2),
               i420[h * w + chroma:].reshape(h2, w // 2))
    for k in range(n):
        y[...] = packed[k, :, :2]
        u[...] = packed[k, :, 2, :w // 2]
        v[...] = packed[k, :, 2, w // 2:]
        cv2.cvtColor(i420.reshape(h * 3 // 2, w), cv2.COLOR_YUV2RGB_I420, dst=out[k])
    return out


def yuv420_to_rgb_int(y: Any, cb: Any, cr: Any) -> tuple[Any, Any, Any]:
    """R, G, B (not clamped) from luma ``y`` and chroma ``cb``, ``cr`` already upsampled to it
    (integer arrays or tensors of 32 bits or more, numpy or torch alike): OpenCV's arithmetic."""
    c = BT601_YUV_TO_RGB
    half = 1 << (c["SHIFT"] - 1)
    luma = (y - 16).clip(min=0) * c["CY"] + half
    u, v = cb - 128, cr - 128
    return ((luma + c["CVR"] * v) >> c["SHIFT"], (luma + c["CVG"] * v + c["CUG"] * u) >> c["SHIFT"],
            (luma + c["CUB"] * u) >> c["SHIFT"])


class Yuv420Frames(LazyFrames):
    """A clip's stored yuv420 frames behaving like a read-only (T, H, W, 3) uint8 RGB array:
    indexing the first axis converts only those frames; ``packed`` is what is stored."""

    def __init__(self, packed: np.ndarray, where: str = "frames"):
        _check_shape(packed.shape, where)
        self.packed = packed
        self.where = where

    @property
    def shape(self) -> tuple[int, ...]:
        t, h2, _, w = self.packed.shape
        return t, 2 * h2, w, 3

    def __len__(self) -> int:
        return len(self.packed)

    def decode(self, indices: Optional[Sequence[int]] = None) -> np.ndarray:
        return unpack_yuv420(self.packed if indices is None else self.packed[[int(i) for i in indices]])


@register_frames_codec
class Yuv420Codec(FramesCodec):
    name: ClassVar[str] = "yuv420"
    help: ClassVar[str] = ("YUV 4:2:0: half of raw (41 dB, as JPEG at 95); rows read as raw's, converted on "
                           "the GPU (the fastest GPU feed)")
    digest_on_read: ClassVar[bool] = False  # memory-mapped: an item reads only its rows
    rows_need_frames: ClassVar[bool] = False

    def check_settings(self, settings: Any) -> None:
        cell = settings.get("grid_cell") if hasattr(settings, "get") else None
        if cell is not None and int(cell) % 2:
            raise ValueError(f"frames codec 'yuv420' needs even frame sides: cached sides are multiples of the grid "
                             f"cell, which is {cell} (odd)")

    def write(self, group: Any, frames: np.ndarray, settings: Any, config: dict) -> str:
        packed = pack_yuv420(frames, f"{getattr(group, 'path', 'clip')}/frames")
        z = group.create_array("frames", shape=packed.shape, chunks=packed.shape, dtype=packed.dtype,
                               compressors=None, config=config)
        z[...] = packed
        return array_digest(packed)

    def as_read(self, frames: np.ndarray, settings: Any) -> Yuv420Frames:
        return Yuv420Frames(pack_yuv420(frames))

    def read(self, meta: Any) -> Yuv420Frames:
        from cache.chunks import read_array

        if meta.compressor != "" or meta.dtype != np.uint8:
            raise ValueError(f"{meta.path}: an entry of the 'yuv420' codec whose frames are not one plain uint8 chunk")
        _check_shape(meta.shape, meta.path)
        return Yuv420Frames(read_array(meta, mmap=True), where=str(meta.path))

    def frame_shape(self, meta: Any) -> tuple[int, ...]:
        _check_shape(meta.shape, meta.path)
        t, h2, _, w = meta.shape
        return int(t), 2 * int(h2), int(w), 3

    def digest(self, frames: Any) -> str:
        return array_digest(np.asarray(frames.packed if isinstance(frames, Yuv420Frames) else frames))

    def export_h5(self, group: Any, frames: Any) -> None:
        """As stored (HDF5 export copies what the entry holds), with an attribute naming the layout."""
        ds = group.create_dataset("frames", data=np.asarray(frames.packed), compression="lzf")
        ds.attrs["layout"] = LAYOUT

    def frames_to_crop(self, frames: Any, indices: np.ndarray) -> tuple[Any, Sequence[int]]:
        if not isinstance(frames, Yuv420Frames):  # RGB frames already (e.g. a benchmark's own)
            return super().frames_to_crop(frames, indices)
        return frames.decode(indices), range(len(indices))

    def row_band(self, top: int, height: int) -> tuple[int, int]:
        first = top - top % 2
        end = top + height + (top + height) % 2
        return first, end - first

    def read_rows(self, clip: Any, indices, top: int, height: int):
        """The band of even rows holding rows ``top .. top + height - 1``, read as :meth:`row_reads`
        names it and converted to RGB here (the CPU path; the device path converts on the device)."""
        first, height = self.row_band(top, height)
        reads = self.row_reads(clip, indices, first, height)
        if reads is None:
            return super().read_rows(clip, indices, top, height)
        return unpack_yuv420(reads.read()), range(len(indices)), first

    def row_reads(self, clip: Any, indices, top: int, height: int) -> Optional[Any]:
        """Frame rows ``top .. top + height - 1`` (both ends even: :meth:`row_band`) of the frames
        ``indices`` as a :class:`cache.chunks.RowReads` of the stored ``(n, height / 2, 3, W)``
        rows: one range per frame."""
        from cache.chunks import band_reads

        meta = getattr(clip, "frames_meta", None)
        if meta is None or meta.compressor != "":
            return None
        _check_shape(meta.shape, meta.path)
        h2 = meta.shape[1]
        if top % 2 or height % 2 or top < 0 or height < 2 or top + height > 2 * h2:
            raise ValueError(f"rows {top}..{top + height - 1} of yuv420 frames of height {2 * h2}: the band must "
                             "start and end on even rows inside the frame")
        return band_reads(meta.chunk_file, meta.shape, indices, top // 2, height // 2)
