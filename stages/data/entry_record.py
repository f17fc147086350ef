"""What a trained model needs to know of the cache entry it was trained on, without the entry.

A checkpoint carries this record (:class:`stages.train.hooks.RunRecordHook`), so ``pipeline
predict`` can run stage one on new videos exactly as it ran for the training entry (the same
frames, short side, grid, frames codec, pose source and options, skeleton) and name the classes,
on a machine that has neither the entry nor the dataset. Everything in it is plain JSON (a
checkpoint is read with ``weights_only=True``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from cache.layout import recorded_count

#: the version of the record's layout (a reader refuses a newer one by name)
ENTRY_RECORD_VERSION = 1


def plain_json(x: Any) -> Any:
    """``x`` as plain JSON values (paths and other objects as text; tuples as lists)."""
    return json.loads(json.dumps(x, default=str))


@dataclass(frozen=True)
class EntryRecord:
    """A cache entry as a model sees it: its key, what stage one was asked for, and the classes."""

    key: str
    dataset: str
    #: the request stage one answered (:class:`stages.extract.request.EntryRequest` as a dict): the
    #: dataset, its options, the pose source's registered name and options, the stage-one settings.
    #: None for entries made before entries recorded their request.
    request: Optional[dict]
    settings: dict  # the entry's ``settings`` attribute: the stage-one settings and the pose source spec
    pose: dict  # the pose source's identity (model, weights' sha256, flip test, detector, ...)
    skeleton: str
    classes: list = field(default_factory=list)  # the class texts, class id order
    coarse_type: str = ""

    @classmethod
    def from_entry(cls, entry: Any) -> "EntryRecord":
        """The record of a :class:`cache.CacheEntry`."""
        a = entry.attrs
        return cls(key=entry.key, dataset=entry.dataset, request=a.get("request"), settings=dict(entry.settings),
                   pose=dict(a.get("pose") or {}), skeleton=entry.skeleton, classes=list(entry.classes),
                   coarse_type=entry.coarse_type)

    def to_dict(self) -> dict:
        return plain_json({"version": ENTRY_RECORD_VERSION, "key": self.key, "dataset": self.dataset,
                           "request": self.request, "settings": self.settings, "pose": self.pose,
                           "skeleton": self.skeleton, "classes": self.classes, "coarse_type": self.coarse_type})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "the record") -> "EntryRecord":
        version = d.get("version")
        if version != ENTRY_RECORD_VERSION:
            raise ValueError(f"{where}: entry record version {version!r}, this code reads version "
                             f"{ENTRY_RECORD_VERSION} (written by a newer pipeline?)")
        missing = [k for k in ("key", "dataset", "settings", "pose", "skeleton", "classes") if k not in d]
        if missing:
            raise ValueError(f"{where}: the entry record lacks {', '.join(missing)}")
        return cls(key=str(d["key"]), dataset=str(d["dataset"]), request=d.get("request"),
                   settings=dict(d["settings"]), pose=dict(d["pose"]), skeleton=str(d["skeleton"]),
                   classes=list(d["classes"]), coarse_type=str(d.get("coarse_type") or ""))

    @property
    def pose_spec(self) -> str:
        """The ``--pose-source`` spec stage one ran with (``hrnet``, ``dataset``, ``pkl:PATH``)."""
        return str(self.settings.get("pose_source") or (self.request or {}).get("pose_source") or "")

    @property
    def pose_options(self) -> dict:
        """The pose source's options as stage one's request recorded them (text; those in the key)."""
        return dict((self.request or {}).get("pose_options") or {})

    @property
    def frames_per_segment(self) -> int:
        """K candidate frames per segment (as :attr:`cache.CacheEntry.frames_per_segment`)."""
        return recorded_count(self.settings, "frames_per_segment")

    @property
    def persons(self) -> int:
        """People per frame (as :attr:`cache.CacheEntry.persons`)."""
        return recorded_count(self.settings, "persons")

    def extract_settings(self) -> Any:
        """The entry's :class:`~stages.extract.settings.ExtractSettings`."""
        from stages.extract.settings import ExtractSettings

        return ExtractSettings.of_entry(self.settings, where=f"entry {self.key} settings")
