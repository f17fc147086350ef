"""``pipeline extract``'s local engine: this process, or ``--workers`` processes on this machine.

Planning, the per-clip loop and the run record are stage one's (:mod:`stages.extract.plan`,
:mod:`stages.extract.run`); this module only starts worker processes and collects what they did.
Workers share the work through the entry's per-clip claims.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import warnings
from typing import Callable, Optional

from stages.extract.clip import ClipCounters
from stages.extract.plan import EntryPlan, ExtractOptions, worker_device
from stages.extract.run import (ExtractReport, ProgressFn, begin_run, counters_tuple, extract_clips,
                                finish_run)


def run_extract(opts: ExtractOptions, progress: Optional[ProgressFn] = None,
                on_start: Optional[Callable[[EntryPlan, int, int], None]] = None,
                load_progress: Optional[Callable[[int, int], None]] = None) -> ExtractReport:
    """Extract what is missing from the entry. ``on_start(plan, todo, already)`` before work;
    ``load_progress(done, total)`` while the dataset prepares (the demo generates its videos)."""
    run = begin_run(opts, on_start, load_progress)
    if run.finished:
        return run.report
    report, todo = run.report, run.todo
    workers = max(1, min(opts.workers, len(todo) or 1))
    if workers == 1:
        done, failed = extract_clips(run.plan, opts, todo, progress, report.counters)
        report.done_now, report.failed_now = done, failed
    else:
        _run_workers(run.plan, opts, todo, workers, progress, report)
    return finish_run(run, opts, {"engine": "local", "workers": workers})


def _worker_main(p: EntryPlan, opts: ExtractOptions, clips: list, queue, threads: int):
    import torch

    from pipeline.logs import quiet_third_party_warnings

    torch.set_num_threads(threads)
    quiet_third_party_warnings()
    # Warnings go to the parent, which shows each once per run however many workers say it
    # (pipeline.logs), and which already filtered them by the same rules.
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: queue.put(
        ("warning", (str(message), category, filename, lineno), None))
    counters = ClipCounters()

    def progress(event, clip_id, reason):
        queue.put((event, clip_id, reason))

    try:
        extract_clips(p, opts, clips, progress, counters)
    finally:
        queue.put(("counters", counters_tuple(counters), None))
        queue.put(("exit", None, None))


def worker_options(opts: ExtractOptions, workers: int) -> list[ExtractOptions]:
    """Each worker's options: ``--device cuda`` spreads the workers over the visible GPUs."""
    return [dataclasses.replace(opts, device=worker_device(opts.device, w)) for w in range(workers)]


def _run_workers(p: EntryPlan, opts: ExtractOptions, todo: list, workers: int,
                 progress: Optional[ProgressFn], report: ExtractReport) -> None:
    ctx = mp.get_context("spawn")  # fork is unsafe with CUDA and with torch's thread pools
    queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Each worker starts at a different place in the list, so claims rarely collide.
    procs = []
    for w, wopts in enumerate(worker_options(opts, workers)):
        start = w * len(todo) // workers
        order = todo[start:] + todo[:start]
        pr = ctx.Process(target=_worker_main, args=(p, wopts, order, queue, threads), daemon=False)
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
                report.add_counters(a)
            elif event == "warning":
                warnings.warn_explicit(*a)  # (message, category, filename, lineno), shown by this process
            else:
                report.record(event, a, b, progress)
    finally:
        for pr in procs:
            pr.join(timeout=30)
            if pr.is_alive():
                pr.terminate()
