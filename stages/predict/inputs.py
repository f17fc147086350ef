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
    path: str  # as found (absolute)
    name: str  # what results call it: the file name, or its path under the folder named

    @property
    def clip_id(self) -> str:
        """The name without the extension: how poses from a skeleton file (``pkl:``) find it."""
        root, ext = os.path.splitext(self.name)
        return root if ext else self.name


def find_videos(paths: Iterable[os.PathLike]) -> tuple[list[VideoInput], list[str]]:
    """The videos ``paths`` name, in order (a folder's videos sorted by path, found recursively,
    through symlinked folders too; hidden files and folders skipped), and notes on what was left
    out, counted: files without a video extension, hidden ones, and names of a video already listed
    (a symlink, a file named twice: predicted once). A path that does not exist is kept, so it is
    reported as a failure with the others."""
    videos: list[VideoInput] = []
    notes: list[str] = []
    seen: dict[str, str] = {}
    again: list[str] = []
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            found, other, hidden = [], 0, 0
            walked: set[str] = set()  # resolved folders: a symlink loop is walked once
            for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
                real = os.path.realpath(dirpath)
                if real in walked:
                    dirnames[:] = []
                    continue
                walked.add(real)
                hidden += sum(d.startswith(".") for d in dirnames)
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
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
            for f in sorted(found):
                _add(videos, seen, again, VideoInput(str(f.resolve()), str(f.relative_to(p))))
        else:
            _add(videos, seen, again, VideoInput(str(p.resolve()) if p.exists() else str(p), p.name))
    if again:
        notes.append(f"{len(again)} name(s) of a video already listed predicted once, under its first name: "
                     + ", ".join(again[:5]) + (", ..." if len(again) > 5 else ""))
    return videos, notes


def _add(videos: list[VideoInput], seen: dict[str, str], again: list[str], v: VideoInput) -> None:
    if v.path in seen:  # a symlink, a file named twice (or inside a folder also named): predicted once
        if seen[v.path] != v.name:
            again.append(f"{v.name} (= {seen[v.path]})")
        return
    seen[v.path] = v.name
    videos.append(v)
