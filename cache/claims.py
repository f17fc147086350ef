"""Claims: at most one writer works on a clip; a dead writer's claim can be taken over.

A claim is a small file (``claims/<uid>``) holding its owner's record: host, pid, the process'
start time, the host's boot id, when the claim was made and a random token. It is created whole:
the record goes to a unique temporary file that is then hard-linked to the claim's name (``link``
fails when the name exists; atomic on local filesystems and on NFS), so nobody sees a claim
half-written. Its owner touches it periodically (``Heartbeat``).

A claim is stale (its owner is gone) when

* it has not been touched for ``ttl`` seconds, whoever owns it, on any host;
* its owner is in this process space (the same host name, machine id and pid namespace: not a
  container or another machine that shares the host name, whose pids mean nothing here) and the
  process is gone: the pid is dead, the pid now belongs to a process that started after the claim
  was made (a reused pid: judged from ``/proc``), or the host rebooted since (its boot id changed);
* it is empty or unreadable (older code killed between create and write, a full disk) and older
  than ``EMPTY_GRACE_S``.

Taking a stale claim over: exactly one contender wins. A contender that judged the claim with
token ``T`` stale creates the marker ``<uid>.taken-<T>`` (a link of its own complete record, so
exclusive); only the marker's creator may replace the claim, after checking that the claim still
holds ``T`` (nobody else can change it meanwhile: that needs the same marker). A contender that
finds the marker held by a live process has lost. A marker whose creator died is itself taken
over the same way (``<uid>.taken-<its token>``), so a chain of markers always ends at one live
contender. Markers are removed once the claim is replaced; a contender that arrives afterwards
finds the claim's token changed and gives up.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional

HOST = socket.gethostname()
DEFAULT_TTL = 600.0  # seconds without a heartbeat before a claim is stale, on any host
#: an empty or unreadable claim younger than this may be mid-write (older code wrote after creating)
EMPTY_GRACE_S = 10.0
#: start times of one process computed twice differ by rounding only; a reused pid by far more
_START_TOLERANCE_S = 1.0
_MAX_CHAIN = 32  # markers followed before giving up (each needs a dead contender)
TAKEN = ".taken-"


def _read_first_line(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.readline().strip() or None
    except OSError:
        return None


BOOT_ID = _read_first_line("/proc/sys/kernel/random/boot_id")


def _pid_namespace() -> Optional[str]:
    """This process' pid namespace (``pid:[4026531836]``): containers that share a host name (and
    a kernel, so its boot id) each count pids in their own, and one's pid means nothing in another."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


PID_NS = _pid_namespace()
#: the installation's id (systemd's /etc/machine-id): tells a host rebooted (same id, another boot)
#: from another machine that carries the same host name (cluster nodes all called ``localhost``)
MACHINE_ID = _read_first_line("/etc/machine-id")
#: what names this process space in file names (``<what>.<PIDS_TAG>.<pid>...``): the host name, the
#: pid namespace and the boot; a name with another tag is judged by its age alone, never by its pid
PIDS_TAG = "~".join([HOST.replace(".", "_")] + [t for t in ("".join(c for c in (PID_NS or "") if c.isdigit()),
                                                          (BOOT_ID or "")[:8]) if t])


def _boot_time() -> Optional[float]:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


_BTIME = _boot_time()


def process_start_time(pid: int) -> Optional[float]:
    """When process ``pid`` started (seconds since the epoch), from ``/proc``; None where unknown."""
    if _BTIME is None or pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # fields after the command name (which may hold spaces and parentheses): state is the
        # first, starttime (field 22 of proc(5)) the 20th
        ticks = int(data[data.rindex(b")") + 2:].split()[19])
        return _BTIME + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


_MY_PID = os.getpid()
_MY_START = process_start_time(_MY_PID)


def owner_record() -> dict:
    pid = os.getpid()
    start = _MY_START if pid == _MY_PID else process_start_time(pid)  # a forked child is another process
    return {"host": HOST, "machine": MACHINE_ID, "pidns": PID_NS, "pid": pid, "start": start, "boot": BOOT_ID,
            "time": time.time(), "token": uuid.uuid4().hex}


def same_process_space(rec: dict) -> bool:
    """Whether ``rec``'s pid can be looked up here: the same host name, machine id and pid
    namespace (another container, or another machine that shares the host name and has its own
    machine id, is judged by the claim's age alone; :func:`owner_alive` then tells a reboot by the
    boot id). A record of older code, without these fields, is taken as before. Machines cloned
    from one image keep one machine id: to this rule they are one machine."""
    if rec.get("host") != HOST:
        return False
    for key, ours in (("pidns", PID_NS), ("machine", MACHINE_ID)):
        if rec.get(key) is not None and ours is not None and rec[key] != ours:
            return False
    return True


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negative numbers address process groups, never one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # a zombie (killed, not yet reaped: containers whose init does not reap) is dead
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")
    except (OSError, ValueError):
        return True


def read_owner(path: Path) -> Optional[dict]:
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def owner_alive(rec: dict) -> bool:
    """Whether the process that wrote ``rec`` (on this host) still runs."""
    if rec.get("boot") and BOOT_ID and rec["boot"] != BOOT_ID:
        return False  # written before the host rebooted
    try:
        pid = int(rec.get("pid", -1))
    except (TypeError, ValueError):
        return False
    if not pid_alive(pid):
        return False
    started = process_start_time(pid)
    if started is None:
        return True  # nothing more to tell by
    if rec.get("start") is not None:
        try:
            return abs(started - float(rec["start"])) <= _START_TOLERANCE_S
        except (TypeError, ValueError):
            return False
    try:  # older records have no start time: a process younger than the claim did not make it
        return started <= float(rec.get("time", 0)) + _START_TOLERANCE_S
    except (TypeError, ValueError):
        return False


def _token(path: Path, st: os.stat_result, rec: Optional[dict]) -> str:
    """What identifies this claim file's content: its random token, else a hash of its identity."""
    if rec and isinstance(rec.get("token"), str) and rec["token"].isalnum():
        return rec["token"]
    ident = json.dumps(rec, sort_keys=True, default=str) if rec else f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    return "x" + hashlib.sha256(ident.encode()).hexdigest()[:24]


def _open_and_read(path: Path) -> Optional[tuple[os.stat_result, Optional[dict]]]:
    """The file's status and record, both of the same file (one open: the name may be replaced
    between a stat and a read, and a fresh claim's content must never get a stale file's age)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return os.stat(path), None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return st, None
        data = b""
        while len(data) < st.st_size:
            more = os.read(fd, st.st_size - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    try:
        rec = json.loads(data)
    except ValueError:
        rec = None
    return st, rec if isinstance(rec, dict) else None


#: a file stamped further than this in the future (by this host's clock) has its age read by the
#: clock of the filesystem that holds it (:func:`filesystem_now`)
CLOCK_TOLERANCE_S = 60.0


def filesystem_now(folder: Path) -> Optional[float]:
    """The time by the clock that stamps files in ``folder`` (an NFS server's, not this host's):
    the modification time of a file made there now. None where nothing can be made there."""
    probe = Path(folder) / f".clock.{uuid.uuid4().hex[:12]}.tmp"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o664)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass


def age_of(mtime: float, folder: Path, now: Optional[float] = None) -> float:
    """How long ago a file of ``folder`` was touched, as a claim's ttl reads it. A time in the
    future by this host's clock is read by the filesystem's (a file server's clock running ahead
    stamps every fresh claim ahead: those are young). Still in the future by that clock, the stamp
    was set, not made by a heartbeat (a writer's clock running ahead, `touch -d`): its distance
    counts, or it would never go stale. Where the filesystem's clock cannot be read, such a file is
    taken as young (a later judge, or the writer's own heartbeat, decides)."""
    age = (time.time() if now is None else now) - mtime
    if age >= -CLOCK_TOLERANCE_S:
        return age
    fs_now = filesystem_now(folder)
    return 0.0 if fs_now is None else abs(fs_now - mtime)


def named_writer_gone(path: Path, tag: str, pid: int, ttl: float = DEFAULT_TTL) -> bool:
    """Whether the writer of ``path`` (a staging folder or a temporary file whose name carries its
    writer's process space ``tag``, :data:`PIDS_TAG`, and ``pid``) is gone: in this process space at
    once when the pid is dead or was reused (a process started after the file was last written);
    elsewhere (another node, container or boot, older code's names) once untouched for ``ttl``."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return False
    if tag == PIDS_TAG:
        if not pid_alive(pid):
            return True
        started = process_start_time(pid)
        return started is not None and started > mtime + 1
    return age_of(mtime, path.parent) > ttl


def judge(path: Path, ttl: float = DEFAULT_TTL, now: Optional[float] = None) -> tuple[bool, Optional[str]]:
    """``(stale, token)`` of the claim file at ``path``; ``(False, None)`` when there is none."""
    path = Path(path)
    got = _open_and_read(path)
    if got is None:
        return False, None
    st, rec = got
    age = age_of(st.st_mtime, path.parent, now)
    token = _token(path, st, rec)
    if rec is None:
        return age > EMPTY_GRACE_S, token
    if age > ttl:
        return True, token
    if same_process_space(rec):
        return not owner_alive(rec), token
    return False, token


def is_stale(path: Path, ttl: float = DEFAULT_TTL, now: Optional[float] = None) -> bool:
    """Whether the claim (or marker, or temporary record) at ``path`` belongs to a writer that is gone."""
    return judge(path, ttl, now)[0]


def token_of(path: Path) -> Optional[str]:
    got = _open_and_read(Path(path))
    return None if got is None else _token(Path(path), *got)


def _link(src: Path, dst: Path) -> bool:
    """Create ``dst`` as a hard link of ``src``: True when this call made it, False when it exists."""
    try:
        os.link(src, dst)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        # NFS may report a failure for a link that was made (a retransmitted request)
        try:
            if os.stat(src).st_nlink == 2 and os.path.samefile(src, dst):
                return True
        except OSError:
            pass
        if e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            return _create_exclusive(dst, Path(src).read_bytes())  # a filesystem without hard links
        raise


def _create_exclusive(dst: Path, data: bytes) -> bool:
    try:
        fd = os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o664)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def try_claim(path: Path, ttl: float = DEFAULT_TTL) -> Optional[str]:
    """Create the claim at ``path``, or take it over if stale. Returns this claim's token (truthy)
    when this process now owns it, else None."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = owner_record()
    tmp = path.with_name(f".{path.name}.{rec['token']}.tmp")
    try:
        with open(tmp, "w") as f:  # (inside: a full disk must not leave an empty record behind)
            json.dump(rec, f)
        for _ in range(3):
            if _link(tmp, path):
                return rec["token"]
            stale, token = judge(path, ttl)
            if token is None:
                continue  # released meanwhile: try to create it again
            if not stale:
                return None
            return rec["token"] if _take_over(path, token, tmp, ttl) else None
        return None
    finally:
        tmp.unlink(missing_ok=True)


def _take_over(path: Path, token: str, tmp: Path, ttl: float, remove: bool = False) -> bool:
    """Replace the stale claim ``path`` (whose token is ``token``) by ``tmp`` (or, with ``remove``,
    delete it), if this process wins."""
    passed: list[Path] = []  # markers of contenders that died mid-takeover
    k = token
    for _ in range(_MAX_CHAIN):
        marker = path.with_name(f"{path.name}{TAKEN}{k}")
        if _link(tmp, marker):
            break
        stale, k2 = judge(marker, ttl)
        if k2 is None or not stale:
            return False  # another contender is taking it over (or just did)
        passed.append(marker)
        k = k2
    else:
        return False
    try:
        # Holding the marker, nobody else may replace the claim: check it is still the stale one.
        if token_of(path) != token:
            return False
        if remove:
            os.unlink(path)
        else:
            os.replace(tmp, path)
        return True
    finally:
        for m in [marker, *passed]:
            m.unlink(missing_ok=True)


def remove_if_stale(path: Path, ttl: float = DEFAULT_TTL) -> bool:
    """Remove a stale file of a claims folder (``pipeline cache gc``), safely beside contenders:

    * a claim: through the takeover protocol, so one being taken over right now is left alone;
    * a marker: only once obsolete (its claim gone or replaced); a pending one is part of a
      takeover chain, which the next contender (or the removal of its claim) finishes;
    * a temporary record: when its writer is gone.
    """
    path = Path(path)
    stale, token = judge(path, ttl)
    if not stale:
        return False
    name = path.name
    if TAKEN in name:
        claim = path.with_name(name.split(TAKEN, 1)[0])
        if token_of(claim) == name.split(TAKEN, 1)[1]:
            return False
        path.unlink(missing_ok=True)
        return True
    if name.startswith(".") and name.endswith(".tmp"):
        path.unlink(missing_ok=True)
        return True
    rec = owner_record()
    tmp = path.with_name(f".{name}.{rec['token']}.tmp")
    tmp.write_text(json.dumps(rec))
    try:
        return _take_over(path, token, tmp, ttl, remove=True)
    finally:
        tmp.unlink(missing_ok=True)


def release(path: Path, token: Optional[str] = None) -> None:
    """Remove the claim; with ``token``, only while it is still this owner's (not taken over)."""
    if token is not None and token_of(path) not in (token, None):
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def is_claim_name(name: str) -> bool:
    """Whether a file name in ``claims/`` is a claim (not a marker or a temporary record)."""
    return not name.startswith(".") and TAKEN not in name and ".stale-" not in name


class Heartbeat:
    """Touches the claims this process holds every ``interval`` seconds, in a daemon thread."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self._held: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._said: set[int] = set()  # errnos already warned about

    def add(self, path: Path) -> None:
        with self._lock:
            self._held.add(path)
            if self._thread is None or self._stop.is_set() or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._stop,), name="claim-heartbeat",
                                                daemon=True)
                self._thread.start()

    def discard(self, path: Path) -> None:
        with self._lock:
            self._held.discard(path)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            with self._lock:
                held = list(self._held)
            for p in held:
                try:
                    os.utime(p)
                except OSError as e:
                    # ENOENT: released meanwhile. Anything else (ESTALE, EIO of a network filesystem
                    # hiccup) must not end the heartbeat: its claims would go stale while the work
                    # goes on, and another writer would do it again. Said once per kind of error.
                    if e.errno != errno.ENOENT and e.errno not in self._said:
                        self._said.add(e.errno)
                        logging.getLogger(__name__).warning(
                            "could not refresh claim %s (%s); retrying every %.0f s: if it keeps failing, "
                            "the claim goes stale after %.0f s and another writer may redo the clip",
                            p, e, self.interval, DEFAULT_TTL)

    def stop(self) -> None:
        self._stop.set()


def stale_paths(paths: Iterable[Path], ttl: float = DEFAULT_TTL) -> list[Path]:
    return [p for p in paths if is_stale(p, ttl)]
