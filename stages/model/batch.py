"""The batch contract: what stage two's loader hands every recognizer (PeVL, PGVT, AIM).

One place for the tensors' names, shapes and dtypes. :class:`stages.data.CacheClipDataset` makes
items of this form (uint8 frames, one clip; test items carry a leading view axis), the data
preprocessor (:class:`stages.train.runner_model.ClipDataPreprocessor`) turns a collated batch
into it on the device, and the models read it (``encode`` / ``loss`` / ``predict``).
:func:`check_batch` says what does not fit; :func:`dummy_batch` makes one of random values (FLOP
counting, benchmarks, tests).
"""
from __future__ import annotations

from typing import Optional, TypedDict

import torch


class Batch(TypedDict, total=False):
    """B clips, ``S`` the model's image size, ``g = S / patch``, ``J`` joints, ``T`` pose frames,
    ``T_v`` video frames."""

    #: (B, T_v, 3, S, S) float32, normalised as the CLIP weights expect (the loader ships uint8)
    frames: torch.Tensor
    #: (B, T, J, 3) float32: x / S, y / S (of the crop; outside [0, 1] off the crop) and the score
    joints: torch.Tensor
    #: (B, T) float32: each pose frame's decoded-frame index over the clip's frame count (the
    #: joints' velocity time base; absent: evenly spaced)
    pose_time: torch.Tensor
    #: (B, T_v) int64: the pose frame that *is* video frame k
    video_pose_index: torch.Tensor
    #: (B, T_v, J, g, g) float32: each joint's detection score in its patch cell (P2V's mask)
    mask_grid: torch.Tensor
    #: (B,) int64 class ids
    label: torch.Tensor
    #: (B,) int64 the items' indices in their dataset (predictions files); optional
    index: torch.Tensor
    #: mixup (training, ``train.mixup_alpha``): clip i's inputs are ``mix_lam`` of its own and
    #: ``1 - mix_lam`` of clip ``mix_index[i]``'s, and so are its targets; optional
    mix_index: torch.Tensor  # (B,) int64
    mix_lam: torch.Tensor  # () float32


#: the keys every batch holds (``pose_time`` and ``index`` are optional)
REQUIRED_KEYS = ("frames", "joints", "video_pose_index", "mask_grid", "label")


def check_batch(batch: dict, *, num_video_frames: int, num_pose_frames: int, num_joints: int, image_size: int,
                grid: int) -> list[str]:
    """What in ``batch`` does not fit the contract (empty: it fits). Sizes of one clip's tensors."""
    b = batch["label"].shape[0] if "label" in batch else None
    want = {"frames": ((b, num_video_frames, 3, image_size, image_size), torch.float32),
            "joints": ((b, num_pose_frames, num_joints, 3), torch.float32),
            "pose_time": ((b, num_pose_frames), torch.float32),
            "video_pose_index": ((b, num_video_frames), torch.int64),
            "mask_grid": ((b, num_video_frames, num_joints, grid, grid), torch.float32),
            "label": ((b,), torch.int64), "index": ((b,), torch.int64),
            "mix_index": ((b,), torch.int64), "mix_lam": ((), torch.float32)}
    out = [f"{k}: missing" for k in REQUIRED_KEYS if k not in batch]
    out += [f"{k}: not part of the batch contract" for k in batch if k not in want]
    for k, (shape, dtype) in want.items():
        if k in batch and (tuple(batch[k].shape) != shape or batch[k].dtype != dtype):
            out.append(f"{k}: {tuple(batch[k].shape)} {batch[k].dtype}, expected {shape} {dtype}")
    return out


def dummy_batch(model, batch_size: int = 1, num_video_frames: Optional[int] = None,
                num_pose_frames: Optional[int] = None, device: str | torch.device = "cpu") -> Batch:
    """A batch of the contract's shapes for ``model`` (random values; frame counts: the model's own)."""
    vis = model.clip.visual
    s, g = vis.image_size[0], vis.grid_size[0]
    v = model.cfg["num_joints"]
    b = batch_size
    tv = num_video_frames or model.cfg["num_video_frames"]
    t = num_pose_frames or model.cfg["num_pose_frames"]
    return Batch(
        frames=torch.randn(b, tv, 3, s, s, device=device),
        joints=torch.rand(b, t, v, 3, device=device),
        video_pose_index=torch.linspace(0, t - 1, tv, device=device).long().expand(b, tv).contiguous(),
        mask_grid=torch.rand(b, tv, v, g, g, device=device),
        label=torch.zeros(b, dtype=torch.long, device=device),
    )
