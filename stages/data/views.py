"""Which views of a clip an item takes: the training crop (a box of the cached frames, resized to
the model's size, maybe mirrored) and the test views.

Training crops (``data.train_crop``), each then resized to ``S x S`` and flipped with
probability ``data.flip_prob``:

* ``random_resized``: mmaction2's RandomResizedCrop, which AIM's Diving48 recipe runs after
  resizing the short side to 256 (``configs/recognition/vit/vitclip_base_diving48.py``): a box of
  a random area (``data.crop_area``, a fraction of the frame's) and aspect ratio
  (``data.crop_aspect``, log-uniform), at a random place; 10 tries, then the centre square;
* ``multi_scale``: mmaction2's MultiScaleCrop as X-CLIP runs it (``datasets/build.py``): box sides
  ``int(short_side * s)`` for ``s`` in ``data.crop_scales``, width and height at most one scale
  apart, at one of five fixed places (the corners and the centre);
* ``fixed_size``: an ``S x S`` crop at a random place on the grid-cell lattice, no resize (the
  pipeline's reading before issue 20).

Test views (``data.test_views``), three along the long side (mmaction2's ThreeCrop), no flip:

* ``resize_three_crop``: AIM's test protocol, which PeVL says it follows (Sec. 4.1, [59]): the
  short side resized to ``S``, three ``S`` crops. Here each view is the matching square box of the
  cached frame (its whole short side) resized to ``S``: the same pixels up to the border of the
  box and its rounding to whole pixels;
* ``three_crop``: three ``S`` crops of the cached frames as they are (short side 256 for 224).

Every view is a :class:`stages.geometry.View`; :mod:`stages.geometry` applies it alike to frames,
joints and mask grids. Randomness comes from the item's generator only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from stages.geometry import View, crop_offsets

TRAIN_CROPS = ("random_resized", "multi_scale", "fixed_size")
TEST_VIEWS = ("resize_three_crop", "three_crop")
THREE_CROPS = ("first", "center", "last")


@dataclass(frozen=True)
class ViewSampler:
    """The views of items of size ``size`` from frames on a ``cell``-pixel grid; the other fields
    are :class:`stages.data.settings.DataSettings`' (where their defaults and help live)."""

    size: int
    cell: int
    train_crop: str
    flip_prob: float
    crop_scales: tuple[float, ...]
    crop_area: tuple[float, float]
    crop_aspect: tuple[float, float]
    test_views: str

    def __post_init__(self):
        if self.train_crop not in TRAIN_CROPS:
            raise ValueError(f"train_crop must be one of {TRAIN_CROPS}, got {self.train_crop!r}")
        if self.test_views not in TEST_VIEWS:
            raise ValueError(f"test_views must be one of {TEST_VIEWS}, got {self.test_views!r}")
        lo, hi = self.crop_area
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_area must be 0 < low <= high <= 1, got {self.crop_area}")
        if not 0 < self.crop_aspect[0] <= self.crop_aspect[1]:
            raise ValueError(f"crop_aspect must be 0 < low <= high, got {self.crop_aspect}")
        if not self.crop_scales or any(not 0 < s <= 1 for s in self.crop_scales):
            raise ValueError(f"crop_scales must be fractions in (0, 1], got {self.crop_scales}")

    @classmethod
    def from_settings(cls, data, size: int, cell: int) -> "ViewSampler":
        """From a :class:`~stages.data.settings.DataSettings` (or a mapping of its fields)."""
        get = (lambda k: data[k]) if isinstance(data, dict) else (lambda k: getattr(data, k))
        return cls(size=int(size), cell=int(cell), train_crop=get("train_crop"), flip_prob=float(get("flip_prob")),
                   crop_scales=tuple(float(x) for x in get("crop_scales")),
                   crop_area=tuple(float(x) for x in get("crop_area")),
                   crop_aspect=tuple(float(x) for x in get("crop_aspect")), test_views=get("test_views"))

    # -- training -------------------------------------------------------------------------------
    def train(self, height: int, width: int, rng: np.random.Generator) -> View:
        """One random training view of an ``height x width`` frame."""
        s = self.size
        if self.train_crop == "fixed_size":  # the draws of the code before issue 20, in its order
            top, left = crop_offsets(height, width, s, self.cell, "random", rng)
            return View(top, left, s, s, s, bool(rng.random() < self.flip_prob))
        if min(height, width) < 1:
            raise ValueError(f"empty frame {height} x {width}")
        if self.train_crop == "multi_scale":
            top, left, h, w = multi_scale_box(height, width, self.crop_scales, rng)
        else:
            top, left, h, w = random_resized_box(height, width, self.crop_area, self.crop_aspect, rng)
        return View(top, left, h, w, s, bool(rng.random() < self.flip_prob)).check(height, width)

    # -- test -------------------------------------------------------------------------------------
    def test(self, height: int, width: int, where: Sequence[str] = THREE_CROPS) -> list[View]:
        """The test views of an ``height x width`` frame (``where``: ThreeCrop's positions)."""
        s = self.size
        if self.test_views == "three_crop":
            return [View(*crop_offsets(height, width, s, self.cell, p), s, s, s, False) for p in where]
        return [View(*box, s, False).check(height, width) for box in resized_three_crop_boxes(height, width, s, where)]


def random_resized_box(height: int, width: int, area: tuple[float, float], aspect: tuple[float, float],
                       rng: np.random.Generator, attempts: int = 10) -> tuple[int, int, int, int]:
    """mmaction2's ``RandomResizedCrop.get_crop_bbox``: (top, left, h, w) of a box whose area is a
    uniform fraction of the frame's and whose aspect (w / h) is log-uniform, at a uniform place;
    after ``attempts`` boxes that do not fit, the centred square of the short side."""
    ratios = np.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1]), size=attempts))
    areas = rng.uniform(area[0], area[1], size=attempts) * height * width
    ws = np.round(np.sqrt(areas * ratios)).astype(np.int64)
    hs = np.round(np.sqrt(areas / ratios)).astype(np.int64)
    for w, h in zip(ws.tolist(), hs.tolist()):
        if 1 <= h <= height and 1 <= w <= width:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return top, left, h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def multi_scale_box(height: int, width: int, scales: Sequence[float], rng: np.random.Generator,
                    max_wh_scale_gap: int = 1) -> tuple[int, int, int, int]:
    """mmaction2's ``MultiScaleCrop`` with ``random_crop=False`` (X-CLIP's): box sides from
    ``int(short_side * s)``, width and height at most ``max_wh_scale_gap`` scales apart, at one of
    five places (the four corners and the centre, on a quarter-step lattice)."""
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    pairs = [(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_wh_scale_gap]
    w, h = pairs[int(rng.integers(0, len(pairs)))]
    w_step, h_step = (width - w) // 4, (height - h) // 4
    places = [(0, 0), (0, 4 * w_step), (4 * h_step, 0), (4 * h_step, 4 * w_step), (2 * h_step, 2 * w_step)]
    top, left = places[int(rng.integers(0, len(places)))]
    return top, left, h, w


def resized_three_crop_boxes(height: int, width: int, size: int,
                             where: Sequence[str] = THREE_CROPS) -> list[tuple[int, int, int, int]]:
    """The boxes of the cached frame that mmaction2's ``Resize(-1, size)`` then ``ThreeCrop(size)``
    take: the short side whole, at the first, centre and last place along the long side (ThreeCrop's
    offsets computed on the resized frame, mapped back and rounded to whole pixels)."""
    short, long = min(height, width), max(height, width)
    resized_long = int(long * size / short + 0.5)  # mmcv's rescale_size
    step = (resized_long - size) // 2
    out = []
    for p in where:
        k = {"first": 0, "center": 1, "last": 2}.get(p)
        if k is None:
            raise ValueError(f"unknown crop position {p!r}")
        off = min(int(round(k * step * short / size)), long - short)
        out.append((0, off, short, short) if width >= height else (off, 0, short, short))
    return out


def views_tensor_rows(views: Sequence[View]) -> list[list[int]]:
    """Views as rows of ints (``frames_crop`` on the device path)."""
    return [[int(x) for x in v] for v in views]

