"""Claims: at most one writer works on a clip; a dead writer's claim can be taken over.

A claim is a small file created with ``O_CREAT | O_EXCL`` (atomic on local filesystems and on
NFSv3+), holding the owner's host, pid and start time. Its owner touches it periodically
(``Heartbeat``). A claim is stale when its owner is on this host and no longer alive, or when it
has not been touched for ``ttl`` seconds (an owner on another host that died). Taking over a
stale claim goes through an atomic rename, so two contenders cannot both win.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional

HOST = socket.gethostname()
DEFAULT_TTL = 600.0  # seconds without a heartbeat before another host may take a claim over


def owner_record() -> dict:
    return {"host": HOST, "pid": os.getpid(), "time": time.time()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_owner(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_stale(path: Path, ttl: float = DEFAULT_TTL, now: Optional[float] = None) -> bool:
    """Whether the claim (or staging dir) at ``path`` belongs to a writer that is gone."""
    owner = read_owner(path) if path.is_file() else None
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if owner and owner.get("host") == HOST:
        return not pid_alive(int(owner.get("pid", -1)))
    return age > ttl


def try_claim(path: Path, ttl: float = DEFAULT_TTL) -> bool:
    """Create the claim file; take it over if stale. True when this process now owns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(owner_record()).encode()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o664)
        except FileExistsError:
            if not is_stale(path, ttl):
                return False
            # Rename first: only one contender's rename of this exact file succeeds.
            tomb = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(path, tomb)
            except FileNotFoundError:
                continue
            tomb.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    return False


def release(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class Heartbeat:
    """Touches the claims this process holds every ``interval`` seconds, in a daemon thread."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self._held: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, path: Path) -> None:
        with self._lock:
            self._held.add(path)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="claim-heartbeat", daemon=True)
            self._thread.start()

    def discard(self, path: Path) -> None:
        with self._lock:
            self._held.discard(path)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self._held)
            for p in held:
                try:
                    os.utime(p)
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        raise

    def stop(self) -> None:
        self._stop.set()


def stale_paths(paths: Iterable[Path], ttl: float = DEFAULT_TTL) -> list[Path]:
    return [p for p in paths if is_stale(p, ttl)]
