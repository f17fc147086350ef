"""One training run per variant folder at a time, and one writer of an experiment's results table.

Two ``pipeline train`` runs writing the same ``W/EXP/VARIANT/`` (a second launch by mistake, a
sweep started twice) would each set the other's checkpoints aside, save ``epoch_N.pth`` under the
same names, delete each other's files when keeping the newest and leave one run's result under the
other's name. The run holds an advisory lock (``flock``) on ``.train.lock`` in the folder while it
trains the variant; the kernel drops it when the process and the workers it forked end, however
they end, so a killed run leaves no stale lock. The lock file records who holds it, for the second run's message.

The experiment's ``results.{md,json}`` are rewritten whole by every run from the results on disk:
two runs finishing variants at once take ``NAME/.results.lock`` in turn (:func:`hold_results_table`),
so neither writes a table that lacks the other's row.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

LOCK_FILE = ".train.lock"
#: a filesystem's answers for "no locks here" (some FUSE mounts): the block runs unlocked
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class WorkDirBusyError(RuntimeError):
    """Another process is training into the same variant folder."""


@contextlib.contextmanager
def hold_variant_dir(vdir: Path) -> Iterator[None]:
    """Hold ``vdir``'s lock for the block, or raise :class:`WorkDirBusyError` naming its holder. On a
    filesystem without locks (some FUSE mounts) the block runs unlocked, with a warning."""
    vdir.mkdir(parents=True, exist_ok=True)
    path = vdir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "a process that did not say"
            raise WorkDirBusyError(
                f"{vdir} is being trained by another `pipeline train` ({holder}); two runs in one folder would "
                "delete each other's checkpoints. Wait for it, or give this run another --work-dir") from None
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise
            log.warning("%s: its filesystem takes no locks (%s): nothing stops a second run training into it",
                        vdir, e.strerror)
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        try:  # (unlocked, not only closed: a forked loader worker holding the descriptor would keep it)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(fd)


RESULTS_LOCK_FILE = ".results.lock"


@contextlib.contextmanager
def hold_results_table(exp_dir: Path) -> Iterator[None]:
    """Hold the experiment folder's table lock for the block, waiting for another run's: two runs
    that finish variants of one experiment at the same moment each read the results on disk and
    write ``results.{md,json}`` in turn, so neither table lacks the other's row. Unlocked where
    the filesystem takes no locks (the table is rewritten whole by every run)."""
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(exp_dir / RESULTS_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o664)
    except OSError as e:  # (a read-only or full folder: the table's writer says it could not write)
        log.warning("%s: no table lock (%s): the results table is written unlocked", exp_dir, e.strerror or e)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise
        yield
    finally:
        os.close(fd)  # (the lock goes with the descriptor; the table writer forks nothing)
