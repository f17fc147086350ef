"""Frames as JPEG files: ``--frames-codec jpeg``.

Each frame is one baseline JPEG (``jpeg_quality``, default 95; 4:2:0 chroma, optimised Huffman
tables), stored as a Zarr ``variable_length_bytes`` array of shape ``(T_v,)``: every element is a
complete JPEG file any decoder reads (array attribute ``jpeg``: frame_shape, quality, color,
subsampling, and each file's length and digest, ``file_bytes`` and ``file_digests``). About 1/7 of
raw on realistic footage at quality 95, 1/10 at 90 (docs/benchmarks.md).

A reader takes only the files it uses from the chunk (their places follow from the lengths) and
compares each with its digest: an item of an entry with K candidates per segment reads 1/K of the
clip's files. Entries written before the per-file attributes are read and checked whole.

Encoding uses OpenCV (libjpeg-turbo); decoding uses simplejpeg (libjpeg-turbo, decodes straight
into a preallocated array, ~15% faster than OpenCV here). Both give the pixels every
libjpeg-turbo build gives for the same bytes. The frames decode lazily (:class:`JpegFrames`), or
on the GPU (:mod:`stages.data.device_frames`).
"""
from __future__ import annotations

import os
from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from cache.chunks import ChunkFormatError, VlenFiles, digest_mismatch, read_array, vlen_files
from cache.digests import encoded_digest, file_digest
from cache.frames_codecs.base import FramesCodec, LazyFrames, register_frames_codec
from cache.zarr_warnings import known_zarr_warnings_quiet

DEFAULT_JPEG_QUALITY = 95

#: array attribute of JPEG frames: what a reader needs to know without decoding
JPEG_ATTR = "jpeg"
#: keys of that attribute: each file's length in bytes and its sha256 (cache.digests.file_digest)
FILE_BYTES, FILE_DIGESTS = "file_bytes", "file_digests"


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
    decodes all of them. :meth:`files` gives some of the JPEG files themselves (for decoding on a
    GPU), :attr:`encoded` all of them.

    Given ``stored`` (where each file lies in its chunk, from the lengths the writer recorded) and
    the writer's per-frame ``digests``, frames are read from the chunk file as they are asked for,
    only those, and each compared with its digest (:meth:`files`); otherwise ``encoded`` holds
    them all (read whole; entries written before the per-frame attributes, frames just encoded)."""

    def __init__(self, encoded: Optional[Sequence[Any]], info: dict, where: str = "frames",
                 stored: Optional[VlenFiles] = None, digests: Optional[Sequence[str]] = None,
                 entry_dir: Any = None):
        if (encoded is None) == (stored is None) or (stored is not None and digests is None):
            raise ValueError("JpegFrames: give the files, or where they are stored with their digests")
        self._encoded = None if encoded is None else list(encoded)
        self._stored, self._digests, self._entry_dir = stored, digests, entry_dir
        self._count = len(self._encoded) if stored is None else len(stored.lengths)
        self.info = dict(info)  # the array's ``jpeg`` attribute (jpeg_attrs)
        self.frame_shape = tuple(int(x) for x in info["frame_shape"])
        self.where = where

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._count, *self.frame_shape)

    def __len__(self) -> int:
        return self._count

    @property
    def stored(self) -> Optional[VlenFiles]:
        """Where each file lies in the chunk (None: the files are held, :attr:`encoded`)."""
        return self._stored

    @property
    def checks_each_file(self) -> bool:
        """Whether :meth:`files` compares every file it reads with the writer's digest of it."""
        return self._stored is not None

    @property
    def encoded(self) -> list[Any]:
        """Every JPEG file, as stored (read whole, once; not compared with per-frame digests: the
        frames' digest over all of them is what ``cache verify`` compares)."""
        if self._encoded is None:
            self._encoded = self._stored.read_all()
        return self._encoded

    def files(self, indices: Sequence[int]) -> list[Any]:
        """The JPEG files of frames ``indices``: read from the chunk file, only those, each compared
        with its digest (:class:`cache.chunks.ChunkDigestError` naming the file and the frame), or
        taken from :attr:`encoded` when it holds them."""
        idx = [int(i) + self._count if int(i) < 0 else int(i) for i in indices]  # numpy's negative indices
        if self._stored is None or self._encoded is not None:
            return [self.encoded[i] for i in idx]
        out = self._stored.read(idx)
        for i, b in zip(idx, out):
            if file_digest(b) != self._digests[i]:
                raise digest_mismatch(f"{self._stored.path} (frame {i})", self._entry_dir)
        return out

    def file_problems(self) -> list[str]:
        """Which stored files differ from the digests their writer recorded for each (empty for
        frames without per-file digests)."""
        if self._stored is None:
            return []
        return [f"frames[{i}]: content does not match the digest its writer recorded for it ({FILE_DIGESTS})"
                for i, b in enumerate(self.encoded) if file_digest(b) != self._digests[i]]

    def decode(self, indices: Optional[Sequence[int]] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
        idx = range(self._count) if indices is None else [int(i) for i in indices]
        if out is None:
            out = np.empty((len(idx), *self.frame_shape), np.uint8)
        for k, (i, data) in enumerate(zip(idx, self.files(idx))):
            decode_jpeg_into(data, out[k], f"{self.where}[{i}]")
        return out


def stored_files(meta: Any, info: dict) -> Optional[tuple[VlenFiles, list[str]]]:
    """Where each JPEG file of the array ``meta`` lies in its chunk, and its digest, from the
    ``jpeg`` attribute's :data:`FILE_BYTES` and :data:`FILE_DIGESTS`; None for an entry written
    before them. Attributes that do not describe the array's frames are refused, naming its file."""
    lengths, digests = info.get(FILE_BYTES), info.get(FILE_DIGESTS)
    if lengths is None and digests is None:
        return None
    n = int(meta.shape[0])
    ok = (isinstance(lengths, list) and isinstance(digests, list) and len(lengths) == len(digests) == n
          and all(isinstance(x, int) and x > 0 for x in lengths) and all(isinstance(d, str) for d in digests))
    if not ok:
        raise ChunkFormatError(f"{meta.path}/zarr.json: attribute '{JPEG_ATTR}' has no {n} file lengths and digests "
                               f"('{FILE_BYTES}', '{FILE_DIGESTS}') for its {n} frames (the file is damaged)")
    return vlen_files(meta.chunk_file, lengths), digests


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
        # each file's length and digest: a reader reads and checks only the frames it uses
        info = {**jpeg_attrs(frames.shape[1:], quality), FILE_BYTES: [len(b) for b in encoded],
                FILE_DIGESTS: [file_digest(b) for b in encoded]}
        with known_zarr_warnings_quiet():
            z = group.create_array("frames", shape=values.shape, chunks=values.shape, dtype="variable_length_bytes",
                                   compressors=None, config=config, attributes={JPEG_ATTR: info})
            z[...] = values
        return encoded_digest(encoded)

    def as_read(self, frames: np.ndarray, settings: Any) -> JpegFrames:
        quality = int(settings["jpeg_quality"])
        return JpegFrames(encode_jpeg_frames(frames, quality), jpeg_attrs(frames.shape[1:], quality))

    def read(self, meta: Any) -> JpegFrames:
        info = meta.attrs.get(JPEG_ATTR)
        if meta.compressor != "vlen" or not info:
            raise ValueError(f"{meta.path}: an entry of the 'jpeg' codec whose frames are not variable-length "
                             f"JPEG files with the '{JPEG_ATTR}' attribute")
        stored = stored_files(meta, info)
        if stored is None:  # written before the per-frame attributes: read whole, checked whole
            return JpegFrames(read_array(meta), info, where=str(meta.path))
        # the entry: <entry>/clips/<uid>/frames
        entry_dir = os.path.dirname(os.path.dirname(os.path.dirname(str(meta.path))))
        return JpegFrames(None, info, where=str(meta.path), stored=stored[0], digests=stored[1], entry_dir=entry_dir)

    def digest(self, frames: Any) -> str:
        return encoded_digest(frames.encoded)

    def digest_read(self, frames: Any) -> bool:
        return not (isinstance(frames, JpegFrames) and frames.checks_each_file)

    def frame_shape(self, meta: Any) -> tuple[int, ...]:
        info = meta.attrs.get(JPEG_ATTR) or {}
        if "frame_shape" not in info:
            raise ValueError(f"{meta.path}: JPEG frames without the '{JPEG_ATTR}' attribute's frame_shape")
        return (int(meta.shape[0]), *(int(x) for x in info["frame_shape"]))

    def problems(self, frames: Any) -> list[str]:
        import simplejpeg

        out = frames.file_problems()  # the per-file digests (a damaged file, or a damaged attribute)
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
        return [bytes(b) for b in frames.files(indices)]

    def export_h5(self, group: Any, frames: Any) -> None:
        import json

        import h5py

        ds = group.create_dataset("frames", data=[np.frombuffer(b, np.uint8) for b in frames.encoded],
                                  dtype=h5py.vlen_dtype(np.uint8))
        ds.attrs[JPEG_ATTR] = json.dumps(frames.info)
