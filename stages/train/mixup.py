"""Mixup of a training batch (``train.mixup_alpha``, X-CLIP's recipe), on the device.

X-CLIP mixes a batch with a permutation of itself by ``lambda ~ Beta(alpha, alpha)`` (its
``datasets/blending.py``, pixels only: it has no pose). Here every input the model reads is mixed
alike: the frames (normalised), the joints (coordinates and scores) and the mask grids, so the
pose stream sees the same mixture as the video stream; the per-clip indices (``video_pose_index``,
``pose_time``) stay the first clip's. The batch carries ``mix_index`` and ``mix_lam``; the losses
turn them into soft targets (:mod:`stages.model.losses`). X-CLIP switches between mixup and
CutMix; CutMix is not done here (a cut box would have to cut the joints and mask grids with it).

The draw is a function of the run's seed and the batch's item indices (different every step and
on every rank, the same again after a resume).
"""
from __future__ import annotations

import numpy as np
import torch

#: the batch tensors that are mixed (the inputs); the rest belong to the first clip
MIXED_KEYS = ("frames", "joints", "mask_grid")


def mix_batch(batch: dict, alpha: float, seed: int) -> dict:
    """``batch`` with its inputs mixed (a new dict; ``alpha <= 0`` or one clip: unchanged)."""
    b = int(batch["label"].shape[0])
    if alpha <= 0 or b < 2:
        return batch
    index = batch.get("index")
    ids = [int(i) for i in index.view(-1).tolist()] if index is not None else []
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x313C5, *ids])
    lam = float(rng.beta(alpha, alpha))
    perm = torch.as_tensor(rng.permutation(b), dtype=torch.long, device=batch["label"].device)
    out = dict(batch)
    for k in MIXED_KEYS:
        if k in out:
            x = out[k]
            out[k] = lam * x + (1 - lam) * x[perm]
    out["mix_index"] = perm
    out["mix_lam"] = torch.tensor(lam, dtype=torch.float32, device=batch["label"].device)
    return out
