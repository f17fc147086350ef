"""``pipeline extract``: fill (or finish) the cache entry of one dataset x stage-one setting.

Planning is cheap and deterministic (parse annotations, stat files, hash): every process, on
any host, computes the same key and clip plan. Work is shared through per-clip claims, so any
number of processes (``--workers``, ``--shard K/N``, other hosts) can fill one entry together.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from cache import CacheStore, EntryWriter, entry_key, file_identity
from cache.claims import HOST
from cache.entry import CacheEntry
from cache.layout import FORMAT_VERSION, clip_uid
from cache.provenance import git_revision, package_versions, who_when
from cache.writer import create_entry
from pipeline.paths import default_cache_root, default_data_root
from stages.datasets.base import DATASETS, DatasetAdapter, DatasetIndex, check_labels, create_dataset
from stages.extract.clip import ClipCounters, ClipError, ExtractSettings, extract_clip
from stages.extract.pose_source import PoseSource, create_pose_source

log = logging.getLogger(__name__)


@dataclass
class ExtractOptions:
    dataset: str
    root: Optional[str] = None
    cache_root: Optional[str] = None
    pose_source: Optional[str] = None  # None: the dataset's default
    pose_checkpoint: Optional[str] = None
    device: str = "cpu"
    workers: int = 1
    limit: Optional[int] = None
    shard: tuple[int, int] = (0, 1)
    retry_failed: bool = False
    pose_batch_size: int = 32
    pose_flip_test: bool = True
    settings: dict = field(default_factory=dict)  # overrides of ExtractSettings fields
    dataset_options: dict = field(default_factory=dict)
    # Person boxes for HRNet when the dataset has none (stages/extract/person_boxes.py): an mmdet
    # config (path, name under mmdet's .mim/configs, or alias) and its local checkpoint; None: whole frame.
    person_detector: Optional[str] = None
    detector_checkpoint: Optional[str] = None


@dataclass
class EntryPlan:
    adapter: DatasetAdapter
    index: DatasetIndex
    settings: ExtractSettings
    pose_spec: str
    pose_identity: dict
    key: str
    settings_hash: str
    sources_hash: str
    entry_dir: Path
    plan: list[dict]
    root_attrs: dict
    manifest: dict


@dataclass
class ExtractReport:
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


def parse_shard(text: Optional[str]) -> tuple[int, int]:
    """``"K/N"`` with 0 <= K < N (e.g. ``$SLURM_ARRAY_TASK_ID/N`` for ``--array=0-(N-1)``)."""
    if not text:
        return (0, 1)
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard wants K/N, got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard {text}: need 0 <= K < N")
    return k, n


# Adapter options that say where or how, not what: they never enter the entry key.
NON_KEY_OPTIONS = ("progress", "data_root", "workers")


def build_adapter(opts: ExtractOptions) -> DatasetAdapter:
    import stages.datasets  # noqa: F401  (registers the built-in adapters)

    options = dict(opts.dataset_options)
    if opts.root is None and opts.dataset in DATASETS and not DATASETS.get(opts.dataset).needs_root:
        # generated datasets (the demo) live beside the cache they feed
        options.setdefault("data_root", str(default_data_root(opts.cache_root)))
    return create_dataset(opts.dataset, root=opts.root, **options)


def resolve_settings(adapter: DatasetAdapter, overrides: dict) -> tuple[ExtractSettings, Optional[str]]:
    base = {k: v for k, v in dict(adapter.extract_defaults).items() if k != "pose_source"}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return ExtractSettings(**base), adapter.extract_defaults.get("pose_source")


def make_pose_source(spec: str, opts: ExtractOptions, adapter: DatasetAdapter) -> PoseSource:
    name = spec.partition(":")[0]
    if name == "hrnet":
        from stages.extract.person_boxes import with_person_boxes

        hrnet = create_pose_source(spec, checkpoint=opts.pose_checkpoint, device=opts.device,
                                   batch_size=opts.pose_batch_size, flip_test=opts.pose_flip_test)
        # dataset boxes -> optional mmdet detector -> whole frame; a detector joins the identity (key)
        return with_person_boxes(hrnet, detector=opts.person_detector, checkpoint=opts.detector_checkpoint,
                                 device=opts.device)
    if opts.person_detector:
        raise ValueError(f"--person-detector only applies to --pose-source hrnet (got {spec!r})")
    if name == "dataset":
        return create_pose_source(spec, dataset=adapter)
    return create_pose_source(spec)


def plan_entry(opts: ExtractOptions, adapter: Optional[DatasetAdapter] = None,
               index: Optional[DatasetIndex] = None) -> EntryPlan:
    """Parse the dataset and compute the entry key and plan. Decodes nothing."""
    adapter = adapter or build_adapter(opts)
    index = index or adapter.load()
    check_labels(index)
    settings, default_pose = resolve_settings(adapter, opts.settings)
    pose_spec = opts.pose_source or default_pose or "hrnet"
    pose = make_pose_source(pose_spec, opts, adapter)
    pose_identity = pose.identity()
    if pose.skeleton != index.skeleton and pose_spec.partition(":")[0] == "dataset":
        raise ValueError(f"pose source skeleton {pose.skeleton} != dataset skeleton {index.skeleton}")
    root = index.root
    plan, sources = [], []
    seen: set[str] = set()
    for c in index.clips:
        uid = clip_uid(c.clip_id)
        if uid in seen:
            raise ValueError(f"clip id {c.clip_id!r} appears twice in {index.name}")
        seen.add(uid)
        video_rel = os.path.relpath(c.video, root) if (c.video and root) else c.video
        plan.append({"clip_id": c.clip_id, "uid": uid, "split": c.split, "label": c.label,
                     "video": video_rel, "cut": c.cut()})
        src = {"clip": c.clip_id, "video": file_identity(c.video, root), "cut": c.cut(), "label": c.label,
               "split": c.split}
        pose_file = c.extra.get("pose_file") if c.extra else None
        if pose_file:
            src["pose_file"] = file_identity(pose_file, root)
        sources.append(src)
    sources.append({"annotations": [file_identity(p, root) for p in index.source_files],
                    "classes": index.classes, "coarse_type": index.coarse_type})
    key_settings = {**settings.as_dict(), "pose": pose_identity, "skeleton": index.skeleton,
                    "dataset_options": {k: str(v) for k, v in sorted(adapter.options.items())
                                        if k not in NON_KEY_OPTIONS}}
    key, settings_hash, sources_hash = entry_key(index.name, key_settings, sources)
    store = CacheStore(opts.cache_root or default_cache_root())
    created = who_when()
    root_attrs = {
        "format": FORMAT_VERSION,
        "key": key,
        "settings_hash": settings_hash,
        "sources_hash": sources_hash,
        "dataset": index.name,
        "settings": {**settings.as_dict(), "pose_source": pose_spec},
        "pose": pose_identity,
        "skeleton": index.skeleton,
        "classes": index.classes,
        "coarse_type": index.coarse_type,
        "dataset_root": str(root) if root else None,
        "dataset_meta": index.meta,
        "created": created,
    }
    manifest = {
        "what": "PeVL stage-one cache entry (see cache/layout.py for the layout)",
        **{k: root_attrs[k] for k in ("format", "key", "settings_hash", "sources_hash", "dataset",
                                      "settings", "pose", "skeleton", "coarse_type", "dataset_root")},
        "num_classes": len(index.classes),
        "annotation_files": [file_identity(p, root) for p in index.source_files],
        "created": created,
        "code_revision": git_revision(),
        "versions": package_versions(),
        "status": "incomplete",
        "counts": {"total": len(plan)},
    }
    return EntryPlan(adapter, index, settings, pose_spec, pose_identity, key, settings_hash, sources_hash,
                     store.entry_dir(index.name, key), plan, root_attrs, manifest)


def open_or_create(p: EntryPlan) -> CacheEntry:
    return create_entry(p.entry_dir, p.root_attrs, p.plan, p.manifest)


def _my_clips(p: EntryPlan, shard: tuple[int, int]) -> list:
    k, n = shard
    return [c for i, c in enumerate(p.index.clips) if i % n == k]


ProgressFn = Callable[[str, str, Optional[str]], None]  # (event, clip_id, reason)


def _work_loop(p: EntryPlan, opts: ExtractOptions, clips: list, progress: Optional[ProgressFn],
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


def _worker_main(p: EntryPlan, opts: ExtractOptions, clips: list, queue, threads: int):
    import torch

    torch.set_num_threads(threads)
    counters = ClipCounters()

    def progress(event, clip_id, reason):
        queue.put((event, clip_id, reason))

    try:
        _work_loop(p, opts, clips, progress, counters)
    finally:
        queue.put(("counters", counters.decoded_clips, (counters.decoded_frames, counters.pose_calls)))
        queue.put(("exit", None, None))


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


def begin_run(opts: ExtractOptions, on_start: Optional[Callable[[EntryPlan, int, int], None]] = None) -> RunStart:
    t0 = time.time()
    p = plan_entry(opts)
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
    mine = _my_clips(p, opts.shard)
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


def run_extract(opts: ExtractOptions, progress: Optional[ProgressFn] = None,
                on_start: Optional[Callable[[EntryPlan, int, int], None]] = None) -> ExtractReport:
    """Extract what is missing from the entry. ``on_start(plan, todo, already)`` before work."""
    run = begin_run(opts, on_start)
    if run.finished:
        return run.report
    report, todo = run.report, run.todo
    workers = max(1, min(opts.workers, len(todo) or 1))
    if workers == 1:
        done, failed = _work_loop(run.plan, opts, todo, progress, report.counters)
        report.done_now, report.failed_now = done, failed
    else:
        _run_workers(run.plan, opts, todo, workers, progress, report)
    return finish_run(run, opts, {"engine": "local", "workers": workers})


def _run_workers(p: EntryPlan, opts: ExtractOptions, todo: list, workers: int,
                 progress: Optional[ProgressFn], report: ExtractReport) -> None:
    ctx = mp.get_context("spawn")  # fork is unsafe with CUDA and with torch's thread pools
    queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Each worker starts at a different place in the list, so claims rarely collide.
    procs = []
    for w in range(workers):
        start = w * len(todo) // workers
        order = todo[start:] + todo[:start]
        pr = ctx.Process(target=_worker_main, args=(p, opts, order, queue, threads), daemon=False)
        pr.start()
        procs.append(pr)
    alive = workers
    try:
        while alive:
            try:
                event, a, b = queue.get(timeout=1.0)
            except Exception:
                if not any(pr.is_alive() for pr in procs):
                    break
                continue
            if event == "exit":
                alive -= 1
            elif event == "counters":
                report.counters.decoded_clips += a
                report.counters.decoded_frames += b[0]
                report.counters.pose_calls += b[1]
            elif event == "done":
                report.done_now.append(a)
                if progress:
                    progress(event, a, b)
            elif event == "failed":
                report.failed_now.append((a, b))
                if progress:
                    progress(event, a, b)
    finally:
        for pr in procs:
            pr.join(timeout=30)
            if pr.is_alive():
                pr.terminate()
