"""Whether a cache root can be written by a group of users (``pipeline cache doctor``).

Writers create files in folders other users made (claims, clips, failures, runs, staging; a takeover
renames another user's claim; ``gc`` removes another user's folders), so a lab-shared root needs
(docs/cache.md, "Sharing a cache between users"):

* one group owning every folder, every folder group-writable (``chgrp -R lab ROOT; chmod -R g+rwX ROOT``);
* the setgid bit on every folder (``find ROOT -type d -exec chmod g+s {} +``), so folders made
  later belong to that group too, whoever makes them;
* everyone who writes with ``umask 002``, so what they make is group-writable in turn.
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from cache import layout



@dataclass
class SharingReport:
    root: Path
    group: str = ""
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    umask: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def fix_commands(self) -> list[str]:
        g = self.group or "<group>"
        r = str(self.root)
        return [f"chgrp -R {g} {r}", f"chmod -R g+rwX {r}", f"find {r} -type d -exec chmod g+s {{}} +",
                "umask 002   # in the shell and the job scripts of everyone who writes to the cache"]


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _folders(root: Path, every: bool) -> Iterator[Path]:
    """The root, its top folders, ``entries/<dataset>/<key>`` and each entry's working folders;
    with ``every``, every folder under the root."""
    if every:
        for dirpath, dirnames, _ in os.walk(root):
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            yield Path(dirpath)
        return
    yield root
    for top in _subfolders(root, links=False):
        yield top
    entries = root / layout.ENTRIES_DIR
    if not entries.is_dir():
        return
    for ds in _subfolders(entries):
        yield ds
        for e in _subfolders(ds):
            if e.name.startswith("."):
                continue
            yield e
            for sub in layout.ENTRY_FOLDERS:
                if (e / sub).is_dir():
                    yield e / sub


def _subfolders(folder: Path, links: bool = True) -> list[Path]:
    """``folder``'s folders, sorted; none when this user may not list it (reported by its mode)."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and (links or not p.is_symlink()))
    except OSError:
        return []


def umask_hides_from_group(root: os.PathLike) -> Optional[str]:
    """Why what this process writes under ``root`` would be closed to the root's group, when the
    root is set up for sharing (group-writable, setgid) and the umask takes the group's bits; else None."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    mask = current_umask()
    shared = st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_ISGID
    if not shared or not mask & 0o070:
        return None
    what = ("neither readable nor writable by the others (their `cache ls` and training fail on it)"
            if mask & 0o050 else "not writable by the others (their extractions, claims and gc in your folders fail)")
    return (f"your umask is {mask:04o} and {root} is shared with group {_group_name(st.st_gid)} (group-writable, "
            f"setgid): what you write there will be {what}. Run `umask 002` first (docs/cache.md, "
            "'Sharing a cache between users')")


def check_sharing(root: os.PathLike, every: bool = False, limit: int = 50) -> SharingReport:
    """What keeps the users of the root's group from writing to it (``every``: look at every folder,
    not only those where writers create files). At most ``limit`` folders are named per problem."""
    root = Path(root)
    rep = SharingReport(root=root, umask=current_umask())
    if not root.is_dir():
        rep.problems.append(f"{root} is not a folder")
        return rep
    gid = root.stat().st_gid
    rep.group = _group_name(gid)
    kinds: dict[str, list[str]] = {}
    for d in _folders(root, every):
        try:
            st = d.stat()
        except OSError:
            continue
        rep.checked += 1
        if not os.access(d, os.R_OK | os.X_OK):
            kinds.setdefault("not readable by you (made with umask 077 or 027 by its owner?)", []).append(
                f"{d} (owner {_user_name(st.st_uid)}, {stat.filemode(st.st_mode)})")
        if not st.st_mode & stat.S_IWGRP:
            kinds.setdefault("not group-writable", []).append(f"{d} ({stat.filemode(st.st_mode)})")
        if not st.st_mode & stat.S_ISGID:
            kinds.setdefault("no setgid bit (folders made in it would not get its group)", []).append(
                f"{d} ({stat.filemode(st.st_mode)})")
        if st.st_gid != gid:
            kinds.setdefault(f"group other than the root's ({rep.group})", []).append(
                f"{d} (group {_group_name(st.st_gid)})")
    for kind, paths in kinds.items():
        shown = paths[:limit] + ([f"... and {len(paths) - limit} more"] if len(paths) > limit else [])
        rep.problems.append(f"{len(paths)} folder(s) {kind}:\n    " + "\n    ".join(shown))
    if rep.umask & stat.S_IWGRP:
        rep.problems.append(f"your umask is {rep.umask:04o}: the files and folders you create will not be "
                            "group-writable (use umask 002)")
    return rep
