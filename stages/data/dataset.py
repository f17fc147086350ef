"""A PyTorch dataset over one cache entry: cached frames, sampled poses and mask grids, aligned.

Everything comes through the ``cache`` API (:class:`cache.CacheEntry`); nothing here decodes a
video or runs a pose model. One item is one clip:

* video frames: one stored frame per segment; from an entry with K candidates per segment
  (``extract.frames_per_segment``) training draws one at random each epoch
  (``data.candidate_frames``), test takes the middle (what K = 1 stores);
* pose frames: segment-uniform over all decoded frames with random offsets in training, segment
  middles at test, each video frame among them (:mod:`stages.data.sampling`);
* views (:mod:`stages.data.views`): in training one random box of the cached frame resized to
  ``S x S`` and a horizontal flip (``data.train_crop``, ``data.flip_prob``); at test three views
  (``data.test_views``), stacked on a leading view axis. Frames, joints and mask grids get the
  same view (:mod:`stages.geometry`: the flip also swaps left and right joints,
  ``Skeleton.flip_index``); the mask grids are built from the joints mapped into the view, which is
  exactly the grid stage one would give a frame of that view (a resized box maps no stored cell
  onto one cell), so the stored grids are not read.

Frames stay ``uint8`` (``(T_v, 3, S, S)``) and grids ``float16`` through the DataLoader; the
training-side data preprocessor (:mod:`stages.train.runner_model`) moves them to the device,
converts and CLIP-normalises there, which keeps the loader cheap enough to feed a GPU. On a CUDA
device the views' work moves there too (``views_on_device``): the item names the rows its views
span, the DataLoader's pinning thread reads them into page-locked memory,
:mod:`stages.data.device_frames` cuts, resizes and flips them, and :mod:`stages.data.device_poses`
maps the joints into the views and builds the grids, bit for bit as here.

Randomness is a pure function of ``(seed, epoch, index)`` (:func:`item_rng`), never of a worker
process' global RNG: the same run gives the same crops and flips whatever the number of loader
workers, and a run resumed at an epoch boundary sees exactly what an uninterrupted one saw. The
epoch reaches the workers through the index itself: :class:`stages.data.epoch_sampler.EpochSeedSampler`
yields ``(index, epoch)`` pairs (plain integers still work and use :attr:`epoch`).
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from cache import CacheEntry
from cache.item_index import ItemIndex
from stages.data.device_frames import FrameRows
from stages.data.sampling import sample_pose_frames, sample_video_frames
from stages.data.views import THREE_CROPS, ViewSampler
from stages.geometry import joint_patch_grid, view_frames_chw, view_joints
from stages.skeletons import Skeleton, entry_skeleton, get_skeleton

log = logging.getLogger(__name__)

TEST_CROPS = THREE_CROPS
#: the arrays an item reads (the stored grids are not among them: they are rebuilt in the view)
ITEM_ARRAYS = ("frames", "frame_indices", "keypoints", "scores")
#: ... of which these when the codec reads rows from the frames' metadata alone (raw frames)
ITEM_ARRAYS_ROWS = ITEM_ARRAYS[1:]


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one item's augmentation: independent of process, worker and order."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), 0x5EED])


class CacheClipDataset(Dataset):
    """Clips of one split of a cache entry, as PeVL batches want them.

    Args:
        entry: a :class:`cache.CacheEntry` (or its directory).
        split: 'train', 'val', 'test', ... (the entry's plan names them).
        mode: 'train' (random view, random candidate frames, random pose offsets) or 'test' (the
            test views, segment middles).
        crop_size: ``S``, the model's image size (224 for ViT-B/16); a multiple of the grid cell.
        num_pose_frames: ``T`` (48 in the paper).
        num_video_frames: ``T_v`` the model reads; default one per cached segment. Fewer picks a
            segment-uniform subset of the cached segments (random offsets in training).
        flip_prob: probability of the horizontal flip in training (used when ``views`` is not given).
        seed: base of every item's randomness.
        allow_partial: use the clips present in an incomplete entry instead of refusing it.
        test_crops: ThreeCrop's positions of the test views.
        decode_on_device: items carry the JPEG files of their frames (``frames_jpeg``,
            ``frames_jpeg_lengths``) and the views to take (``frames_crop``: a
            :class:`~stages.geometry.View` row, top, left, height, width, size, flip; one row per
            view at test) instead of ``frames``; the data preprocessor decodes, crops, resizes and
            flips them on the GPU (:mod:`stages.data.device_frames`). Needs a ``--frames-codec jpeg`` entry.
        views_on_device: items carry the band of rows their views span (``frames_rows``: for raw
            and yuv420 frames a :class:`~stages.data.device_frames.FrameRows` naming them (yuv420:
            the even rows' pairs holding them), read by the DataLoader's pinning thread; else the
            uint8 ``(T_v, h, W, 3)`` band; it starts at frame row ``frames_rows_top``) and the views
            (``frames_crop``) instead of ``frames``: the data preprocessor cuts, resizes and flips
            them on the device; the item does no pixel work.
            With either of the two, the views' geometry goes to the device too: items carry the
            pose frames' joints as cached (``pose_joints``, ``joint_flip``, ``grid_cell``) instead
            of ``joints`` and ``mask_grid`` (:mod:`stages.data.device_poses` builds them).
        random_pose_offsets: in training, one random pose frame per segment (the default); False
            takes the segment middles as at test, so pose frames are evenly spaced and a joint's
            displacement between pose frames (``pose.motion``) is a speed, not a speed times a
            random gap of 0 to 2 segments (``data.random_pose_offsets``, docs/demo.md).
        views: the :class:`~stages.data.views.ViewSampler` (training crop, flip, test views);
            default: ``data``'s defaults (:class:`~stages.data.settings.DataSettings`) at ``crop_size``.
        candidate_frames: 'random' (training draws one of an entry's K candidates per segment
            each epoch) or 'middle' (the segment middle, as at test).
    """

    def __init__(self, entry: Union[CacheEntry, str], split: str, mode: str = "train", crop_size: int = 224,
                 num_pose_frames: int = 48, num_video_frames: Optional[int] = None, flip_prob: Optional[float] = None,
                 seed: int = 0, allow_partial: bool = False, test_crops: Sequence[str] = TEST_CROPS,
                 decode_on_device: bool = False, random_pose_offsets: bool = True,
                 views: Optional[ViewSampler] = None, candidate_frames: str = "random",
                 views_on_device: bool = False):
        self.entry = entry if isinstance(entry, CacheEntry) else CacheEntry(entry)
        self.entry.check_against_key()  # labels, splits and settings as the key made them
        self.status = self.entry.require_complete(allow_partial)
        self.split = split
        self._item_settings(self.entry.grid_cell, entry_skeleton(self.entry.skeleton, self.entry.settings),
                            self.entry.codec, f"cache entry {self.entry.key}",
                            mode, crop_size, num_pose_frames, num_video_frames, flip_prob, seed, test_crops,
                            decode_on_device, random_pose_offsets, views, candidate_frames,
                            self.entry.frames_per_segment, views_on_device)
        self.rows = self.entry.clips(split)
        if not self.rows:
            splits = sorted({c["split"] for c in self.entry.plan})
            raise ValueError(f"cache entry {self.entry.key} has no clips in split {split!r} (splits: {splits})")
        # a finished entry's item arrays, held once (before loader workers fork): an item then opens
        # no clip file but its frames' (raw frames only: other codecs read the clip's frames anyway).
        # Not beside missing clips (--allow-partial while a repair or re-extraction is under way)
        self.item_index = None
        if not (self.codec.rows_need_frames or self.decode_on_device or self.status.missing):
            self.item_index = ItemIndex.load(self.entry, self.rows)
        self.classes = self.entry.classes
        self.coarse_type = self.entry.coarse_type

    @classmethod
    def for_new_clips(cls, record: Any, mode: str = "test", crop_size: int = 224, num_pose_frames: int = 48,
                      num_video_frames: Optional[int] = None, flip_prob: Optional[float] = None, seed: int = 0,
                      test_crops: Sequence[str] = TEST_CROPS, random_pose_offsets: bool = True,
                      views: Optional[ViewSampler] = None, candidate_frames: str = "random",
                      ) -> "CacheClipDataset":
        """A dataset without clips of its own, whose :meth:`make_item` turns clips that are in no
        entry (``pipeline predict``: new videos through stage one with the entry's settings) into
        items exactly as for the clips of the entry ``record`` describes
        (:class:`~stages.data.entry_record.EntryRecord`: its grid cell, skeleton, frames codec).
        Takes the constructor's item arguments (frames are never decoded on a device here)."""
        from cache.frames_codecs import frames_codec

        self = cls.__new__(cls)
        self.entry, self.status, self.split, self.rows, self.item_index = None, None, None, [], None
        self._item_settings(int(record.settings["grid_cell"]), entry_skeleton(record.skeleton, record.settings),
                            frames_codec(record.settings.get("frames_codec")), f"cache entry {record.key}", mode,
                            crop_size, num_pose_frames, num_video_frames, flip_prob, seed, test_crops, False,
                            random_pose_offsets, views, candidate_frames,
                            record.frames_per_segment, False)
        self.classes, self.coarse_type = list(record.classes), record.coarse_type
        return self

    def _item_settings(self, cell: int, skeleton: Union[str, Skeleton], codec: Any, what: str, mode: str, crop_size: int,
                       num_pose_frames: int, num_video_frames: Optional[int], flip_prob: Optional[float], seed: int,
                       test_crops: Sequence[str], decode_on_device: bool, random_pose_offsets: bool,
                       views: Optional[ViewSampler], candidate_frames: str, frames_per_segment: int,
                       views_on_device: bool) -> None:
        """How items are made (the constructor's arguments) on ``what``'s grid, skeleton and codec,
        with ``frames_per_segment`` stored candidates per segment."""
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        if candidate_frames not in ("random", "middle"):
            raise ValueError(f"candidate_frames must be 'random' or 'middle', got {candidate_frames!r}")
        self.mode = mode
        self.crop_size = int(crop_size)
        self.num_pose_frames = int(num_pose_frames)
        self.num_video_frames = None if num_video_frames is None else int(num_video_frames)
        self.seed = int(seed)
        self.epoch = 0
        self.test_crops = tuple(test_crops)
        self.random_pose_offsets = bool(random_pose_offsets)
        self.candidate_frames = candidate_frames
        self.cell = int(cell)
        if self.crop_size % self.cell:
            raise ValueError(f"crop size {self.crop_size} is not a multiple of the {what}'s grid cell {self.cell}")
        if views is None:
            from stages.data.settings import DataSettings

            over = {} if flip_prob is None else {"flip_prob": flip_prob}
            views = ViewSampler.from_settings(DataSettings.from_dict(over), self.crop_size, self.cell)
        elif flip_prob is not None and float(flip_prob) != views.flip_prob:
            raise ValueError(f"flip_prob {flip_prob} given beside views with flip_prob {views.flip_prob}")
        if (views.size, views.cell) != (self.crop_size, self.cell):
            raise ValueError(f"views of size {views.size} on a {views.cell}-pixel grid for items of size "
                             f"{self.crop_size} on the {what}'s {self.cell}-pixel grid")
        self.views = views
        self.flip_prob = views.flip_prob
        self.frames_per_segment = int(frames_per_segment)
        # the entry's joint layout: n people's joints, each person flipped within itself
        self.skeleton = skeleton if isinstance(skeleton, Skeleton) else get_skeleton(skeleton)
        self.flip_index = np.asarray(self.skeleton.flip_index())
        # what every device-path item carries unchanged, made once (collating copies them)
        self._joint_flip = torch.from_numpy(self.flip_index.astype(np.int64))
        self._grid_cell = torch.tensor(self.cell, dtype=torch.int64)
        self.decode_on_device = bool(decode_on_device)
        self.views_on_device = bool(views_on_device)
        self.codec = codec
        if self.decode_on_device and not self.codec.device_decodable:
            raise ValueError(f"decode_on_device: {what} stores its frames with the {codec.name!r} codec, which "
                             "cannot be decoded on a device (extract with --frames-codec jpeg)")

    # -- metadata -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> list[int]:
        return [int(r["label"]) for r in self.rows]

    @property
    def metainfo(self) -> dict:  # mmengine reads this for the evaluator / visualiser
        return dict(classes=self.classes, coarse_type=self.coarse_type,
                    entry=self.entry.key if self.entry is not None else None, split=self.split)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- items -----------------------------------------------------------------------------------
    def __getitem__(self, item: Any) -> dict[str, torch.Tensor]:
        if isinstance(item, (tuple, list)):
            index, epoch = int(item[0]), int(item[1])
        else:
            index, epoch = int(item), self.epoch
        uid = self.rows[index]["uid"]
        if self.item_index is not None and not self.item_index.current():
            # the entry was reopened or finished anew while this run read it: its clips may have
            # changed, the arrays held describe the old ones
            log.warning("cache entry %s: its index changed while this run read it; items read each clip from now on",
                        self.entry.key)
            self.item_index = None
        if self.item_index is not None:
            clip = self.item_index.clip(uid)
        else:
            clip = self.entry.read_clip(uid, arrays=ITEM_ARRAYS if self.codec.rows_need_frames or
                                        self.decode_on_device else ITEM_ARRAYS_ROWS)
        rng = item_rng(self.seed, epoch, index) if self.mode == "train" else None
        return self.make_item(clip, index, rng)

    def stored_frames(self, clip, rng: Optional[np.random.Generator]) -> np.ndarray:
        """Which stored frames (rows of ``clip.frames``) the item's video frames are: one per segment
        the model reads; of an entry's K candidates a random one in training
        (``candidate_frames='random'``), else the segment middle (candidate ``K // 2``)."""
        k = int(getattr(clip, "frames_per_segment", 1) or 1)
        stored = len(clip.frame_indices)
        if stored % k:
            raise ValueError(f"clip {clip.clip_id}: {stored} stored frames are not {k} candidates per segment")
        seg = sample_video_frames(stored // k, self.num_video_frames, rng)
        if k == 1:
            return seg
        if rng is not None and self.candidate_frames == "random":
            return seg * k + rng.integers(0, k, len(seg))
        return seg * k + k // 2

    def make_item(self, clip, index: int, rng: Optional[np.random.Generator]) -> dict[str, torch.Tensor]:
        """Turn one :class:`cache.ClipData` into tensors (``rng`` None: test views)."""
        s, cell = self.crop_size, self.cell
        vsel = self.stored_frames(clip, rng)
        vf = clip.frame_indices[vsel].astype(np.int64)
        pose_idx, vpi = sample_pose_frames(clip.num_frames, self.num_pose_frames, vf,
                                           rng if self.random_pose_offsets else None)
        sx, sy = clip.scale
        kp = clip.keypoints[pose_idx] * np.array([sx, sy], dtype=np.float32)  # (T, V, 2) cached-frame pixels
        sc = clip.scores[pose_idx].astype(np.float32)  # (T, V)
        joints = np.concatenate([kp.astype(np.float32), sc[..., None]], axis=-1)  # (T, V, 3)
        h, w = clip.frame_size
        views = [self.views.train(h, w, rng)] if rng is not None else self.views.test(h, w, self.test_crops)
        out: dict[str, Any] = {}
        on_device = self.decode_on_device or self.views_on_device
        if on_device:
            # the views' geometry goes with their pixels: stages.data.device_poses maps the joints
            # and builds the grids on the device, as below
            out["pose_joints"] = torch.from_numpy(joints)
            out["joint_flip"], out["grid_cell"] = self._joint_flip, self._grid_cell
            crops = torch.from_numpy(np.array(views, dtype=np.int64))  # (torch.tensor from lists: 3x the time)
            out["frames_crop"] = crops[0] if rng is not None else crops
        else:
            out["joints"], out["mask_grid"] = [], []
            for v in views:
                j = view_joints(joints, v, self.flip_index)  # (T, V, 3) in the view's pixels
                # the grids of the video frames, from their joints in the view (== stage one's grids of it)
                out["mask_grid"].append(torch.from_numpy(joint_patch_grid(j[vpi, :, :2], j[vpi, :, 2], (s, s), cell)))
                j[..., :2] /= s
                out["joints"].append(torch.from_numpy(np.ascontiguousarray(j, dtype=np.float32)))
        if self.decode_on_device:
            # the JPEG files go to the device as they are; stages.data.device_frames decodes, crops, flips
            files = self.codec.encoded(clip.frames, vsel)
            out["frames_jpeg"] = torch.frombuffer(bytearray(b"".join(files)), dtype=torch.uint8)
            out["frames_jpeg_lengths"] = torch.tensor([len(f) for f in files], dtype=torch.int64)
        else:
            # raw frames: only the rows the views span are read; JPEG: only the frames the item uses decoded
            top = min(v.top for v in views)
            # the band as the codec reads it (yuv420: from and to even rows)
            top, height = self.codec.row_band(top, max(v.top + v.height for v in views) - top)
            # on the device the band goes as stored (stages.data.device_frames cuts it); raw frames'
            # rows only named, read by whoever needs them (the pinning thread)
            reads = self.codec.row_reads(clip, vsel, top, height) if self.views_on_device else None
            if reads is not None:
                out["frames_rows"] = FrameRows(reads)
            else:
                frames, fsel, first = self.codec.read_rows(clip, vsel, top, height)
                if self.views_on_device:
                    out["frames_rows"] = torch.from_numpy(row_band(frames, fsel, top - first, height))
                else:
                    out["frames"] = [torch.from_numpy(view_frames_chw(frames, fsel, v._replace(top=v.top - first)))
                                     for v in views]
            if self.views_on_device:
                out["frames_rows_top"] = _int64(top)  # the frame row of the band's first
        for k in ("frames", "joints", "mask_grid"):
            if k in out:
                out[k] = out[k][0] if rng is not None else torch.stack(out[k])
        out["video_pose_index"] = torch.from_numpy(vpi.astype(np.int64))
        # where each pose frame lies in the clip: the time base of the joints' velocity (pose.motion)
        out["pose_time"] = torch.from_numpy(pose_idx.astype(np.float32) / np.float32(clip.num_frames))
        out["label"] = _int64(clip.label)
        out["index"] = _int64(index)
        return out


def _int64(value: int) -> torch.Tensor:
    """A 0-d int64 tensor (a third of ``torch.tensor``'s time, which adds up per item)."""
    return torch.from_numpy(np.array(int(value), dtype=np.int64))


def row_band(frames, positions: Sequence[int], start: int, height: int) -> np.ndarray:
    """Rows ``start .. start + height - 1`` of the frames at ``positions`` of ``frames`` (what a
    codec's ``read_rows`` gave), contiguous ``(len(positions), height, W, 3)`` uint8: the array
    itself when it is exactly that band (raw frames read into it), else a copy."""
    if isinstance(frames, np.ndarray) and start == 0 and frames.shape[1] == height and frames.flags.c_contiguous \
            and list(positions) == list(range(len(frames))):
        return frames
    return np.ascontiguousarray(np.stack([np.asarray(frames[int(p)])[start:start + height] for p in positions]))
