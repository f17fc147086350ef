"""JPEG frames decoded on the GPU: the ``data.decode_on_device`` path.

With a ``--frames-codec jpeg`` entry and ``data.decode_on_device=True`` the loader workers only
read files: each item carries the JPEG files of its video frames (``frames_jpeg``, one uint8
tensor, and ``frames_jpeg_lengths``) and the views to take (``frames_crop``: a
:class:`stages.geometry.View` as six ints, top, left, height, width, size, flip; one row per view
at test). The data preprocessor, on the training device, decodes every frame of the batch in one
batched ``torchvision.io.decode_jpeg(..., device='cuda')`` call (nvjpeg), then cuts each view's
box, resizes it to ``size`` (bilinear, as the CPU path's OpenCV resize) and mirrors there; CLIP
normalisation follows in the preprocessor as for every batch. The host's CPU does no pixel work.

Pixels equal the CPU path's up to the decoder (nvjpeg's IDCT and chroma upsampling may differ
from libjpeg-turbo's by a level or two) and, for a resized box, up to the resize's rounding
(OpenCV's fixed-point bilinear against torch's float one: a level). torchvision's image ops are imported only here and only
for a CUDA device (on the CPU-only install its image extension does not even load).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from mmengine.dataset import default_collate

#: the item keys of the JPEG path (variable-length: collated as lists, never stacked)
JPEG_KEYS = ("frames_jpeg",)
CROP_KEYS = ("frames_jpeg_lengths", "frames_crop")

Decoder = Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]


def collate_items(items: Sequence[dict]) -> dict:
    """mmengine's ``default_collate``, except that the JPEG files of the items stay a list."""
    jpeg = {k: [it[k] for it in items] for k in JPEG_KEYS if k in items[0]}
    batch = default_collate([{k: v for k, v in it.items() if k not in jpeg} for it in items])
    batch.update(jpeg)
    return batch


def nvjpeg_decode(files: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode JPEG files (CPU uint8 tensors) to (3, H, W) uint8 RGB tensors on a CUDA ``device``."""
    if device.type != "cuda":
        raise RuntimeError(f"JPEG decoding on the device needs a CUDA device, got {device}")
    from stages.compat import ensure_torchvision

    ensure_torchvision()
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(files, mode=ImageReadMode.RGB, device=device)


def frames_from_jpeg(jpeg: list[torch.Tensor], lengths: torch.Tensor, crops: torch.Tensor, device: torch.device,
                     decode: Optional[Decoder] = None) -> torch.Tensor:
    """Decode, cut, resize and mirror a batch's frames on ``device``.

    ``jpeg``: per item, its frames' JPEG files concatenated (CPU uint8); ``lengths`` (B, T) the
    files' sizes; ``crops`` (B, 6) or (B, V, 6) of views (top, left, height, width, size, flip).
    Returns uint8 (B, T, 3, S, S) or (B, V, T, 3, S, S): what the CPU loader's ``frames`` would be.
    ``decode`` defaults to :func:`nvjpeg_decode` (tests pass a CPU decoder).
    """
    decode = decode or nvjpeg_decode
    lengths = lengths.cpu()
    crops = crops.cpu()
    files = []
    for data, n in zip(jpeg, lengths.tolist()):
        files.extend(torch.split(data, n))
    decoded = decode(files, device)
    t = lengths.shape[1]
    views = crops if crops.dim() == 3 else crops[:, None]
    out = []
    for b, item_views in enumerate(views.tolist()):
        clip = torch.stack(decoded[b * t:(b + 1) * t])  # (T, 3, H, W)
        per_view = []
        for top, left, height, width, size, flip in item_views:
            v = clip[..., top:top + height, left:left + width]
            if (height, width) != (size, size):
                v = resize_bilinear_uint8(v, size)
            per_view.append(v.flip(-1) if flip else v)
        out.append(torch.stack(per_view))
    frames = torch.stack(out)  # (B, V, T, 3, S, S)
    return frames if crops.dim() == 3 else frames[:, 0]


def resize_bilinear_uint8(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, h, w) uint8 -> (T, 3, size, size) uint8: bilinear with pixel centres aligned
    (``align_corners=False``, no antialiasing: OpenCV's ``INTER_LINEAR``, mmaction2's Resize)."""
    x = torch.nn.functional.interpolate(frames.float(), size=(size, size), mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)
