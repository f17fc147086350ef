"""Frame sampling and the geometry that keeps frames, joints and mask grids aligned.

Stage one builds the joint-to-patch grids with these functions and stage two crops and flips
with them, so the two can never disagree. Conventions: pixel coordinates are continuous with the
image spanning ``[0, W) x [0, H)``; cell ``(r, c)`` covers ``[c*cell, (c+1)*cell) x [r*cell, ...)``.
Cached frames have both sides a multiple of ``cell``, and crops start on cell boundaries, so a
crop or a flip of the frame maps grid cells onto grid cells exactly.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np


def segment_middle_indices(num_frames: int, num_segments: int) -> np.ndarray:
    """Index of the middle frame of each of ``num_segments`` equal segments (TSN test sampling)."""
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    i = np.arange(num_segments, dtype=np.float64)
    return np.minimum(((i + 0.5) * num_frames / num_segments).astype(np.int64), num_frames - 1)


def segment_random_indices(num_frames: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random frame inside each of ``num_segments`` equal segments (TSN training)."""
    edges = np.linspace(0, num_frames, num_segments + 1)
    lo = np.floor(edges[:-1]).astype(np.int64)
    hi = np.maximum(np.ceil(edges[1:]).astype(np.int64), lo + 1)
    return np.minimum(lo + (rng.random(num_segments) * (hi - lo)).astype(np.int64), num_frames - 1)


def resized_size(height: int, width: int, short_side: int, cell: int) -> tuple[int, int]:
    """(H, W) with the short side ``short_side`` and both sides rounded to a multiple of ``cell``.

    Rounding the long side changes the aspect ratio by at most ``cell / 2`` pixels; it is what lets
    a flip map cells onto cells.
    """
    if short_side % cell:
        short_side = max(cell, int(round(short_side / cell)) * cell)
    if height <= width:
        long = width * short_side / height
        return short_side, max(cell, int(round(long / cell)) * cell)
    long = height * short_side / width
    return max(cell, int(round(long / cell)) * cell), short_side


def joint_patch_grid(
    keypoints: np.ndarray,
    scores: np.ndarray,
    frame_size: tuple[int, int],
    cell: int,
    dtype=np.float16,
) -> np.ndarray:
    """Confidence-weighted joint-to-patch incidence, one plane per joint.

    ``keypoints`` (T, V, 2) are in the frame's pixels, ``scores`` (T, V). Returns
    (T, V, H/cell, W/cell): plane ``v`` holds joint v's score in the cell the joint falls in and 0
    elsewhere. Joints outside the frame or with score 0 mark nothing. P2V later turns these planes
    into its weighted mask with learned per-joint weights (paper eq. 1).
    """
    h, w = frame_size
    if h % cell or w % cell:
        raise ValueError(f"frame size {frame_size} is not a multiple of the cell {cell}")
    t, v, _ = keypoints.shape
    gh, gw = h // cell, w // cell
    grid = np.zeros((t, v, gh, gw), dtype=dtype)
    x, y = keypoints[..., 0], keypoints[..., 1]
    ok = (scores > 0) & (x >= 0) & (x < w) & (y >= 0) & (y < h) & np.isfinite(x) & np.isfinite(y)
    ti, vi = np.nonzero(ok)
    col = (x[ti, vi] // cell).astype(np.int64)
    row = (y[ti, vi] // cell).astype(np.int64)
    grid[ti, vi, row, col] = scores[ti, vi]
    return grid


def crop(
    frames: Optional[np.ndarray],
    grids: np.ndarray,
    joints: np.ndarray,
    top: int,
    left: int,
    size: int,
    cell: int,
) -> tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Take the same ``size`` square from frames (T,H,W,C), grids (T,V,h,w) and joints (...,V,2+).

    ``top`` and ``left`` must be multiples of ``cell`` and ``size`` too. ``frames`` may be None
    when they are cropped elsewhere (:func:`crop_frames_chw`, or on the GPU).
    """
    if top % cell or left % cell or size % cell:
        raise ValueError(f"crop ({top}, {left}, {size}) is not on the {cell}-pixel grid")
    f = None if frames is None else frames[:, top : top + size, left : left + size]
    g = grids[..., top // cell : (top + size) // cell, left // cell : (left + size) // cell]
    j = joints.copy()
    j[..., 0] -= left
    j[..., 1] -= top
    return f, g, j


def hflip(
    frames: Optional[np.ndarray],
    grids: np.ndarray,
    joints: np.ndarray,
    flip_index: Sequence[int],
    width: Optional[int] = None,
) -> tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Mirror frames, grids and joints left-right; left and right joints swap places.

    ``width``: the image width the joints live in (default: the frames'; needed without frames).
    """
    w = frames.shape[2] if width is None else width
    perm = np.asarray(flip_index)
    f = None if frames is None else frames[:, :, ::-1]
    g = grids[:, perm][..., ::-1]
    j = joints[..., perm, :].copy()
    # Cells are half-open [c*cell, (c+1)*cell): mirroring maps them to (.., ..], so a joint exactly
    # on a border would land one cell off. One ulp to the left keeps it in the mirrored cell.
    x = (w - j[..., 0]).astype(j.dtype)
    j[..., 0] = np.nextafter(x, np.asarray(-np.inf, dtype=j.dtype))
    return f, g, j


def crop_frames_chw(frames, indices: Sequence[int], top: int, left: int, size: int, flip: bool,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    """``frames[indices]`` (any (T, H, W, 3) uint8 array that slices, e.g. a memory map) cropped to
    ``size`` at (top, left), optionally mirrored, as a contiguous (len(indices), 3, size, size).

    Equal to ``frames[indices, top:top+size, left:left+size][:, :, ::-1 if flip].transpose(0, 3, 1, 2)``
    but one pass per frame (OpenCV's channel split writes the planes in place): numpy's and torch's
    strided HWC->CHW copies cost 3-5x more, and a memory-mapped clip is only read where the crop is.
    """
    if out is None:
        out = np.empty((len(indices), 3, size, size), np.uint8)
    for k, t in enumerate(indices):
        roi = frames[int(t), top : top + size, left : left + size]
        if flip:
            roi = cv2.flip(np.asarray(roi), 1)
        cv2.split(np.asarray(roi), [out[k, 0], out[k, 1], out[k, 2]])
    return out


def crop_offsets(height: int, width: int, size: int, cell: int, where: str,
                 rng: Optional[np.random.Generator] = None) -> tuple[int, int]:
    """Top-left of a ``size`` crop on the cell grid: 'random', 'center', 'first' or 'last'.

    The three test crops are 'first', 'center', 'last' along the long side (mmaction's ThreeCrop).
    """
    max_t, max_l = (height - size) // cell, (width - size) // cell
    if max_t < 0 or max_l < 0:
        raise ValueError(f"frame {height}x{width} is smaller than the crop {size}")
    if where == "random":
        rng = rng or np.random.default_rng()
        return int(rng.integers(0, max_t + 1)) * cell, int(rng.integers(0, max_l + 1)) * cell
    if where == "center":
        return (max_t // 2) * cell, (max_l // 2) * cell
    if where in ("first", "last"):
        pick = 0 if where == "first" else None
        if width >= height:
            return (max_t // 2) * cell, (0 if pick == 0 else max_l) * cell
        return (0 if pick == 0 else max_t) * cell, (max_l // 2) * cell
    raise ValueError(f"unknown crop position {where!r}")
