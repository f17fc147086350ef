"""What a frames codec is, and the registry of codecs by name (a leaf: imports no codec)."""
from __future__ import annotations

import difflib
from typing import Any, ClassVar, Optional, Sequence

import numpy as np

#: the codec of ``--frames-codec`` when none is given (raw uint8: lossless). Changing it would change
#: the key of every entry extracted with default settings (docs/cache.md, frames codecs)
DEFAULT_FRAMES_CODEC = "none"

_REGISTRY: dict[str, "FramesCodec"] = {}


class FramesCodec:
    """How one clip's ``(T, H, W, 3)`` uint8 RGB frames are written into, and read from, its Zarr
    group. One instance per codec name (codecs hold no state).

    Subclasses set :attr:`name` (and :attr:`key_settings`, :attr:`device_decodable`) and implement
    :meth:`write`, :meth:`read`, :meth:`digest`; the rest has defaults that suit arrays."""

    name: ClassVar[str] = ""
    #: stage-one settings besides the codec's name that change the stored bytes (so the entry key)
    key_settings: ClassVar[tuple[str, ...]] = ()
    #: whether the training loader can ship the stored frames to a GPU to decode there
    device_decodable: ClassVar[bool] = False
    #: one line for ``--help``
    help: ClassVar[str] = ""
    #: whether every read compares the frames' digest (``CacheEntry.read_clip``): worth it when a
    #: read takes the stored bytes whole anyway (decompressed, JPEG files), not when it maps them
    #: and copies only a crop
    digest_on_read: ClassVar[bool] = True
    #: whether :meth:`read_rows` reads the clip's ``frames`` (False: only its ``frames_meta``, so a
    #: reader of rows need not open the frames at all)
    rows_need_frames: ClassVar[bool] = True

    # -- stage one --------------------------------------------------------------------------------
    def check_settings(self, settings: Any) -> None:
        """Raise ``ValueError`` for settings this codec cannot write with (e.g. a JPEG quality)."""

    def write(self, group: Any, frames: np.ndarray, settings: Any, config: dict) -> str:
        """Write ``frames`` as the array ``frames`` of the Zarr ``group``; return their digest.
        ``settings``: the entry's stage-one settings (a mapping); ``config``: zarr's array config."""
        raise NotImplementedError

    # -- reading ------------------------------------------------------------------------------------
    def read(self, meta: Any) -> Any:
        """The stored frames from their array metadata (:class:`cache.chunks.ArrayMeta`): an object
        with ``shape``, ``dtype`` and numpy indexing on the first axis (a read-only ndarray, or a
        lazy view that decodes what it is indexed with)."""
        raise NotImplementedError

    def digest(self, frames: Any) -> str:
        """The digest :meth:`write` returned for these frames (``cache verify`` recomputes it)."""
        raise NotImplementedError

    def frame_shape(self, meta: Any) -> tuple[int, ...]:
        """The ``(T, H, W, 3)`` of the frames stored as the array ``meta`` describes, without reading
        them. Default: the array's shape (frames stored as an RGB array)."""
        return tuple(int(x) for x in meta.shape)

    def digest_read(self, frames: Any) -> bool:
        """Whether a read (``read_clip``) compares the digest of all of ``frames``: default
        :attr:`digest_on_read`; False too for frames that check each part they read (JPEG frames
        with per-frame digests)."""
        return self.digest_on_read

    def problems(self, frames: Any) -> list[str]:
        """What is wrong with frames read back, beyond their shape (empty: nothing)."""
        return []

    def as_read(self, frames: np.ndarray, settings: Any) -> Any:
        """``frames`` as :meth:`read` gives them back after :meth:`write` with ``settings``: what a
        model trained on an entry of this codec saw (``pipeline predict`` passes new videos' frames
        through it). Lossless codecs: the frames themselves."""
        return frames

    def frames_to_crop(self, frames: Any, indices: np.ndarray) -> tuple[Any, Sequence[int]]:
        """``(array, positions)``: an array holding the frames ``indices`` asks for, and where each
        lies in it, for cropping. Raw frames are a memory map and only the crop is read, so they
        come back as they are; a lazy codec decodes just those frames."""
        return frames, indices

    def read_rows(self, clip: Any, indices: Sequence[int], top: int, height: int) -> tuple[Any, Sequence[int], int]:
        """``(array, positions, first_row)``: the frames ``indices`` of a clip (:class:`cache.ClipData`)
        holding at least rows ``top .. top + height - 1``, where each frame lies in the array, and
        which frame row the array's row 0 is. Default: :meth:`frames_to_crop` (all rows; the frames
        read from ``clip.frames_meta`` when the clip was read without them)."""
        frames = clip.frames if clip.frames is not None else self.read(clip.frames_meta)
        frames, pos = self.frames_to_crop(frames, indices)
        return frames, pos, 0

    def row_band(self, top: int, height: int) -> tuple[int, int]:
        """``(top, height)`` of the band :meth:`row_reads` reads to cover rows ``top .. top + height
        - 1`` (default: exactly those; a codec storing rows in pairs widens it to even rows)."""
        return top, height

    def row_reads(self, clip: Any, indices: Sequence[int], top: int, height: int) -> Optional[Any]:
        """The bytes :meth:`read_rows` would read as a :class:`cache.chunks.RowReads` (read later,
        possibly in another process), or None where rows are not plain ranges of a file (default)."""
        return None

    def encoded(self, frames: Any, indices: Sequence[int]) -> list[bytes]:
        """The stored files of the frames ``indices`` (for decoding on a device)."""
        raise ValueError(f"frames stored with the {self.name!r} codec cannot be decoded on a device "
                         f"(extract with --frames-codec jpeg for that)")

    def export_h5(self, group: Any, frames: Any) -> None:
        """Write the frames as dataset ``frames`` of an h5py group (``pipeline cache export``)."""
        group.create_dataset("frames", data=np.asarray(frames), compression="lzf")


class LazyFrames:
    """Stored frames that behave like a read-only ``(T, H, W, 3)`` uint8 RGB array and decode only
    what the first axis is indexed with. Subclasses give ``__len__``, ``shape`` and
    :meth:`decode`."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def decode(self, indices: Optional[Sequence[int]] = None) -> np.ndarray:
        """The frames ``indices`` (default: all), decoded, ``(len(indices), H, W, 3)``."""
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None):
        a = self.decode()
        return a if dtype is None else a.astype(dtype)

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, (int, np.integer)):
            return self.decode([first])[(0, *rest)]
        picked = np.arange(len(self))[first]
        return self.decode(picked)[(slice(None), *rest)]


def register_frames_codec(cls: type) -> type:
    """Class decorator: register a codec under its :attr:`FramesCodec.name`."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"frames codec {cls.name!r}: empty or registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def frames_codec_names() -> list[str]:
    return list(_REGISTRY)


def frames_codec(name: Optional[str]) -> FramesCodec:
    """The codec registered as ``name`` (None: the default), or ``ValueError`` naming the known ones."""
    name = DEFAULT_FRAMES_CODEC if name is None else str(name)
    hit = _REGISTRY.get(name)
    if hit is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        raise ValueError(f"unknown frames codec {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                         + f" (known: {', '.join(_REGISTRY)})")
    return hit
