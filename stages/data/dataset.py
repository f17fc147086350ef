"""A PyTorch dataset over one cache entry: cached frames, sampled poses and mask grids, aligned.

Everything comes through the ``cache`` API (:class:`cache.CacheEntry`); nothing here decodes a
video or runs a pose model. One item is one clip:

* training (``mode='train'``): one random ``S x S`` crop on the grid-cell lattice and a horizontal
  flip with probability 0.5, applied identically to frames, mask grid and joints (the flip also
  swaps left and right joints, ``Skeleton.flip_index``); pose frames segment-uniform with random
  offsets;
* test (``mode='test'``): the three spatial crops of mmaction's ThreeCrop ('first', 'center',
  'last' along the long side), no flip, pose frames at segment middles; tensors carry a leading
  view axis (3 views).

Frames stay ``uint8`` (``(T_v, 3, S, S)``) and grids ``float16`` through the DataLoader; the
training-side data preprocessor (:mod:`stages.train.model`) moves them to the device, converts
and CLIP-normalises there, which keeps the loader cheap enough to feed a GPU.

Randomness is a pure function of ``(seed, epoch, index)`` (:func:`item_rng`), never of a worker
process' global RNG: the same run gives the same crops and flips whatever the number of loader
workers, and a run resumed at an epoch boundary sees exactly what an uninterrupted one saw. The
epoch reaches the workers through the index itself: :class:`stages.data.samplers.EpochSeedSampler`
yields ``(index, epoch)`` pairs (plain integers still work and use :attr:`epoch`).
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from cache import CacheEntry
from stages.data.sampling import sample_pose_frames, sample_video_frames
from stages.geometry import crop, crop_frames_chw, crop_offsets, hflip
from stages.skeletons import get_skeleton

log = logging.getLogger(__name__)

TEST_CROPS = ("first", "center", "last")


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one item's augmentation: independent of process, worker and order."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), 0x5EED])


class CacheClipDataset(Dataset):
    """Clips of one split of a cache entry, as PeVL batches want them.

    Args:
        entry: a :class:`cache.CacheEntry` (or its directory).
        split: 'train', 'val', 'test', ... (the entry's plan names them).
        mode: 'train' (random crop + flip + random pose offsets) or 'test' (3 crops, fixed).
        crop_size: ``S``, the model's image size (224 for ViT-B/16); a multiple of the grid cell.
        num_pose_frames: ``T`` (48 in the paper).
        num_video_frames: ``T_v`` the model reads; default all cached frames. Fewer picks a
            segment-uniform subset of the cached frames (random offsets in training).
        flip_prob: probability of the horizontal flip in training.
        seed: base of every item's randomness.
        allow_partial: use the clips present in an incomplete entry instead of refusing it.
        test_crops: crop positions of the test views.
        decode_on_device: items carry the JPEG files of their frames (``frames_jpeg``,
            ``frames_jpeg_lengths``) and the crops to take (``frames_crop``: top, left, size, flip)
            instead of ``frames``; the data preprocessor decodes, crops and flips them on the GPU
            (:mod:`stages.data.device_frames`). Needs a ``--frames-codec jpeg`` entry.
        random_pose_offsets: in training, one random pose frame per segment (the default); False
            takes the segment middles as at test, so pose frames are evenly spaced and a joint's
            displacement between pose frames (``pose.motion``) is a speed, not a speed times a
            random gap of 0 to 2 segments (``train.random_pose_offsets``, docs/demo.md).
    """

    def __init__(self, entry: Union[CacheEntry, str], split: str, mode: str = "train", crop_size: int = 224,
                 num_pose_frames: int = 48, num_video_frames: Optional[int] = None, flip_prob: float = 0.5,
                 seed: int = 0, allow_partial: bool = False, test_crops: Sequence[str] = TEST_CROPS,
                 decode_on_device: bool = False, random_pose_offsets: bool = True):
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        self.entry = entry if isinstance(entry, CacheEntry) else CacheEntry(entry)
        self.status = self.entry.require_complete(allow_partial)
        self.split = split
        self.mode = mode
        self.crop_size = int(crop_size)
        self.num_pose_frames = int(num_pose_frames)
        self.num_video_frames = None if num_video_frames is None else int(num_video_frames)
        self.flip_prob = float(flip_prob)
        self.seed = int(seed)
        self.epoch = 0
        self.test_crops = tuple(test_crops)
        self.random_pose_offsets = bool(random_pose_offsets)
        self.cell = self.entry.grid_cell
        if self.crop_size % self.cell:
            raise ValueError(f"crop size {self.crop_size} is not a multiple of the entry's grid cell {self.cell}")
        self.skeleton = get_skeleton(self.entry.skeleton)
        self.flip_index = np.asarray(self.skeleton.flip_index())
        self.rows = self.entry.clips(split)
        if not self.rows:
            splits = sorted({c["split"] for c in self.entry.plan})
            raise ValueError(f"cache entry {self.entry.key} has no clips in split {split!r} (splits: {splits})")
        self.classes = self.entry.classes
        self.coarse_type = self.entry.coarse_type
        self.decode_on_device = bool(decode_on_device)
        self.codec = self.entry.codec
        if self.decode_on_device and not self.codec.device_decodable:
            raise ValueError(f"decode_on_device: cache entry {self.entry.key} stores its frames with the "
                             f"{self.entry.frames_codec!r} codec, which cannot be decoded on a device "
                             "(extract with --frames-codec jpeg)")

    # -- metadata -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> list[int]:
        return [int(r["label"]) for r in self.rows]

    @property
    def metainfo(self) -> dict:  # mmengine reads this for the evaluator / visualiser
        return dict(classes=self.classes, coarse_type=self.coarse_type, entry=self.entry.key, split=self.split)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- items -----------------------------------------------------------------------------------
    def __getitem__(self, item: Any) -> dict[str, torch.Tensor]:
        if isinstance(item, (tuple, list)):
            index, epoch = int(item[0]), int(item[1])
        else:
            index, epoch = int(item), self.epoch
        row = self.rows[index]
        clip = self.entry.read_clip(row["uid"])
        rng = item_rng(self.seed, epoch, index) if self.mode == "train" else None
        return self.make_item(clip, index, rng)

    def make_item(self, clip, index: int, rng: Optional[np.random.Generator]) -> dict[str, torch.Tensor]:
        """Turn one :class:`cache.ClipData` into tensors (``rng`` None: test views)."""
        s, cell = self.crop_size, self.cell
        # video frames (a subset of the cached ones if the model reads fewer) and pose frames
        vsel = sample_video_frames(len(clip.frame_indices), self.num_video_frames, rng)
        every = len(vsel) == len(clip.frame_indices) and bool((vsel == np.arange(len(vsel))).all())
        grids = clip.grids if every else clip.grids[vsel]  # (a view: only the crop is copied)
        vf = clip.frame_indices[vsel].astype(np.int64)
        pose_idx, vpi = sample_pose_frames(clip.num_frames, self.num_pose_frames, vf,
                                           rng if self.random_pose_offsets else None)
        kp = clip.keypoints_in_frame()[pose_idx].astype(np.float32)  # (T, V, 2) cached-frame pixels
        sc = clip.scores[pose_idx].astype(np.float32)  # (T, V)
        joints = np.concatenate([kp, sc[..., None]], axis=-1)  # (T, V, 3)
        h, w = clip.frames.shape[1:3]
        if rng is not None:
            top, left = crop_offsets(h, w, s, cell, "random", rng)
            views = [(top, left, bool(rng.random() < self.flip_prob))]
        else:
            views = [(*crop_offsets(h, w, s, cell, where), False) for where in self.test_crops]
        parts = [self._grid_and_joints(grids, joints, *v) for v in views]
        out = {"joints": [p[0] for p in parts], "mask_grid": [p[1] for p in parts]}
        if self.decode_on_device:
            # the JPEG files go to the device as they are; stages.data.device_frames decodes, crops, flips
            files = self.codec.encoded(clip.frames, vsel)
            out["frames_jpeg"] = torch.frombuffer(bytearray(b"".join(files)), dtype=torch.uint8)
            out["frames_jpeg_lengths"] = torch.tensor([len(f) for f in files], dtype=torch.int64)
            crops = torch.tensor([[t, l, s, int(f)] for t, l, f in views], dtype=torch.int64)
            out["frames_crop"] = crops[0] if rng is not None else crops
        else:
            # raw frames: a memory map, only the crop is read; JPEG: only the frames the item uses decoded
            frames, fsel = self.codec.frames_to_crop(clip.frames, vsel)
            out["frames"] = [torch.from_numpy(crop_frames_chw(frames, fsel, t, l, s, f)) for t, l, f in views]
        for k in ("frames", "joints", "mask_grid"):
            if k in out:
                out[k] = out[k][0] if rng is not None else torch.stack(out[k])
        out["video_pose_index"] = torch.from_numpy(vpi.astype(np.int64))
        # where each pose frame lies in the clip: the time base of the joints' velocity (pose.motion)
        out["pose_time"] = torch.from_numpy(pose_idx.astype(np.float32) / np.float32(clip.num_frames))
        out["label"] = torch.tensor(int(clip.label), dtype=torch.long)
        out["index"] = torch.tensor(index, dtype=torch.long)
        return out

    def _grid_and_joints(self, grids, joints, top, left, flip):
        s = self.crop_size
        _, g, j = crop(None, grids, joints, top, left, s, self.cell)
        if flip:
            _, g, j = hflip(None, g, j, self.flip_index, width=s)
        j = j.copy()
        j[..., :2] /= s
        return (torch.from_numpy(np.ascontiguousarray(j, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(g, dtype=np.float16)))
