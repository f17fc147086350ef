"""Which device a command runs on: the one check of a ``--device`` value, for every command; and
how many CPU threads each of a command's worker processes may take."""
from __future__ import annotations

import os
import re
from typing import Optional

_NAME = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def check_device(device: Optional[str], flag: str = "--device") -> None:
    """Refuse a ``device`` other than ``cpu``, ``cuda`` or ``cuda:N`` (a typo such as ``gpu`` ran
    on the CPU without a word), or a CUDA device torch cannot see. None, "" and "auto" pass: the
    command's default."""
    if device in (None, "", "auto"):
        return
    m = _NAME.match(str(device).strip())
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise ValueError(f"{flag} {device}: want cpu, cuda or cuda:N")
    if m.group(1) == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"{flag} {device}: torch sees no CUDA device (a CPU-only torch build, or "
                         "CUDA_VISIBLE_DEVICES hides the GPUs)")
    if m.group(2) is not None and int(m.group(2)) >= torch.cuda.device_count():
        raise ValueError(f"{flag} {device}: only {torch.cuda.device_count()} CUDA device(s) visible")


def resolve_device_name(device: Optional[str]) -> str:
    """The device a command uses: ``device`` checked (:func:`check_device`), or for None, "" and
    "auto" ``cuda`` when torch sees one, else ``cpu`` (torch itself takes no "auto")."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return str(device).strip()


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (what ``taskset``, SLURM's
    ``--cpus-per-task`` or a container's cpuset allow), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing this process' CPUs, never more than
    ``OMP_NUM_THREADS`` when it is set (a user's or a scheduler's limit: a worker given the node's 64
    cores' share on 1 allowed CPU ran 16 threads on it)."""
    threads = max(1, usable_cpus() // max(1, int(workers)))
    try:
        limit = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return threads
    return max(1, min(threads, limit)) if limit > 0 else threads
