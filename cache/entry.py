"""Reading a cache entry: completeness, the clip list, one clip's arrays."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import numpy as np
import zarr

from cache import claims, layout
from cache.chunks import digest_mismatch, read_array, read_group_meta
from cache.digests import array_digest, attrs_digest
from cache.frames_codecs import FramesCodec, frames_codec
from cache.fsutil import DELETING, dir_size, read_json
from cache.keys import key_of, key_settings, settings_digest, stable_hash


class EntryNotFoundError(FileNotFoundError):
    """No entry for this dataset and setting: the message names the command that makes it."""


class EntryFormatError(RuntimeError):
    """The entry was written by another store format version."""


class EntryDamagedError(EntryNotFoundError):
    """The entry's folder is there but its metadata is missing or unreadable (``problems``)."""

    def __init__(self, path: os.PathLike, problems: list[str]):
        super().__init__(damaged_message(path, problems))
        self.path = Path(path)
        self.problems = problems


#: how a damaged entry is recovered (one place for the hint)
DAMAGED_HINT = ("`pipeline extract` with the options that made it rebuilds its metadata (the entry's key, its "
                "folder name, is computed again from them), or `pipeline cache gc --damaged` removes it")


def damaged_message(path: os.PathLike, problems: list[str]) -> str:
    return f"cache entry {path} is damaged: {'; '.join(problems)}. {DAMAGED_HINT}"


def _json_problem(path: Path, name: str) -> Optional[str]:
    try:
        read_json(path)
    except FileNotFoundError:
        return f"{name} missing"
    except (OSError, ValueError) as e:
        return f"{name} unreadable ({type(e).__name__}: {e})"
    return None


def metadata_problems(entry_dir: os.PathLike, against_key: bool = False) -> list[str]:
    """What is wrong with an entry's own files (``zarr.json``, ``plan.json``, ``manifest.json``,
    the ``clips`` group's ``zarr.json``): empty when they are all there and parse and
    (``against_key``) agree with the key that names the entry (:func:`identity_problems`). Each
    problem starts with the name of the file it is in (what ``restore_metadata`` writes again)."""
    d = Path(entry_dir)
    out = []
    for name in (layout.ROOT_META, layout.PLAN, layout.MANIFEST):
        p = _json_problem(d / name, name)
        if p:
            out.append(p)
    if (d / layout.CLIPS_DIR).is_dir():
        p = _json_problem(d / layout.CLIPS_DIR / layout.ROOT_META, f"{layout.CLIPS_DIR}/{layout.ROOT_META}")
        if p:
            out.append(p)
    if against_key and not out:
        out.extend(identity_problems(d))
    return out


#: the skeletons an entry's key could hold before entries recorded it (``key_skeleton``: the
#: dataset's, which the key hashes; ``skeleton`` is the stored joints', HRNet's COCO-17 on
#: Toyota-Smarthome). A closed list: entries written since record theirs.
KEY_SKELETONS_BEFORE_RECORDED = ("coco17", "toyota13")

_SHOWN = 3  # disagreeing clips named in one problem


def identity_problems(entry_dir: os.PathLike) -> list[str]:
    """Where an entry's own metadata no longer hashes to its key (which names its folder): the root
    ``zarr.json``'s settings (``frames_per_segment``, ``num_frames``... which every read follows),
    ``sources.json`` (which the key hashes: each clip's label, split and cut, the classes), and
    ``plan.json`` against it (the clip list, labels and splits every read takes). Nothing else
    guards these files: a hand edit or a damaged block would otherwise train on other labels, or
    read 48 candidate frames as 48 segments. Empty when all agree; files that do not parse are
    :func:`metadata_problems`'s."""
    d = Path(entry_dir)
    try:
        root = read_json(d / layout.ROOT_META).get("attributes", {})
        key, s_hash, src_hash = root["key"], root["settings_hash"], root["sources_hash"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return []
    root_meta = layout.ROOT_META
    if key_of(s_hash, src_hash) != key:
        return [f"{root_meta} holds a settings_hash and sources_hash that do not make its key (changed after it was "
                "written)"]
    out = []
    settings = {k: v for k, v in dict(root.get("settings") or {}).items() if k != "pose_source"}
    skeletons = ([root["key_skeleton"]] if "key_skeleton" in root
                 else [root.get("skeleton"), *KEY_SKELETONS_BEFORE_RECORDED])
    if not any(settings_digest(root.get("dataset"), key_settings(settings, root.get("pose"), sk,
                                                                  root.get("dataset_options")), root.get("format"))
               == s_hash for sk in skeletons):
        out.append(f"{root_meta} holds a dataset, settings, pose or dataset options that do not hash to its "
                   "settings_hash (changed after it was written)")
    try:
        sources = read_json(d / layout.SOURCES)["sources"]
    except FileNotFoundError:
        return out  # entries of older code may lack it: nothing to compare the plan with
    except (OSError, ValueError, KeyError, TypeError) as e:
        return out + [f"{layout.SOURCES} unreadable ({type(e).__name__}: {e})"]
    if stable_hash(sources) != src_hash:
        return out + [f"{layout.SOURCES} does not hash to the key's sources_hash (changed after it was written)"]
    last = sources[-1] if sources and isinstance(sources[-1], dict) and "annotations" in sources[-1] else {}
    for name in ("classes", "coarse_type"):
        if name in last and last[name] != root.get(name):
            out.append(f"{root_meta} holds {name} other than {layout.SOURCES} (which the key hashes)")
    try:
        plan = read_json(d / layout.PLAN)["clips"]
    except (OSError, ValueError, KeyError, TypeError):
        return out
    clips = sources[:-1] if last else sources
    if len(plan) != len(clips):
        return out + [f"{layout.PLAN} holds {len(plan)} clips, {layout.SOURCES} (which the key hashes) {len(clips)}"]
    differ = []
    for row, src in zip(plan, clips):
        for ours, theirs in (("clip_id", "clip"), ("split", "split"), ("label", "label"), ("cut", "cut")):
            if theirs in src and row.get(ours) != src[theirs]:
                differ.append(f"{row.get('clip_id')}'s {ours} {row.get(ours)!r}, {layout.SOURCES} says {src[theirs]!r}")
                break
    if differ:
        out.append(f"{layout.PLAN} disagrees with {layout.SOURCES} (which the key hashes) for {len(differ)} clip(s): "
                   + "; ".join(differ[:_SHOWN]) + (" ..." if len(differ) > _SHOWN else ""))
    return out


#: the attributes of a clip that a reader compares with the entry's plan
_PLAN_ATTRS = ("clip_id", "split", "label", "cut")


def clip_attrs_problems(attrs: dict, row: Optional[dict]) -> list[str]:
    """Where a clip's attributes (its ``zarr.json``) are not what was written: their digest
    (``attrs_digest``, clips written since it was recorded), the entry's plan (``row``: label,
    split, id, cut) and, for clips of any age, the frame scale against the sizes it was made from."""
    out = []
    want = attrs.get("attrs_digest")
    if want is not None and attrs_digest(attrs) != want:
        out.append("attributes do not match their digest")
    for name in _PLAN_ATTRS if row else ():
        if name in attrs and name in row and attrs[name] != row[name]:
            out.append(f"{name} {attrs[name]!r}, the entry's {layout.PLAN} says {row[name]!r}")
    try:
        (h, w), (oh, ow), (sx, sy) = attrs["frame_size"], attrs["orig_size"], attrs["scale"]
        if (sx, sy) != (w / ow, h / oh):
            out.append(f"scale {[sx, sy]} is not frame_size / orig_size {[w / ow, h / oh]}")
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        pass  # attributes older writers did not record
    return out


def format_error_message(path: os.PathLike, fmt: Any) -> str:
    """Why an entry of store format ``fmt`` is refused, and what to do (one place for the hint)."""
    if layout.newer_format(fmt):
        return (f"entry {path} has store format {fmt}, written by newer code than this (which reads format "
                f"{layout.FORMAT_VERSION}): update pevl-pipeline to read it. It is a colleague's entry: "
                "`pipeline cache gc` of this code leaves it")
    return (f"entry {path} has store format {fmt}, this code reads format {layout.FORMAT_VERSION}: "
            "re-extract it with `pipeline extract` (same options; the new entry gets a new key) and "
            "remove the old one with `pipeline cache gc`")


class EntryIncompleteError(RuntimeError):
    """The entry is missing clips (``missing`` lists their ids)."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


@dataclass
class ClipData:
    """One clip as stage one cached it."""

    clip_id: str
    uid: str
    split: str
    label: int
    # (T_v, H, W, 3) uint8 RGB: an ndarray (for raw frames a read-only view of the memory-mapped
    # chunk, so a crop reads only what it takes) or, for JPEG frames, a JpegFrames that decodes the
    # frames it is indexed with
    frames: Any
    frame_indices: np.ndarray  # (T_v * K,) which decoded frames these are (K candidates per segment)
    keypoints: np.ndarray  # (F, V, 2) original pixels
    scores: np.ndarray  # (F, V)
    grids: np.ndarray  # (T_v * K, V, H / cell, W / cell)
    grid_cell: int
    attrs: dict = field(default_factory=dict)
    person_boxes: Optional[np.ndarray] = None  # (F, 4) xyxy, original pixels, when poses used boxes
    frames_per_segment: int = 1  # K: candidates per segment, segment-major (layout.py, format 3)
    frames_meta: Any = None  # the frames array's chunk metadata (cache.chunks.ArrayMeta), read or not: row reads
    frame_shape: Optional[tuple] = None  # (T, H, W, 3) of the frames as stored by the codec (FramesCodec.frame_shape)

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the cached frames (from their codec's reading of the metadata when they were
        not read)."""
        if self.frames is not None:
            shape = self.frames.shape
        else:
            shape = self.frame_shape if self.frame_shape is not None else self.frames_meta.shape
        return int(shape[1]), int(shape[2])

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy) from original pixels to cached-frame pixels."""
        sx, sy = self.attrs["scale"]
        return float(sx), float(sy)

    def keypoints_in_frame(self) -> np.ndarray:
        """Keypoints mapped into the cached frames' pixel coordinates."""
        sx, sy = self.scale
        return self.keypoints * np.array([sx, sy], dtype=np.float32)


@dataclass
class EntryStatus:
    total: int
    done: int
    failed: int
    claimed: int
    missing: list[str]  # clip ids neither done nor failed

    @property
    def complete(self) -> bool:
        return not self.missing


#: an entry's folders whose contents come and go after it is finished (and the manifest itself)
TRANSIENT_DIRS = (layout.STAGING_DIR, layout.CLAIMS_DIR, layout.READERS_DIR, layout.QUARANTINE_DIR, layout.RUNS_DIR)


def _transient_bytes(entry_dir: Path) -> int:
    """The bytes of what changes in ``entry_dir`` after it is finished: :data:`TRANSIENT_DIRS`,
    the manifest, and what a removal left renamed aside (``.NAME.deleting-XXXX``)."""
    try:
        names = os.listdir(entry_dir)
    except OSError:
        return 0
    total = 0
    for name in names:
        if name in TRANSIENT_DIRS or name == layout.MANIFEST or DELETING in name:
            p = entry_dir / name
            try:
                total += dir_size(p) if p.is_dir() else p.stat().st_size
            except FileNotFoundError:
                pass
    return total


def lasting_bytes(entry_dir: Path) -> int:
    """The bytes of a finished entry that do not change (its clips, index, metadata)."""
    return dir_size(entry_dir) - _transient_bytes(entry_dir)


class CacheEntry:
    """A read view of one entry directory. Cheap to construct; reads lazily."""

    def __init__(self, path: os.PathLike):
        self.path = Path(path)
        if not (self.path / layout.ROOT_META).is_file():
            if self.path.is_dir() and any(self.path.iterdir()):
                raise EntryDamagedError(self.path, metadata_problems(self.path))
            raise EntryNotFoundError(f"no cache entry at {self.path}")
        try:
            fmt = self.attrs.get("format")
        except (OSError, ValueError):
            raise EntryDamagedError(self.path, metadata_problems(self.path)) from None
        if fmt != layout.FORMAT_VERSION:
            raise EntryFormatError(format_error_message(self.path, fmt))
        if not (self.path / layout.PLAN).is_file():
            raise EntryDamagedError(self.path, metadata_problems(self.path))

    # -- metadata ---------------------------------------------------------------------------
    @cached_property
    def attrs(self) -> dict:
        return dict(read_json(self.path / layout.ROOT_META).get("attributes", {}))

    @property
    def key(self) -> str:
        return self.attrs["key"]

    @property
    def dataset(self) -> str:
        return self.attrs["dataset"]

    @property
    def settings(self) -> dict:
        return self.attrs["settings"]

    @property
    def classes(self) -> list[str]:
        return list(self.attrs["classes"])

    @property
    def coarse_type(self) -> str:
        return self.attrs["coarse_type"]

    @property
    def skeleton(self) -> str:
        return self.attrs["skeleton"]

    @property
    def grid_cell(self) -> int:
        return int(self.settings["grid_cell"])

    @property
    def frames_per_segment(self) -> int:
        """K candidate frames per segment (recorded only when not 1)."""
        return layout.recorded_count(self.settings, "frames_per_segment")

    @property
    def persons(self) -> int:
        """People per frame, person-major in the joint axis (recorded only when not 1)."""
        return layout.recorded_count(self.settings, "persons")

    @property
    def random_pose_weights(self) -> bool:
        """Whether stage one's pose model ran with random weights (its identity records the seed it
        drew them with: ``--pose-checkpoint none``, for testing the pipeline): the poses mean nothing."""
        return (self.attrs.get("pose") or {}).get("random_init_seed") is not None

    @cached_property
    def plan(self) -> list[dict]:
        """Every clip the entry must hold, in a fixed order."""
        try:
            return read_json(self.path / layout.PLAN)["clips"]
        except (OSError, ValueError, KeyError, TypeError):
            raise EntryDamagedError(self.path, metadata_problems(self.path) or [f"{layout.PLAN} has no clip list"]) \
                from None

    @cached_property
    def _by_uid(self) -> dict[str, dict]:
        return {c["uid"]: c for c in self.plan}

    def plan_row(self, uid: str) -> Optional[dict]:
        """The plan's row of clip ``uid`` (None: not in the plan)."""
        return self._by_uid.get(uid)

    def manifest(self) -> dict:
        """The manifest; :class:`EntryDamagedError` when it is missing or unreadable."""
        try:
            return read_json(self.path / layout.MANIFEST)
        except (OSError, ValueError):
            raise EntryDamagedError(self.path, [p for p in metadata_problems(self.path)
                                                if p.startswith(layout.MANIFEST)]) from None

    def metadata_problems(self) -> list[str]:
        return metadata_problems(self.path)

    def check_against_key(self) -> None:
        """:class:`EntryDamagedError` where the entry's own metadata no longer hashes to its key
        (:func:`identity_problems`): what a reader checks once before it trusts labels, splits and
        settings (a fraction of a second for 30,000 clips)."""
        if not self.__dict__.get("_key_checked"):
            problems = identity_problems(self.path)
            if problems:
                raise EntryDamagedError(self.path, problems)
            self._key_checked = True

    # -- state --------------------------------------------------------------------------------
    def done_uids(self) -> set[str]:
        d = self.path / layout.CLIPS_DIR
        if not d.is_dir():
            return set()
        return {e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith(".")}

    def failures(self) -> dict[str, dict]:
        d = self.path / layout.FAILURES_DIR
        out = {}
        if d.is_dir():
            for n in sorted(os.listdir(d)):
                if n.endswith(".json") and not n.startswith("."):
                    try:
                        out[n[:-5]] = read_json(d / n)
                    except (OSError, ValueError):
                        continue
        return out

    def claimed_uids(self) -> set[str]:
        d = self.path / layout.CLAIMS_DIR
        return {n for n in os.listdir(d) if claims.is_claim_name(n)} if d.is_dir() else set()

    def status(self) -> EntryStatus:
        done = self.done_uids()
        failed = set(self.failures())
        missing = [c["clip_id"] for c in self.plan if c["uid"] not in done and c["uid"] not in failed]
        return EntryStatus(
            total=len(self.plan),
            done=len(done & set(self._by_uid)),
            failed=len(failed & set(self._by_uid)),
            claimed=len(self.claimed_uids()),
            missing=missing,
        )

    def bytes_on_disk(self, status: Optional[EntryStatus] = None) -> tuple[int, bool]:
        """(the entry's bytes, whether they were all counted now). A finished entry's clips and
        index do not change: their size is the one its manifest recorded at completion
        (``bytes_at_completion``, :func:`lasting_bytes`), plus the folders that come and go
        (staging, claims, readers' marks, quarantine, run records), counted now. An entry not
        finished, or finished before sizes were recorded, is counted whole now: a walk over every
        file (~0.3 ms a clip: 6 s for 20,000 clips from a warm local disk, a metadata storm on a
        network filesystem). ``status``: the entry's, when the caller has it."""
        st = status or self.status()
        if st.complete:
            try:
                m = read_json(self.path / layout.MANIFEST)
            except (OSError, ValueError):
                m = {}
            if m.get("status") == "complete" and isinstance(m.get("bytes_at_completion"), int):
                return m["bytes_at_completion"] + _transient_bytes(self.path), False
        return dir_size(self.path), True

    @property
    def is_complete(self) -> bool:
        # from the folders, not from index/: a finished entry that lost a clip is incomplete again
        return self.status().complete

    def require_complete(self, allow_partial: bool = False) -> EntryStatus:
        """Refuse an incomplete entry, naming the missing clips, unless ``allow_partial``."""
        st = self.status()
        if st.missing and not allow_partial:
            shown = ", ".join(st.missing[:20]) + (" ..." if len(st.missing) > 20 else "")
            raise EntryIncompleteError(
                f"cache entry {self.key} ({self.dataset}) is incomplete: {len(st.missing)} of "
                f"{st.total} clips missing: {shown}. Finish it with `pipeline extract` (it resumes), "
                "or pass --allow-partial to use the clips that are there.",
                st.missing,
            )
        return st

    # -- clips ----------------------------------------------------------------------------------
    def clips(self, split: Optional[str] = None, done_only: bool = True) -> list[dict]:
        """Plan rows (clip_id, uid, split, label, ...) in plan order."""
        done = self.done_uids() if done_only else None
        return [
            c
            for c in self.plan
            if (split is None or c["split"] == split) and (done is None or c["uid"] in done)
        ]

    def clip_group(self, uid: str) -> zarr.Group:
        return zarr.open_group(self.path / layout.CLIPS_DIR / uid, mode="r")

    @property
    def frames_codec(self) -> str:
        return self.settings["frames_codec"]

    @property
    def codec(self) -> FramesCodec:
        """The :class:`cache.frames_codecs.FramesCodec` the entry's frames are stored with."""
        return frames_codec(self.frames_codec)

    def read_clip(self, uid: str, arrays: tuple[str, ...] = layout.CLIP_ARRAYS + layout.OPTIONAL_CLIP_ARRAYS,
                  check: str = "read", group_meta: Optional[tuple[dict, dict]] = None) -> ClipData:
        """One clip's arrays (those named in ``arrays``; optional ones when the clip has them), read
        straight from the chunk files (:mod:`cache.chunks`): one metadata file and one file per array.

        Frames come back as the entry's codec reads them (:meth:`FramesCodec.read`): raw frames
        memory-mapped (read-only), JPEG frames as a lazy ``JpegFrames``, so taking a crop or a
        subset of frames reads or decodes only that.

        ``check``: which arrays are compared with the digests their writer recorded
        (:class:`~cache.chunks.ChunkDigestError` on a mismatch): ``"read"`` (default) every array
        read whole anyway: all but frames whose codec reads only what is used
        (:meth:`FramesCodec.digest_read` False: raw frames are memory-mapped so that only a crop
        is read, and hashing them would read and hash 5.5 MB per 16-frame clip at short side 256;
        JPEG frames with per-frame digests read and check only the frames used; docs/cache.md);
        ``"all"`` those frames too, whole; ``"none"`` nothing.

        ``group_meta``: the clip's metadata as :func:`~cache.chunks.read_group_meta` read it, for a
        caller that looks at it too (verify): one read of ``zarr.json`` where a network filesystem
        makes each a round trip.
        """
        clip_dir = os.path.join(self.path, layout.CLIPS_DIR, uid)
        attrs, metas = group_meta if group_meta is not None else read_group_meta(clip_dir)
        missing = [n for n in layout.CLIP_ARRAYS if n not in metas]
        if missing:
            raise FileNotFoundError(f"{clip_dir}: arrays {missing} missing")
        # the frames' metadata even when they are not read: a codec reading rows needs only it
        data: dict[str, Any] = {"frames_meta": metas.get("frames")}
        if data["frames_meta"] is not None:
            try:
                data["frame_shape"] = self.codec.frame_shape(data["frames_meta"])
            except ValueError:  # damaged frames metadata: reading the frames says so, naming the file;
                pass            # a read of the other arrays (the writer's index, verify) goes on

        for name in layout.CLIP_ARRAYS + layout.OPTIONAL_CLIP_ARRAYS:
            if name not in arrays or name not in metas:
                data[name] = None
            elif name == "frames":
                data[name] = self.codec.read(metas[name])
            else:
                data[name] = read_array(metas[name])
        row = self._by_uid.get(uid, {})
        if check != "none":
            self._check_digests(data, metas, attrs.get("digests") or {}, check == "all")
            problems = clip_attrs_problems(attrs, row)
            if problems:
                raise digest_mismatch(os.path.join(clip_dir, layout.ROOT_META), self.path,
                                      why=f"attributes not as written ({'; '.join(problems)})")
        return ClipData(
            clip_id=attrs.get("clip_id", row.get("clip_id", uid)),
            uid=uid,
            split=attrs.get("split", row.get("split")),
            label=int(attrs.get("label", row.get("label", -1))),
            grid_cell=self.grid_cell,
            frames_per_segment=self.frames_per_segment,
            attrs=attrs,
            **data,
        )

    def _check_digests(self, data: dict[str, Any], metas: dict, digests: dict, every: bool) -> None:
        for name, value in data.items():
            want = digests.get(name)
            if value is None or want is None:
                continue
            if name == "frames":
                if not (every or self.codec.digest_read(value)):
                    continue  # read lazily, or checked part by part as read: see read_clip
                got = self.codec.digest(value)
            else:
                got = array_digest(value)
            if got != want:
                raise digest_mismatch(metas[name].chunk_file, self.path)

    def _index_group(self):
        idx = self.path / layout.INDEX_DIR
        if not idx.is_dir():
            raise EntryIncompleteError(f"entry {self.key} has no index yet (it is not complete)", [])
        return zarr.open_group(idx, mode="r")

    def read_index(self) -> dict[str, np.ndarray]:
        """All poses as flat arrays (only once complete): keypoints, scores, offsets, labels."""
        g = self._index_group()
        out = {k: g[k][...] for k in g.array_keys()}
        out["uids"] = list(g.attrs["uids"])
        return out

    def index_outline(self) -> tuple[list[str], np.ndarray, int]:
        """The index's clip list, its pose offsets and how many pose rows it holds, without reading
        the poses (what :meth:`read_index` reads whole)."""
        g = self._index_group()
        return list(g.attrs["uids"]), g["offsets"][...], int(g["keypoints"].shape[0])
