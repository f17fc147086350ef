"""HAA500 (v1.1): ``haa500``.

Accepted layout under ``--root``::

    ROOT/video/<class_name>/<class_name>_<nnn>.mp4     per-class folders (also ROOT/videos/ or
                                                      class folders directly in ROOT)
    ROOT/video/<class_name>_<nnn>.mp4                 flat folder: grouped by the name before
                                                      the trailing "_<nnn>"

    ROOT/raw/<class_name>.txt                         optional: the release's per-class
                                                      annotation files (also ROOT/annotations/,
                                                      annotation/, txt/, or ROOT; option
                                                      annotation_dir)

(.mp4, .mkv, .webm, .avi.) Classes are numbered in ASCII order of their names.

Split, by the official rule (HAA500 README: "first 16 lines of each class file" train, "17th
line" validation, "remaining lines" test; options ``train_per_class`` / ``val_per_class``), from
one of two sources (``meta["split_source"]``):

* **the per-class annotation files**, when present: ``<class_name>.txt`` with one
  ``youtube_url,start_time,end_time,is_camera_moving,num_of_dominant_figure`` line per video.
  Line ``i`` (from 1) is video ``<class_name>_<i-1 as 3 digits>`` -- the numbering the v1.1
  archive and third-party loaders use, not stated by the authors, so it is checked: a video whose
  number has no line is an error. The files also define the class list, a line whose video is
  absent is reported missing, and the line's fields are kept in ``extra``.
* otherwise **the videos' numbers**: video ``<class_name>_<nnn>`` is line ``nnn + 1`` (the
  v1.1 numbering above; from ``001`` when no video of the dataset is numbered ``000``, as some
  copies renumber), so a lost video leaves a hole that is reported missing and moves no other
  video's split. A video in a class folder not named ``<class_name>_<nnn>``, or two with one
  number, cannot be placed in the split and is an error. (Until 2026-12-06 each class's files
  were split by position, so one lost video moved the official validation video into train.)

A class with other than 20 videos (lines) is listed in ``meta["unusual_classes"]``.

Class text: the class name with ``_`` and ``-`` as spaces, each run of white space as one space,
lower-cased (``"playing_violin"`` -> ``"playing violin"``, ``"hand_ stand"`` -> ``"hand stand"``).
A trailing number marks a variant class (``"<name>_2"``); it is dropped from the text, and when that makes two texts equal the numbered
ones read ``"<text> (variant N)"`` (the un-numbered one keeps the plain text). Coarse type
``"human"``.

File names are bytes (:mod:`stages.datasets.names`): a class folder (or annotation file) whose
name is not UTF-8 cannot become a label text, so it is skipped and reported with its folder in
``meta["skipped_names"]``; a video whose name is not UTF-8 cannot be ``<class_name>_<nnn>`` of a
class that is, so it is refused as any video the numbers cannot place, its bytes written
``\\xNN``. Annotation files that are not UTF-8 text are errors naming the line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from stages.datasets.base import (
    AdapterOptions,
    ClipRecord,
    DatasetAdapter,
    DatasetIndex,
    DatasetLayoutError,
)
from stages.datasets.names import is_hidden, is_text, not_text_note, read_text_lines, readable_name, report_skipped
from stages.registry import DATASET_ADAPTERS
from stages.settings import field

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi")
VIDEO_DIRS = ("video", "videos", "")
ANNOTATION_DIRS = ("raw", "annotations", "annotation", "txt", "")
ANNOTATION_FIELDS = ("youtube_url", "start_time", "end_time", "is_camera_moving", "num_of_dominant_figure")
_NUM_RE = re.compile(r"^(?P<name>.+?)_(?P<num>\d+)$")


def _videos_in(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return [Path(e.path) for e in it
                if e.is_file() and not is_hidden(e.name) and os.path.splitext(e.name)[1].lower() in VIDEO_EXTS]


def class_texts(names: list[str]) -> list[str]:
    """Readable, unique texts for HAA500 class names (see module docstring)."""
    parts = []
    for n in names:
        m = re.match(r"^(.*?)[_-](\d+)$", n)  # "_2" numbers a variant; "flip360" keeps its digits
        base, num = (m.group(1), m.group(2)) if m and m.group(1) else (n, None)
        text = " ".join(re.sub(r"[_\-]+", " ", base).split()).lower()
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


@dataclass(frozen=True)
class HAA500Options(AdapterOptions):
    annotation_dir: Optional[Path] = field(None, help="Folder of the per-class <class_name>.txt files (default: "
                                            "looked for under ROOT: raw/, annotation/, txt/, ROOT).")
    train_per_class: int = field(16, help="Clips per class in train (the split rule of docs/datasets.md).")
    val_per_class: int = field(1, help="Clips per class in val after the train ones; the rest are test.")


@DATASET_ADAPTERS.register_module("haa500")
class HAA500(DatasetAdapter):
    name = "haa500"
    Options = HAA500Options
    coarse_type = "human"
    skeleton = "coco17"

    def __init__(self, root=None, **options):
        super().__init__(root, **options)
        self._skipped: list[str] = []  # names that cannot be represented (module docstring)

    def _groups(self) -> tuple[Path, dict[str, list[Path]]]:
        for d in VIDEO_DIRS:
            folder = self.root / d
            if not folder.is_dir():
                continue
            groups: dict[str, list[Path]] = {}
            with os.scandir(folder) as it:
                subdirs = sorted(Path(e.path) for e in it if e.is_dir() and not is_hidden(e.name))
            skipped: list[str] = []
            for sub in subdirs:
                vids = _videos_in(sub)
                if vids and not is_text(sub.name):
                    skipped.append(not_text_note(folder, sub.name, "a class's label text"))
                elif vids:
                    groups[sub.name] = vids
            if not groups:
                skipped = []
                for v in _videos_in(folder):
                    m = _NUM_RE.match(v.stem)
                    if m and not is_text(m.group("name")):
                        skipped.append(not_text_note(folder, v.name, "a class's label text"))
                    elif m:
                        groups.setdefault(m.group("name"), []).append(v)
            for note in skipped:
                report_skipped(self._skipped, note)
            if groups:
                return folder, groups
        raise DatasetLayoutError(
            f"haa500: expected per-class folders of videos "
            f"(<class_name>/<class_name>_<nnn>.mp4) in {self.root / 'video'}, "
            f"{self.root / 'videos'} or {self.root}; found none"
        )

    def _annotation_files(self, class_names: list[str]) -> tuple[Optional[Path], dict[str, Path]]:
        """The folder of per-class ``<class_name>.txt`` files and the files, or (None, {})."""
        opt = self.options.annotation_dir
        dirs = [opt] if opt else [self.root / d for d in ANNOTATION_DIRS]
        if opt and not dirs[0].is_dir():
            raise DatasetLayoutError(f"haa500: annotation_dir {dirs[0]} is not a folder")
        known = set(class_names)
        for d in dirs:
            if not d.is_dir():
                continue
            txts = [p for p in d.glob("*.txt") if p.is_file()]
            files = {p.stem: p for p in txts if is_text(p.stem)}
            if d == self.root and not opt:  # ROOT holds other text files too (README.txt, ...)
                files = {k: v for k, v in files.items() if k in known}
            if files and (opt or known & set(files)):
                if d != self.root or opt:
                    for p in txts:
                        if not is_text(p.stem):
                            report_skipped(self._skipped, not_text_note(d, p.name, "a class's label text"))
                return d, files
        if opt:
            raise DatasetLayoutError(f"haa500: annotation_dir {dirs[0]} holds no <class_name>.txt files")
        return None, {}

    @staticmethod
    def _read_class_file(path: Path) -> list[dict]:
        rows, blank = [], None
        for n, line in enumerate(read_text_lines(path), 1):
            if not line.strip():
                blank = blank or n
                continue
            if blank is not None:  # the split and the video numbers count rows: every later one would move
                raise DatasetLayoutError(f"{path}:{blank}: a blank line before the last row; the split (first "
                                         "train_per_class rows train, ...) and the videos' numbers count the rows, so "
                                         "every row after it would move. Remove it (blank lines at the end are fine)")
            parts = [x.strip() for x in line.split(",")]
            if len(parts) != len(ANNOTATION_FIELDS):
                raise DatasetLayoutError(f"{path}:{n}: expected '{','.join(ANNOTATION_FIELDS)}', got {line!r}")
            row = dict(zip(ANNOTATION_FIELDS, parts))
            try:
                row.update(start_time=float(row["start_time"]), end_time=float(row["end_time"]),
                           is_camera_moving=int(row["is_camera_moving"]),
                           num_of_dominant_figure=int(row["num_of_dominant_figure"]))
            except ValueError:
                raise DatasetLayoutError(f"{path}:{n}: times must be seconds and flags integers, got {line!r}") from None
            rows.append(row)
        return rows

    def _split(self, i: int) -> str:
        n_train = self.options.train_per_class
        n_val = self.options.val_per_class
        return "train" if i < n_train else "val" if i < n_train + n_val else "test"

    def load(self, progress=None) -> DatasetIndex:
        self._skipped = []
        folder, groups = self._groups()
        ann_dir, ann_files = self._annotation_files(sorted(groups))
        if ann_dir is not None:
            return self._load_by_lines(folder, groups, ann_dir, ann_files)
        names = sorted(groups)
        numbered = {c: self._numbers(c, groups[c]) for c in names}
        first = 0 if any(0 in nums for nums in numbered.values()) else 1
        clips: list[ClipRecord] = []
        ids: set[str] = set()
        unusual, holes = {}, {}
        for label, cname in enumerate(names):
            nums = numbered[cname]
            gone = [n for n in range(first, max(nums) + 1) if n not in nums]
            if len(gone) > len(nums):  # a stray file (archery_2019.mp4) would plan thousands of missing clips
                raise DatasetLayoutError(
                    f"haa500: {readable_name(str(nums[max(nums)]))}: its number leaves {len(gone)} numbers of class "
                    f"{cname} without a video ({len(nums)} videos): not an HAA500 video number. Rename or move it, or "
                    "give the release's annotation files (option annotation_dir)")
            if gone:
                holes[cname] = [f"{cname}_{n:03d}" for n in gone]
            if len(nums) + len(gone) != 20:
                unusual[cname] = len(nums) + len(gone)
            class_dir, ext = next(iter(nums.values())).parent, next(iter(nums.values())).suffix
            for n in range(first, max(nums) + 1):
                v = nums.get(n, class_dir / f"{cname}_{n:03d}{ext}")
                stem = readable_name(v.stem)
                cid = stem if stem not in ids else f"{cname}/{stem}"
                ids.add(cid)
                clips.append(ClipRecord(cid, self._split(n - first), label, str(v), extra={"class_name": cname}))
        return DatasetIndex(
            name=self.name, classes=class_texts(names), coarse_type=self.coarse_type, skeleton=self.skeleton,
            clips=clips, root=str(self.root), source_files=[],
            meta={
                "video_folder": str(folder),
                "split_source": f"the videos' numbers (no per-class annotation files found): <class>_{first:03d} "
                                "is line 1",
                "split_rule": f"per class by number: the first {self.options.train_per_class} train, the next "
                              f"{self.options.val_per_class} val, the rest test",
                "class_names": names,
                "unusual_classes": unusual,
                **({"numbers_without_video": holes} if holes else {}),
                **({"skipped_names": self._skipped} if self._skipped else {}),
            },
        )

    @staticmethod
    def _numbers(cname: str, videos: list[Path],
                 hint: str = "give the release's annotation files (option annotation_dir)") -> dict[int, Path]:
        """``{nnn: video}`` of one class's ``<class_name>_<nnn>`` videos; an error for a video that
        has no such name (it has no place in the split) or a number given twice."""
        out: dict[int, Path] = {}
        for v in sorted(videos):
            m = _NUM_RE.match(v.stem)
            if not m or m.group("name") != cname:
                raise DatasetLayoutError(
                    f"haa500: {readable_name(str(v))}: expected <class_name>_<nnn> ({cname}_000 ..), the number "
                    "placing the video in the split (line nnn + 1 of the class's annotation file). Rename or move it, "
                    f"or {hint}")
            n = int(m.group("num"))
            if n in out:
                raise DatasetLayoutError(f"haa500: {readable_name(str(out[n]))} and {readable_name(v.name)} have one "
                                         "number; keep one")
            out[n] = v
        return out

    def _load_by_lines(self, folder: Path, groups: dict[str, list[Path]], ann_dir: Path,
                       ann_files: dict[str, Path]) -> DatasetIndex:
        stray = sorted(set(groups) - set(ann_files))
        if stray:
            raise DatasetLayoutError(
                f"haa500: {len(stray)} class folder(s) have no annotation file in {ann_dir} "
                f"(e.g. {stray[:3]}); expected <class_name>.txt for every class")
        names = sorted(ann_files)
        n_train = self.options.train_per_class
        n_val = self.options.val_per_class
        clips: list[ClipRecord] = []
        unusual, missing_classes = {}, []
        for label, cname in enumerate(names):
            rows = self._read_class_file(ann_files[cname])
            if len(rows) != 20:
                unusual[cname] = len(rows)
            fit = (f"{ann_files[cname]} ({len(rows)} lines): videos must be {cname}_000 .. "
                   f"{cname}_{len(rows) - 1:03d}, line i being video i-1")
            by_number = self._numbers(cname, groups.get(cname, []), hint=f"mend {fit}")
            beyond = sorted(n for n in by_number if n >= len(rows))
            if beyond:
                raise DatasetLayoutError(f"haa500: {readable_name(str(by_number[beyond[0]]))} does not fit {fit}")
            if cname not in groups:
                missing_classes.append(cname)
            class_dir = next(iter(by_number.values())).parent if by_number else folder / cname
            for i, row in enumerate(rows):
                video = by_number.get(i, class_dir / f"{cname}_{i:03d}.mp4")
                clips.append(ClipRecord(video.stem, self._split(i), label, str(video),
                                        extra={"class_name": cname, "line": i + 1, **row}))
        meta = {
            "video_folder": str(folder),
            "split_source": f"per-class annotation files in {ann_dir} (line order)",
            "split_rule": f"per class by line: first {n_train} train, next {n_val} val, rest test",
            "class_names": names,
            "unusual_classes": unusual,
        }
        if missing_classes:
            meta["classes_without_videos"] = missing_classes
        if self._skipped:
            meta["skipped_names"] = self._skipped
        return DatasetIndex(
            name=self.name, classes=class_texts(names), coarse_type=self.coarse_type, skeleton=self.skeleton,
            clips=clips, root=str(self.root), source_files=[str(ann_files[n]) for n in names], meta=meta,
        )
