"""``pipeline extract --engine dask``: the same extraction, its clips spread over a Dask cluster.

The client plans once (:func:`stages.extract.run.begin_run`: parse, hash, create the entry),
splits the clips still to do into chunks and submits one task per chunk. Each task runs the
ordinary per-clip loop (:func:`stages.extract.run.extract_clips`) on a worker: claim a clip,
decode, pose, commit. The claims in the shared entry remain the only coordination, so a Dask run
can share an entry with plain ``pipeline extract`` processes, ``--shard`` jobs, or another Dask
run, and a task that Dask retries after a lost worker skips what was committed meanwhile. The
client then writes the run record and finalizes exactly as the local engine does.

Workers must see the dataset and the cache at the same paths as the client (a shared
filesystem) and have this package installed. Dask is an optional extra: ``pip install -e .[dask]``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from typing import Callable, Optional

from cache.claims import HOST
from cache.entry import CacheEntry
from cache.layout import clip_uid
from stages.devices import threads_per_worker
from stages.extract.clip import ClipCounters
from stages.extract.plan import EntryPlan, ExtractOptions, make_pose_source, worker_device
from stages.extract.run import ExtractReport, ProgressFn, begin_run, counters_tuple, extract_clips, finish_run

DASK_EXTRA_HINT = ("--engine dask needs Dask distributed, an optional extra of this package: "
                   "pip install -e .[dask]   (or: pip install 'dask[distributed]')")
MAX_AUTO_CHUNK = 32  # clips per task when chunk=0 (auto)


class DaskMissing(ImportError):
    pass


def _import_distributed():
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as e:
        raise DaskMissing(f"{DASK_EXTRA_HINT} ({e})") from e
    return Client, LocalCluster, as_completed


def parse_scheduler(scheduler: Optional[str], default_workers: int = 1) -> tuple[str, object]:
    """``None``/``local``/``local:N`` -> ("local", N); ``tcp://host:8786`` (any address) -> ("address", it)."""
    if scheduler is None or scheduler == "local":
        return "local", max(1, default_workers)
    if scheduler.startswith("local:"):
        try:
            n = int(scheduler.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--scheduler {scheduler}: want local:N with N >= 1 worker processes")
        return "local", n
    return "address", scheduler


def _chunks(todo: list, chunk: int, n_workers: int) -> list[list]:
    if chunk <= 0:  # auto: about 4 tasks per worker (balance), at most MAX_AUTO_CHUNK clips (retry cost)
        chunk = max(1, min(MAX_AUTO_CHUNK, -(-len(todo) // (4 * max(1, n_workers)))))
    return [todo[i:i + chunk] for i in range(0, len(todo), chunk)]


_WORKER_POSE: dict = {}  # entry key -> pose source, per worker process: one model for all its tasks


def _worker_pose(p: EntryPlan, opts: ExtractOptions):
    src = _WORKER_POSE.get(p.key)
    if src is None:
        src = _WORKER_POSE[p.key] = make_pose_source(p.pose_spec, opts, p.adapter)
    return src


def _extract_chunk(p: EntryPlan, opts: ExtractOptions, clips: list, torch_threads: Optional[int]) -> dict:
    """One Dask task: the ordinary per-clip loop over ``clips`` (claims make it safe to repeat)."""
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    try:
        from distributed import get_worker

        me = get_worker()
        worker, name = me.address, me.name
    except Exception:  # pragma: no cover  (run outside a worker)
        worker, name = None, None
    # A LocalCluster numbers its workers 0..N-1: with --device cuda they go round the visible GPUs.
    opts = dataclasses.replace(opts, device=worker_device(opts.device, name if isinstance(name, int) else 0))
    counters = ClipCounters()
    t0 = time.time()
    done, failed, noted = extract_clips(p, opts, clips, None, counters, pose=_worker_pose(p, opts))
    return {"done": done, "failed": failed, "noted": noted, "host": HOST, "pid": os.getpid(), "worker": worker,
            "seconds": round(time.time() - t0, 2),
            "counters": counters_tuple(counters)}


def run_extract_dask(opts: ExtractOptions, scheduler: Optional[str] = None, chunk: int = 0,
                     progress: Optional[ProgressFn] = None,
                     on_start: Optional[Callable[[EntryPlan, int, int], None]] = None,
                     load_progress: Optional[Callable[[int, int], None]] = None) -> ExtractReport:
    """Extract what is missing from the entry with a Dask cluster; same report as ``run_extract``.

    ``scheduler``: None or ``local[:N]`` starts a LocalCluster of N single-threaded worker
    processes on this machine (N defaults to ``opts.workers``); anything else is the address of
    a running scheduler (``tcp://host:8786``). ``chunk``: clips per task (0: automatic).
    ``progress`` is called on the client as each task's clips come back (per chunk, not live).
    """
    Client, LocalCluster, as_completed = _import_distributed()
    kind, target = parse_scheduler(scheduler, opts.workers)
    run = begin_run(opts, on_start, load_progress)
    with contextlib.closing(run):
        if run.finished:  # no cluster, no decoding, no pose model
            return run.report
        p, report, todo, t0 = run.plan, run.report, run.todo, run.t0
        # The in-process scheduler and nannies of a LocalCluster log every start/stop at INFO: keep
        # them at the caller's level unless that is more verbose than WARNING.
        dlog = logging.getLogger("distributed")
        dlog_level = dlog.level
        if logging.getLogger().getEffectiveLevel() > logging.INFO:
            dlog.setLevel(logging.WARNING)
        try:
            tasks, n_workers = _run_tasks(p, opts, todo, kind, target, chunk, t0, report, progress,
                                          Client, LocalCluster, as_completed)
        finally:
            dlog.setLevel(dlog_level)
        finish_run(run, opts, {
            "engine": "dask", "scheduler": scheduler or f"local:{target}", "workers": n_workers,
            "chunk": chunk, "tasks": tasks})
    # what the workers say they committed is checked where this command reads the cache: workers that
    # see another filesystem at the cache's path (a node-local disk) "succeed" into a cache nobody reads
    here = CacheEntry(p.entry_dir).done_uids()
    unseen = [cid for cid in report.done_now if clip_uid(cid) not in here]
    if unseen:
        raise RuntimeError(
            f"the Dask workers report {len(unseen)} clip(s) extracted that are not in {p.entry_dir} as this "
            f"machine sees it (e.g. {unseen[0]}): the workers write to another filesystem at that path. Give "
            "--cache-root a path every worker and this machine share (a network filesystem), and rerun")
    errors = [t["error"] for t in tasks if "error" in t]
    if errors:
        kept = sum(clip_uid(c.clip_id) in here for c in todo)  # also those of tasks that failed part-way
        raise RuntimeError(f"{len(errors)} of {len(tasks)} Dask task(s) failed (first: {errors[0]}); {kept} of "
                           f"the {len(todo)} clips to do are in the entry and are kept; rerun to do the rest")
    return report


def _run_tasks(p: EntryPlan, opts: ExtractOptions, todo: list, kind: str, target, chunk: int, t0: float,
               report: ExtractReport, progress: Optional[ProgressFn], Client, LocalCluster,
               as_completed) -> tuple[list[dict], int]:
    tasks: list[dict] = []
    n_workers = 0
    if todo:
        cluster = None
        if kind == "local":
            cluster = LocalCluster(n_workers=int(target), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
            torch_threads = threads_per_worker(int(target))
        else:
            client = Client(str(target))
            torch_threads = None  # a real cluster's workers keep their own settings
        try:
            n_workers = max(1, len(client.nthreads()))
            chunks = _chunks(todo, chunk, n_workers)
            # The plan (every clip of the dataset) travels once to each worker, not once per task.
            [p_remote] = client.scatter([p], broadcast=True, hash=False)
            futures = [client.submit(_extract_chunk, p_remote, opts, ch, torch_threads, pure=False,
                                     key=f"pevl-extract-{p.key[:12]}-{i}-{os.getpid()}-{int(t0)}")
                       for i, ch in enumerate(chunks)]
            for fut in as_completed(futures):
                try:
                    res = fut.result()
                except Exception as e:  # the task itself (not a clip) failed, e.g. KilledWorker
                    tasks.append({"error": f"{type(e).__name__}: {e}"})
                    continue
                _collect(report, res, progress)
                tasks.append({k: res[k] for k in ("worker", "host", "pid", "seconds")}
                             | {"done": len(res["done"]), "failed": len(res["failed"])})
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return tasks, n_workers


def _collect(report: ExtractReport, res: dict, progress: Optional[ProgressFn]) -> None:
    report.add_counters(res["counters"])
    for cid in res["done"]:
        report.record("done", cid, res.get("noted", {}).get(cid), progress)
    for cid, reason in res["failed"]:
        report.record("failed", cid, reason, progress)
