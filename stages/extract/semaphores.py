"""Named semaphores a killed extraction leaves in ``/dev/shm``, and their removal by the next run.

Under the spawn start method every multiprocessing queue holds three POSIX named semaphores
(``/dev/shm/sem.<name>`` on Linux). Their creator unlinks them when it exits, and multiprocessing's
resource tracker does when the creator alone is killed; a SIGKILL of the whole process group (a
scheduler cancelling the job, the OOM killer of a cgroup, ``kill -9 -PGID``) takes the tracker too
and leaves them there until the machine reboots. ``pipeline extract``'s local workers report
through pipes (no semaphores); the decode pool's queues do use them, so every process that makes
one first names its semaphores ``pevl-<pid>-...`` (:func:`tag_semaphores`), and every run starts
by removing those whose creator is gone (:func:`remove_orphaned_semaphores`).
"""
from __future__ import annotations

import multiprocessing as mp
import os

from cache.claims import pid_alive, process_start_time

PREFIX = "pevl"
SHM_DIR = "/dev/shm"
_SEM_FILE = f"sem.{PREFIX}-"


def tag_semaphores() -> None:
    """Name the semaphores this process creates from now on ``/pevl-<pid>-<random>``.

    multiprocessing takes the prefix from the current process' configuration (``semprefix``,
    ``/mp`` by default); children inherit it, so each creator sets its own before making queues."""
    mp.current_process()._config["semprefix"] = f"/{PREFIX}-{os.getpid()}"


def semaphore_creator(file_name: str) -> int | None:
    """The pid in a ``sem.pevl-<pid>-...`` file name, else None."""
    if not file_name.startswith(_SEM_FILE):
        return None
    head = file_name[len(_SEM_FILE):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def orphaned_semaphores(shm_dir: str = SHM_DIR) -> list[str]:
    """Paths of our semaphores whose creator is gone (dead, or its pid now another process')."""
    try:
        names = os.listdir(shm_dir)
    except OSError:  # no /dev/shm (macOS keeps named semaphores elsewhere): nothing to do
        return []
    out = []
    for name in names:
        pid = semaphore_creator(name)
        if pid is None:
            continue
        path = os.path.join(shm_dir, name)
        if pid_alive(pid):
            started = process_start_time(pid)
            try:
                if started is None or started <= os.stat(path).st_mtime + 1:
                    continue  # its creator still runs
            except FileNotFoundError:
                continue
        out.append(path)
    return out


def remove_orphaned_semaphores(shm_dir: str = SHM_DIR) -> int:
    """Unlink our semaphores whose creator is gone; returns how many (others' files: left alone)."""
    n = 0
    for path in orphaned_semaphores(shm_dir):
        try:
            os.unlink(path)
            n += 1
        except OSError:  # gone meanwhile, or another user's
            pass
    return n
