"""Pixel work on the training device: the views' cut, resize and flip (``data.views_on_device``),
and JPEG decoding (``data.decode_on_device``).

On a CUDA device the loader workers do no pixel work. Each item carries its frames as stored and
the views to take (``frames_crop``: a :class:`stages.geometry.View` as six ints, top, left,
height, width, size, flip; one row per view at test), and the data preprocessor, on the device,
cuts each view's box, resizes it to ``size`` (bilinear, as the CPU path's OpenCV resize) and
mirrors it; CLIP normalisation follows in the preprocessor as for every batch. The frames come as:

* ``frames_rows`` (``data.views_on_device``): the band of whole rows the item's views span,
  uint8 ``(T, h, W, 3)``, beginning at frame row ``frames_rows_top``. From raw frames the
  worker ships only where the band lies (a :class:`FrameRows`: the chunk file and one byte range
  per frame) and the DataLoader's pinning thread reads the batch's bands straight into
  page-locked memory (:meth:`FrameRowsBatch.pin_memory`: :data:`ROW_READERS` threads, one
  ``preadv`` per frame, the GIL released), ready for the copy to the device: the pixels cross no
  process boundary (a worker's tensor goes through a fresh shared-memory segment, which costs
  more than the item) and are copied once. Unpinned (no CUDA, no workers) they are read where the
  batch is cut (:func:`frames_from_rows`). ``yuv420`` frames travel the same way, as the stored
  pairs of rows holding the band (``(T, h / 2, 3, W)``, half the bytes), and the device converts
  them (:func:`rows_chw`: OpenCV's integer arithmetic, the CPU path's pixels). Other codecs'
  frames (decoded by the worker) travel as the tensor itself;
* ``frames_jpeg`` (a ``--frames-codec jpeg`` entry, ``data.decode_on_device``): the frames' JPEG
  files concatenated (one uint8 tensor, their sizes in ``frames_jpeg_lengths``), decoded in one
  batched ``torchvision.io.decode_jpeg(..., device='cuda')`` call (nvjpeg).

Both vary in size from item to item, so :func:`collate_items` keeps them as lists. Pixels equal the
CPU path's up to the resize's rounding (OpenCV's fixed-point bilinear against torch's float one: a
level) and, for JPEG, the decoder (nvjpeg's IDCT and chroma upsampling may differ from
libjpeg-turbo's by a level or two); plain crops are the same pixels. torchvision's image ops are
imported only for nvjpeg and only for a CUDA device (on the CPU-only install its image extension
does not even load).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence

import torch
from mmengine.dataset import default_collate

from cache.frames_codecs.yuv420 import yuv420_to_rgb_int

#: the item keys whose tensors differ in size from item to item: collated as lists, never stacked
VARIABLE_KEYS = ("frames_jpeg", "frames_rows")

Decoder = Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]


class FrameRows:
    """Rows of a clip's raw (or yuv420) frames still to be read (a :class:`cache.chunks.RowReads`): what a
    worker ships instead of the pixels. Pinning reads them into page-locked memory
    (:meth:`pin_memory`, through :class:`FrameRowsBatch`); otherwise :meth:`tensor` reads them."""

    __slots__ = ("reads",)

    def __init__(self, reads):
        self.reads = reads

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.reads.shape)

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.reads.read())

    def pin_memory(self, device=None) -> torch.Tensor:
        """The rows read straight into page-locked memory (torch's caching host allocator)."""
        out = torch.empty(self.reads.shape, dtype=torch.uint8, pin_memory=True)
        self.reads.read(out.numpy())
        return out

    def __repr__(self) -> str:
        return f"FrameRows({self.reads.path}, {len(self.reads.offsets)} x {self.reads.shape[1:]})"


#: threads that read a batch's frame rows at once (page cache copies and disk reads in parallel)
ROW_READERS = 4
_readers: Optional[ThreadPoolExecutor] = None


class FrameRowsBatch(list):
    """A batch's :class:`FrameRows` (a list): the DataLoader's pinning thread calls
    :meth:`pin_memory` on it (torch's pinning calls that method on anything that has one before it
    looks inside lists), which reads the items' rows with :data:`ROW_READERS` threads at once
    (``preadv`` releases the GIL): a dataset larger than the page cache is read from the disk
    several bands at a time, not one after the other, and nothing is asked of the workers."""

    def pin_memory(self, device=None) -> list:
        global _readers
        if _readers is None:  # in the process that pins (the workers never do)
            _readers = ThreadPoolExecutor(ROW_READERS, thread_name_prefix="frame-rows")
        return list(_readers.map(_pinned, self))


def _pinned(rows):
    return rows.pin_memory() if isinstance(rows, (FrameRows, torch.Tensor)) else rows


def collate_items(items: Sequence[dict]) -> dict:
    """mmengine's ``default_collate``, except that the frames shipped as stored stay a list (of
    rows named by the workers: a :class:`FrameRowsBatch`)."""
    lists = {k: [it[k] for it in items] for k in VARIABLE_KEYS if k in items[0]}
    if "frames_rows" in lists and any(isinstance(r, FrameRows) for r in lists["frames_rows"]):
        lists["frames_rows"] = FrameRowsBatch(lists["frames_rows"])
    batch = default_collate([{k: v for k, v in it.items() if k not in lists} for it in items])
    batch.update(lists)
    return batch


def frames_from_rows(rows: list[torch.Tensor], rows_top: torch.Tensor, crops: torch.Tensor,
                     device: torch.device) -> torch.Tensor:
    """Cut, resize and mirror a batch's views on ``device`` from the rows its items read.

    ``rows``: per item uint8 ``(T, h, W, 3)``, or yuv420's ``(T, h / 2, 3, W)`` (:func:`rows_chw`;
    CPU, pinned or not), or a :class:`FrameRows` not
    read yet, beginning at frame row ``rows_top`` (B,); ``crops`` (B, 6) or (B, V, 6) views of the
    whole frames. Returns uint8 (B, T, 3, S, S) or (B, V, T, 3, S, S): what the CPU loader's
    ``frames`` would be.
    """
    rows = [r.tensor() if isinstance(r, FrameRows) else r for r in rows]
    clips = [rows_chw(r.to(device, non_blocking=True)) for r in rows]
    crops = crops.cpu().clone()  # the views' tops counted from each band's first row
    shift = rows_top.cpu().reshape(-1)
    crops[..., 0] -= shift if crops.dim() == 2 else shift[:, None]
    return cut_views(clips, crops)


def rows_chw(rows: torch.Tensor) -> torch.Tensor:
    """A band of frame rows as read -> ``(T, 3, h, W)`` uint8 RGB on its device: RGB rows
    ``(T, h, W, 3)`` as a channels-last view; ``yuv420`` rows ``(T, h / 2, 3, W)``
    (:mod:`cache.frames_codecs.yuv420`) converted. The shapes cannot be confused: a yuv420 frame's
    width is even, so its rows never end in an axis of 3."""
    if rows.dim() == 4 and rows.shape[-1] == 3:
        return rows.permute(0, 3, 1, 2)
    if rows.dim() != 4 or rows.shape[2] != 3 or rows.shape[3] % 2:
        raise ValueError(f"frame rows of shape {tuple(rows.shape)}: neither RGB (T, h, W, 3) nor yuv420 (T, h/2, 3, W)")
    return yuv420_rows_rgb(rows)


def yuv420_rows_rgb(rows: torch.Tensor) -> torch.Tensor:
    """``yuv420`` rows ``(T, h / 2, 3, W)`` uint8 -> ``(T, 3, h, W)`` uint8 RGB, with OpenCV's
    integer arithmetic (:func:`cache.frames_codecs.yuv420.yuv420_to_rgb_int`): the pixels the CPU
    path's ``cv2.cvtColor`` gives, on any device."""
    t, h2, _, w = rows.shape
    x = rows.to(torch.int32)
    y = x[:, :, :2].reshape(t, h2, 2, w // 2, 2)  # each luma sample beside its 2x2 block's chroma
    cb = x[:, :, 2, :w // 2].reshape(t, h2, 1, w // 2, 1)
    cr = x[:, :, 2, w // 2:].reshape(t, h2, 1, w // 2, 1)
    rgb = torch.stack(yuv420_to_rgb_int(y, cb, cr), dim=1)  # (T, 3, h2, 2, W/2, 2)
    return rgb.clamp_(0, 255).to(torch.uint8).reshape(t, 3, 2 * h2, w)


def frames_from_jpeg(jpeg: list[torch.Tensor], lengths: torch.Tensor, crops: torch.Tensor, device: torch.device,
                     decode: Optional[Decoder] = None) -> torch.Tensor:
    """Decode, cut, resize and mirror a batch's frames on ``device``.

    ``jpeg``: per item, its frames' JPEG files concatenated (CPU uint8); ``lengths`` (B, T) the
    files' sizes; ``crops`` (B, 6) or (B, V, 6) of views of the whole frames. Returns what
    :func:`frames_from_rows` returns. ``decode`` defaults to :func:`nvjpeg_decode` (tests pass a
    CPU decoder).
    """
    decode = decode or nvjpeg_decode
    files = []
    for data, n in zip(jpeg, lengths.cpu().tolist()):
        files.extend(torch.split(data, n))
    decoded = decode(files, device)
    t = lengths.shape[1]
    return cut_views([torch.stack(decoded[b * t:(b + 1) * t]) for b in range(len(jpeg))], crops)


def cut_views(clips: list[torch.Tensor], crops: torch.Tensor) -> torch.Tensor:
    """Per item ``(T, 3, H, W)`` uint8 frames on the device and its views (``crops`` (B, 6) or
    (B, V, 6)) -> uint8 (B, T, 3, S, S) or (B, V, T, 3, S, S)."""
    views = crops.cpu()
    views = views if views.dim() == 3 else views[:, None]
    out = []
    for clip, item_views in zip(clips, views.tolist()):
        per_view = []
        for top, left, height, width, size, flip in item_views:
            v = clip[..., top:top + height, left:left + width]
            if (height, width) != (size, size):
                v = resize_bilinear_uint8(v, size)
            per_view.append(v.flip(-1) if flip else v)
        out.append(torch.stack(per_view))
    frames = torch.stack(out)  # (B, V, T, 3, S, S)
    return frames if crops.dim() == 3 else frames[:, 0]


#: one stream per CUDA device for :func:`nvjpeg_decode`
_DECODE_STREAMS: dict = {}


def nvjpeg_decode(files: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode JPEG files (CPU uint8 tensors) to (3, H, W) uint8 RGB tensors on a CUDA ``device``.

    On a stream of its own: nvjpeg's hardware decoder writes its outputs at once, without waiting
    for the work queued on the stream it is given (pytorch/vision#9606: 199 of 200 decodes
    corrupted on an H100), and the caching allocator hands the caller's stream memory that its
    queued kernels still read (a step's freed gradients). Outputs allocated on the decode stream
    come from that stream's own blocks; the caller's stream waits for the decode, and each
    output is marked as used there, so its block is not handed back to the decode stream before
    the caller's work on it is done."""
    if device.type != "cuda":
        raise RuntimeError(f"JPEG decoding on the device needs a CUDA device, got {device}")
    from stages.compat import ensure_torchvision

    ensure_torchvision()
    from torchvision.io import ImageReadMode, decode_jpeg

    index = device.index if device.index is not None else torch.cuda.current_device()
    side = _DECODE_STREAMS.get(index)
    if side is None:
        side = _DECODE_STREAMS[index] = torch.cuda.Stream(device=index)
    caller = torch.cuda.current_stream(index)
    with torch.cuda.stream(side):
        out = decode_jpeg(files, mode=ImageReadMode.RGB, device=torch.device("cuda", index))
    caller.wait_stream(side)
    for t in out:
        t.record_stream(caller)
    return out


def resize_bilinear_uint8(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, h, w) uint8 -> (T, 3, size, size) uint8: bilinear with pixel centres aligned
    (``align_corners=False``, no antialiasing: OpenCV's ``INTER_LINEAR``, mmaction2's Resize)."""
    x = torch.nn.functional.interpolate(frames.float(), size=(size, size), mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)
