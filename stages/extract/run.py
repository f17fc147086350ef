"""Stage one's work: claim, extract and commit clips of a planned entry; the start and end of a run.

:func:`begin_run` plans, opens the entry and lists the clips still to do; :func:`extract_clips`
is the per-clip loop every engine runs (in this process, in worker processes, in Dask tasks);
:func:`finish_run` writes the run record and finalizes a complete entry. The claims in the
shared entry are the only coordination, so engines and hosts may fill one entry together.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from cache import EntryWriter
from cache.chunks import read_group_meta
from cache.claims import HOST
from cache.entry import CacheEntry
from cache.fsutil import read_json
from cache.keys import file_sha256
from cache.layout import CLIPS_DIR, RUNS_DIR, SOURCES, clip_uid
from cache.readers import reading
from stages.extract.clip import ClipCounters, ClipError, ClipResult, extract_clip
from stages.extract.decode_pool import DecodePool, decode_pool_available
from stages.extract.plan import EntryPlan, ExtractOptions, make_pose_source, open_or_create, plan_entry
from stages.extract.pose import PoseSource
from stages.extract.semaphores import remove_orphaned_semaphores

#: (event, clip_id, detail): "failed" with its reason, "done" with the clip's notes (None: none)
ProgressFn = Callable[[str, str, Any], None]
log = logging.getLogger(__name__)
_NOTICES: dict[str, bool] = {}  # one-line notices already given by this process


@dataclass
class ExtractReport:
    """What a run did (filled by whichever engine ran it)."""

    entry: CacheEntry
    done_now: list[str] = field(default_factory=list)
    failed_now: list[tuple[str, str]] = field(default_factory=list)
    notes_now: dict[str, list[str]] = field(default_factory=dict)  # clip id -> notes of the clips done now
    already: int = 0
    # clips taken from another entry of the same settings, videos and cuts (a fixed label, a new
    # split): no decoding, no pose model; the entries they came from
    reused_now: list[str] = field(default_factory=list)
    reused_from: list[str] = field(default_factory=list)
    counters: ClipCounters = field(default_factory=ClipCounters)
    seconds: float = 0.0
    complete: bool = False

    @property
    def failures(self) -> dict[str, dict]:
        return self.entry.failures()

    def record(self, event: str, clip_id: str, reason: Optional[str] = None,
               progress: Optional[ProgressFn] = None) -> None:
        """Count one clip's outcome (``done`` / ``failed``) and pass it on to ``progress``."""
        if event == "done":
            self.done_now.append(clip_id)
            if reason:  # a done clip's notes
                self.notes_now[clip_id] = list(reason)
        elif event == "failed":
            self.failed_now.append((clip_id, reason or ""))
        else:
            raise ValueError(f"unknown clip event {event!r}")
        if progress:
            progress(event, clip_id, reason)

    def add_counters(self, counters: tuple) -> None:
        """Add a worker's :class:`ClipCounters` (sent as :func:`counters_tuple`)."""
        self.counters.add(ClipCounters(*counters))


def counters_tuple(counters: ClipCounters) -> tuple:
    """:class:`ClipCounters` as a plain tuple, for a queue or a Dask result."""
    return dataclasses.astuple(counters)


def in_shard(position: int, shard: tuple[int, int]) -> bool:
    """Whether the clip at ``position`` of the plan belongs to shard ``(k, n)``."""
    k, n = shard
    return position % n == k


def my_clips(p: EntryPlan, shard: tuple[int, int]) -> list:
    """The clips of shard ``(k, n)``: every n-th clip of the plan starting at k."""
    return [c for i, c in enumerate(p.index.clips) if in_shard(i, shard)]


@dataclass
class ShardStanding:
    """Where a ``--shard K/N`` run leaves its entry: its own clips, the entry's other missing
    ones, and the shards of another count N that runs of the entry recorded."""

    shard: tuple[int, int]
    missing_here: int  # this shard's clips neither done nor failed
    missing_elsewhere: int  # the entry's other missing clips
    other_counts: dict[int, list[int]]  # N -> the Ks of recorded runs with --shard K/N, N not this shard's


def shard_standing(entry: CacheEntry, shard: tuple[int, int], status=None) -> ShardStanding:
    """:class:`ShardStanding` of ``entry`` for ``shard``. Shards of different counts do not
    split the plan between them (0/2 beside 2/3 leaves clips neither owns): the run records
    (``runs/*.json``, each with its ``shard``) tell which counts ran. Only finished runs write one,
    so a killed run leaves nothing behind that could mislead or block later runs. ``status``: the
    entry's, when the caller has it (three directory listings on a network filesystem)."""
    missing = set((status or entry.status()).missing)
    missing_here = sum(c["clip_id"] in missing for i, c in enumerate(entry.plan) if in_shard(i, shard))
    other: dict[int, set[int]] = {}
    for path in sorted((entry.path / RUNS_DIR).glob("*.json")):
        try:
            k, n = (int(v) for v in read_json(path).get("shard"))
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # unreadable, or older than the shard field
        if n > 1 and n != shard[1]:  # an unsharded run (0/1) covers every clip
            other.setdefault(n, set()).add(k)
    return ShardStanding(shard, missing_here, len(missing) - missing_here,
                         {n: sorted(ks) for n, ks in sorted(other.items())})


def decode_workers(opts: ExtractOptions) -> int:
    """``--decode-workers``; by default 2 with a CUDA device (the GPU must not wait for ffmpeg) and
    0 elsewhere (on a CPU, HRNet takes ~96 % of the time and decoding ahead competes for the cores)."""
    if opts.decode_workers is not None:
        return max(0, int(opts.decode_workers))
    return 2 if str(opts.device).startswith("cuda") else 0


def extract_clips(p: EntryPlan, opts: ExtractOptions, clips: list, progress: Optional[ProgressFn],
                  counters: ClipCounters, pose: Optional[PoseSource] = None
                  ) -> tuple[list[str], list[tuple[str, str]], dict[str, list[str]]]:
    """Claim, extract and commit each clip of ``clips`` that nobody else has done or is doing.

    With decode workers (:func:`decode_workers`) the clips are decoded in other processes ahead
    of the pose model and committed by a background thread; otherwise all in this process.
    ``pose``: a pose source the caller keeps alive across calls (a Dask worker reuses one);
    by default one is built on the first clip that needs it and closed at the end. Returns the clip
    ids done, the failures with their reasons, and the notes of the clips done that have any.
    """
    run = _ClipRun(p, opts, progress, counters, pose)
    workers = decode_workers(opts)
    why_not = decode_pool_available() if workers else None
    if why_not:
        if not _NOTICES.get("no decode pool"):
            _NOTICES["no decode pool"] = True
            log.warning("decoding in this process (--decode-workers %d ignored): %s", workers, why_not)
        workers = 0
    try:
        if workers:
            run.pipelined(clips, workers)
        else:
            run.sequential(clips)
    finally:
        run.writer.heartbeat.stop()
        if pose is None and run.pose is not None:
            run.pose.close()
    return run.done, run.failed, run.noted


class SourceAccessError(OSError):
    """A dataset video this process cannot open (permissions, an unmounted or failing filesystem):
    the run stops rather than record the clip as failed (a failure is final for the entry)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _cannot_open(path, root) -> Optional[str]:
    """Why ``path`` cannot be opened for reading now, by a fault of the storage (None: it can, or
    the file alone is missing: a video the dataset lists and nobody has, recorded as the clip's
    failure by the decoder). A file missing with its dataset root is the storage's fault too."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except (FileNotFoundError, NotADirectoryError):
        if root and not os.path.isdir(root):
            return f"the dataset root {root} is gone: unmounted or moved"
        return None
    except IsADirectoryError:
        return None  # the decoder says it is a folder, not a video
    except OSError as e:
        return e.strerror or str(e)
    return None


class _ClipRun:
    """The per-clip loop: claims, extraction, failures recorded with their reasons, commits."""

    def __init__(self, p: EntryPlan, opts: ExtractOptions, progress: Optional[ProgressFn], counters: ClipCounters,
                 pose: Optional[PoseSource]):
        self.p, self.opts, self.progress, self.counters, self.pose = p, opts, progress, counters, pose
        self.writer = EntryWriter(CacheEntry(p.entry_dir))
        self.done: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.noted: dict[str, list[str]] = {}  # clip id -> its notes (the clips done that have any)

    def pose_source(self) -> PoseSource:
        if self.pose is None:
            self.pose = make_pose_source(self.p.pose_spec, self.opts, self.p.adapter)
        return self.pose

    def claimed(self, clips: list) -> Iterator[tuple]:
        """(clip, uid) for each clip this process claims now. A video this process cannot open
        stops the run (:class:`SourceAccessError`), its claim given back: that is the storage's
        fault, not the video's, and a failure recorded for it would be final for the entry."""
        for c in clips:
            uid = clip_uid(c.clip_id)
            if not self.writer.claim(uid):
                continue
            if c.clip_id in self.p.no_pose:  # known at planning time: nothing to decode
                self._fail(c, uid, f"no poses for this clip in --pose-source {self.p.pose_spec} (--missing-poses fail)")
                continue
            self._check_source(c, uid)
            yield c, uid

    def _check_source(self, c, uid: str) -> None:
        """Raise :class:`SourceAccessError` (the claim given back) when ``c``'s video cannot be read
        by a fault of the storage (:func:`_cannot_open`)."""
        why = _cannot_open(c.video, self.p.index.root) if c.video else None
        if why:
            self.writer.release(uid)
            raise SourceAccessError(
                f"cannot read {c.video} ({why}): the dataset's files are not readable by this user, or their "
                "filesystem is not mounted. Nothing was recorded as failed for it: make it readable and run "
                "again (the clips done so far are kept)")

    def extract(self, c, uid: str, decoder=None) -> Optional[ClipResult]:
        """One claimed clip's result, or None when it failed (recorded, claim released). Anything
        but an Exception (KeyboardInterrupt) propagates with the claim still held."""
        try:
            return extract_clip(c, self.p.adapter, self.pose_source(), self.p.settings, self.counters, decoder)
        except ClipError as e:
            # the storage may have gone while the clip decoded (its root unmounted, moved): not the clip's
            # fault, and a failure recorded for it would be final
            self._check_source(c, uid)
            self._fail(c, uid, str(e))
        except Exception as e:
            self._fail(c, uid, f"internal error: {type(e).__name__}: {e}", traceback.format_exc())
        return None

    def _fail(self, c, uid: str, reason: str, detail: Optional[str] = None) -> None:
        self.writer.fail(uid, c.clip_id, reason, detail=detail)
        self.failed.append((c.clip_id, reason))
        if self.progress:
            self.progress("failed", c.clip_id, reason)

    def commit(self, c, uid: str, res: ClipResult) -> None:
        # a cut clip's video is not the clip (predict finds whole videos only): its source file, often
        # a whole event or routine holding many clips, is not hashed for each of them
        attrs = {**res.attrs, "video": _rel(c.video, self.p.index.root), **({} if c.cut() else source_hash(c.video))}
        self.writer.commit(uid, res.arrays, attrs)
        self.done.append(c.clip_id)
        if res.notes:
            self.noted[c.clip_id] = list(res.notes)
        if self.progress:
            self.progress("done", c.clip_id, self.noted.get(c.clip_id))

    def sequential(self, clips: list) -> None:
        for c, uid in self.claimed(clips):
            try:
                res = self.extract(c, uid)
            except BaseException:
                self.writer.release(uid)  # KeyboardInterrupt: give the clip back, lose nothing else
                raise
            if res is not None:
                self.commit(c, uid, res)

    def pipelined(self, clips: list, workers: int) -> None:
        """Decode workers run ahead (two claimed clips each); a thread commits behind."""
        pose = self.pose_source()
        todo = self.claimed(clips)
        ahead: collections.deque = collections.deque()  # (clip, uid, stream), claimed and submitted
        committer = _Committer(self)
        with DecodePool(workers, self.p.settings, send_frames=pose.needs_frames) as pool:
            try:
                while True:
                    for c, uid in itertools.islice(todo, 2 * workers - len(ahead)):
                        try:
                            ahead.append((c, uid, pool.submit(c)))
                        except BaseException:
                            self.writer.release(uid)
                            raise
                    if not ahead:
                        break
                    c, uid, stream = ahead[0]
                    try:
                        res = self.extract(c, uid, stream)
                    finally:
                        stream.discard()
                    if res is not None:
                        committer.submit(c, uid, res)
                    ahead.popleft()
            except BaseException:
                for _, uid, _ in ahead:  # give back the clips not extracted; finished ones still commit
                    self.writer.release(uid)
                committer.close(raise_error=False)
                raise
            committer.close()


class _Committer:
    """Commits finished clips in a background thread, so the pose model goes on with the next clip
    while one is compressed, written and fsynced. At most ``depth`` clips wait (their claims held)."""

    def __init__(self, run: _ClipRun, depth: int = 2):
        self._run = run
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._loop, name="pevl-commit", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            c, uid, res = item
            if self._error is not None:
                self._run.writer.release(uid)
                continue
            try:
                self._run.commit(c, uid, res)
            except BaseException as e:  # raised in the main thread at the next submit / close
                self._error = e
                self._run.writer.release(uid)

    def submit(self, c, uid: str, res: ClipResult) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((c, uid, res))

    def close(self, raise_error: bool = True) -> None:
        self._queue.put(None)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error


def source_hash(video: Optional[str]) -> dict:
    """``{"source_sha256": ...}``: the video file's content hash, by which ``pipeline predict``
    finds a video already in an entry whatever its name (empty when the file cannot be read now).
    Hashed by the thread that commits, off the pose model's path (docs/benchmarks.md: the cost)."""
    if not video:
        return {}
    try:
        return {"source_sha256": file_sha256(video)}
    except OSError:
        return {}


def _rel(path: Optional[str], root: Optional[str]) -> Optional[str]:
    return os.path.relpath(path, root) if path and root else path


@dataclass
class RunStart:
    """What every engine does first: plan, open the entry, and list the clips still to do."""

    plan: EntryPlan
    writer: EntryWriter
    report: ExtractReport
    todo: list
    t0: float
    #: the run's mark in the entry's ``readers/`` (cache/readers.py), from the entry's opening to
    #: :meth:`close`: ``cache gc --incomplete-older-than`` removed an old incomplete entry a run had
    #: opened to fill, before its first clip claim (workers starting, clips being reused)
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def finished(self) -> bool:
        return self.report.complete

    def close(self) -> None:
        """Drop the run's mark (the engines do, on every way out)."""
        self.held.close()


def begin_run(opts: ExtractOptions, on_start: Optional[Callable[[EntryPlan, int, int], None]] = None,
              load_progress: Optional[Callable[[int, int], None]] = None) -> RunStart:
    """Plan, open (or create) the entry, and list this shard's clips still to do.
    ``on_start(plan, todo, already)`` is called before any work."""
    t0 = time.time()
    p = plan_entry(opts, load_progress=load_progress)
    entry = open_or_create(p)
    held = contextlib.ExitStack()
    held.enter_context(reading(entry.path))
    try:
        return _begin(opts, p, entry, held, t0, on_start)
    except BaseException:
        held.close()
        raise


def _begin(opts: ExtractOptions, p: EntryPlan, entry: CacheEntry, held: contextlib.ExitStack, t0: float,
           on_start: Optional[Callable[[EntryPlan, int, int], None]]) -> RunStart:
    writer = EntryWriter(entry)
    # what killed runs left: their staging folders here, their semaphores on this machine
    writer.remove_stale_staging()
    remove_orphaned_semaphores()
    report = ExtractReport(entry=entry)
    if opts.retry_failed:
        writer.retry_failures()
    # A complete entry is final: no decoding, no pose model, nothing but this check.
    if (entry.path / "index").is_dir():
        st = entry.status()
        if st.complete:
            report.already = len(entry.plan)
            report.complete = writer.finalize_if_complete()  # (rewrites a rebuilt manifest's status)
            if on_start:
                on_start(p, 0, report.already)
            return RunStart(p, writer, report, [], t0, held)
        # finished once, but clips went missing (removed, moved aside by `pipeline cache repair`)
        # or failures are retried: incomplete again until this run (or another) finishes it
        why = (f"{len(st.missing)} clip(s) to extract again: "
               + ("failures retried (--retry-failed)" if opts.retry_failed else
                  "missing from clips/ (removed, or moved aside by `pipeline cache repair`)"))
        writer.reopen(why)
        log.warning("entry %s was finished; reopened: %s", entry.key, why)
    mine = my_clips(p, opts.shard)
    done_or_failed = entry.done_uids() | set(entry.failures())
    todo = [c for c in mine if clip_uid(c.clip_id) not in done_or_failed]
    report.already = len(mine) - len(todo)
    if todo and not opts.limit:
        todo = reuse_clips(p, opts, writer, todo, report)
    if opts.limit is not None:
        todo = todo[: opts.limit]
    if on_start:
        on_start(p, len(todo), report.already)
    return RunStart(p, writer, report, todo, t0, held)


#: what may differ between two clips' source rows (sources.json) for one to be the other's copy
_NOT_THE_BYTES = ("label", "split")


def reuse_clips(p: EntryPlan, opts: ExtractOptions, writer: EntryWriter, todo: list,
                report: ExtractReport) -> list:
    """Commit the clips of ``todo`` that another entry of the same dataset and stage-one settings
    (``settings_hash``: settings, pose source and its weights, dataset options) holds from the same
    video and cut, as copies with this plan's label and split (:meth:`EntryWriter.commit_copy`);
    return the rest.

    A fixed label or split file makes a new key: before, every clip was decoded and posed again.
    Same video: the same identity in ``sources.json`` (path, size, mtime), or, for a whole video
    whose mtime alone changed (a copy without -p, a `touch`), the sha256 its clip recorded. Not
    reused: clips of poses a dataset ships (pose source ``dataset``) or of a dataset's person boxes
    (either side: both are read from annotation files the per-clip rows do not pin); clips that do
    not read back whole (every array against its digest, the attributes against theirs) and entries
    whose own metadata is not as their key made it. A copy that fails (the other entry removed
    meanwhile) leaves that clip to be extracted."""
    from cache import CacheStore
    from cache.entry import identity_problems
    from cache.provenance import who_when

    if p.pose_spec.partition(":")[0] == "dataset":
        return todo
    try:
        siblings = [e for e in CacheStore(opts.cache_root).find(p.index.name, p.settings_hash)
                    if e.key != p.key and not identity_problems(e.path)]
    except OSError:
        return todo
    mine = {r["clip"]: r for r in p.sources if "clip" in r}
    rest, found = [], {}
    wanted = {c.clip_id for c in todo}
    for e in siblings:  # newest first
        try:
            theirs = {r["clip"]: r for r in read_json(e.path / SOURCES)["sources"] if "clip" in r}
            done = e.done_uids()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for cid in wanted - set(found):
            uid = clip_uid(cid)
            if uid in done and cid in theirs and _same_source(mine.get(cid), theirs[cid]):
                found[cid] = (e, uid, theirs[cid])
    with contextlib.ExitStack() as marks:  # (a gc by another process leaves the entries read here)
        for sibling in {e.key: e for e, _, _ in found.values()}.values():
            marks.enter_context(reading(sibling.path))
        for c in todo:
            hit = found.get(c.clip_id)
            # claimed first: another process on this entry checks (reads, hashes) only clips it may take
            if hit is None or not writer.claim(hit[1]):
                rest.append(c)
                continue
            e, uid, _ = hit
            if not _reusable(p, c, *hit, mine[c.clip_id]):
                writer.release(uid)
                rest.append(c)
                continue
            try:
                taken = writer.commit_copy(uid, e.path / CLIPS_DIR / uid, {
                    "clip_id": c.clip_id, "split": c.split, "label": int(c.label), "cut": c.cut(),
                    "video": _rel(c.video, p.index.root), "reused_from": {"entry": e.key, **who_when()}})
            except Exception as ex:  # noqa: BLE001  (its claim is released: extracted as any other)
                log.warning("could not take clip %s from entry %s (%s: %s): extracting it", c.clip_id, e.key,
                            type(ex).__name__, ex)
                rest.append(c)
                continue
            if not taken:  # another writer committed it first
                continue
            report.reused_now.append(c.clip_id)
            if e.key not in report.reused_from:
                report.reused_from.append(e.key)
    return rest


def _reusable(p: EntryPlan, c, e: CacheEntry, uid: str, row: dict, mine: dict) -> bool:
    """Whether clip ``uid`` of entry ``e`` (source row ``row``) is ``c`` as this run would extract it:
    it reads back whole, no dataset person boxes made it or would make it now, and its video is
    ``c``'s (by content where only the mtime differs)."""
    try:  # the cheap tests first; the whole read (raw frames hashed: ~5 MB a clip) and a video's hash last
        if p.adapter.person_boxes(c) is not None:
            return False
        meta = read_group_meta(os.path.join(e.path, CLIPS_DIR, uid))  # (read once, for both)
        attrs = meta[0]
        if attrs.get("person_boxes") == "dataset":
            return False
        e.read_clip(uid, check="all", group_meta=meta)
    except Exception:  # noqa: BLE001  (damaged, moved aside, unreadable: extracted instead)
        return False
    return mine["video"] == row["video"] or _same_content(c, attrs)


def _same_source(mine: Optional[dict], theirs: dict) -> bool:
    """Whether two source rows name the same bytes: equal but for label and split, or (checked then
    by content) a whole video of the same path and size whose mtime alone differs."""
    if mine is None:
        return False
    a = {k: v for k, v in mine.items() if k not in _NOT_THE_BYTES}
    b = {k: v for k, v in theirs.items() if k not in _NOT_THE_BYTES}
    if a == b:
        return True
    va, vb = a.pop("video", None), b.pop("video", None)
    return (a == b and not a.get("cut") and isinstance(va, dict) and isinstance(vb, dict)
            and {k: v for k, v in va.items() if k != "mtime_ns"} == {k: v for k, v in vb.items() if k != "mtime_ns"})


def _same_content(c, attrs: dict) -> bool:
    """Whether ``c``'s video holds the bytes whose sha256 the other entry's clip recorded."""
    want = attrs.get("source_sha256")
    if not want or not c.video:
        return False
    try:
        return file_sha256(c.video) == want
    except OSError:
        return False


def finish_run(run: RunStart, opts: ExtractOptions, extra: dict) -> ExtractReport:
    """Write the run record (plus ``extra`` fields) and finalize the entry if it is complete."""
    report = run.report
    run.writer.record_run({
        "host": HOST, "pid": os.getpid(), "started": run.t0, "seconds": round(time.time() - run.t0, 2),
        "shard": list(opts.shard), "device": opts.device,
        "done": len(report.done_now), "failed": len(report.failed_now),
        "done_clip_ids": report.done_now,
        **({"reused": len(report.reused_now), "reused_from": report.reused_from} if report.reused_now else {}),
        "decoded_clips": report.counters.decoded_clips, "pose_calls": report.counters.pose_calls,
        **extra,
    })
    report.complete = run.writer.finalize_if_complete()
    report.seconds = time.time() - run.t0
    return report
