"""What a pose source is: where a clip's 2D joints come from. Imports no implementation.

A source is chosen by ``--pose-source`` and built by
:func:`stages.extract.pose.factory.create_pose_source`. Its :meth:`PoseSource.identity` goes into
the cache-entry key, so changing the model, the checkpoint or the skeleton file gives a new entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import numpy as np

from stages.datasets.base import ClipRecord, DatasetAdapter, PoseTrack
from stages.settings import Settings


class PoseSourceError(RuntimeError):
    """The source cannot give poses for a clip (recorded as that clip's failure)."""


@dataclass(frozen=True)
class PoseSourceOptions(Settings):
    """A pose source's options (``--pose-option KEY=VALUE`` and the ``--pose-*`` flags;
    ``data.pose_options`` in a training config): each source declares its own as a subclass."""

    what = "pose source option"


@dataclass
class PoseContext:
    """What a pose source is built with besides its options: where it runs, which dataset it serves."""

    dataset: Optional[DatasetAdapter] = None
    device: str = "cpu"
    #: people per frame the entry keeps (stage-one setting ``persons``); only sources with
    #: :attr:`PoseSource.multi_person` are built with more than one
    persons: int = 1


class PoseSource:
    """Base class. ``needs_frames`` says whether :meth:`estimate` looks at pixels."""

    name: str = ""
    needs_frames: bool = True
    skeleton: str = "coco17"
    #: whether the source can give several people per frame (stage-one setting ``persons`` > 1):
    #: then :meth:`estimate` returns them person-major in the joint axis, ``(F, persons * V, 2)``
    #: (joint ``p * V + v`` is joint ``v`` of person ``p``; people ordered by mean score over the
    #: clip, best first; a missing person's joints at 0 with score 0)
    multi_person: bool = False
    #: the source's option schema (its fields, types, defaults and help)
    Options: ClassVar[type] = PoseSourceOptions

    @classmethod
    def from_options(cls, options: Any, context: PoseContext) -> "PoseSource":
        """Build from checked options (an instance of :attr:`Options`) and the context."""
        return cls(**options.to_dict())

    def identity(self) -> dict:
        """JSON-able description of everything that determines this source's output."""
        raise NotImplementedError

    def estimate(
        self,
        clip: ClipRecord,
        frames: Optional[np.ndarray],
        boxes: Optional[np.ndarray],
        dataset: DatasetAdapter,
    ) -> PoseTrack:
        """Joints for every frame of ``frames`` ((F, H, W, 3) uint8 RGB, original size).

        ``boxes`` is ``(F, 4)`` xyxy person boxes or None (whole frame). Sources that do not
        need pixels get ``frames=None`` only when the caller knows the frame count otherwise.
        """
        raise NotImplementedError

    def fit_frame_size(self, clip: ClipRecord, track: PoseTrack, video_size: tuple[int, int],
                       stored_size: Optional[tuple[int, int]] = None) -> PoseTrack:
        """``track`` with the frame its coordinates are in, given the clip's video size (height,
        width, as decoded: upright, square pixels), before stage one rescales it to the video.
        ``stored_size``: (height, width) of the stored pixels when they are not square and not
        rotated (:func:`stages.extract.decode.stored_pixels_size`), the frame tools that ignore the
        sample aspect ratio (decord, PyAV) give joints in. Sources whose poses come from a file
        that states its own frame (a skeleton pickle's ``img_shape``) check it here; raise
        :class:`PoseSourceError` when it cannot be trusted. Default: the track as it is."""
        return track

    def clips_without_poses(self, clips: list[ClipRecord], dataset: Optional[DatasetAdapter]) -> Optional[list[str]]:
        """Ids of ``clips`` this source has no poses for, known before any decoding; None when it
        cannot tell without trying (a model estimates poses for any frames)."""
        return None

    def clip_info(self, clip: ClipRecord) -> dict:
        """Per-clip choices worth keeping beside the clip (e.g. which person was taken)."""
        return {}

    def weights(self) -> Optional[dict]:
        """The weight file the source loaded (name, sha256, layout) for the entry's manifest; not
        part of the key (the identity names the file's sha256). None: no file."""
        return None

    def close(self) -> None:  # release models / files
        pass
