"""The videos a ``pipeline predict`` command names: files, and the videos under folders."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

#: what counts as a video under a folder (case-insensitive); a file named on the command line is
#: taken whatever its name, and a file that is not a video is reported like a corrupt one
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".3gp", ".ogv")


@dataclass(frozen=True)
class VideoInput:
    path: str  # as found (absolute, symlinks resolved)
    name: str  # what results call it: the file name, or its path under the folder named
    named: str = ""  # absolute, as named (symlinks kept): the folders a skeleton file's annotation names

    @property
    def clip_id(self) -> str:
        """The name without the extension: how poses from a skeleton file (``pkl:``) find it."""
        root, ext = os.path.splitext(self.name)
        return root if ext else self.name


def name_text(name: str) -> str:
    """A file name as text every UTF-8 output takes: the bytes of a name that is not UTF-8 (lone
    surrogates in Python) written as ``\\udcXX``, as ``--json`` escapes them."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def find_videos(paths: Iterable[os.PathLike]) -> tuple[list[VideoInput], list[str]]:
    """The videos ``paths`` name, in order (a folder's videos sorted by path, found recursively,
    through symlinked folders that lead out of it too; hidden files and folders skipped), and notes
    on what was left out, counted: files without a video extension, hidden ones, symlinked folders
    inside or above the folder (their videos are its own, or not under it), and second names of a
    video already listed (predicted once, under the name that goes through no symlink). A path
    that does not exist is kept, so it is reported as a failure with the others."""
    videos: list[VideoInput] = []
    notes: list[str] = []
    seen: dict[str, str] = {}
    again: list[str] = []
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            found, other, hidden, inward = [], 0, 0, 0
            top = os.path.realpath(p)
            walked: set[str] = set()  # resolved folders: a loop through outside links is walked once
            for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
                real = os.path.realpath(dirpath)
                if real in walked:
                    dirnames[:] = []
                    continue
                walked.add(real)
                hidden += sum(d.startswith(".") for d in dirnames)
                keep = []
                for d in sorted(d for d in dirnames if not d.startswith(".")):
                    full = os.path.join(dirpath, d)
                    if os.path.islink(full) and _within(os.path.realpath(full), top, both_ways=True):
                        inward += 1  # walked as itself (inside), or a way out above the folder
                    else:
                        keep.append(d)
                dirnames[:] = keep
                for f in filenames:
                    if f.startswith("."):
                        hidden += 1
                    elif f.lower().endswith(VIDEO_EXTENSIONS):
                        found.append(Path(dirpath) / f)
                    else:
                        other += 1
            if not found:
                notes.append(f"{p}: no videos ({', '.join(VIDEO_EXTENSIONS)})")
            if other:
                notes.append(f"{p}: {other} file(s) without a video extension left out")
            if hidden:
                notes.append(f"{p}: {hidden} hidden file(s) or folder(s) left out")
            if inward:
                notes.append(f"{p}: {inward} symlinked folder(s) inside it or above it not followed")
            # one name per video, the one through no symlink where there is one; the others said
            by_file: dict[str, list[Path]] = {}
            for f in found:
                by_file.setdefault(str(f.resolve()), []).append(f)
            # (direct: the folder's own path, however it was spelt, then no link below it)
            chosen = {min(fs, key=lambda f: (os.path.realpath(f) != os.path.join(top, os.path.relpath(f, p)), str(f)))
                      for fs in by_file.values()}
            for f in sorted(chosen) + sorted(f for f in found if f not in chosen):
                _add(videos, seen, again, VideoInput(str(f.resolve()), str(f.relative_to(p)), os.path.abspath(f)))
        else:
            found_at = str(p.resolve()) if p.exists() else str(p)
            _add(videos, seen, again, VideoInput(found_at, p.name, os.path.abspath(p)))
    if again:
        notes.append(f"{len(again)} name(s) of a video already listed predicted once, under its first name: "
                     + ", ".join(again[:5]) + (", ..." if len(again) > 5 else ""))
    return videos, notes


def _within(path: str, folder: str, both_ways: bool = False) -> bool:
    """Whether ``path`` is ``folder`` or under it (``both_ways``: or above it)."""
    inside = path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
    return inside or (both_ways and folder.startswith(path.rstrip(os.sep) + os.sep))


def _add(videos: list[VideoInput], seen: dict[str, str], again: list[str], v: VideoInput) -> None:
    if v.path in seen:  # a symlink, a file named twice (or inside a folder also named): predicted once
        if seen[v.path] != v.name:
            again.append(f"{v.name} (= {seen[v.path]})")
        return
    seen[v.path] = v.name
    videos.append(v)
