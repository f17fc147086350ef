"""On-disk layout of a cache entry (store format version ``FORMAT_VERSION``).

Bump ``FORMAT_VERSION`` whenever the bytes or their meaning change: the version is part of every
entry key, so old entries are never misread (``CacheEntry`` refuses them naming ``pipeline cache
gc`` and re-extraction; ``cache ls`` / ``verify`` list them); ``pipeline cache gc`` removes them.

Format 3 (format 2 differed only in what a clip's frames are): ``frames``, ``frame_indices`` and
``grids`` hold ``K`` candidate frames per segment (stage-one setting ``frames_per_segment``,
recorded in the root's ``settings`` when it is not 1), segment-major: ``T_v * K`` frames, the K
candidates of segment s at rows ``s*K .. s*K+K-1``, evenly spread inside it with the segment
middle at row ``s*K + K//2`` (``stages.geometry.segment_candidate_indices``). With K = 1 a clip
holds exactly what a format-2 clip held (the segment middles), and the entry key of such an entry
differs from format 2's only by the version.

Format 2 (format 1 differed only inside ``clips/<uid>/``): every clip array is one chunk written
even when it holds only fill values; the clip group's ``zarr.json`` carries the metadata of all
its arrays (zarr's consolidated metadata), so a reader needs one JSON file and one file per
array (``cache/chunks.py``); ``frame_indices``, ``keypoints``, ``scores`` (and ``person_boxes``)
are stored uncompressed; the frames codec ``none`` (raw uint8) is the default; the ``jpeg`` codec
stores ``frames`` as a ``(T_v,)`` variable-length-bytes array of JPEG files.

::

    <cache-root>/entries/<dataset>/<key>/   one entry = one dataset x stage-one setting
      zarr.json          Zarr v3 root group; attrs: format, key, dataset, settings, classes, ...,
                         key_skeleton (the skeleton the key hashed; additive, older entries lack it)
      manifest.json      human-readable provenance and status (rewritten atomically)
      plan.json          every clip the entry must hold (id, uid, split, label, source, cut)
      sources.json       the identity (path, size, mtime) of every source file the key hashes
      clips/             Zarr group holding one Zarr group per finished clip:
      clips/<uid>/       a clip; appears atomically (a rename), never half-written
        frames           (T_v * K, H, W, 3) uint8 RGB: K candidates per segment (K = 1: the
                         segment middles), short side S, H and W multiples of the grid cell;
                         codec none (raw), lz4 or zstd. With the jpeg codec: (T_v * K,)
                         variable-length bytes, each a JPEG file of one such frame (array
                         attribute ``jpeg``: frame_shape, quality, color, subsampling, and
                         file_bytes, file_digests: each file's length and sha256, which let a
                         reader take only some files; entries written before them lack them
                         and are read whole: no format change)
        frame_indices    (T_v * K,) int32: which decoded frames of the clip the frames are
        keypoints        (F, V, 2) float32: x, y of every decoded frame, original pixels
        scores           (F, V) float32 joint confidences
        grids            (T_v * K, V, H/cell, W/cell) float16 confidence-weighted joint-to-patch
                         planes of every stored frame
                         (stage-one setting ``persons`` n > 1: V = n x the skeleton's joints,
                         person-major: joint p * V_1 + v is joint v of person p, best track first;
                         a missing person's joints are 0 with score 0)
        person_boxes     optional (F, 4) float32 xyxy person box of every decoded frame, original
                         pixels (clips whose poses came from person boxes); persons n > 1:
                         (F, n, 4), each kept person's box, NaN where the person is absent
        attrs            clip_id, split, label, source, cut, num_frames, fps, orig_size, ...,
                         source_sha256 (the video file's, for uncut clips; additive, clips of
                         older runs lack it), attrs_digest (of all the others as written;
                         additive, clips written before 2026-12-06 lack it)
      failures/<uid>.json  why a clip could not be extracted
      claims/<uid>         a writer is working on the clip (host, pid, time); heartbeated
      runs/*.json          one record per extraction run (host, counts, timings)
      index/             written once complete: the poses of all clips as flat arrays
        keypoints (sum F, V, 2), scores (sum F, V), offsets (N + 1,), labels (N,), ...;
        what items read besides pixels (cache/item_index.py, attribute ``items``):
        frame_indices, frame_offsets, scale and (raw or yuv420 frames) frames_shape
      .staging/          writers' scratch; a clip is moved from here into clips/ when whole
      quarantine/        damaged clips `pipeline cache repair` moved out of clips/ (with a .json
                         each saying why), kept for a look until `pipeline cache gc`
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

FORMAT_VERSION = 3


def newer_format(fmt: Any) -> bool:
    """Whether an entry's recorded store format is a later one than this code's: written by a
    colleague's newer code, which reads it. Never removed here (only older formats are)."""
    return isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT_VERSION

ENTRIES_DIR = "entries"
CLIPS_DIR = "clips"
FAILURES_DIR = "failures"
CLAIMS_DIR = "claims"
READERS_DIR = "readers"  # one heartbeated mark per process reading the entry (training, eval): gc leaves it be
RUNS_DIR = "runs"
STAGING_DIR = ".staging"
INDEX_DIR = "index"
QUARANTINE_DIR = "quarantine"
MANIFEST = "manifest.json"
PLAN = "plan.json"
SOURCES = "sources.json"
ROOT_META = "zarr.json"  # a Zarr group's (or array's) metadata: the entry's is what makes it an entry

#: the folders an entry holds, which writers create files in, rename or remove things from. The
#: cache never makes one a symbolic link: one that is (a mistaken ``ln -s``, or a colleague's doing)
#: is refused by writers and left alone by gc, which would otherwise remove what it points to
ENTRY_FOLDERS = (CLIPS_DIR, CLAIMS_DIR, FAILURES_DIR, RUNS_DIR, STAGING_DIR, INDEX_DIR, QUARANTINE_DIR, READERS_DIR)
#: what makes a folder under entries/DATASET/ one of ours, however damaged (gc removes no other)
ENTRY_MARKS = (ROOT_META, PLAN, MANIFEST, SOURCES) + ENTRY_FOLDERS

CLIP_ARRAYS = ("frames", "frame_indices", "keypoints", "scores", "grids")
#: arrays a clip may hold (read and checked when present)
OPTIONAL_CLIP_ARRAYS = ("person_boxes",)

#: stage-one settings an entry records only when they are not 1 (absent: 1, what entries held
#: before the setting existed): K candidate frames per segment, n people per frame
COUNT_SETTINGS = ("frames_per_segment", "persons")


def recorded_count(settings: Mapping[str, Any], name: str) -> int:
    """One of :data:`COUNT_SETTINGS` as an entry's ``settings`` record it (absent: 1)."""
    if name not in COUNT_SETTINGS:
        raise KeyError(f"{name!r} is not one of the settings recorded only when not 1 {COUNT_SETTINGS}")
    return int(settings.get(name, 1))


_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")


def clip_uid(clip_id: str) -> str:
    """A file-name-safe, collision-free name for a clip id.

    Ids that are already safe are kept (so a person can find ``clips/<clip_id>``); others get a
    readable prefix plus a short hash of the full id.
    """
    if _SAFE.match(clip_id) and not clip_id.endswith(".tmp"):
        return clip_id
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._-")[:80] or "clip"
    # an id holding a file name's non-UTF-8 bytes as surrogates (os.listdir's str) hashes by those bytes
    return f"{readable}--{hashlib.sha256(clip_id.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}"
