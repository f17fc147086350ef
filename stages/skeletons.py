"""Joint layouts: names and the left/right pairs a horizontal flip swaps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from cache.layout import recorded_count


@dataclass(frozen=True)
class Skeleton:
    name: str
    joints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    # limb list (for rendering heatmaps/limbs and for drawing)
    limbs: tuple[tuple[int, int], ...] = ()

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def flip_index(self) -> list[int]:
        """Permutation that maps each joint to its mirror partner (itself if unpaired)."""
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def for_persons(self, persons: int) -> "Skeleton":
        """The layout of ``persons`` people in one joint axis, person-major (stage one's
        ``persons`` setting): joint ``p * V + v`` is joint ``v`` of person ``p``. A flip swaps left
        and right within each person (the per-person flip index repeated, shifted per person), and
        the limbs join joints of one person. ``persons == 1``: this skeleton itself."""
        n = int(persons)
        if n < 1:
            raise ValueError(f"persons must be positive, got {persons}")
        if n == 1:
            return self
        v = self.num_joints
        return Skeleton(
            name=f"{self.name}x{n}",
            joints=tuple(f"p{p}.{j}" for p in range(n) for j in self.joints),
            flip_pairs=tuple((a + p * v, b + p * v) for p in range(n) for a, b in self.flip_pairs),
            limbs=tuple((a + p * v, b + p * v) for p in range(n) for a, b in self.limbs),
        )


COCO17 = Skeleton(
    name="coco17",
    joints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    limbs=(
        (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
        (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
    ),
)

# Toyota-Smarthome's LCR-Net 2D skeletons: 13 joints.
TOYOTA13 = Skeleton(
    name="toyota13",
    joints=(
        "right_ankle", "left_ankle", "right_knee", "left_knee", "right_hip", "left_hip",
        "right_wrist", "left_wrist", "right_elbow", "left_elbow", "right_shoulder",
        "left_shoulder", "head",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    limbs=(
        (0, 2), (2, 4), (1, 3), (3, 5), (4, 5), (6, 8), (8, 10), (7, 9), (9, 11),
        (10, 11), (10, 4), (11, 5), (12, 10), (12, 11),
    ),
)

SKELETONS = {s.name: s for s in (COCO17, TOYOTA13)}


def get_skeleton(name: str) -> Skeleton:
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; known: {sorted(SKELETONS)}") from None


def entry_skeleton(skeleton: str, settings: Optional[Mapping] = None) -> Skeleton:
    """The joint layout of a cache entry's arrays: its ``skeleton`` (one person's joints) for each
    of the ``persons`` its stage-one ``settings`` record (none recorded: one person)."""
    return get_skeleton(skeleton).for_persons(recorded_count(settings or {}, "persons"))
