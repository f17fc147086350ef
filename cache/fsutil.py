"""Small filesystem helpers that never leave a half-written file behind."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional


def publish(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it to ``final`` (atomic), fsync the folder: a crash leaves either the
    old state or the whole new file."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    try:
        dfd = os.open(final.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:  # some filesystems do not fsync folders
        pass
    finally:
        os.close(dfd)


@contextlib.contextmanager
def written_whole(path: Path, keep_suffix: bool = False) -> Iterator[Path]:
    """A unique temporary path beside ``path`` for the block to write; fsynced and renamed over
    ``path`` when the block ends (atomic: a kill or a power cut leaves the old file or the new one,
    never half of one), removed if the block fails (a full disk). ``keep_suffix``: the temporary
    ends in ``path``'s suffix too (for writers that pick the format by it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp" + (path.suffix if keep_suffix else ""))
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """``text`` into ``path``, whole or not at all (:func:`written_whole`)."""
    with written_whole(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def dir_size(path: Path) -> int:
    """The bytes of the files under ``path`` (a linked entry's, through its link)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


DELETING = ".deleting-"  # in the name of a folder renamed aside to be removed


def remove_tree(path: Path) -> list[str]:
    """Remove a directory by first renaming it aside (``.NAME.deleting-XXXX``), so nobody sees it
    half-deleted. Returns what could not be removed (``path: error``; empty when all went): a
    folder of another user, a read-only mount. A folder already aside is removed where it is.
    A symbolic link is removed itself, never what it points to."""
    path = Path(path)
    if path.is_symlink():
        path.unlink(missing_ok=True)
        return []
    if not path.exists():
        return []
    aside = path
    if DELETING not in path.name:
        aside = path.with_name(f".{path.name}{DELETING}{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return []
    left: list[str] = []

    def note(_fn, p, exc):
        err = exc[1] if isinstance(exc, tuple) else exc
        if not isinstance(err, FileNotFoundError):  # another remover got there first
            left.append(f"{p}: {getattr(err, 'strerror', None) or err}")

    shutil.rmtree(aside, onerror=note)
    return left


def no_home_folder() -> bool:
    """Whether neither ``$XDG_CACHE_HOME`` nor a home folder says where per-user caches go (HOME
    unset or empty and a uid without a passwd entry: a bare container's user)."""
    home = os.path.expanduser("~")
    return not os.environ.get("XDG_CACHE_HOME") and (not home or home.startswith("~"))


def case_insensitive(path: os.PathLike) -> bool:
    """Whether the filesystem at ``path`` (or its nearest existing folder) takes ``A`` and ``a`` for
    one name (macOS' default, SMB shares, exFAT), tried with a file of its own; False when it cannot
    be tried (a folder this user may not write)."""
    folder = Path(_nearest_existing(os.fspath(path)))
    probe = folder / f".pevl-case-probe-{uuid.uuid4().hex[:8]}-Aa"
    try:
        probe.touch(exist_ok=False)
    except OSError:
        return False
    try:
        return (folder / probe.name.lower()).exists()
    finally:
        probe.unlink(missing_ok=True)


def linked_folders(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: where it points}`` for those of ``folder``'s ``names`` that are symbolic links."""
    found = {}
    for name in names:
        p = Path(folder) / name
        if p.is_symlink():
            try:
                found[name] = os.readlink(p)
            except OSError as e:
                found[name] = f"? ({e.strerror or e})"
    return found


# -- filesystem faults, explained ------------------------------------------------------------------
SHARING_DOC = "docs/cache.md, 'Sharing a cache between users'"


class CacheFault(OSError):
    """A filesystem fault of the cache whose message says all a user needs (where, why, what to
    do): commands print it as it is, without a traceback. ``errno`` is the original error's."""

    def __init__(self, message: str, errno_: Optional[int] = None):
        super().__init__(errno_, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DiskFullError(CacheFault):
    """No space (or no quota) left where the cache writes."""


class CachePermissionError(CacheFault):
    """The cache (or a part of it) is not writable by this user."""


def mount_point(path: os.PathLike) -> str:
    p = os.path.realpath(path)
    while not os.path.ismount(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return p


def _nearest_existing(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return p


def describe_owner(path: str) -> str:
    """``owner user:group, mode drwxr-xr-x`` of a path (the nearest existing parent)."""
    import grp
    import pwd
    import stat as stat_mod

    p = _nearest_existing(path)
    try:
        st = os.stat(p)
    except OSError:
        return p
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{p}: owner {user}:{group}, mode {stat_mod.filemode(st.st_mode)}"


def cache_root_of(path: os.PathLike) -> Optional[Path]:
    """The cache root above a path inside ``<root>/entries/...``, if it is one."""
    p = Path(os.path.abspath(path))
    for parent in (p, *p.parents):
        if parent.name == "entries":
            return parent.parent
    return None


_NOTHING_HALF_WRITTEN = ("Nothing half-written is visible (what was being written is not committed), and a rerun "
                         "continues.")


def explain_os_error(e: OSError, where: os.PathLike) -> Optional[CacheFault]:
    """A :class:`CacheFault` for a full disk or a permission problem while writing ``where``
    (the entry or file being written), else None (other errors keep their own message)."""
    import errno as errno_mod

    if isinstance(e, CacheFault):
        return None
    where = os.fspath(where)
    if e.errno in (errno_mod.ENOSPC, errno_mod.EDQUOT):
        what = "no space left" if e.errno == errno_mod.ENOSPC else "disk quota exceeded"
        # (no free-space figure: it differs between processes that hit the same full disk, whose
        # messages must be the same to be shown once)
        return DiskFullError(
            f"{what} on the filesystem holding {where} (mounted at {mount_point(_nearest_existing(where))}): "
            "free space there, or use another --cache-root. " + _NOTHING_HALF_WRITTEN, e.errno)
    if e.errno == errno_mod.EFBIG:
        return DiskFullError(
            f"file too large while writing {where} (on the filesystem mounted at "
            f"{mount_point(_nearest_existing(where))}): this process' file size limit (`ulimit -f`, or a batch "
            "system's per-job limit) or the filesystem's largest file is reached; raise the limit, or use another "
            "--cache-root. " + _NOTHING_HALF_WRITTEN, e.errno)
    if e.errno in (errno_mod.EACCES, errno_mod.EPERM, errno_mod.EROFS):
        target = e.filename or where
        root = cache_root_of(where)
        doctor = f"`pipeline cache doctor --cache-root {root}`" if root else "`pipeline cache doctor`"
        if e.errno == errno_mod.EROFS:
            return CachePermissionError(f"read-only filesystem: cannot write {target}", e.errno)
        return CachePermissionError(
            f"permission denied: {target} ({describe_owner(os.fspath(target))}). A cache that several users "
            f"share needs a common group, group-writable setgid folders and umask 002 for everyone who writes "
            f"(see {SHARING_DOC}); {doctor} checks them.", e.errno)
    return None


@contextlib.contextmanager
def explained_os_errors(where: os.PathLike):
    """Re-raise a full disk or a permission problem as a :class:`CacheFault` naming ``where``."""
    try:
        yield
    except OSError as e:
        fault = explain_os_error(e, where)
        if fault is None:
            raise
        raise fault from e
