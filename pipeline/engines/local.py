"""``pipeline extract``'s local engine: this process, or ``--workers`` processes on this machine.

Planning, the per-clip loop and the run record are stage one's (:mod:`stages.extract.plan`,
:mod:`stages.extract.run`); this module only starts worker processes and collects what they did
(a worker's failure fails the run: :class:`WorkerFailed`). Workers share the work through the
entry's per-clip claims.
"""
from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import sys
import threading
import traceback
import warnings
from typing import Callable, Optional

from cache.fsutil import CacheFault
from stages.devices import threads_per_worker
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
    with contextlib.closing(run):
        if run.finished:
            return run.report
        report, todo = run.report, run.todo
        workers = max(1, min(opts.workers, len(todo) or 1))
        if workers == 1:
            report.done_now, report.failed_now, report.notes_now = extract_clips(run.plan, opts, todo, progress,
                                                                                 report.counters)
        else:
            _run_workers(run.plan, opts, todo, workers, progress, report)
        return finish_run(run, opts, {"engine": "local", "workers": workers})


class WorkerFailed(RuntimeError):
    """An extraction worker process failed (its error, or how it died, is the message; with
    ``--verbose`` its traceback is the ``__cause__``)."""


class _RemoteTraceback(Exception):
    def __str__(self) -> str:
        return self.args[0]


def _worker_main(p: EntryPlan, opts: ExtractOptions, clips: list, conn, threads: int):
    import torch

    from pipeline.logs import quiet_third_party_warnings

    torch.set_num_threads(threads)
    quiet_third_party_warnings()
    lock = threading.RLock()  # clips are committed (and reported) by a thread beside the main one

    def send(msg) -> None:
        with lock:
            conn.send(msg)

    # Warnings go to the parent, which shows each once per run however many workers say it
    # (pipeline.logs), and which already filtered them by the same rules.
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: send(
        ("warning", (str(message), category, filename, lineno), None))
    counters = ClipCounters()

    def progress(event, clip_id, reason):
        send((event, clip_id, reason))

    code = 0
    try:
        extract_clips(p, opts, clips, progress, counters)
    except KeyboardInterrupt:
        code = 130  # Ctrl-C reached the whole process group: the parent says so
    except BaseException as e:  # sent to the parent, which prints it once (not a traceback per worker)
        send(("error", f"{type(e).__name__}: {e}" if not isinstance(e, CacheFault) else str(e),
              traceback.format_exc()))
        code = 1
    finally:
        send(("counters", counters_tuple(counters), None))
        conn.close()
    sys.exit(code)


def worker_options(opts: ExtractOptions, workers: int) -> list[ExtractOptions]:
    """Each worker's options: ``--device cuda`` spreads the workers over the visible GPUs."""
    return [dataclasses.replace(opts, device=worker_device(opts.device, w)) for w in range(workers)]


def _run_workers(p: EntryPlan, opts: ExtractOptions, todo: list, workers: int,
                 progress: Optional[ProgressFn], report: ExtractReport) -> None:
    """Run ``workers`` processes over ``todo``; raise :class:`WorkerFailed` if any of them failed.

    Each worker reports through its own pipe (no multiprocessing queue: its named semaphores
    would outlive a killed run in /dev/shm); the end of a pipe is also how a worker's death shows."""
    ctx = mp.get_context("spawn")  # fork is unsafe with CUDA and with torch's thread pools
    threads = threads_per_worker(workers)
    # Each worker starts at a different place in the list, so claims rarely collide.
    procs, conns = [], {}
    for w, wopts in enumerate(worker_options(opts, workers)):
        start = w * len(todo) // workers
        order = todo[start:] + todo[:start]
        recv, send = ctx.Pipe(duplex=False)
        pr = ctx.Process(target=_worker_main, args=(p, wopts, order, send, threads), daemon=False)
        pr.start()
        send.close()  # the worker holds the only writing end: its exit ends the pipe
        procs.append(pr)
        conns[recv] = w
    errors: dict[int, tuple[str, str]] = {}
    try:
        while conns:
            for conn in mp_connection.wait(list(conns), timeout=1.0):
                try:
                    event, a, b = conn.recv()
                except (EOFError, OSError):
                    conns.pop(conn)
                    conn.close()
                    continue
                if event == "counters":
                    report.add_counters(a)
                elif event == "warning":
                    warnings.warn_explicit(*a)  # (message, category, filename, lineno), shown by this process
                elif event == "error":
                    errors[conns[conn]] = (a, b)
                else:
                    report.record(event, a, b, progress)
    finally:
        for pr in procs:
            pr.join(timeout=30)
            if pr.is_alive():
                pr.terminate()
                pr.join(timeout=5)
    _raise_worker_failures(procs, errors)


def _raise_worker_failures(procs: list, errors: dict[int, tuple[str, str]]) -> None:
    """One error for what went wrong in the workers: each distinct message once."""
    failed: dict[str, list[int]] = {}
    trace = None
    for w, pr in enumerate(procs):
        code = pr.exitcode
        if w in errors:
            msg, trace = errors[w][0], trace or errors[w][1]
        elif code == 130:
            raise KeyboardInterrupt
        elif code is None or code != 0:
            msg = (f"killed by signal {-code}" + (" (SIGKILL: out of memory?)" if -code == 9 else "")
                   if code is not None and code < 0 else f"exited with status {code}")
        else:
            continue
        failed.setdefault(msg, []).append(w)
    if not failed:
        return
    n = sum(len(ws) for ws in failed.values())
    lines = [f"{len(ws)} worker{'s' if len(ws) > 1 else ''} ({', '.join(map(str, ws))}): {msg}" if n > 1 else msg
             for msg, ws in failed.items()]
    head = f"{n} of {len(procs)} extraction workers failed" if n > 1 else "an extraction worker failed"
    text = f"{head}: " + ("\n  ".join([""] + lines) if n > 1 else lines[0])
    text += "\nClips committed before the failure are kept; rerun the same command to continue."
    raise WorkerFailed(text) from (_RemoteTraceback(trace) if trace else None)
