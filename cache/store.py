"""A cache root: where entries live, how they are found, checked and collected."""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from cache import claims, layout
from cache.chunks import read_group_meta
from cache.digests import array_digest
from cache.entry import (DAMAGED_HINT, CacheEntry, ClipData, EntryFormatError, EntryNotFoundError,
                         clip_attrs_problems, identity_problems, metadata_problems)
from cache.fsutil import (DELETING, dir_size, explained_os_errors, linked_folders, no_home_folder, read_json,
                          remove_tree)
from cache.item_index import ItemIndex, ItemIndexError
from cache.readers import reader_marks
from cache.writer import EntryWriter, staging_stale

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    entry: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)  # every problem, one line each
    clips: dict[str, list[str]] = field(default_factory=dict)  # uid -> what is wrong with that clip
    index_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class RepairReport:
    entry: str
    quarantined: dict[str, list[str]] = field(default_factory=dict)  # uid -> why it was moved aside
    reopened: bool = False  # a finished entry made incomplete again (index removed, manifest says so)
    reindexed: bool = False  # a complete entry's index written again
    missing: int = 0  # clips the next `pipeline extract` has to do


@dataclass
class GcAction:
    path: Path
    why: str
    bytes: int
    claim_ttl: Optional[float] = None  # a file of a claims folder: re-judged when removed


def default_root() -> Path:
    """Where the lab-shared cache lives: ``$PEVL_CACHE``, else the per-user cache directory
    (``$XDG_CACHE_HOME/pevl``, i.e. ``~/.cache/pevl``). The one place this default is decided."""
    env = os.environ.get("PEVL_CACHE")
    if env:
        return Path(env).expanduser()
    if no_home_folder():
        raise RuntimeError("no home folder (HOME is unset and this user has none): set PEVL_CACHE (or "
                           "XDG_CACHE_HOME) to say where the cache is")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pevl"


def _is_entry_dir(p: Path) -> bool:
    """Whether ``p`` is an entry's folder (a path given where an entry key is taken)."""
    return (p / layout.ROOT_META).is_file() or (p / layout.CLIPS_DIR).is_dir()


class CacheRootNotFoundError(FileNotFoundError):
    """The cache root a command reads is not there (or is not a folder)."""


class CacheStore:
    """A cache root (``root``; default :func:`default_root`)."""

    def __init__(self, root: Optional[os.PathLike] = None):
        self.root = Path(root if root is not None else default_root()).expanduser()

    @classmethod
    def existing(cls, root: Optional[os.PathLike] = None, key: Optional[str] = None) -> "CacheStore":
        """The cache at ``root``, which must be a folder: a command that reads a cache must not
        report a mistyped path, or a shared mount that is down, as an empty cache that verifies.
        ``key``: the entry the command names; given as an entry's path, it needs no root."""
        store = cls(root)
        if store.root.is_dir() or (key and _is_entry_dir(Path(key))):
            return store
        env = os.environ.get("PEVL_CACHE")
        if root is None:
            where = "$PEVL_CACHE" if env else "the default root (no $PEVL_CACHE)"
        else:  # the command line's option also takes $PEVL_CACHE
            where = "$PEVL_CACHE or --cache-root" if env and Path(env).expanduser() == store.root else "--cache-root"
        if store.root.exists():
            raise CacheRootNotFoundError(f"{store.root} ({where}) is not a folder: give the cache's folder")
        raise CacheRootNotFoundError(f"no cache at {store.root} ({where}): the path is mistyped, the shared "
                                     "filesystem holding it is not mounted, or nothing was extracted there yet")

    @property
    def entries_dir(self) -> Path:
        return self.root / layout.ENTRIES_DIR

    def entry_dir(self, dataset: str, key: str) -> Path:
        return self.entries_dir / dataset / key

    def _entry_dirs(self) -> Iterator[Path]:
        if not self.entries_dir.is_dir():
            return
        for ds in sorted(self.entries_dir.iterdir()):
            if ds.is_dir() and not ds.name.startswith("."):
                for e in sorted(ds.iterdir()):
                    # every folder: one whose metadata is gone is a damaged entry, not nothing; but
                    # one with none of an entry's files is someone's (gc leaves it, ls lists it not)
                    if e.is_dir() and not e.name.startswith(".") and _looks_like_entry(e):
                        yield e

    def entries(self, dataset: Optional[str] = None) -> list[CacheEntry]:
        """Readable entries (current format, metadata there), newest first."""
        out = []
        for d in self._entry_dirs():
            if dataset and d.parent.name != dataset:
                continue
            try:
                out.append(CacheEntry(d))
            except (EntryFormatError, EntryNotFoundError):
                continue
        out.sort(key=lambda e: e.attrs.get("created", {}).get("time", ""), reverse=True)
        return out

    def open(self, key_or_path: str) -> CacheEntry:
        """An entry by key, key prefix (unique), or path."""
        p = Path(key_or_path)
        if _is_entry_dir(p):
            return CacheEntry(p)
        hits = [d for d in self._entry_dirs() if d.name.startswith(key_or_path)]
        if len(hits) == 1:
            return CacheEntry(hits[0])
        if not hits:
            raise EntryNotFoundError(f"no cache entry {key_or_path!r} under {self.root}")
        raise EntryNotFoundError(f"{key_or_path!r} matches several entries: {[h.name for h in hits]}")

    def find(self, dataset: str, settings_hash: str) -> list[CacheEntry]:
        """Entries of one dataset x setting (any source-file set), newest first."""
        return [e for e in self.entries(dataset) if e.attrs.get("settings_hash") == settings_hash]

    # -- integrity -------------------------------------------------------------------------
    def verify(self, entry: CacheEntry, deep: bool = True, progress=None) -> VerifyReport:
        """Check every done clip reads (through the same reader training uses), has the right
        shapes and (``deep``) matches the digests of its arrays; JPEG frames' headers are checked."""
        rep = VerifyReport(entry=entry.key)
        rep.problems.extend(entry.metadata_problems())
        wrong = [] if rep.problems else identity_problems(entry.path)
        if wrong:  # clips are judged by the plan and settings: not by ones that are themselves wrong
            rep.problems.extend([*wrong, f"clips not checked: the entry's own metadata first ({DAMAGED_HINT})"])
            return rep
        plan_uids = {c["uid"] for c in entry.plan}
        done = entry.done_uids()
        for extra in sorted(done - plan_uids):
            rep.clips[extra] = ["not in the plan"]
        # the index first: each clip is then compared with it as it is checked, from the one read of
        # its metadata (on a network filesystem every read of a clip's zarr.json is a round trip)
        has_index = (entry.path / layout.INDEX_DIR).is_dir()
        index = _index_to_compare(entry, done & plan_uids, rep) if has_index else None
        for i, uid in enumerate(sorted(done & plan_uids)):
            rep.checked += 1
            try:
                clip, listed = _read_clip_once(entry, uid)
                found = _clip_problems(entry, clip, listed, deep)
            except Exception as e:  # a corrupt chunk or zarr.json surfaces as any error
                found = [f"unreadable ({type(e).__name__}: {e})"]
            if not found and index is not None:  # (a clip's own damage is reported with the clip)
                stale, found = _item_index_problems(index, clip)
                rep.index_problems.extend(stale)
            if found:
                rep.clips[uid] = found
            if progress:
                progress(i + 1, len(done))
        rep.problems.extend(f"clips/{uid}: {p}" for uid, ps in sorted(rep.clips.items()) for p in ps)
        if not has_index and entry.status().complete and _manifest_status(entry) == "complete":
            rep.index_problems.append("index: missing although the entry is complete")
        rep.problems.extend(rep.index_problems)
        return rep

    def repair(self, entry: CacheEntry, deep: bool = True, dry_run: bool = False, progress=None) -> RepairReport:
        """Move every clip that :meth:`verify` finds wrong into ``quarantine/`` (``pipeline cache gc``
        removes it there) so that the next ``pipeline extract`` extracts it again; make a finished
        entry that now lacks clips incomplete again (its index removed, its manifest saying
        ``incomplete``), or write a complete entry's damaged or missing index again.
        :class:`~cache.entry.EntryDamagedError` where the entry's own metadata is wrong: the
        clips are judged by it, so it is rebuilt first (by ``pipeline extract``)."""
        entry.check_against_key()
        ver = self.verify(entry, deep=deep, progress=progress)
        out = RepairReport(entry=entry.key, quarantined=dict(ver.clips))
        plan_uids = {c["uid"] for c in entry.plan}
        if dry_run:
            st = entry.status()
            out.missing = len(st.missing) + len(set(ver.clips) & plan_uids)
            finished = (entry.path / layout.INDEX_DIR).is_dir() or _manifest_status(entry) == "complete"
            out.reopened = bool(out.missing) and finished
            out.reindexed = not out.missing and bool(ver.index_problems)
            return out
        with explained_os_errors(entry.path):
            return self._repair(entry, ver, out)

    def _repair(self, entry: CacheEntry, ver, out: RepairReport) -> RepairReport:
        writer = EntryWriter(entry)
        if ver.clips:  # the index goes first: no reader may pair its arrays with clips that are gone
            remove_tree(entry.path / layout.INDEX_DIR)  # (what could not go is aside: gc lists it)
        for uid, why in ver.clips.items():
            writer.quarantine(uid, why)
        st = entry.status()
        out.missing = len(st.missing)
        finished = (entry.path / layout.INDEX_DIR).is_dir() or _manifest_status(entry) == "complete"
        if st.missing and finished:
            writer.reopen(f"{len(ver.clips)} damaged clip(s) moved to {layout.QUARANTINE_DIR}/ by `pipeline cache "
                          f"repair`; {len(st.missing)} clip(s) to extract again" if ver.clips else
                          f"{len(st.missing)} clip(s) missing from {layout.CLIPS_DIR}/")
            out.reopened = True
        elif not st.missing and ver.index_problems:
            writer.reopen("the index was damaged: written again by `pipeline cache repair`")
            out.reindexed = writer.finalize_if_complete()
        return out

    def _entry_formats(self, dataset: Optional[str]) -> Iterator[tuple[Path, Any, bool]]:
        """``(path, format, other)`` of every entry directory (of ``dataset``): ``other`` when another
        store format wrote it, older or newer (an unreadable format is neither: its metadata is damaged)."""
        for d in self._entry_dirs():
            if dataset and d.parent.name != dataset:
                continue
            fmt = _entry_format(d)
            yield d, fmt, fmt is not _UNREADABLE and fmt != layout.FORMAT_VERSION

    def old_format_entries(self, dataset: Optional[str] = None) -> list[tuple[Path, Any]]:
        """``(path, format)`` of the entries an older store format wrote (unreadable here)."""
        return [(d, fmt) for d, fmt, other in self._entry_formats(dataset) if other and not layout.newer_format(fmt)]

    def newer_format_entries(self, dataset: Optional[str] = None) -> list[tuple[Path, Any]]:
        """``(path, format)`` of the entries newer code wrote (unreadable here, never removed here)."""
        return [(d, fmt) for d, fmt, other in self._entry_formats(dataset) if other and layout.newer_format(fmt)]

    def damaged_entries(self, dataset: Optional[str] = None) -> list[tuple[Path, list[str]]]:
        """``(path, problems)`` of the current-format (or unreadable) entries whose own metadata
        (zarr.json, plan.json, manifest.json, clips/zarr.json) is missing or unreadable (an old
        format is reported as such, not as damaged)."""
        found = ((d, metadata_problems(d)) for d, _, old in self._entry_formats(dataset) if not old)
        return [(d, problems) for d, problems in found if problems]

    # -- garbage collection -----------------------------------------------------------------
    def gc_plan(self, incomplete_older_than_days: Optional[float] = None,
                keep_last: Optional[int] = None, ttl: float = claims.DEFAULT_TTL,
                damaged: bool = False) -> list[GcAction]:
        """What ``gc`` would remove: writers' leftovers, quarantined clips, old formats, abandoned or
        superseded entries, and (``damaged``) entries whose metadata is missing."""
        acts: list[GcAction] = []
        now = time.time()
        if not self.entries_dir.is_dir():
            return acts
        broken = dict(self.damaged_entries())
        for ds in sorted(p for p in self.entries_dir.iterdir() if p.is_dir()):
            for e in sorted(ds.iterdir()):
                if e.name.startswith(".") and (".creating-" in e.name or DELETING in e.name):
                    if claims.age_of(e.stat().st_mtime, e.parent, now) > ttl:
                        acts.append(GcAction(e, "abandoned entry creation", dir_size(e)))
                    continue
                if not e.is_dir() or e.name.startswith("."):
                    continue
                if not _looks_like_entry(e):
                    # nothing of an entry in it (someone's folder, or a link to one): not ours to remove
                    log.warning("leaving %s: not a cache entry (none of %s in it)", e, ", ".join(layout.ENTRY_MARKS[:4]))
                    continue
                if e in broken and damaged:
                    acts.append(GcAction(e, f"damaged entry ({'; '.join(broken[e])})", dir_size(e)))
                    continue
                fmt = _entry_format(e)
                if layout.newer_format(fmt):
                    log.warning("leaving entry %s: store format %s, written by newer code than this (format %d), "
                                "which reads it", e, fmt, layout.FORMAT_VERSION)
                    continue
                if fmt is not _UNREADABLE and fmt != layout.FORMAT_VERSION:
                    acts.append(GcAction(e, f"store format {fmt}, unreadable by this code (format "
                                            f"{layout.FORMAT_VERSION}): re-extract it with `pipeline extract`",
                                         dir_size(e)))
                    continue
                acts.extend(self._leftovers(e, ttl))
        for ds_entries in self._by_setting().values():
            complete = [x for x in ds_entries if x.is_complete]
            incomplete = [x for x in ds_entries if not x.is_complete]
            if keep_last is not None:
                for old in complete[keep_last:]:
                    acts.append(GcAction(old.path, f"superseded (keeping the newest {keep_last} of this setting)", dir_size(old.path)))
            if incomplete_older_than_days is not None:
                for x in incomplete:
                    age_days = (now - _last_activity(x.path)) / 86400
                    writers = _live_writers(x.path, ttl)
                    if writers and age_days > incomplete_older_than_days:
                        # however small the threshold: an extraction under way is not abandoned
                        log.warning("leaving incomplete entry %s: live writers hold %d clip claim(s) in it now",
                                    x.path, writers)
                    elif age_days > incomplete_older_than_days:
                        acts.append(GcAction(x.path, f"incomplete, untouched for {age_days:.1f} days", dir_size(x.path)))
        return [a for a in acts if not self._read_now(a, ttl) and not self._through_link(a)]

    def _through_link(self, act: GcAction) -> bool:
        """Whether ``act`` would remove a whole entry that is a symbolic link (its data elsewhere:
        a dataset's entries moved to another disk, or a link to anything at all): left alone,
        with a warning saying where it points; gc removes nothing a link points to."""
        if act.path.parent.parent != self.entries_dir or not act.path.is_symlink():
            return False
        log.warning("leaving entry %s (%s): a symbolic link to %s; gc does not remove what links point to: "
                    "remove both yourself if it should go", act.path, act.why, os.readlink(act.path))
        return True

    @staticmethod
    def _read_now(act: GcAction, ttl: float) -> bool:
        """Whether ``act`` would remove a whole entry that a live process reads (a training run):
        left alone, with a warning naming the readers."""
        if not (act.path / layout.ROOT_META).is_file():
            return False
        live, _ = reader_marks(act.path, ttl)
        if live:
            owners = [claims.read_owner(p) or {} for p in live]
            log.warning("leaving entry %s (%s): %d process(es) use it now, reading or extracting (%s)", act.path,
                        act.why, len(live),
                        ", ".join(f"{o.get('host', '?')} pid {o.get('pid', '?')}" for o in owners))
        return bool(live)

    def _by_setting(self) -> dict[tuple, list[CacheEntry]]:
        groups: dict[tuple, list[CacheEntry]] = {}
        for e in self.entries():
            groups.setdefault((e.dataset, e.attrs.get("settings_hash")), []).append(e)
        return groups

    def _leftovers(self, entry_dir: Path, ttl: float) -> list[GcAction]:
        acts = []
        linked = linked_folders(entry_dir, layout.ENTRY_FOLDERS)
        if linked:
            log.warning("entry %s: %s; the cache never makes links, and gc does not look through them (remove the "
                        "link, and move what it points to back if it is this entry's)", entry_dir,
                        ", ".join(f"{n}/ is a symbolic link to {t}" for n, t in linked.items()))
        quarantine = entry_dir / layout.QUARANTINE_DIR
        if quarantine.is_dir() and layout.QUARANTINE_DIR not in linked:
            for q in sorted(quarantine.iterdir()):
                if DELETING in q.name:
                    continue  # (below)
                acts.append(GcAction(q, "damaged clip moved aside by `pipeline cache repair`", _own_bytes(q)))
        for folder in (entry_dir, quarantine, entry_dir / layout.CLIPS_DIR):
            # renamed aside by a removal that could not finish (files of another user, a crash)
            for d in sorted(folder.glob(f".*{DELETING}*")) if folder.is_dir() and folder.name not in linked else []:
                acts.append(GcAction(d, "left by a removal that did not finish", dir_size(d)))
        staging = entry_dir / layout.STAGING_DIR
        if staging.is_dir() and layout.STAGING_DIR not in linked:
            for s in staging.iterdir():
                if staging_stale(s, ttl):
                    acts.append(GcAction(s, "staging left by a killed writer", _own_bytes(s)))
        for r in reader_marks(entry_dir, ttl)[1] if layout.READERS_DIR not in linked else []:
            acts.append(GcAction(r, "mark of a reader that is gone", r.stat().st_size, claim_ttl=ttl))
        cdir = entry_dir / layout.CLAIMS_DIR
        if cdir.is_dir() and layout.CLAIMS_DIR not in linked:
            for c in cdir.iterdir():
                if claims.is_stale(c, ttl):
                    acts.append(GcAction(c, "claim of a writer that is gone", c.stat().st_size, claim_ttl=ttl))
        return acts

    def gc(self, actions: list[GcAction]) -> tuple[int, list[str]]:
        """Carry out ``actions``: ``(bytes freed, what could not be removed)``. Only what is gone
        counts as freed; what is left (another user's files, a read-only mount) is named, and
        stays listed by the next ``gc`` (a folder renamed aside among its entry's leftovers)."""
        freed, left = 0, []
        for a in actions:
            if self._read_now(a, a.claim_ttl or claims.DEFAULT_TTL):  # a reader came since the plan
                continue
            try:
                if a.claim_ttl is not None:
                    freed += a.bytes if claims.remove_if_stale(a.path, a.claim_ttl) else 0
                    continue
                problems = remove_tree(a.path) if a.path.is_dir() else (a.path.unlink(missing_ok=True) or [])
            except OSError as e:  # e.g. another user's claims or readers folder
                problems = [f"{a.path}: {e.strerror or e}"]
            if problems:
                left.append(f"{a.path} ({len(problems)} not removed, first {problems[0]})")
            else:
                freed += a.bytes
        return freed, left


_UNREADABLE = object()  # an entry whose zarr.json is missing or unreadable has no format to tell


def _looks_like_entry(d: Path) -> bool:
    """Whether ``d`` holds any of an entry's files or folders (a damaged entry does)."""
    return any(os.path.lexists(d / m) for m in layout.ENTRY_MARKS)


def _own_bytes(p: Path) -> int:
    """What removing ``p`` frees: a link's own bytes (removing it leaves what it points to)."""
    if p.is_symlink():
        return os.lstat(p).st_size
    return dir_size(p) if p.is_dir() else p.stat().st_size


def _entry_format(entry_dir: Path) -> Any:
    try:
        return read_json(entry_dir / layout.ROOT_META).get("attributes", {}).get("format")
    except (OSError, ValueError, AttributeError):
        return _UNREADABLE


def _manifest_status(entry: CacheEntry) -> Optional[str]:
    try:
        return entry.manifest().get("status")
    except EntryNotFoundError:
        return None


def _index_to_compare(entry: CacheEntry, uids: set, rep: VerifyReport) -> Optional[ItemIndex]:
    """The entry's item index (:mod:`cache.item_index`) of its clips ``uids``, to compare each clip
    with; None where it is of an older layout (nothing to compare) or damaged (said in
    ``rep.index_problems``)."""
    try:
        listed, offsets, rows = entry.index_outline()  # (the poses are read once, streamed, by load)
        if set(listed) != uids:
            rep.index_problems.append("index: clip list differs from clips/")
        elif int(offsets[-1]) != rows:
            rep.index_problems.append("index: offsets do not cover keypoints")
        else:  # the items' arrays against their digests
            return ItemIndex.load(entry, [c for c in entry.plan if c["uid"] in uids])
    except ItemIndexError as e:
        rep.index_problems.append(f"index: {e}")
    except Exception as e:
        rep.index_problems.append(f"index: unreadable ({type(e).__name__}: {e}) in {entry.path / layout.INDEX_DIR}; "
                                  "`pipeline cache repair` writes it again")
    return None


def _item_index_problems(index: ItemIndex, clip: ClipData) -> tuple[list[str], list[str]]:
    """Where the index's item arrays differ from ``clip`` (read whole, found undamaged by the checks
    verify made): ``(the index is stale, the clip is damaged)``. A clip whose own arrays differ
    from their digests is damaged, not the index: what a quick verify, which hashes no clip, learns
    here."""
    held = index.clip(clip.uid)
    differ = [name for name in ("frame_indices", "keypoints", "scores")
              if not np.array_equal(getattr(held, name), getattr(clip, name), equal_nan=True)]
    if held.scale != clip.scale:
        differ.append("scale")
    if clip.frames_meta is None or tuple(held.frames_meta.shape) != tuple(clip.frames_meta.shape):
        differ.append("frames_shape")
    if not differ:
        return [], []
    digests = clip.attrs.get("digests") or {}
    if any(name in digests and array_digest(np.asarray(getattr(clip, name))) != digests[name]
           for name in ("frame_indices", "keypoints", "scores")):
        return [], [f"{', '.join(differ)}: content does not match its digest (the index holds the clip as it was "
                    "written)"]
    return [f"index: clip {clip.uid}'s {', '.join(differ)} differ from the clip's (the index is stale)"], []


def _read_clip_once(entry: CacheEntry, uid: str) -> tuple[ClipData, set[str]]:
    """The clip ``uid`` read unchecked, and the arrays its metadata lists: its ``zarr.json`` read
    once, for every check verify makes of the clip."""
    meta = read_group_meta(os.path.join(entry.path, layout.CLIPS_DIR, uid))
    return entry.read_clip(uid, check="none", group_meta=meta), set(meta[1])


def _clip_problems(entry: CacheEntry, c: ClipData, listed: set[str], deep: bool) -> list[str]:
    """What is wrong with one clip (empty: nothing): ``c`` read unchecked (the digests are compared
    here, all of them, as problems), ``listed`` the arrays its metadata lists (:func:`_read_clip_once`)."""
    settings = entry.settings
    t_v, cell = int(settings["num_frames"]) * entry.frames_per_segment, int(settings["grid_cell"])
    out = []
    # the reader trusts the clip's consolidated metadata: an array on disk it does not list (or
    # one it lists that is gone) means the clip was changed behind the writer's back
    clip_dir = entry.path / layout.CLIPS_DIR / c.uid
    on_disk = {d.name for d in os.scandir(clip_dir) if d.is_dir() and os.path.isfile(os.path.join(d.path, "zarr.json"))}
    if on_disk != listed:
        out.append(f"arrays on disk {sorted(on_disk)} differ from those the clip's metadata lists {sorted(listed)}")
    fr, gr, kp, sc = c.frames, c.grids, c.keypoints, c.scores
    if fr.shape[0] != t_v or len(fr.shape) != 4 or fr.shape[-1] != 3 or fr.dtype != np.uint8:
        out.append(f"frames {fr.shape} {fr.dtype}")
    if gr.shape[0] != t_v or gr.shape[2] * cell != fr.shape[1] or gr.shape[3] * cell != fr.shape[2]:
        out.append(f"grids {gr.shape} do not match frames {fr.shape}")
    if kp.shape[:2] != sc.shape or kp.shape[0] != int(c.attrs["num_frames"]):
        out.append(f"keypoints {kp.shape} / scores {sc.shape}")
    persons = entry.persons
    want_boxes = (kp.shape[0], 4) if persons == 1 else (kp.shape[0], persons, 4)
    if c.person_boxes is not None and c.person_boxes.shape != want_boxes:
        out.append(f"person_boxes {c.person_boxes.shape}, expected {want_boxes}")
    out.extend(entry.codec.problems(fr))
    out.extend(f"{layout.ROOT_META}: {p}" for p in clip_attrs_problems(c.attrs, entry.plan_row(c.uid)))
    if list(c.attrs.get("frame_size") or ()) not in ([], list(fr.shape[1:3])):
        out.append(f"{layout.ROOT_META}: frame_size {c.attrs['frame_size']}, the frames are {list(fr.shape[1:3])}")
    if deep:
        for name, want in dict(c.attrs.get("digests", {})).items():
            value = getattr(c, name, None)
            if value is None:
                out.append(f"{name}: has a digest but no array")
                continue
            got = entry.codec.digest(value) if name == "frames" else array_digest(np.asarray(value))
            if got != want:
                out.append(f"{name}: content does not match its digest")
    return out


def _live_writers(entry_dir: Path, ttl: float) -> int:
    """How many claims of ``entry_dir`` belong to writers that are alive (heartbeated, not stale)."""
    cdir = entry_dir / layout.CLAIMS_DIR
    try:
        names = list(cdir.iterdir()) if cdir.is_dir() else []
    except OSError:
        return 0
    return sum(1 for c in names if claims.is_claim_name(c.name) and not claims.is_stale(c, ttl))


def _last_activity(entry_dir: Path) -> float:
    t = entry_dir.stat().st_mtime
    for sub in (layout.CLIPS_DIR, layout.FAILURES_DIR, layout.RUNS_DIR):
        p = entry_dir / sub
        if p.is_dir():
            t = max(t, p.stat().st_mtime)
    return t


def export_hdf5(entry: CacheEntry, out_path: os.PathLike, progress=None) -> int:
    """Copy an entry into one HDF5 file (same groups, arrays and attributes) for HDF5-only tools;
    written beside (``.partial``, removed on any failure), then renamed into place."""
    done = entry.done_uids()
    rows = [c for c in entry.plan if c["uid"] in done]
    tmp = Path(f"{out_path}.partial")
    _check_room_for(entry, tmp)
    try:
        _write_hdf5(entry, rows, tmp, progress)
    except BaseException:  # a refused clip, a full disk, Ctrl-C: no .partial file left behind
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out_path)
    return len(rows)


def _check_room_for(entry: CacheEntry, out: Path) -> None:
    """Refuse an export the filesystem cannot hold before writing it: HDF5 on a full disk fails in
    its flush with a raw library message, or takes the process down."""
    from cache.fsutil import DiskFullError, mount_point

    need = dir_size(entry.path / layout.CLIPS_DIR)  # the export holds the same arrays, as compressed
    free = shutil.disk_usage(out.parent).free
    if need > free:
        raise DiskFullError(f"exporting entry {entry.key} needs about {need / 2**20:.1f} MiB and the filesystem holding "
                            f"{out.parent} (mounted at {mount_point(out.parent)}) has {free / 2**20:.1f} MiB free: free "
                            "space there or give --h5 another place")


def _write_hdf5(entry: CacheEntry, rows: list[dict], tmp: Path, progress=None) -> None:
    import json

    import h5py

    n = 0
    with h5py.File(tmp, "w") as f:
        for k, v in entry.attrs.items():
            f.attrs[k] = json.dumps(v) if not isinstance(v, (int, float, str)) else v
        # (what a reader of the file alone cannot tell otherwise: an incomplete entry's 12 of 320 clips)
        f.attrs["export_clips"], f.attrs["export_planned_clips"] = len(rows), len(entry.plan)
        clips = f.create_group("clips")
        for c in rows:
            data = entry.read_clip(c["uid"], check="all")  # raw frames hashed too: never export damage
            g = clips.create_group(c["uid"])
            for name in layout.CLIP_ARRAYS + layout.OPTIONAL_CLIP_ARRAYS:
                a = getattr(data, name)
                if a is None:
                    continue
                if name == "frames":  # as the codec stores them (JPEG files as they are)
                    entry.codec.export_h5(g, a)
                    continue
                g.create_dataset(name, data=np.asarray(a), compression="lzf" if name in ("frames", "grids") else None)
            for k, v in data.attrs.items():
                g.attrs[k] = json.dumps(v) if not isinstance(v, (int, float, str)) else v
            n += 1
            if progress:
                progress(n, len(rows))
