"""Bring your own dataset: ``--dataset custom --root DIR [--coarse-type WORD]``.

Layout::

    DIR/labels.txt   one label text per line; line i (from 0) is class i. Blank lines at the
                     end are ignored, anywhere else they are an error; texts must be unique.
    DIR/train.csv    path,label[,start_frame,end_frame]
    DIR/val.csv      same
    DIR/test.csv     optional, same

CSV rules: ``path`` is relative to DIR (an absolute path is taken as is); ``label`` is the class
index, or a text exactly as it appears in ``labels.txt`` (option ``label_field``: ``auto``
takes either and refuses a value that is both, for two different classes, as ``0`` is when
``labels.txt`` holds numbers; ``index`` or ``text`` says which); ``start_frame``/``end_frame``
(both or neither; may be left empty) cut the decoded frames ``[start_frame, end_frame)``. A first
line whose second field is literally ``label`` is a header and is skipped. Lines starting with
``#`` are comments. A split file that lists no clip is warned of
(``meta["split_files_without_clips"]``). The clip id is the path relative to DIR without its
extension (an absolute path: its base name; when two absolute paths share one, each of them the
path under DIR, or the whole path outside it), plus ``@start-end`` when a cut is given (so one
video can give several clips); a clip id appearing twice is an error.

``labels.txt`` in UCF101's ``classInd.txt`` form (``1 ApplyEyeMakeup``: every line a running
number, a space and a name) or an ``index,name`` table is refused: its numbers would become part
of the prompts' texts. It has no header and no comments: a first line that reads as one
(``name``, ``id,name``) and a line starting with ``#`` are refused (each would be a class, every
class after it one off). A split file's header naming other columns than
``start_frame,end_frame`` after ``path,label`` (a cut in seconds, other fields) is refused: they
would be read as frame numbers. One video listed twice under two spellings (relative and
absolute, through ``..`` or a symlink) with the same cut is refused.

Encodings: ``labels.txt`` and the CSV files are UTF-8 (a BOM is allowed); a byte that is not
raises :class:`DatasetLayoutError` naming the file and line, except in a ``path`` field, which
is a file name and keeps the bytes it has (so a latin-1 ``café.mp4`` listed by a latin-1 CSV is
found). A clip id made from a name that is not UTF-8 writes those bytes ``\\xNN``
(:func:`stages.datasets.names.readable_name`).

Skeleton files (``--pose-source pkl:PATH``) name a clip by the video's path under DIR (without
extension) or by its base name, as pyskl's ``custom_2d_skeleton.py`` and mmaction2's extraction
scripts write ``frame_dir``: :meth:`CustomDataset.clip_aliases`.

Adapter option ``coarse_type`` (``--coarse-type``) is the prompt's coarse word (default
``"human"``). Videos that do not exist are not an error here: ``pipeline dataset info`` reports
them as missing.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional

from stages.datasets.base import (
    AdapterOptions,
    ClipRecord,
    DatasetAdapter,
    DatasetIndex,
    DatasetLayoutError,
)
from stages.datasets.names import is_text, read_text_lines, readable_name, refuse_utf16
from stages.registry import DATASET_ADAPTERS
from stages.settings import field

log = logging.getLogger(__name__)


def _comments_blanked(text: str, root: Path, path: Path) -> Iterator[str]:
    """The lines of a split file with ``#`` comment lines blanked (line numbers kept). A comment
    is a line that starts with ``#``; a path that starts with one is listed quoted
    (``"#1 take.mp4",0``), and a comment line that names a video that exists is said, not dropped
    in silence."""
    for n, line in enumerate(io.StringIO(text, newline=""), 1):
        if not line.lstrip().startswith("#"):
            yield line
            continue
        fields = next(csv.reader([line.lstrip()]), [])
        if len(fields) > 1 and fields[0].strip() and (root / fields[0].strip()).is_file():
            log.warning("custom: %s:%d: %r is a comment (it starts with '#'), though the video %s exists: to list "
                        "it, quote its path (\"%s\",...)", path, n, line.strip(), root / fields[0].strip(),
                        fields[0].strip())
        yield "\n"


SPLIT_FILES = (("train", "train.csv", True), ("val", "val.csv", True), ("test", "test.csv", False))


def read_labels(path: Path) -> list[str]:
    lines = [l.strip() for l in read_text_lines(path)]
    while lines and not lines[-1]:
        lines.pop()
    for i, l in enumerate(lines):
        if not l:
            raise DatasetLayoutError(f"{path}:{i + 1}: empty label text (line i is class i)")
    seen: dict[str, int] = {}
    for i, l in enumerate(lines):
        if l in seen:
            raise DatasetLayoutError(
                f"{path}:{i + 1}: label text {l!r} repeats line {seen[l] + 1}; texts must be unique"
            )
        seen[l] = i
    if not lines:
        raise DatasetLayoutError(f"{path}: no label texts")
    for i, l in enumerate(lines):  # a line taken as a class shifts every class after it by one
        if l.startswith("#"):
            raise DatasetLayoutError(f"{path}:{i + 1}: {l!r} starts with '#': labels.txt has no comments (line i is "
                                     "class i's text, so it would be a class). Delete the line if it is one, and check "
                                     "the CSVs' index labels of the classes after it")
    numbered = [re.match(r"^(\d+)[\s,]+\S", l) for l in lines]
    # (a header line above them, or a CSV's 'N,name', is the same mapping)
    if len(lines) > 1 and (all(numbered) or all(m and "," in m.group(0) for m in numbered[1:])):
        run = [int(m.group(1)) for m in numbered if m]
        first = run[0]
        if first in (0, 1) and run == list(range(first, first + len(run))):
            raise DatasetLayoutError(
                f"{path}: every line is a running number and a name ({next(m for m in numbered if m).string!r}), "
                "as UCF101's classInd.txt or an 'index,name' table; line i must be class i's text alone, or the "
                "numbers become part of the prompts. Drop them (cut -d' ' -f2- classInd.txt > labels.txt) and keep "
                f"the CSVs' labels as they are if they are names, or less {first} if they are numbers")
    if _LABELS_HEADER.match(lines[0]):
        raise DatasetLayoutError(f"{path}:1: {lines[0]!r} reads as a header: labels.txt has none (line i is class "
                                 "i's text, so it would be class 0 and every class after it one off). Delete the line "
                                 "if it is one, and check the CSVs' index labels: they then mean the class one line up")
    return lines


#: a first line of labels.txt that names columns, not a class (``name``, ``id,name``, ``class_name``,
#: pandas' ``action``); a phrase ('no action', 'name tag') or 'text' alone stays a class
_LABELS_HEADER = re.compile(r"^(?:(?:id|idx|index|class_?id|label_?id)\s*[,;\t]\s*)?"
                            r"(?:names?|labels?|class(?:es)?|class_?names?|label_?names?|actions?|categor(?:y|ies)|"
                            r"label_?text|class_?text)$", re.I)

#: a split file's header columns after ``path,label`` that this reader takes: the frame cut
CUT_COLUMNS = ("start_frame", "end_frame")


@dataclass(frozen=True)
class CustomOptions(AdapterOptions):
    coarse_type: Optional[str] = field(None, help="The prompt's coarse action type, '{label}, a video of {coarse type} action' (--coarse-type); default: human.")
    # in no key or request: the labels it reads are hashed per clip, and entries made before the
    # option existed must still be found by their request
    label_field: Literal["auto", "index", "text"] = field(
        "auto", in_key=False, help="What the CSVs' label is: auto (a class index or a text of labels.txt; a value that is both, "
                     "for two classes, is refused), index, or text (for labels.txt lines that are numbers).")


#: the whole layout, for an error about any part of it
LAYOUT_HINT = ("A custom dataset is DIR/labels.txt, DIR/train.csv and DIR/val.csv (optionally DIR/test.csv), the "
               "CSV lines 'path,label' with paths relative to DIR (README: Bring your own dataset; "
               "docs/datasets.md: custom).")


@DATASET_ADAPTERS.register_module("custom")
class CustomDataset(DatasetAdapter):
    name = "custom"
    Options = CustomOptions
    coarse_type = "human"
    skeleton = "coco17"

    def load(self, progress=None) -> DatasetIndex:
        root = self.root
        labels_path = root / "labels.txt"
        if not labels_path.is_file():
            raise DatasetLayoutError(f"custom: expected {labels_path} (one label text per line; line i is class i). "
                                     + LAYOUT_HINT)
        classes = read_labels(labels_path)
        by_text = {t: i for i, t in enumerate(classes)}
        coarse = self.options.coarse_type or self.coarse_type
        source_files = [str(labels_path)]
        rows: list[tuple[ClipRecord, str, str]] = []  # (clip, where, the clip id when base names collide)
        empty: list[str] = []
        for split, fname, required in SPLIT_FILES:
            path = root / fname
            if not path.is_file():
                if required:
                    raise DatasetLayoutError(f"custom: expected {path} with 'path,label[,start_frame,end_frame]' "
                                             f"lines. {LAYOUT_HINT}")
                continue
            source_files.append(str(path))
            # bytes that are not UTF-8 survive as surrogates: a path keeps them, any other field refuses them
            raw = path.read_bytes()
            refuse_utf16(raw, path)
            text = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
            listed = len(rows)
            first = True  # the first row that is not blank or a comment: where a header may be
            for n, row in enumerate(csv.reader(_comments_blanked(text, root, path)), 1):
                row = [c.strip() for c in row]
                if not row or not any(row):
                    continue
                if len(row) == 1 and row[0].startswith("#"):  # a comment quoted whole (spreadsheets' QUOTE_ALL)
                    continue
                header_place, first = first, False
                if header_place and len(row) > 1 and row[1].lower() == "label":
                    extra = [c.lower() for c in row[2:]]
                    if extra and extra != list(CUT_COLUMNS)[:len(extra)] or len(extra) == 1:
                        # read by place, 'start_sec,end_sec' would cut frames 3-7 of a 10 s video
                        raise DatasetLayoutError(
                            f"{path}:{n}: header columns {','.join(row[2:])!r} after 'path,label': this reader takes "
                            f"'{','.join(CUT_COLUMNS)}' there (decoded frame numbers, [start, end)), or nothing. A cut "
                            "in seconds is not read: convert it (frame = round(seconds x fps)); drop other columns")
                    continue
                if header_place and len(row) > 1 and row[0].lower() == "label":
                    raise DatasetLayoutError(f"{path}:{n}: the header puts 'label' first; the columns are "
                                             "'path,label[,start_frame,end_frame]'")
                for field_name, value in zip(("label", "start_frame", "end_frame"), row[1:]):
                    if not is_text(value):
                        raise DatasetLayoutError(f"{path}:{n}: the {field_name} field is not UTF-8 text "
                                                 f"({readable_name(value)!r}); save the file as UTF-8")
                rows.append(self._row(path, n, row, split, classes, by_text))
            if len(rows) == listed:  # a val.csv left empty on purpose (the layout requires it) stays allowed
                empty.append(fname)
                log.warning("custom: %s lists no clip: the %s split is empty", path, split)
        clips = _unique_ids(rows)
        _no_video_twice(clips, rows)
        return DatasetIndex(
            name=self.name, classes=classes, coarse_type=coarse, skeleton=self.skeleton,
            clips=clips, root=str(root), source_files=source_files,
            meta={"coarse_type": coarse, **({"split_files_without_clips": empty} if empty else {})},
        )

    def _row(self, path, n, row, split, classes, by_text) -> tuple[ClipRecord, str, str]:
        where = f"{path}:{n}"
        if len(row) not in (2, 3, 4):
            raise DatasetLayoutError(
                f"{where}: expected 'path,label[,start_frame,end_frame]', got {','.join(row)!r}"
            )
        rel, lab = row[0], row[1]
        if not rel:
            raise DatasetLayoutError(f"{where}: empty path")
        label = self._label(where, lab, classes, by_text)
        sf = row[2] if len(row) > 2 else ""
        ef = row[3] if len(row) > 3 else ""
        if bool(sf) != bool(ef):
            raise DatasetLayoutError(f"{where}: give both start_frame and end_frame or neither")
        cut = {}
        if sf:
            try:
                s, e = int(sf), int(ef)
            except ValueError:
                raise DatasetLayoutError(f"{where}: start_frame/end_frame must be integers") from None
            if not 0 <= s < e:
                raise DatasetLayoutError(f"{where}: need 0 <= start_frame < end_frame, got {s}, {e}")
            cut = {"start_frame": s, "end_frame": e}
        p = Path(rel)
        video = p if p.is_absolute() else self.root / p
        if p.is_absolute():
            # the base name (the id of entries made so far); the path when base names collide
            base = readable_name(p.stem)
            under = p.with_suffix("").relative_to(self.root) if p.is_relative_to(self.root) else None
            long = readable_name(under.as_posix() if under is not None else p.with_suffix("").as_posix().lstrip("/"))
        else:
            base = long = readable_name(p.with_suffix("").as_posix())
        at = f"@{cut['start_frame']}-{cut['end_frame']}" if cut else ""
        return ClipRecord(base + at, split, label, str(video), **cut), where, long + at

    def _label(self, where: str, lab: str, classes: list[str], by_text: dict[str, int]) -> int:
        how = self.options.label_field
        # ASCII digits only: '²'.isdigit() is true and int() then fails naming no file, and '１' is 1
        index = int(lab) if re.fullmatch(r"-?[0-9]+", lab) else None
        as_index = index if index is not None and 0 <= index < len(classes) else None
        as_text = by_text.get(lab)
        if how == "auto" and as_index is not None and as_text is not None and as_index != as_text:
            raise DatasetLayoutError(
                f"{where}: label {lab!r} is both class index {as_index} ({classes[as_index]!r}) and the text of "
                f"labels.txt line {as_text + 1} (class {as_text}); say which the CSVs hold: -o label_field=index "
                "or -o label_field=text")
        if how != "text" and as_index is not None:
            return as_index
        if how != "index" and as_text is not None:
            return as_text
        if how != "text" and index is not None:
            raise DatasetLayoutError(f"{where}: label {index} outside [0, {len(classes)})")
        import difflib

        close = next((t for t in by_text if t.lower() == lab.lower()), None) or next(
            iter(difflib.get_close_matches(lab, list(by_text), n=1, cutoff=0.6)), None)
        what = {"auto": "neither a class index nor a line of labels.txt", "index": "not a class index (label_field=index)",
                "text": "not a line of labels.txt (label_field=text)"}[how]
        raise DatasetLayoutError(f"{where}: label {lab!r} is {what}"
                                 + (f"; did you mean {close!r}?" if close and how != "index" else ""))

    def clip_aliases(self, clip: ClipRecord) -> tuple[str, ...]:
        """The video's base name (``v/c0`` -> ``c0``), the ``frame_dir`` pyskl's
        ``custom_2d_skeleton.py`` and mmaction2's extraction scripts write; for an uncut clip also
        the base name up to its first dot (pyskl cuts ``a.b.mp4`` to ``a``). A cut clip's base name
        keeps its ``@start-end``: a whole video's skeleton is not the cut's."""
        base = clip.clip_id.rsplit("/", 1)[-1]
        out = [base] if base != clip.clip_id else []
        head = base.split(".")[0]
        if clip.start_frame is None and head and head != base:
            out.append(head)
        return tuple(out)


def _no_video_twice(clips: list[ClipRecord], rows: list[tuple[ClipRecord, str, str]]) -> None:
    """Refuse one video (with one cut) listed twice under two spellings (a relative and an absolute
    path, ``v/../v/a.mp4``, a symlink): clip ids differ, so :func:`_unique_ids` lets it through, and
    the same footage would sit in train and in val (with another label, maybe). Compared by the
    resolved path; byte-identical copies under other names are not found here. ``clips``: the
    :func:`_unique_ids` of ``rows``, in their order."""
    seen: dict[tuple, tuple[str, str]] = {}
    for clip, (_, where, _) in zip(clips, rows):
        if not clip.video:
            continue
        key = (os.path.realpath(clip.video), tuple(sorted(clip.cut().items())))
        if key in seen:
            other_id, other_where = seen[key]
            raise DatasetLayoutError(
                f"{where}: clip {clip.clip_id!r} ({clip.split}) is the video of clip {other_id!r} listed at "
                f"{other_where}, by another path ({key[0]}): the same footage twice"
                + (" (in two splits)" if other_where.rsplit(":", 1)[0] != where.rsplit(":", 1)[0] else "")
                + "; list it once")
        seen[key] = (clip.clip_id, where)


def _unique_ids(rows: list[tuple[ClipRecord, str, str]]) -> list[ClipRecord]:
    """The clips, each under its own id: clips listed by absolute paths that share a base name (the
    numbered files of a folder per class) take their paths; an id still listed twice is an error."""
    longs: dict[str, set[str]] = {}
    for clip, _, long in rows:
        longs.setdefault(clip.clip_id, set()).add(long)
    ids: dict[str, tuple[str, Optional[str]]] = {}
    out = []
    for clip, where, long in rows:
        if len(longs[clip.clip_id]) > 1:
            clip = dataclasses.replace(clip, clip_id=long)
        if clip.clip_id in ids:
            there, video = ids[clip.clip_id]
            if video and clip.video and video != clip.video:  # (not the same line twice: two files, one id)
                raise DatasetLayoutError(
                    f"{where}: {os.path.basename(clip.video)!r} and {os.path.basename(video)!r} (listed at {there}) "
                    f"both give clip id {clip.clip_id!r} (ids drop the video's extension): rename one")
            raise DatasetLayoutError(f"{where}: clip {clip.clip_id!r} already listed at {there}")
        ids[clip.clip_id] = (where, clip.video)
        out.append(clip)
    return out
