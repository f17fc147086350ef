"""How a clip's frames are stored (``--frames-codec``): one class per codec, registered by name.

A codec is a :class:`~cache.frames_codecs.base.FramesCodec` in a module of this package that
registers itself with :func:`register_frames_codec`; adding one means writing that module and
importing it below. Everything else (the writer, the reader, ``cache verify``, the HDF5 export, the
training loader, stage one's settings) asks the codec, never compares its name.

Built in: ``none`` (default: raw uint8), ``lz4`` / ``zstd`` (lossless) in :mod:`.raw`; ``yuv420``
(half of raw, converted on the GPU) in :mod:`.yuv420`; ``jpeg`` (one JPEG file per frame,
decodable on the GPU) in :mod:`.jpeg`.

Light on import (no zarr, no OpenCV): the CLI's help lists the codecs.
"""
from __future__ import annotations

from cache.frames_codecs.base import (  # noqa: F401
    DEFAULT_FRAMES_CODEC,
    FramesCodec,
    frames_codec,
    frames_codec_names,
    register_frames_codec,
)
# register the built-ins, the default first (the order the help lists them in)
from cache.frames_codecs import raw  # noqa: E402,F401,I001
from cache.frames_codecs import yuv420  # noqa: E402,F401,I001
from cache.frames_codecs import jpeg  # noqa: E402,F401,I001
