"""How a clip's frames are stored (``--frames-codec``): the choices, their Zarr codecs, JPEG.

* ``none`` (default): raw uint8, one chunk per clip. Reads cost little more than the bytes (the
  reader maps the chunk file and copies only the crop); real footage gains little from lossless
  byte codecs (Blosc-LZ4 stores it at ~0.9 of raw and reads at half the speed), so none is used.
* ``lz4`` / ``zstd``: lossless Blosc-LZ4 / Zstd over the raw frames (kept for the rare footage
  with large flat areas; decompressed whole on every read).
* ``jpeg``: each frame one baseline JPEG (``jpeg_quality``, default 95; 4:2:0 chroma, optimised
  Huffman tables), stored as a Zarr ``variable_length_bytes`` array of shape ``(T_v,)``: every
  element is a complete JPEG file any decoder reads. About 1/7 of raw on realistic footage at
  quality 95, 1/10 at 90 (docs/benchmarks.md).

Encoding uses OpenCV (libjpeg-turbo); decoding uses simplejpeg (libjpeg-turbo, decodes straight
into a preallocated array, ~15% faster than OpenCV here). Both give the pixels every
libjpeg-turbo build gives for the same bytes.
"""
from __future__ import annotations

import hashlib
from typing import Any, Optional, Sequence

import cv2
import numpy as np
import simplejpeg
from zarr.codecs import BloscCodec, ZstdCodec

FRAMES_CODECS = ("none", "lz4", "zstd", "jpeg")
DEFAULT_FRAMES_CODEC = "none"
DEFAULT_JPEG_QUALITY = 95

#: array attribute of JPEG frames: what a reader needs to know without decoding
JPEG_ATTR = "jpeg"


def check_frames_codec(name: str, quality: Optional[int] = None) -> None:
    """Raise ``ValueError`` for an unknown codec or a JPEG quality outside 1..100."""
    if name not in FRAMES_CODECS:
        raise ValueError(f"unknown frames codec {name!r}; one of {', '.join(FRAMES_CODECS)}")
    if quality is not None and not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")


def frame_compressors(name: str) -> Optional[list]:
    """The Zarr compressors of raw frames under codec ``name`` (``jpeg`` is not a compressor)."""
    check_frames_codec(name)
    if name == "lz4":
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    if name == "zstd":
        return [ZstdCodec(level=3)]
    if name == "jpeg":
        raise ValueError("jpeg frames are encoded per frame (encode_jpeg_frames), not compressed")
    return None


def encode_jpeg_frames(frames: np.ndarray, quality: int) -> list[bytes]:
    """(T, H, W, 3) uint8 RGB -> T baseline JPEG files (4:2:0, optimised Huffman tables)."""
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
    h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    if (h, w) != out.shape[:2]:
        raise ValueError(f"{where}: JPEG frame is {w}x{h}, expected {out.shape[1]}x{out.shape[0]}")
    simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)


class JpegFrames:
    """``T`` JPEG frames that behave like a read-only (T, H, W, 3) uint8 array and decode lazily:
    ``frames[sel]`` decodes only the frames ``sel`` picks on the first axis, ``np.asarray(frames)``
    decodes all of them. ``encoded`` holds the JPEG files themselves (for decoding on a GPU)."""

    dtype = np.dtype(np.uint8)
    ndim = 4

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

    def __array__(self, dtype=None, copy=None):
        a = self.decode()
        return a if dtype is None else a.astype(dtype)

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, (int, np.integer)):
            return self.decode([first])[(0, *rest)]
        picked = np.arange(len(self.encoded))[first]
        return self.decode(picked)[(slice(None), *rest)]


def array_digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes: recorded by the writer, checked by the reader
    and by `pipeline cache verify`."""
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).data if a.flags.c_contiguous else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


def encoded_digest(encoded: Sequence[Any]) -> str:
    """sha256 of a sequence of byte strings (their count, lengths and bytes): JPEG frames' digest."""
    h = hashlib.sha256(f"bytes{len(encoded)}".encode())
    for b in encoded:
        b = memoryview(b).cast("B")  # no copy: the bytes as they are
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:32]
