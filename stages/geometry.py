"""Frame sampling and the geometry that keeps frames, joints and mask grids aligned.

Stage one builds the joint-to-patch grids with these functions and stage two crops and flips
with them, so the two can never disagree. Conventions: pixel coordinates are continuous with the
image spanning ``[0, W) x [0, H)``; cell ``(r, c)`` covers ``[c*cell, (c+1)*cell) x [r*cell, ...)``.
Cached frames have both sides a multiple of ``cell``, and crops start on cell boundaries, so a
crop or a flip of the frame maps grid cells onto grid cells exactly.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence

import cv2
import numpy as np


def segment_middle_indices(num_frames: int, num_segments: int) -> np.ndarray:
    """Index of the middle frame of each of ``num_segments`` equal segments (TSN test sampling)."""
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    i = np.arange(num_segments, dtype=np.float64)
    return np.minimum(((i + 0.5) * num_frames / num_segments).astype(np.int64), num_frames - 1)


def segment_candidate_indices(num_frames: int, num_segments: int, per_segment: int = 1) -> np.ndarray:
    """``per_segment`` (K) candidate frames in each of ``num_segments`` equal segments, segment-major
    ((num_segments * K,), non-decreasing): candidate j sits at fraction ``1/2 + (j - K//2) / K`` of
    its segment, so they are K evenly spaced frames and candidate ``K // 2`` is the segment middle
    (:func:`segment_middle_indices`, computed the same way: K = 1 gives exactly the middles).
    Odd K spreads them symmetrically (K = 3: 1/6, 1/2, 5/6); even K starts at the segment's first frame.
    """
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    k = int(per_segment)
    if k < 1:
        raise ValueError(f"frames per segment must be >= 1, got {per_segment}")
    s = np.arange(num_segments, dtype=np.float64)[:, None]
    frac = 0.5 + (np.arange(k, dtype=np.float64) - k // 2) / k  # exactly 0.5 for the middle
    idx = ((s + frac[None, :]) * num_frames / num_segments).astype(np.int64)
    return np.minimum(idx, num_frames - 1).reshape(-1)


def segment_random_indices(num_frames: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random frame inside each of ``num_segments`` equal segments (TSN training)."""
    lo, span = _segment_bounds(int(num_frames), int(num_segments))
    return np.minimum(lo + (rng.random(num_segments) * span).astype(np.int64), num_frames - 1)


@functools.lru_cache(maxsize=4096)
def _segment_bounds(num_frames: int, num_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """(first frame, frames spanned) of each segment; per item, so kept for the clip lengths seen."""
    edges = np.linspace(0, num_frames, num_segments + 1)
    lo = np.floor(edges[:-1]).astype(np.int64)
    hi = np.maximum(np.ceil(edges[1:]).astype(np.int64), lo + 1)
    lo.flags.writeable = False
    span = hi - lo
    span.flags.writeable = False
    return lo, span


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


# -- views: a box of the cached frame, resized to the model's size, maybe mirrored ----------------------
class View(NamedTuple):
    """One view of a clip: the box ``(top, left, height, width)`` of the cached frames (pixels),
    resized to ``size x size`` and then mirrored when ``flip``. A plain crop has ``height == width
    == size``. As a tuple of ints it is what travels to a device (``frames_crop``)."""

    top: int
    left: int
    height: int
    width: int
    size: int
    flip: bool = False

    @property
    def plain_crop(self) -> bool:
        return self.height == self.size and self.width == self.size

    def check(self, frame_height: int, frame_width: int) -> "View":
        if self.top < 0 or self.left < 0 or self.height < 1 or self.width < 1 or \
                self.top + self.height > frame_height or self.left + self.width > frame_width:
            raise ValueError(f"view box (top {self.top}, left {self.left}, {self.height} x {self.width}) is not "
                             f"inside the {frame_height} x {frame_width} frame")
        return self


def view_points(xy: np.ndarray, view: View) -> np.ndarray:
    """Pixel coordinates ``(..., 2)`` of the cached frame -> those of the view (float32).

    ``x' = (x - left) * size / width`` (continuous coordinates, the image spanning ``[0, W)``: the
    mapping OpenCV's and torch's resizes use for pixel centres), then the mirror ``size - x'``. A
    plain crop only shifts (exact in float32). The mirror sits one ulp left of ``size - x'`` so a
    joint on a cell border lands in the mirrored cell (cells are half-open), as :func:`hflip` does.
    """
    out = np.asarray(xy, dtype=np.float32).copy()
    sx = np.float32(view.size / view.width)
    sy = np.float32(view.size / view.height)
    out[..., 0] -= np.float32(view.left)
    out[..., 1] -= np.float32(view.top)
    if sx != 1:
        out[..., 0] *= sx
    if sy != 1:
        out[..., 1] *= sy
    if view.flip:
        x = (np.float32(view.size) - out[..., 0]).astype(np.float32)
        out[..., 0] = np.nextafter(x, np.asarray(-np.inf, dtype=np.float32))
    return out


def view_joints(joints: np.ndarray, view: View, flip_index: Sequence[int]) -> np.ndarray:
    """Joints ``(..., V, 2 + k)`` (x, y in cached-frame pixels, then scores) in the view's pixels;
    on a mirrored view left and right joints swap places (``flip_index``)."""
    j = np.asarray(joints, dtype=np.float32)
    if view.flip:
        j = j[..., np.asarray(flip_index), :]
    out = j.copy()
    out[..., :2] = view_points(j[..., :2], view)
    return out


def view_grids(joints: np.ndarray, view: View, flip_index: Sequence[int], cell: int, dtype=np.float16) -> np.ndarray:
    """The joint-to-patch grids of a view, ``(T, V, size/cell, size/cell)``, built from the joints
    ``(T, V, 3)`` (x, y in cached-frame pixels, score) mapped into the view: exactly the grid a
    frame of that view would get from stage one. For a plain crop on the cell lattice this equals
    slicing (and mirroring) the stored grids (:func:`crop`, :func:`hflip`); for a resized box no
    slicing of the stored cells could be exact, since a cell's joint may land in either of two
    cells of the view."""
    j = view_joints(joints, view, flip_index)
    return joint_patch_grid(j[..., :2], j[..., 2], (view.size, view.size), cell, dtype=dtype)


def view_frames_chw(frames, indices: Sequence[int], view: View, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``frames[indices]`` ((T, H, W, 3) uint8, anything that slices: a memory map) in the view: the
    box cut out, resized to ``size`` with bilinear interpolation (OpenCV, as mmaction's Resize),
    mirrored, as a contiguous ``(len(indices), 3, size, size)``. A plain crop is
    :func:`crop_frames_chw` (only the box is read, nothing is resampled)."""
    v = view
    if v.plain_crop:
        return crop_frames_chw(frames, indices, v.top, v.left, v.size, v.flip, out=out)
    if out is None:
        out = np.empty((len(indices), 3, v.size, v.size), np.uint8)
    for k, t in enumerate(indices):
        roi = np.asarray(frames[int(t), v.top: v.top + v.height, v.left: v.left + v.width])
        img = cv2.resize(roi, (v.size, v.size), interpolation=cv2.INTER_LINEAR)
        if v.flip:
            img = cv2.flip(img, 1)
        cv2.split(img, [out[k, 0], out[k, 1], out[k, 2]])
    return out
