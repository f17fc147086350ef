"""Stage one's work: claim, extract and commit clips of a planned entry; the start and end of a run.

:func:`begin_run` plans, opens the entry and lists the clips still to do; :func:`extract_clips`
is the per-clip loop every engine runs (in this process, in worker processes, in Dask tasks);
:func:`finish_run` writes the run record and finalizes a complete entry. The claims in the
shared entry are the only coordination, so engines and hosts may fill one entry together.
"""
from __future__ import annotations

import dataclasses
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional

from cache import EntryWriter
from cache.claims import HOST
from cache.entry import CacheEntry
from cache.layout import clip_uid
from stages.extract.clip import ClipCounters, ClipError, extract_clip
from stages.extract.plan import EntryPlan, ExtractOptions, make_pose_source, open_or_create, plan_entry
from stages.extract.pose import PoseSource

ProgressFn = Callable[[str, str, Optional[str]], None]  # (event, clip_id, reason)


@dataclass
class ExtractReport:
    """What a run did (filled by whichever engine ran it)."""

    entry: CacheEntry
    done_now: list[str] = field(default_factory=list)
    failed_now: list[tuple[str, str]] = field(default_factory=list)
    already: int = 0
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


def my_clips(p: EntryPlan, shard: tuple[int, int]) -> list:
    """The clips of shard ``(k, n)``: every n-th clip of the plan starting at k."""
    k, n = shard
    return [c for i, c in enumerate(p.index.clips) if i % n == k]


def extract_clips(p: EntryPlan, opts: ExtractOptions, clips: list, progress: Optional[ProgressFn],
                  counters: ClipCounters, pose: Optional[PoseSource] = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Claim, extract and commit each clip of ``clips`` that nobody else has done or is doing.

    ``pose``: a pose source the caller keeps alive across calls (a Dask worker reuses one);
    by default one is built on the first clip that needs it and closed at the end.
    """
    entry = CacheEntry(p.entry_dir)
    writer = EntryWriter(entry)
    owns_pose = pose is None
    done, failed = [], []
    try:
        for c in clips:
            uid = clip_uid(c.clip_id)
            if not writer.claim(uid):
                continue
            try:
                if c.clip_id in p.no_pose:  # known at planning time: nothing to decode
                    raise ClipError(f"no poses for this clip in --pose-source {p.pose_spec} (--missing-poses fail)")
                if pose is None:
                    pose = make_pose_source(p.pose_spec, opts, p.adapter)
                res = extract_clip(c, p.adapter, pose, p.settings, counters)
            except ClipError as e:
                writer.fail(uid, c.clip_id, str(e))
                failed.append((c.clip_id, str(e)))
                if progress:
                    progress("failed", c.clip_id, str(e))
                continue
            except BaseException as e:
                if isinstance(e, Exception):
                    reason = f"internal error: {type(e).__name__}: {e}"
                    writer.fail(uid, c.clip_id, reason, detail=traceback.format_exc())
                    failed.append((c.clip_id, reason))
                    if progress:
                        progress("failed", c.clip_id, reason)
                    continue
                writer.release(uid)  # KeyboardInterrupt: give the clip back, lose nothing else
                raise
            writer.commit(uid, res.arrays, {**res.attrs, "video": _rel(c.video, p.index.root)})
            done.append(c.clip_id)
            if progress:
                progress("done", c.clip_id, None)
    finally:
        writer.heartbeat.stop()
        if owns_pose and pose is not None:
            pose.close()
    return done, failed


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

    @property
    def finished(self) -> bool:
        return self.report.complete


def begin_run(opts: ExtractOptions, on_start: Optional[Callable[[EntryPlan, int, int], None]] = None,
              load_progress: Optional[Callable[[int, int], None]] = None) -> RunStart:
    """Plan, open (or create) the entry, and list this shard's clips still to do.
    ``on_start(plan, todo, already)`` is called before any work."""
    t0 = time.time()
    p = plan_entry(opts, load_progress=load_progress)
    entry = open_or_create(p)
    writer = EntryWriter(entry)
    report = ExtractReport(entry=entry)
    if opts.retry_failed:
        writer.retry_failures()
    # A complete entry is final: no decoding, no pose model, nothing but this check.
    if (entry.path / "index").is_dir() and not opts.retry_failed:
        report.already = len(entry.plan)
        report.complete = True
        if on_start:
            on_start(p, 0, report.already)
        return RunStart(p, writer, report, [], t0)
    mine = my_clips(p, opts.shard)
    done_or_failed = entry.done_uids() | set(entry.failures())
    todo = [c for c in mine if clip_uid(c.clip_id) not in done_or_failed]
    report.already = len(mine) - len(todo)
    if opts.limit is not None:
        todo = todo[: opts.limit]
    if on_start:
        on_start(p, len(todo), report.already)
    return RunStart(p, writer, report, todo, t0)


def finish_run(run: RunStart, opts: ExtractOptions, extra: dict) -> ExtractReport:
    """Write the run record (plus ``extra`` fields) and finalize the entry if it is complete."""
    report = run.report
    run.writer.record_run({
        "host": HOST, "pid": os.getpid(), "started": run.t0, "seconds": round(time.time() - run.t0, 2),
        "shard": list(opts.shard), "device": opts.device,
        "done": len(report.done_now), "failed": len(report.failed_now),
        "done_clip_ids": report.done_now,
        "decoded_clips": report.counters.decoded_clips, "pose_calls": report.counters.pose_calls,
        **extra,
    })
    report.complete = run.writer.finalize_if_complete()
    report.seconds = time.time() - run.t0
    return report
