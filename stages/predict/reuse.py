"""Poses of a video that is already in the cache, found by its content, not its name.

Stage one records each clip's video sha256 (``source_sha256``, since 2026-12; older entries have
none and are never reused). A video to predict reuses the poses of a cached clip when the clip is
the whole file (no cut), its entry was made with the same pose source (the same identity: model,
weights' sha256, flip test, person detector; or the same skeleton file; HRNet's arithmetic, fp16 on
a GPU or fp32, may differ) and skeleton, and the file has the same bytes. Only the poses are reused: the frames are decoded again (the entry may store
them with a lossy codec, or at other settings), and the rest of stage one runs as for any video.

The lookup is cheap: entries' ``sources.json`` give each clip's file size, so a video is hashed
only when some cached whole-file clip has its size.
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional

from cache import CacheEntry, CacheStore
from cache.chunks import read_group_meta
from cache.fsutil import read_json
from cache.keys import file_sha256
from cache.layout import CLIPS_DIR, SOURCES
from stages.datasets.base import ClipRecord, PoseTrack
from stages.extract.pose.base import PoseSource

log = logging.getLogger(__name__)


def same_poses(a: dict, b: dict) -> bool:
    """Two pose-source identities that give the same poses, but for the arithmetic (HRNet's
    ``precision=auto`` is fp16 on a GPU and fp32 on a CPU: joints a fraction of a pixel apart)."""
    return {k: v for k, v in a.items() if k != "precision"} == {k: v for k, v in b.items() if k != "precision"}


@dataclass(frozen=True)
class CachedClip:
    entry: CacheEntry
    uid: str
    clip_id: str


class CachedPoseIndex:
    """Whole-file clips of the cache's entries made with ``pose_identity``, ``skeleton`` and
    ``persons`` per frame (``prefer``: an entry key to look in first, the training entry)."""

    def __init__(self, cache_root: Optional[str], pose_identity: dict, skeleton: str, prefer: Optional[str] = None,
                 persons: int = 1):
        try:
            entries = CacheStore(cache_root).entries()
        except OSError:
            entries = []
        same = [e for e in entries if same_poses(e.attrs.get("pose") or {}, pose_identity)
                and e.attrs.get("skeleton") == skeleton and e.persons == persons]
        self.entries = sorted(same, key=lambda e: e.key != prefer)  # stable: newest first otherwise
        self._by_size: Optional[dict[int, list[tuple[CacheEntry, str, str]]]] = None

    def _sizes(self) -> dict[int, list[tuple[CacheEntry, str, str]]]:
        if self._by_size is None:
            by_size: dict[int, list] = defaultdict(list)
            for e in self.entries:
                try:
                    rows = read_json(e.path / SOURCES)["sources"]
                except (OSError, ValueError, KeyError):
                    continue  # an entry without sources.json predates content hashes as well
                uids = {c["clip_id"]: c["uid"] for c in e.plan}
                for r in rows:
                    size = (r.get("video") or {}).get("size")
                    if "clip" in r and size is not None and not r.get("cut") and r["clip"] in uids:
                        by_size[int(size)].append((e, uids[r["clip"]], r["clip"]))
            self._by_size = dict(by_size)
        return self._by_size

    def find(self, video: str) -> tuple[Optional[CachedClip], Optional[str]]:
        """(the cached clip of ``video``'s bytes, or None; the file's sha256 when it was needed)."""
        if not self.entries:
            return None, None
        try:
            size = os.stat(video).st_size
        except OSError:
            return None, None
        candidates = self._sizes().get(size)
        if not candidates:
            return None, None
        sha = file_sha256(video)
        for e, uid, clip_id in candidates:
            clip_dir = e.path / CLIPS_DIR / uid
            if not clip_dir.is_dir():
                continue  # planned, not extracted (or failed)
            try:
                attrs, _ = read_group_meta(clip_dir)
            except Exception:  # noqa: BLE001  (a damaged clip is not reused; `cache verify` reports it)
                log.debug("cached clip %s unreadable", clip_dir, exc_info=True)
                continue
            if attrs.get("source_sha256") == sha:
                return CachedClip(e, uid, clip_id), sha
        return None, sha


class CachedPoseSource(PoseSource):
    """The poses of one cached clip (:class:`CachedClip`), for the same video predicted again.
    Not a ``--pose-source``: ``pipeline predict`` picks it per video. The clip's joints are read
    (and their digests checked) here, once: a damaged clip raises before it is chosen."""

    name = "cache"
    needs_frames = False

    def __init__(self, hit: CachedClip):
        self.hit = hit
        self.skeleton = hit.entry.skeleton
        self._poses = hit.entry.read_clip(hit.uid, arrays=("keypoints", "scores"))

    def identity(self) -> dict:
        return dict(self.hit.entry.attrs.get("pose") or {})

    def estimate(self, clip: ClipRecord, frames: Any, boxes: Any, dataset: Any) -> PoseTrack:
        c = self._poses
        h, w = c.attrs["orig_size"]
        return PoseTrack(c.keypoints.astype("float32"), c.scores.astype("float32"), frame_size=(int(h), int(w)))

    def clip_info(self, clip: ClipRecord) -> dict:
        return {"reused_from": {"entry": self.hit.entry.key, "clip": self.hit.clip_id}}

    def describe(self) -> str:
        return f"reused from cache entry {self.hit.entry.key}, clip {self.hit.clip_id}"
