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
    """The videos ``paths`` name, in order (a folder's videos sorted by path, found recursively;
    hidden files and folders skipped), and notes on what was left out. A path that does not exist
    is kept, so it is reported as a failure with the others."""
    videos: list[VideoInput] = []
    notes: list[str] = []
    seen: set[str] = set()
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            found, other = [], 0
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in filenames:
                    if f.startswith("."):
                        continue
                    if f.lower().endswith(VIDEO_EXTENSIONS):
                        found.append(Path(dirpath) / f)
                    else:
                        other += 1
            if not found:
                notes.append(f"{p}: no videos ({', '.join(VIDEO_EXTENSIONS)})")
            if other:
                notes.append(f"{p}: {other} file(s) without a video extension left out")
            for f in sorted(found):
                _add(videos, seen, VideoInput(str(f.resolve()), str(f.relative_to(p))))
        else:
            _add(videos, seen, VideoInput(str(p.resolve()) if p.exists() else str(p), p.name))
    return videos, notes


def _add(videos: list[VideoInput], seen: set[str], v: VideoInput) -> None:
    if v.path not in seen:  # a file named twice (or inside a folder also named) is predicted once
        seen.add(v.path)
        videos.append(v)
