"""Which pose frames and which cached video frames a clip contributes, and where they meet.

PeVL reads ``T`` pose frames (48 by default) and ``T_v`` video frames (16) of a clip. Stage one
cached ``T_v`` frames at segment middles and the poses of *every* decoded frame, so the pose frames
are sampled here, at load time, and any ``T`` works without re-extraction.

The pose sequence must contain the video frames themselves: V2P (paper eq. 2) refines "the pose
tokens of the T_v frames that coincide with video frames", and P2V weights a frame's patches with
the joints of that same frame. :func:`sample_pose_frames` therefore samples ``T`` segment-uniform
indices, then for each video frame replaces the nearest still-unclaimed sampled index with the
video frame's own index, keeps the sequence sorted, and returns where each video frame landed
(``video_pose_index``).
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Optional

import numpy as np

from stages.geometry import segment_middle_indices, segment_random_indices


def sample_pose_frames(num_frames: int, num_pose_frames: int, video_frame_indices: np.ndarray,
                       rng: Optional[np.random.Generator] = None) -> tuple[np.ndarray, np.ndarray]:
    """Pose-frame indices (T,) into the clip's decoded frames and ``video_pose_index`` (T_v,).

    ``rng`` given: one random frame per segment (training); ``None``: segment middles (test).
    ``pose_idx[video_pose_index[k]] == video_frame_indices[k]`` for every video frame k, and
    ``pose_idx`` is non-decreasing. Clips shorter than ``T`` repeat frames (as TSN sampling does).
    """
    vf = np.asarray(video_frame_indices, dtype=np.int64)
    t, tv = int(num_pose_frames), len(vf)
    if tv > t:
        raise ValueError(f"{tv} video frames cannot all be among {t} pose frames; use num_pose_frames >= {tv}")
    if rng is None:
        idx = segment_middle_indices(num_frames, t)
    else:
        idx = segment_random_indices(num_frames, t, rng)
    # (np.minimum/np.maximum, not np.clip: its error-state handling costs more than the work here)
    idx = np.minimum(np.maximum(idx.astype(np.int64), 0), num_frames - 1).tolist()  # non-decreasing by construction
    vfl = np.minimum(np.maximum(vf, 0), num_frames - 1).tolist()
    # Video frames in temporal order claim their nearest free slot (ties: the earlier slot). Free
    # slots keep their sampled (sorted) index, so the nearest is found by bisection: plain Python
    # on lists, ~10x faster than numpy calls per video frame at T = 48 (this runs per item).
    sampled = list(idx)  # stays sorted; a free slot still holds its sampled index
    free = list(range(t))
    slot_of = [0] * tv
    for k in sorted(range(tv), key=vfl.__getitem__):
        v = vfl[k]
        i = bisect_left(free, bisect_left(sampled, v))  # free slots from here on hold indices >= v
        right = free[i] if i < len(free) else None
        left = None
        if i > 0:  # the earliest free slot holding the largest index below v
            left = free[bisect_left(free, bisect_left(sampled, sampled[free[i - 1]]))]
        j = left if right is None or (left is not None and v - sampled[left] <= sampled[right] - v) else right
        free.remove(j)
        slot_of[k] = j
        idx[j] = v
    # sort; among equal frame indices a video frame's slot keeps its place deterministically (a
    # stable sort of the slots by index is the sort by (index, slot))
    idx = np.array(idx, dtype=np.int64)
    order = np.argsort(idx, kind="stable")
    new_pos = np.empty(t, dtype=np.int64)
    new_pos[order] = np.arange(t, dtype=np.int64)
    return idx[order], new_pos[slot_of]


def sample_video_frames(cached: int, wanted: Optional[int], rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Which of the ``cached`` frames to use when the model wants fewer (``wanted``) of them:
    segment middles at test, one random frame per segment in training; all of them by default."""
    if wanted is None or wanted >= cached:
        if wanted is not None and wanted > cached:
            raise ValueError(f"the model wants {wanted} video frames but the entry caches {cached}; "
                             f"extract with --num-frames {wanted}")
        return np.arange(cached)
    if rng is None:
        return segment_middle_indices(cached, wanted)
    return segment_random_indices(cached, wanted, rng)
