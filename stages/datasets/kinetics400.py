"""Kinetics-400: ``kinetics400``.

Two sources of the splits are read, as a lab has them (``meta["layout"]``, ``meta["split_source"]``):

**The official annotation CSVs** (preferred when present), one per split, under the names the
releases give them, in ``ROOT``, ``ROOT/annotations``, ``ROOT/annotation`` or ``ROOT/kinetics400``::

    train.csv  validate.csv  test.csv              DeepMind's kinetics400.tar.gz
    train.csv  val.csv       test.csv              CVDF (s3.amazonaws.com/kinetics/400/annotations)
    kinetics_train.csv  kinetics_val.csv  kinetics_test.csv   mmaction2's download_annotations.sh

with the header ``label,youtube_id,time_start,time_end,split`` (``is_cc`` appended in some
releases; the columns are read by name, so their order and extra columns do not matter). A test
CSV without ``label`` (the first release's) gives no clips; its rows are counted in
``meta["unlabelled_rows"]``. Each row is the clip ``<youtube_id>_<time_start:06d>_<time_end:06d>``,
the name every downloader gives its file (the ActivityNet crawler, mmaction2's ``download.py``,
CVDF's tarballs), found by that name under the split's video folder, flat or one class folder
deep (class folders named with spaces, as the crawler writes them, or with underscores, after
mmaction2's ``rename_classnames.sh``)::

    ROOT/videos_train/<class>/<name>.mp4   ROOT/videos_val/...     mmaction2 (tools/data/kinetics)
    ROOT/train/<name>.mp4   ROOT/val/...   ROOT/test/...           CVDF's k400_extractor.sh (flat)
    ROOT/videos/train/<class>/<name>.mp4                           CVDF's arrange_by_classes.py
    ROOT/replacement/replacement_for_corrupted_k400/<name>.mp4     CVDF's replacements (used instead
                                                                   of the copies they replace)

(also ``ROOT/<split>_256/``; option ``video_dir`` names one folder for every split instead).

**mmaction2's list files** (``tools/data/kinetics/generate_videos_filelist.sh``), used when no CSV
is there (or with option ``split_source=lists``): ``kinetics400_train_list_videos.txt`` and
``kinetics400_val_list_videos.txt`` in ``ROOT`` (or ``ROOT/annotations``), one
``<class>/<name>.mp4 <label>`` per line, paths under ``ROOT/videos_train`` / ``ROOT/videos_val``.
Such a list holds only the videos that were on disk when it was made, so a copy's losses do not
show as missing (``meta["note"]``); the CSVs do show them.

Classes: the 400 official class names, shipped as ``labels/kinetics400/label_map.txt`` (DeepMind's
``kinetics-i3d`` ``data/label_map.txt``; line i is class i: their ASCII order, the index mmaction2
gives them too). A CSV label is matched with ``"`` removed and ``_`` read as a space; a label not
in the list is an error naming the file and line; a list file's label index is checked against
its class folder's name. Class text: the class name as published (``"passing American football
(in game)"``). Coarse prompt type ``"human"``.

Splits: ``train``, ``val``, and ``test`` when its CSV has labels. Cuts: the files are the
10-second clips already (each record is the whole file; the YouTube times stay in ``extra``).

**Missing and broken videos** (a real copy misses a few percent: YouTube videos go away): a clip
whose file is absent or empty (0 bytes: a download that failed) is reported,
not an error: ``missing()`` lists it (``video`` is None, ``extra["problem"]`` says why),
``meta["missing_reasons"]`` counts the reasons, ``meta["missing_by_split"]`` the losses per split
with their share. A file that exists but does not decode is found by stage one, which records the
clip as failed and goes on (docs/extraction.md). Rows repeating a clip are counted in
``meta["duplicate_rows"]`` (the first is kept), videos no row names in ``meta["unlisted_videos"]``.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from stages.datasets.base import AdapterOptions, ClipRecord, DatasetAdapter, DatasetIndex, DatasetLayoutError
from stages.datasets.names import read_text_lines, readable_name
from stages.registry import DATASET_ADAPTERS
from stages.settings import field

LABEL_MAP = Path(__file__).with_name("labels") / "kinetics400" / "label_map.txt"
ANN_DIRS = ("", "annotations", "annotation", "kinetics400")
#: each split's annotation CSV under the names the releases give it (DeepMind, CVDF, mmaction2)
CSV_NAMES = {"train": ("train.csv", "kinetics_train.csv", "kinetics400_train.csv", "kinetics-400_train.csv"),
             "val": ("validate.csv", "val.csv", "kinetics_val.csv", "kinetics400_val.csv", "kinetics-400_val.csv"),
             "test": ("test.csv", "kinetics_test.csv", "kinetics400_test.csv", "kinetics-400_test.csv")}
LIST_NAMES = {"train": "kinetics400_train_list_videos.txt", "val": "kinetics400_val_list_videos.txt"}
#: each split's video folder, in the layouts above (the first that exists is used)
VIDEO_DIRS = {"train": ("videos_train", "train", "videos/train", "train_256"),
              "val": ("videos_val", "val", "validate", "videos/val", "val_256"),
              "test": ("videos_test", "test", "videos/test", "test_256")}
REPLACEMENT_DIR = "replacement/replacement_for_corrupted_k400"
VIDEO_EXTS = (".mp4", ".mkv", ".webm")
CSV_COLUMNS = ("youtube_id", "time_start", "time_end")
SPLIT_SPELLINGS = {"train": ("train", "training"), "val": ("val", "validate", "validation"), "test": ("test",)}
_CLIP_NAME = re.compile(r"^(?P<yt>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")
_EXAMPLES = 5


def class_key(name: str) -> str:
    """A class name as the releases write it, compared: quotes dropped, ``_`` as a space."""
    return " ".join(name.replace('"', "").replace("_", " ").split())


def clip_name(youtube_id: str, start: int, end: int) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>``: every downloader's file name (without extension)."""
    return f"{youtube_id}_{start:06d}_{end:06d}"


@dataclass(frozen=True)
class Kinetics400Options(AdapterOptions):
    split_source: Literal["auto", "csv", "lists"] = field(
        "auto", help="What defines the clips: the official CSVs (csv), mmaction2's list files (lists), or auto "
                     "(the CSVs when present, else the lists).")
    video_dir: Optional[Path] = field(None, in_key=False, help="One folder holding the videos of every split "
                                      "(searched flat and one class folder deep), instead of each split's folder.")
    replacements: bool = field(True, help="Use CVDF's replacement_for_corrupted_k400 videos instead of the copies "
                               "they replace.")


@dataclass
class _VideoFolder:
    """The videos found under one folder (flat and one level of class folders), by file stem."""

    root: Optional[Path]
    by_stem: dict
    empty: set  # stems whose file is 0 bytes


def _scan(folder: Optional[Path]) -> _VideoFolder:
    by_stem, empty = {}, set()
    if folder is None:
        return _VideoFolder(None, by_stem, empty)
    stack = [(folder, 0)]
    while stack:
        d, depth = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir():
                    if depth == 0:
                        stack.append((Path(e.path), 1))
                    continue
                stem, ext = os.path.splitext(e.name)
                if ext.lower() not in VIDEO_EXTS:
                    continue
                by_stem.setdefault(stem, Path(e.path))
                if e.stat().st_size == 0:
                    empty.add(stem)
    return _VideoFolder(folder, by_stem, empty)


@DATASET_ADAPTERS.register_module("kinetics400")
class Kinetics400(DatasetAdapter):
    name = "kinetics400"
    Options = Kinetics400Options
    coarse_type = "human"
    skeleton = "coco17"

    # ------------------------------------------------------------------ files
    def _find(self, names) -> Optional[Path]:
        for d in ANN_DIRS:
            for n in names:
                p = self.root / d / n
                if p.is_file():
                    return p
        return None

    def _video_folder(self, split: str) -> Optional[Path]:
        if self.options.video_dir is not None:
            d = Path(self.options.video_dir)
            d = d if d.is_absolute() else self.root / d
            if not d.is_dir():
                raise DatasetLayoutError(f"kinetics400: video_dir {d} is not a folder")
            return d
        return next((self.root / d for d in VIDEO_DIRS[split] if (self.root / d).is_dir()), None)

    def _classes(self) -> tuple[list[str], dict[str, int]]:
        names = [l.strip() for l in read_text_lines(LABEL_MAP) if l.strip()]
        if len(names) != 400 or len(set(names)) != 400:
            raise DatasetLayoutError(f"{LABEL_MAP}: expected 400 distinct class names, got {len(names)}")
        return names, {class_key(n): i for i, n in enumerate(names)}

    # ------------------------------------------------------------------ the two sources
    def _csv_rows(self, path: Path, split: str, index: dict[str, int], unlabelled: dict):
        """``(line, clip name, label, extra)`` per row of an official CSV; label None for a row
        without one (counted in ``unlabelled``)."""
        lines = read_text_lines(path)
        rows = list(csv.reader(lines))
        if not rows:
            raise DatasetLayoutError(f"{path}: empty; expected the header label,youtube_id,time_start,time_end,split")
        header = [h.strip().lower() for h in rows[0]]
        absent = [c for c in CSV_COLUMNS if c not in header]
        if absent:
            raise DatasetLayoutError(f"{path}:1: header {rows[0]} lacks {absent}; expected "
                                     "label,youtube_id,time_start,time_end,split[,is_cc]")
        col = {h: i for i, h in enumerate(header)}
        has_label = "label" in col
        if not has_label and split != "test":
            raise DatasetLayoutError(f"{path}:1: no label column (only the test CSV may lack it)")
        out = []
        for n, row in enumerate(rows[1:], start=2):
            if not row or not any(x.strip() for x in row):
                continue
            if len(row) < len(header):
                raise DatasetLayoutError(f"{path}:{n}: {len(row)} fields, the header has {len(header)}")
            yt = row[col["youtube_id"]].strip()
            try:
                start, end = (int(float(row[col[c]])) for c in ("time_start", "time_end"))
            except ValueError:
                raise DatasetLayoutError(f"{path}:{n}: time_start/time_end {row[col['time_start']]!r}, "
                                         f"{row[col['time_end']]!r} are not numbers") from None
            if not yt:
                raise DatasetLayoutError(f"{path}:{n}: empty youtube_id")
            if "split" in col and row[col["split"]].strip().lower() not in SPLIT_SPELLINGS[split]:
                raise DatasetLayoutError(f"{path}:{n}: split {row[col['split']]!r} in the {split} file")
            extra = {"youtube_id": yt, "time_start": start, "time_end": end}
            if not has_label or not row[col["label"]].strip():
                unlabelled[split] = unlabelled.get(split, 0) + 1
                out.append((n, clip_name(yt, start, end), None, extra))  # named (its video is no stray), no clip
                continue
            text = row[col["label"]]
            label = index.get(class_key(text))
            if label is None:
                raise DatasetLayoutError(f"{path}:{n}: label {text!r} is not one of the 400 Kinetics-400 classes "
                                         f"({LABEL_MAP.name})")
            out.append((n, clip_name(yt, start, end), label, extra))
        return out

    def _list_rows(self, path: Path, classes: list[str]):
        """``(line, relative path, label, extra)`` per line of an mmaction2 list file."""
        out = []
        for n, line in enumerate(read_text_lines(path), start=1):
            if not line.strip():
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DatasetLayoutError(f"{path}:{n}: expected '<class>/<name>.mp4 <label>', got {line!r}")
            rel, label = parts[0].strip(), int(parts[1])
            if not 0 <= label < len(classes):
                raise DatasetLayoutError(f"{path}:{n}: label {label} outside [0, {len(classes)})")
            folder = os.path.dirname(rel)
            if folder and class_key(os.path.basename(folder)) != class_key(classes[label]):
                raise DatasetLayoutError(f"{path}:{n}: label {label} is {classes[label]!r} but the video lies in the "
                                         f"class folder {os.path.basename(folder)!r}")
            extra = {}
            m = _CLIP_NAME.match(os.path.splitext(os.path.basename(rel))[0])
            if m:
                extra = {"youtube_id": m["yt"], "time_start": int(m["start"]), "time_end": int(m["end"])}
            out.append((n, rel, label, extra))
        return out

    # ------------------------------------------------------------------ load
    def load(self, progress=None) -> DatasetIndex:
        classes, index = self._classes()
        csvs = {s: self._find(names) for s, names in CSV_NAMES.items()}
        lists = {s: self._find((name,)) for s, name in LIST_NAMES.items()}
        source = self.options.split_source
        have_csv = csvs["train"] is not None and csvs["val"] is not None
        have_lists = lists["train"] is not None and lists["val"] is not None
        if source == "auto":
            source = "csv" if have_csv else "lists" if have_lists else None
        if source is None or (source == "csv" and not have_csv) or (source == "lists" and not have_lists):
            where = ", ".join(str(self.root / d) for d in ANN_DIRS)
            want = {"csv": "the official CSVs (train.csv and validate.csv / val.csv, or mmaction2's "
                           "kinetics_train.csv and kinetics_val.csv)",
                    "lists": f"mmaction2's {LIST_NAMES['train']} and {LIST_NAMES['val']}"}
            asked = [want[source]] if source else list(want.values())
            raise DatasetLayoutError(f"kinetics400: expected {' or '.join(asked)} in one of: {where}")
        meta: dict = {"label_source": "shipped labels/kinetics400/label_map.txt (DeepMind kinetics-i3d)",
                      "label_file_sha256": hashlib.sha256(LABEL_MAP.read_bytes()).hexdigest()}
        if source == "csv":
            clips, source_files = self._load_csv(csvs, index, meta)
        else:
            clips, source_files = self._load_lists(lists, classes, meta)
        return DatasetIndex(name=self.name, classes=classes, coarse_type=self.coarse_type, skeleton=self.skeleton,
                            clips=clips, root=str(self.root), source_files=source_files, meta=meta)

    def _load_csv(self, csvs: dict, index: dict[str, int], meta: dict):
        replacements = _scan(self.root / REPLACEMENT_DIR if self.options.replacements
                             and (self.root / REPLACEMENT_DIR).is_dir() else None)
        ids = Counter(s[:11] for s in replacements.by_stem)
        by_id = {s[:11]: p for s, p in replacements.by_stem.items() if ids[s[:11]] == 1 and not _CLIP_NAME.match(s)}
        clips, source_files, seen = [], [], {}
        unlabelled, duplicates, dup_examples, rows_per_file = {}, 0, [], {}
        reasons, lost, folders, unlisted, replaced = Counter(), Counter(), {}, {}, 0
        counted = Counter()
        for split, path in csvs.items():
            if path is None:
                continue
            source_files.append(str(path))
            rows = self._csv_rows(path, split, index, unlabelled)
            rows_per_file[split] = len(rows)
            videos = _scan(self._video_folder(split))
            folders[split] = str(videos.root) if videos.root else None
            named = set()
            for n, name, label, extra in rows:
                if label is None:
                    named.add(name)
                    continue
                if name in seen:
                    duplicates += 1
                    if len(dup_examples) < _EXAMPLES:
                        dup_examples.append(f"{path.name}:{n} {name} (first: {seen[name]})")
                    continue
                seen[name] = f"{path.name}:{n}"
                named.add(name)
                counted[split] += 1
                video, problem = self._video_for(name, videos, replacements, by_id, extra)
                if problem:
                    reasons[problem] += 1
                    lost[split] += 1
                    extra = dict(extra, problem=problem)
                elif extra.get("replacement"):
                    replaced += 1
                clips.append(ClipRecord(readable_name(name), split, label, video, extra=extra))
            extra_videos = sorted(set(videos.by_stem) - named)
            if extra_videos:
                unlisted[split] = {"count": len(extra_videos), "examples": extra_videos[:_EXAMPLES]}
        meta.update({
            "layout": "official annotation CSVs",
            "split_source": "the official CSVs",
            "split_files": {s: _rel(p, self.root) for s, p in csvs.items() if p is not None},
            "rows": rows_per_file,
            "video_folders": folders,
            "missing_reasons": dict(reasons),
            "missing_by_split": {s: f"{lost[s]} of {counted[s]} ({100 * lost[s] / max(counted[s], 1):.1f}%)"
                                 for s in counted},
        })
        if unlabelled:
            meta["unlabelled_rows"] = {s: f"{k} (no label: not used)" for s, k in unlabelled.items()}
        if duplicates:
            meta["duplicate_rows"] = {"count": duplicates, "examples": dup_examples}
        if unlisted:
            meta["unlisted_videos"] = unlisted
        if replacements.root is not None:
            meta["replacements"] = f"{replaced} clip(s) from {_rel(replacements.root, self.root)}"
        return clips, source_files

    @staticmethod
    def _video_for(name: str, videos: _VideoFolder, replacements: _VideoFolder, by_id: dict, extra: dict):
        """(video path or None, problem or None) of the clip file ``name``; marks ``extra`` when a
        CVDF replacement is used (matched by name, or by YouTube id as CVDF's own script does, for a
        replacement whose name is not another clip's)."""
        rep = replacements.by_stem.get(name)
        if rep is None:
            rep = by_id.get(extra.get("youtube_id", "")[:11])
        if rep is not None and rep.stem not in replacements.empty:
            extra["replacement"] = True
            return str(rep), None
        path = videos.by_stem.get(name)
        if path is None:
            return None, "no video file" if videos.root is not None else "no video folder for the split"
        if name in videos.empty:
            extra["video"] = str(path)
            return None, "empty file (0 bytes)"
        return str(path), None

    def _load_lists(self, lists: dict, classes: list[str], meta: dict):
        clips, source_files, seen = [], [], set()
        reasons, lost, counted, folders = Counter(), Counter(), Counter(), {}
        for split, path in lists.items():
            source_files.append(str(path))
            folder = self._video_folder(split) or self.root / f"videos_{split}"
            folders[split] = str(folder)
            for n, rel, label, extra in self._list_rows(path, classes):
                video = folder / rel
                cid = readable_name(os.path.splitext(os.path.basename(rel))[0])
                if cid in seen:
                    raise DatasetLayoutError(f"{path}:{n}: {cid} listed twice")
                seen.add(cid)
                counted[split] += 1
                problem = None
                if not video.is_file():
                    problem = "no video file"
                elif video.stat().st_size == 0:
                    problem = "empty file (0 bytes)"
                if problem:
                    reasons[problem] += 1
                    lost[split] += 1
                    extra = dict(extra, problem=problem, video=str(video))
                clips.append(ClipRecord(cid, split, label, None if problem else str(video), extra=extra))
        meta.update({
            "layout": "mmaction2 tools/data/kinetics (list files)",
            "split_source": "mmaction2's video lists",
            "split_files": {s: _rel(p, self.root) for s, p in lists.items()},
            "video_folders": folders,
            "missing_reasons": dict(reasons),
            "missing_by_split": {s: f"{lost[s]} of {counted[s]} ({100 * lost[s] / max(counted[s], 1):.1f}%)"
                                 for s in counted},
            "note": "the lists hold only the videos present when generate_videos_filelist.sh ran: videos lost "
                    "before that are not counted as missing (the official CSVs would show them)",
        })
        return clips, source_files


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
