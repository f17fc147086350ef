"""HAA500 (v1.1): ``haa500``.

Accepted layout under ``--root``::

    ROOT/video/<class_name>/<class_name>_<nnn>.mp4     per-class folders (also ROOT/videos/ or
                                                      class folders directly in ROOT)
    ROOT/video/<class_name>_<nnn>.mp4                 flat folder: grouped by the name before
                                                      the trailing "_<nnn>"

(.mp4, .mkv, .webm, .avi.) The folder listing *is* the index: 500 classes, 20 videos each.
Classes are numbered in ASCII order of their names.

Split (the published one, by file order): within each class, files sorted by their number
``nnn`` (then name), the first 16 are ``train``, the next 1 ``val``, the rest (3) ``test``,
i.e. 8,000 / 500 / 1,500. This is the documented HAA500 protocol as we know it, stated here as
an assumption (no split file is read); options ``train_per_class`` / ``val_per_class`` change
the counts. A class with other than 20 videos is listed in ``meta["unusual_classes"]``.

Class text: the class name with ``_`` and ``-`` as spaces, lower-cased
(``"playing_violin"`` -> ``"playing violin"``). A trailing number marks a variant class
(``"<name>_2"``); it is dropped from the text, and when that makes two texts equal the numbered
ones read ``"<text> (variant N)"`` (the un-numbered one keeps the plain text). Coarse type
``"human"``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from stages.datasets.base import (
    ClipRecord,
    DatasetAdapter,
    DatasetIndex,
    DatasetLayoutError,
)
from stages.registry import DATASETS

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi")
VIDEO_DIRS = ("video", "videos", "")
_NUM_RE = re.compile(r"^(?P<name>.+?)_(?P<num>\d+)$")


def _videos_in(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return [Path(e.path) for e in it
                if e.is_file() and os.path.splitext(e.name)[1].lower() in VIDEO_EXTS]


def _order_key(p: Path):
    m = _NUM_RE.match(p.stem)
    return (int(m.group("num")) if m else float("inf"), p.name)


def class_texts(names: list[str]) -> list[str]:
    """Readable, unique texts for HAA500 class names (see module docstring)."""
    parts = []
    for n in names:
        m = re.match(r"^(.*?)[_-]?(\d+)$", n)
        base, num = (m.group(1), m.group(2)) if m and m.group(1) else (n, None)
        text = re.sub(r"[_\-]+", " ", base).strip().lower()
        parts.append((text, num))
    counts: dict[str, int] = {}
    for t, _ in parts:
        counts[t] = counts.get(t, 0) + 1
    out = [f"{t} (variant {int(num)})" if counts[t] > 1 and num else t for t, num in parts]
    seen: set[str] = set()
    for i, t in enumerate(out):  # still equal (e.g. "a_1" and "a-1"): fall back to the raw name
        if t in seen:
            out[i] = f"{t} ({names[i]})"
        seen.add(out[i])
    return out


@DATASETS.register_module("haa500")
class HAA500(DatasetAdapter):
    name = "haa500"
    coarse_type = "human"
    skeleton = "coco17"

    def _groups(self) -> tuple[Path, dict[str, list[Path]]]:
        for d in VIDEO_DIRS:
            folder = self.root / d
            if not folder.is_dir():
                continue
            groups: dict[str, list[Path]] = {}
            with os.scandir(folder) as it:
                subdirs = sorted(Path(e.path) for e in it if e.is_dir())
            for sub in subdirs:
                vids = _videos_in(sub)
                if vids:
                    groups[sub.name] = vids
            if not groups:
                for v in _videos_in(folder):
                    m = _NUM_RE.match(v.stem)
                    if m:
                        groups.setdefault(m.group("name"), []).append(v)
            if groups:
                return folder, groups
        raise DatasetLayoutError(
            f"haa500: expected per-class folders of videos "
            f"(<class_name>/<class_name>_<nnn>.mp4) in {self.root / 'video'}, "
            f"{self.root / 'videos'} or {self.root}; found none"
        )

    def load(self, progress=None) -> DatasetIndex:
        n_train = int(self.options.get("train_per_class", 16))
        n_val = int(self.options.get("val_per_class", 1))
        folder, groups = self._groups()
        names = sorted(groups)
        classes = class_texts(names)
        clips: list[ClipRecord] = []
        ids: set[str] = set()
        unusual = {}
        for label, cname in enumerate(names):
            vids = sorted(groups[cname], key=_order_key)
            if len(vids) != 20:
                unusual[cname] = len(vids)
            for i, v in enumerate(vids):
                split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
                cid = v.stem if v.stem not in ids else f"{cname}/{v.stem}"
                ids.add(cid)
                clips.append(ClipRecord(cid, split, label, str(v), extra={"class_name": cname}))
        return DatasetIndex(
            name=self.name, classes=classes, coarse_type=self.coarse_type, skeleton=self.skeleton,
            clips=clips, root=str(self.root), source_files=[],
            meta={
                "video_folder": str(folder),
                "split_rule": f"per class by file order: first {n_train} train, next {n_val} val, rest test",
                "class_names": names,
                "unusual_classes": unusual,
            },
        )
