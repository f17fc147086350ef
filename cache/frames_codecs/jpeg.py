"""Frames as JPEG files: ``--frames-codec jpeg``.

Each frame is one baseline JPEG (``jpeg_quality``, default 95; 4:2:0 chroma, optimised Huffman
tables), stored as a Zarr ``variable_length_bytes`` array of shape ``(T_v,)``: every element is a
complete JPEG file any decoder reads (array attribute ``jpeg``: frame_shape, quality, color,
subsampling). About 1/7 of raw on realistic footage at quality 95, 1/10 at 90
(docs/benchmarks.md).

Encoding uses OpenCV (libjpeg-turbo); decoding uses simplejpeg (libjpeg-turbo, decodes straight
into a preallocated array, ~15% faster than OpenCV here). Both give the pixels every
libjpeg-turbo build gives for the same bytes. The frames decode lazily (:class:`JpegFrames`), or
on the GPU (:mod:`stages.data.device_frames`).
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from cache.digests import encoded_digest
from cache.frames_codecs.base import FramesCodec, LazyFrames, register_frames_codec
from cache.zarr_warnings import known_zarr_warnings_quiet

DEFAULT_JPEG_QUALITY = 95

#: array attribute of JPEG frames: what a reader needs to know without decoding
JPEG_ATTR = "jpeg"


def check_jpeg_quality(quality: Any) -> None:
    if quality is not None and not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")


def encode_jpeg_frames(frames: np.ndarray, quality: int) -> list[bytes]:
    """(T, H, W, 3) uint8 RGB -> T baseline JPEG files (4:2:0, optimised Huffman tables)."""
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality), cv2.IMWRITE_JPEG_OPTIMIZE, 1]
    out = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"JPEG encoding of a {f.shape} frame failed")
        out.append(buf.tobytes())
    return out


def jpeg_attrs(frame_shape: Sequence[int], quality: int) -> dict:
    return {"frame_shape": [int(x) for x in frame_shape], "quality": int(quality), "color": "RGB",
            "subsampling": "4:2:0"}


def decode_jpeg_into(data: Any, out: np.ndarray, where: str) -> None:
    """Decode one JPEG into ``out`` (H, W, 3) uint8 RGB; a frame of another size is an error."""
    import simplejpeg

    h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    if (h, w) != out.shape[:2]:
        raise ValueError(f"{where}: JPEG frame is {w}x{h}, expected {out.shape[1]}x{out.shape[0]}")
    simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)


class JpegFrames(LazyFrames):
    """``T`` JPEG frames that behave like a read-only (T, H, W, 3) uint8 array and decode lazily:
    ``frames[sel]`` decodes only the frames ``sel`` picks on the first axis, ``np.asarray(frames)``
    decodes all of them. ``encoded`` holds the JPEG files themselves (for decoding on a GPU)."""

    def __init__(self, encoded: Sequence[Any], info: dict, where: str = "frames"):
        self.encoded = list(encoded)
        self.info = dict(info)  # the array's ``jpeg`` attribute (jpeg_attrs)
        self.frame_shape = tuple(int(x) for x in info["frame_shape"])
        self.where = where

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.encoded), *self.frame_shape)

    def __len__(self) -> int:
        return len(self.encoded)

    def decode(self, indices: Optional[Sequence[int]] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
        idx = range(len(self.encoded)) if indices is None else [int(i) for i in indices]
        if out is None:
            out = np.empty((len(idx), *self.frame_shape), np.uint8)
        for k, i in enumerate(idx):
            decode_jpeg_into(self.encoded[i], out[k], f"{self.where}[{i}]")
        return out


@register_frames_codec
class JpegCodec(FramesCodec):
    name: ClassVar[str] = "jpeg"
    key_settings: ClassVar[tuple[str, ...]] = ("jpeg_quality",)
    device_decodable: ClassVar[bool] = True
    help: ClassVar[str] = "one JPEG per frame (--jpeg-quality; ~1/7 of raw at 95, 1/10 at 90; decodable on the GPU)"

    def check_settings(self, settings: Any) -> None:
        check_jpeg_quality(settings["jpeg_quality"])

    def write(self, group: Any, frames: np.ndarray, settings: Any, config: dict) -> str:
        quality = int(settings["jpeg_quality"])
        encoded = encode_jpeg_frames(frames, quality)
        values = np.empty(len(encoded), dtype=object)
        values[:] = encoded
        with known_zarr_warnings_quiet():
            z = group.create_array("frames", shape=values.shape, chunks=values.shape, dtype="variable_length_bytes",
                                   compressors=None, config=config,
                                   attributes={JPEG_ATTR: jpeg_attrs(frames.shape[1:], quality)})
            z[...] = values
        return encoded_digest(encoded)

    def as_read(self, frames: np.ndarray, settings: Any) -> JpegFrames:
        quality = int(settings["jpeg_quality"])
        return JpegFrames(encode_jpeg_frames(frames, quality), jpeg_attrs(frames.shape[1:], quality))

    def read(self, meta: Any) -> JpegFrames:
        from cache.chunks import read_array

        info = meta.attrs.get(JPEG_ATTR)
        if meta.compressor != "vlen" or not info:
            raise ValueError(f"{meta.path}: an entry of the 'jpeg' codec whose frames are not variable-length "
                             f"JPEG files with the '{JPEG_ATTR}' attribute")
        return JpegFrames(read_array(meta), info, where=str(meta.path))

    def digest(self, frames: Any) -> str:
        return encoded_digest(frames.encoded)

    def frame_shape(self, meta: Any) -> tuple[int, ...]:
        info = meta.attrs.get(JPEG_ATTR) or {}
        if "frame_shape" not in info:
            raise ValueError(f"{meta.path}: JPEG frames without the '{JPEG_ATTR}' attribute's frame_shape")
        return (int(meta.shape[0]), *(int(x) for x in info["frame_shape"]))

    def problems(self, frames: Any) -> list[str]:
        import simplejpeg

        out = []
        for i, b in enumerate(frames.encoded):
            h, w, _, _ = simplejpeg.decode_jpeg_header(b)
            if (h, w) != frames.shape[1:3]:
                out.append(f"frames[{i}]: a {w}x{h} JPEG, expected {frames.shape[2]}x{frames.shape[1]}")
        return out

    def frames_to_crop(self, frames: Any, indices: np.ndarray) -> tuple[Any, Sequence[int]]:
        if not isinstance(frames, JpegFrames):  # frames decoded already (e.g. a benchmark's own)
            return super().frames_to_crop(frames, indices)
        return frames.decode(indices), range(len(indices))

    def encoded(self, frames: Any, indices: Sequence[int]) -> list[bytes]:
        return [bytes(frames.encoded[int(i)]) for i in indices]

    def export_h5(self, group: Any, frames: Any) -> None:
        import json

        import h5py

        ds = group.create_dataset("frames", data=[np.frombuffer(b, np.uint8) for b in frames.encoded],
                                  dtype=h5py.vlen_dtype(np.uint8))
        ds.attrs[JPEG_ATTR] = json.dumps(frames.info)
