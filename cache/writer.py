"""Filling a cache entry: create it atomically, claim clips, commit each clip whole, finalize."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from cache import claims, layout
from cache.digests import array_digest, attrs_digest
from cache.entry import CacheEntry, lasting_bytes, metadata_problems
from cache.frames_codecs import frames_codec
from cache.fsutil import CacheFault, atomic_write_json, explained_os_errors, linked_folders, read_json, remove_tree
from cache.item_index import item_arrays, item_attrs
from cache.provenance import git_revision, package_versions, who_when
from cache.zarr_warnings import known_zarr_warnings_quiet

log = logging.getLogger(__name__)

# Every chunk is written, also one holding only fill values: a missing chunk file is then always
# damage (the reader and `cache verify` say so) rather than zeros by convention.
_ARRAY_CONFIG = {"write_empty_chunks": True}


def _new_entry_files(tmp: Path, root_attrs: dict, plan: list[dict], manifest: dict,
                     sources: Optional[list[dict]] = None) -> None:
    """Everything of a new entry but its clips, written into folder ``tmp``."""
    g = zarr.open_group(tmp, mode="w", zarr_format=3)
    g.attrs.update(root_attrs)
    # clips/ is a Zarr group too, so plain zarr can walk root["clips"][uid].
    g.create_group(layout.CLIPS_DIR)
    for d in (layout.FAILURES_DIR, layout.CLAIMS_DIR, layout.RUNS_DIR, layout.STAGING_DIR):
        (tmp / d).mkdir()
    atomic_write_json(tmp / layout.PLAN, {"clips": plan})
    if sources is not None:
        atomic_write_json(tmp / layout.SOURCES, {"sources": sources})
    atomic_write_json(tmp / layout.MANIFEST, manifest)


def create_entry(
    entry_dir: Path,
    root_attrs: dict,
    plan: list[dict],
    manifest: dict,
    sources: Optional[list[dict]] = None,
) -> CacheEntry:
    """Create the entry directory atomically, or open it if another process got there first;
    an entry whose own metadata is missing or unreadable gets it back (:func:`restore_metadata`).
    ``sources``: the source files' identities the key hashes (``sources.json``: what changed, when
    ``pipeline cache verify --sources`` finds the dataset's files changed)."""
    entry_dir = Path(entry_dir)
    with explained_os_errors(entry_dir):
        if entry_dir.is_dir() and metadata_problems(entry_dir, against_key=True):
            restore_metadata(entry_dir, root_attrs, plan, manifest, sources)
        if not (entry_dir / layout.ROOT_META).is_file():
            entry_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = entry_dir.with_name(f".{entry_dir.name}.creating-{uuid.uuid4().hex[:8]}")
            tmp.mkdir()
            try:
                _new_entry_files(tmp, root_attrs, plan, manifest, sources)
                os.rename(tmp, entry_dir)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                if not (entry_dir / layout.ROOT_META).is_file():
                    raise
    entry = CacheEntry(entry_dir)
    if [c["uid"] for c in entry.plan] != [c["uid"] for c in plan]:
        raise RuntimeError(f"entry {entry_dir} exists with a different clip plan; the key should differ")
    return entry


def _explained(method):
    """A full disk or a permission problem inside ``method`` becomes a CacheFault naming the entry."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with explained_os_errors(self.path):
            return method(self, *args, **kwargs)
    return wrapper


def staging_stale(path: Path, ttl: float) -> bool:
    """Whether a writer's folder in ``.staging/`` was left by one that is gone: named
    ``<what>.<tag>.<pid>.<rand>`` (``claims.PIDS_TAG``: host, pid namespace, boot), judged by
    :func:`claims.named_writer_gone`; a name of another form by its age."""
    parts = path.name.rsplit(".", 3)
    tag, pid = (parts[1], int(parts[2])) if len(parts) == 4 and parts[2].isdigit() else ("", 0)
    return claims.named_writer_gone(path, tag, pid, ttl)


def _check_staged_whole(tmp: Path, made: int, arrays: list[str], what: str = "clip") -> None:
    """Before a staged clip (or index) is renamed into place: it is still the folder this writer
    made (inode ``made``) with every array's metadata. Another process that judged this writer gone
    (a clock, a pid namespace or a host name it misread) may have removed it meanwhile, and Zarr
    re-creates a removed group's folder on the next write: committing that would publish a clip
    with arrays missing."""
    try:
        same = os.stat(tmp).st_ino == made
    except FileNotFoundError:
        same = False
    missing = [a for a in arrays if not (tmp / a / "zarr.json").is_file()]
    if not same or missing:
        raise RuntimeError(f"{tmp}: the staged {what} was removed while it was written (by a `pipeline cache gc` or "
                           "another extract that judged this writer gone)"
                           + (f"; arrays {missing} missing" if missing else "") + ": not committed, a rerun "
                           + ("extracts" if what == "clip" else "writes") + " it again")


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (another entry's immutable chunk files: no second copy of the bytes), else a copy."""
    try:
        os.link(src, dst)
    except OSError:  # (another filesystem, or another user's file under protected_hardlinks)
        shutil.copyfile(src, dst)


def restore_metadata(entry_dir: Path, root_attrs: dict, plan: list[dict], manifest: dict,
                     sources: Optional[list[dict]] = None) -> list[str]:
    """Write again what is missing, unreadable or no longer hashing to the key of an entry's own
    files, from the plan that computed the same key (the key names the folder, so the inputs are
    the same): ``plan.json``, ``manifest.json`` (noting the rebuild), ``sources.json``, the
    ``clips`` group's ``zarr.json`` and, last (it is what makes the folder an entry), the root
    ``zarr.json``. Returns what was wrong (logged).

    Safe beside other processes doing the same: each file is replaced whole (same content)."""
    entry_dir = Path(entry_dir)
    problems = metadata_problems(entry_dir, against_key=True)
    if not problems:
        return []
    try:
        have = read_json(entry_dir / layout.ROOT_META).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        have = None
    if have is not None and have.get("key") not in (None, root_attrs["key"]):
        raise RuntimeError(f"entry folder {entry_dir} holds key {have.get('key')}, not {root_attrs['key']}: "
                           "it was moved or renamed; move it back, or remove it with `pipeline cache gc --damaged`")
    try:
        old_plan = read_json(entry_dir / layout.PLAN)["clips"]
    except (OSError, ValueError, KeyError, TypeError):
        old_plan = None
    if old_plan is not None and [c["uid"] for c in old_plan] != [c["uid"] for c in plan]:
        raise RuntimeError(f"entry {entry_dir} exists with a different clip plan; the key should differ")
    log.warning("cache entry %s was damaged (%s): rebuilding its metadata from this run's plan (same key)",
                entry_dir, "; ".join(problems))
    tmp = entry_dir.with_name(f".{entry_dir.name}.creating-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        rebuilt = {**manifest, "metadata_rebuilt": [{"problems": problems, **who_when()}]}
        _new_entry_files(tmp, root_attrs, plan, rebuilt, sources)
        for d in (layout.CLIPS_DIR, layout.FAILURES_DIR, layout.CLAIMS_DIR, layout.RUNS_DIR, layout.STAGING_DIR):
            (entry_dir / d).mkdir(exist_ok=True)
        if sources is not None and (not (entry_dir / layout.SOURCES).is_file()
                                    or any(p.startswith(f"{layout.SOURCES} ") for p in problems)):
            os.replace(tmp / layout.SOURCES, entry_dir / layout.SOURCES)
        for name in (layout.PLAN, layout.MANIFEST, f"{layout.CLIPS_DIR}/{layout.ROOT_META}", layout.ROOT_META):
            if any(p.startswith(f"{name} ") for p in problems):
                os.replace(tmp / name, entry_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return problems


def refuse_linked_folders(entry_dir: Path) -> None:
    """A writer's removals and renames in an entry must stay inside it: one of its own folders that
    is a symbolic link (:data:`cache.layout.ENTRY_FOLDERS`) is refused, naming where it points."""
    linked = linked_folders(entry_dir, layout.ENTRY_FOLDERS)
    if linked:
        raise CacheFault(f"cache entry {entry_dir}: {', '.join(f'{n}/ is a symbolic link to {t}' for n, t in linked.items())}. "
                         "The cache never makes one, and a writer would remove and write files through it, outside "
                         "the cache: remove the link (and move what it points to back, if it is this entry's)")


class EntryWriter:
    """Claims, commits and fails clips of one entry; safe with other writers on other hosts."""

    def __init__(self, entry: CacheEntry, ttl: float = claims.DEFAULT_TTL, heartbeat_s: float = 60.0):
        self.entry = entry
        self.path = entry.path
        refuse_linked_folders(self.path)
        self.ttl = ttl
        self.heartbeat = claims.Heartbeat(heartbeat_s)
        self.staging = self.path / layout.STAGING_DIR
        self.staging.mkdir(exist_ok=True)
        self._tokens: dict[str, str] = {}  # uid -> token of the claim this writer holds

    def remove_stale_staging(self) -> list[Path]:
        """Remove what killed writers left in ``.staging/`` (this host's dead pids at once, other
        hosts' after the ttl): every run starts with it, so nothing waits for `pipeline cache gc`."""
        removed = []
        try:
            items = list(self.staging.iterdir())
        except FileNotFoundError:
            return removed
        for s in items:
            if staging_stale(s, self.ttl):
                remove_tree(s) if s.is_dir() else s.unlink(missing_ok=True)
                removed.append(s)
        return removed

    # -- state of one clip ----------------------------------------------------------------
    def _claim_path(self, uid: str) -> Path:
        return self.path / layout.CLAIMS_DIR / uid

    def is_done(self, uid: str) -> bool:
        return (self.path / layout.CLIPS_DIR / uid).is_dir()

    def is_failed(self, uid: str) -> bool:
        return (self.path / layout.FAILURES_DIR / f"{uid}.json").is_file()

    @_explained
    def claim(self, uid: str) -> bool:
        """True when this process should extract ``uid`` now (not done, failed or claimed)."""
        if self.is_done(uid) or self.is_failed(uid):
            return False
        cp = self._claim_path(uid)
        token = claims.try_claim(cp, self.ttl)
        if not token:
            return False
        # Another writer may have finished it between our check and our claim.
        if self.is_done(uid) or self.is_failed(uid):
            claims.release(cp, token)
            return False
        self._tokens[uid] = token
        self.heartbeat.add(cp)
        return True

    def release(self, uid: str) -> None:
        cp = self._claim_path(uid)
        self.heartbeat.discard(cp)
        # only our own claim: one taken over from us (judged stale) is its new owner's
        claims.release(cp, self._tokens.pop(uid, None))

    # -- results -----------------------------------------------------------------------------
    @_explained
    def commit(self, uid: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        """Write the clip into a private staging group, then rename it into ``clips/``.

        The rename is the commit point: readers see either no clip or the whole clip.
        """
        with self._staged(uid) as tmp:
            g = zarr.open_group(tmp, mode="w", zarr_format=3)
            made = os.stat(tmp).st_ino
            digests = {}
            for name, a in arrays.items():
                if name == "frames":
                    codec = frames_codec(self.entry.frames_codec)
                    digests[name] = codec.write(g, np.ascontiguousarray(a), self.entry.settings, _ARRAY_CONFIG)
                    continue
                a = np.ascontiguousarray(a)
                # One chunk per array: a clip is read whole. Grids are mostly zeros (Zstd shrinks
                # them ~20x); poses and indices are small and barely compress, so stay raw.
                compressors = [ZstdCodec(level=3)] if name == "grids" else None
                z = g.create_array(name, shape=a.shape, chunks=a.shape or (1,), dtype=a.dtype,
                                   compressors=compressors, config=_ARRAY_CONFIG)
                z[...] = a
                digests[name] = array_digest(a)
            g.attrs.update({**attrs, "digests": digests, "written": who_when()})
            # the attributes' digest from what was written (JSON's reading of each value), so that
            # a reader finds a changed label, scale or size (cache.entry.clip_attrs_problems)
            g.attrs["attrs_digest"] = attrs_digest(read_json(tmp / layout.ROOT_META)["attributes"])
            with known_zarr_warnings_quiet():
                zarr.consolidate_metadata(tmp)
            self._publish(uid, tmp, made, list(arrays))

    @contextlib.contextmanager
    def _staged(self, uid: str):
        """A private staging folder's path for clip ``uid`` (made by the caller), heartbeated while the
        block runs (as the index's: a slow filesystem must not make it look left behind; until it is
        made the heartbeat passes it by); afterwards, whatever happened, the folder is gone (renamed
        into clips/, or removed) and the claim released."""
        tmp = self.staging / f"{uid}.{claims.PIDS_TAG}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.heartbeat.add(tmp)
        try:
            yield tmp
        finally:
            self.heartbeat.discard(tmp)
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            self.release(uid)

    def _publish(self, uid: str, tmp: Path, made: int, arrays: list[str]) -> bool:
        """Rename the staged clip ``tmp`` (inode ``made``, holding ``arrays``) into ``clips/``, once
        it is on disk and whole: the commit point, readers see either no clip or the whole clip.
        False where another writer committed the clip first (theirs is kept)."""
        _fsync_tree(tmp)
        _check_staged_whole(tmp, made, arrays)
        try:
            os.rename(tmp, self.path / layout.CLIPS_DIR / uid)
        except OSError:
            # Someone committed the same clip (a taken-over claim raced us): keep theirs.
            if not self.is_done(uid):
                raise
            return False
        return True

    @_explained
    def commit_copy(self, uid: str, src: Path, attrs: dict[str, Any]) -> bool:
        """Commit clip ``uid`` as a copy of the finished clip folder ``src`` (another entry's, made
        from the same video, cut and stage-one settings: the same bytes) with ``attrs`` over its
        attributes (label, split, where it came from) and their digest made again. Files are
        hard-linked where the filesystem allows (they are never changed in place), copied otherwise;
        the clip's ``zarr.json`` is written anew; folders are made here (this writer's modes, not
        the other entry's). Staged and renamed like :meth:`commit`; False where another writer
        committed the clip first."""
        with self._staged(uid) as tmp:
            tmp.mkdir()
            made = os.stat(tmp).st_ino
            for folder, dirs, files in os.walk(src):  # (copytree would copy the folders' modes and times)
                here = tmp / os.path.relpath(folder, src)
                for d in dirs:
                    (here / d).mkdir()
                for f in files:
                    _link_or_copy(os.path.join(folder, f), str(here / f))
            meta = read_json(tmp / layout.ROOT_META)
            merged = {k: v for k, v in {**meta.get("attributes", {}), **attrs}.items() if k != "attrs_digest"}
            meta["attributes"] = {**merged, "attrs_digest": attrs_digest(merged)}
            (tmp / layout.ROOT_META).unlink()  # (a hard link to the other entry's: never written through)
            atomic_write_json(tmp / layout.ROOT_META, meta)
            return self._publish(uid, tmp, made,
                                 list(((meta.get("consolidated_metadata") or {}).get("metadata") or {})))

    @_explained
    def fail(self, uid: str, clip_id: str, reason: str, detail: Optional[str] = None) -> None:
        rec = {"clip_id": clip_id, "reason": reason, **({"detail": detail} if detail else {}), **who_when()}
        atomic_write_json(self.path / layout.FAILURES_DIR / f"{uid}.json", rec)
        self.release(uid)

    @_explained
    def retry_failures(self) -> int:
        """Forget recorded failures so the next pass tries those clips again."""
        d = self.path / layout.FAILURES_DIR
        n = 0
        for p in d.glob("*.json"):
            p.unlink(missing_ok=True)
            n += 1
        return n

    @_explained
    def record_run(self, record: dict) -> None:
        # microseconds in the name: runs of one process within a second sort in the order they ran
        now = time.time()
        stamp = f"{time.strftime('%Y%m%dT%H%M%S', time.localtime(now))}.{int(now % 1 * 1e6):06d}"
        name = f"{stamp}-{claims.HOST}-{os.getpid()}-{uuid.uuid4().hex[:4]}.json"
        atomic_write_json(self.path / layout.RUNS_DIR / name, record)

    # -- completion ---------------------------------------------------------------------------
    @_explained
    def finalize_if_complete(self) -> bool:
        """Once every clip is done or failed: write the flat pose index and a final manifest.

        Exactly one writer does it (a claim on ``index``); a writer that finds it done returns.
        """
        if (self.path / layout.INDEX_DIR).is_dir():
            try:
                rebuilt = read_json(self.path / layout.MANIFEST).get("status") != "complete"
            except (OSError, ValueError):
                rebuilt = True
            if rebuilt:  # a manifest rebuilt (restore_metadata) after the entry was finished
                self.write_manifest(status="complete")
            return True
        status = self.entry.status()
        if not status.complete:
            self.write_manifest(status="incomplete")
            if (self.path / layout.INDEX_DIR).is_dir():
                # another writer committed the last clip and finished the entry meanwhile (its index is
                # written before its manifest): this "incomplete" must not outlive its "complete"
                self.write_manifest(status="complete")
                return True
            return False
        lock = self.path / layout.CLAIMS_DIR / ".finalize"
        token = claims.try_claim(lock, self.ttl)
        if not token:
            return True  # complete; the writer holding the lock writes its index and manifest
        self.heartbeat.add(lock)  # a large entry's index takes a while: the lock must not look stale
        try:
            if not (self.path / layout.INDEX_DIR).is_dir():
                self._write_index()
            self.write_manifest(status="complete")
        finally:
            self.heartbeat.discard(lock)
            if not self._tokens:
                self.heartbeat.stop()
            claims.release(lock, token)
        return True

    def _write_index(self) -> None:
        done = self.entry.done_uids()
        rows = [c for c in self.entry.plan if c["uid"] in done]
        kps, scs, offsets, labels, sizes, clips = [], [], [0], [], [], []
        for c in rows:
            clip = self.entry.read_clip(c["uid"], arrays=("frame_indices", "keypoints", "scores"))
            kps.append(clip.keypoints)
            scs.append(clip.scores)
            offsets.append(offsets[-1] + clip.keypoints.shape[0])
            labels.append(c["label"])
            sizes.append(clip.attrs["orig_size"])
            clips.append(clip)
        v = kps[0].shape[1] if kps else 0
        tmp = self.staging / f"index.{claims.PIDS_TAG}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        try:
            with explained_os_errors(self.path / layout.INDEX_DIR):  # (names the index, not a clip)
                g = zarr.open_group(tmp, mode="w", zarr_format=3)
                made = os.stat(tmp).st_ino
                # a large index takes minutes on a network filesystem, its folder's mtime still
                # while one array is written: touched like a claim, so that no other host's
                # extract judges it left behind (remove_stale_staging) and removes it mid-write
                self.heartbeat.add(tmp)
                flat_k = np.concatenate(kps) if kps else np.zeros((0, v, 2), np.float32)
                flat_s = np.concatenate(scs) if scs else np.zeros((0, v), np.float32)
                # Many clips per chunk: poses are small, and one file per clip would be slow to list.
                g.create_array("keypoints", data=flat_k, chunks=(min(max(len(flat_k), 1), 65536), v, 2))
                g.create_array("scores", data=flat_s, chunks=(min(max(len(flat_s), 1), 65536), v))
                g.create_array("offsets", data=np.asarray(offsets, np.int64))
                g.create_array("labels", data=np.asarray(labels, np.int64))
                g.create_array("orig_size", data=np.asarray(sizes, np.int32).reshape(-1, 2))
                # what a training item reads besides its pixels, for every clip (cache/item_index.py)
                items = item_arrays(clips)
                for name, a in items.items():
                    g.create_array(name, data=a)
                items.update(keypoints=flat_k, scores=flat_s, offsets=np.asarray(offsets, np.int64))
                g.attrs.update({"uids": [c["uid"] for c in rows], "clip_ids": [c["clip_id"] for c in rows],
                                "splits": [c["split"] for c in rows],
                                "items": item_attrs(items, [c["uid"] for c in rows])})
                _fsync_tree(tmp)
            _check_staged_whole(tmp, made, ["keypoints", "scores", "offsets", "labels", "orig_size", *items],
                                what="index")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a half-written index must not wait for a later run
            raise
        finally:
            self.heartbeat.discard(tmp)
        try:
            os.rename(tmp, self.path / layout.INDEX_DIR)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)

    @_explained
    def quarantine(self, uid: str, why: list[str]) -> Optional[Path]:
        """Move ``clips/<uid>`` (damaged) into ``quarantine/`` beside a note of why: the clip is
        then missing, so the next ``pipeline extract`` extracts it again; ``pipeline cache gc``
        removes what is in quarantine."""
        src = self.path / layout.CLIPS_DIR / uid
        qdir = self.path / layout.QUARANTINE_DIR
        qdir.mkdir(exist_ok=True)
        dst = qdir / f"{uid}.{time.strftime('%Y%m%dT%H%M%S')}.{uuid.uuid4().hex[:6]}"
        try:
            os.rename(src, dst)  # atomic: readers see the clip or no clip
        except FileNotFoundError:
            return None
        row = self.entry.plan_row(uid) or {}
        atomic_write_json(qdir / f"{dst.name}.json", {"uid": uid, "clip_id": row.get("clip_id"), "problems": why,
                                                      "moved": who_when()})
        return dst

    @_explained
    def reopen(self, why: str) -> None:
        """Make a finished entry incomplete again: its index removed, its manifest saying
        ``incomplete`` (with ``why`` in its ``reopened`` list) until a writer finishes it again."""
        remove_tree(self.path / layout.INDEX_DIR)
        self.write_manifest(status="incomplete", reopened=why)

    @_explained
    def write_manifest(self, status: str, reopened: Optional[str] = None) -> dict:
        try:
            m = read_json(self.path / layout.MANIFEST)
        except FileNotFoundError:  # rebuilt by `pipeline extract` (create_entry); keep what we know
            m = {"key": self.entry.key, "dataset": self.entry.dataset, "settings": self.entry.settings,
                 "manifest_rebuilt": who_when()}
        if reopened:
            done = {k: m.pop(k) for k in ("completed", "code_revision_at_completion", "versions_at_completion",
                                          "bytes_at_completion") if k in m}
            m.setdefault("reopened", []).append({"why": reopened, **who_when(), **done})
        st = self.entry.status()
        fails = self.entry.failures()
        by_split: dict[str, dict[str, int]] = {}
        done = self.entry.done_uids()
        for c in self.entry.plan:
            s = by_split.setdefault(c["split"], {"total": 0, "done": 0, "failed": 0})
            s["total"] += 1
            s["done"] += c["uid"] in done
            s["failed"] += c["uid"] in fails
        runs = []
        rd = self.path / layout.RUNS_DIR
        for p in sorted(rd.glob("*.json")):
            try:
                runs.append(read_json(p))
            except (OSError, ValueError):
                continue
        m.update(
            status=status,
            updated=who_when(),
            counts={"total": st.total, "done": st.done, "failed": st.failed, "missing": len(st.missing),
                    "by_split": by_split},
            failures=[{"clip_id": f.get("clip_id", uid), "reason": f.get("reason")} for uid, f in fails.items()],
            runs=runs,
        )
        if status == "complete":
            m["completed"] = who_when()
            # read by `cache ls` instead of a walk over every file (the clips no longer change)
            m["bytes_at_completion"] = lasting_bytes(self.path)
            m["code_revision_at_completion"] = git_revision()
            m["versions_at_completion"] = package_versions()
        atomic_write_json(self.path / layout.MANIFEST, m)
        return m


def _fsync_tree(path: Path) -> None:
    """Flush a staged clip's files before the rename that publishes it (a crash then is safe)."""
    for dirpath, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
