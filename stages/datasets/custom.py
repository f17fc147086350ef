"""Bring your own dataset: ``--dataset custom --root DIR [--coarse-type WORD]``.

Layout::

    DIR/labels.txt   one label text per line; line i (from 0) is class i. Blank lines at the
                     end are ignored, anywhere else they are an error; texts must be unique.
    DIR/train.csv    path,label[,start_frame,end_frame]
    DIR/val.csv      same
    DIR/test.csv     optional, same

CSV rules: ``path`` is relative to DIR (an absolute path is taken as is); ``label`` is the class
index, or a text exactly as it appears in ``labels.txt``; ``start_frame``/``end_frame`` (both or
neither; may be left empty) cut the decoded frames ``[start_frame, end_frame)``. A first line
whose second field is literally ``label`` is a header and is skipped. Lines starting with ``#``
are comments. The clip id is the path relative to DIR without its extension, plus
``@start-end`` when a cut is given (so one video can give several clips); a clip id appearing
twice is an error.

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
import io
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
from stages.datasets.names import is_text, read_text_lines, readable_name
from stages.registry import DATASET_ADAPTERS
from stages.settings import field

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
    return lines


@dataclass(frozen=True)
class CustomOptions(AdapterOptions):
    coarse_type: Optional[str] = field(None, help="The prompt's coarse action type, '{label}, a video of {coarse type} action' (--coarse-type); default: human.")


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
        clips: list[ClipRecord] = []
        ids: dict[str, str] = {}
        for split, fname, required in SPLIT_FILES:
            path = root / fname
            if not path.is_file():
                if required:
                    raise DatasetLayoutError(f"custom: expected {path} with 'path,label[,start_frame,end_frame]' "
                                             f"lines. {LAYOUT_HINT}")
                continue
            source_files.append(str(path))
            # bytes that are not UTF-8 survive as surrogates: a path keeps them, any other field refuses them
            text = path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
            for n, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
                row = [c.strip() for c in row]
                if not row or not any(row) or row[0].startswith("#"):
                    continue
                if n == 1 and len(row) > 1 and row[1].lower() == "label":
                    continue
                if n == 1 and len(row) > 1 and row[0].lower() == "label":
                    raise DatasetLayoutError(f"{path}:1: the header puts 'label' first; the columns are "
                                             "'path,label[,start_frame,end_frame]'")
                for field_name, value in zip(("label", "start_frame", "end_frame"), row[1:]):
                    if not is_text(value):
                        raise DatasetLayoutError(f"{path}:{n}: the {field_name} field is not UTF-8 text "
                                                 f"({readable_name(value)!r}); save the file as UTF-8")
                clips.append(self._row(path, n, row, split, classes, by_text, ids))
        return DatasetIndex(
            name=self.name, classes=classes, coarse_type=coarse, skeleton=self.skeleton,
            clips=clips, root=str(root), source_files=source_files, meta={"coarse_type": coarse},
        )

    def _row(self, path, n, row, split, classes, by_text, ids) -> ClipRecord:
        where = f"{path}:{n}"
        if len(row) not in (2, 3, 4):
            raise DatasetLayoutError(
                f"{where}: expected 'path,label[,start_frame,end_frame]', got {','.join(row)!r}"
            )
        rel, lab = row[0], row[1]
        if not rel:
            raise DatasetLayoutError(f"{where}: empty path")
        if lab.lstrip("-").isdigit():
            label = int(lab)
            if not 0 <= label < len(classes):
                raise DatasetLayoutError(f"{where}: label {label} outside [0, {len(classes)})")
        elif lab in by_text:
            label = by_text[lab]
        else:
            import difflib

            close = next((t for t in by_text if t.lower() == lab.lower()), None) or next(
                iter(difflib.get_close_matches(lab, list(by_text), n=1, cutoff=0.6)), None)
            raise DatasetLayoutError(f"{where}: label {lab!r} is neither a class index nor a line of labels.txt"
                                     + (f"; did you mean {close!r}?" if close else ""))
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
        base = readable_name(p.with_suffix("").as_posix() if not p.is_absolute() else p.stem)
        cid = f"{base}@{cut['start_frame']}-{cut['end_frame']}" if cut else base
        if cid in ids:
            raise DatasetLayoutError(f"{where}: clip {cid!r} already listed at {ids[cid]}")
        ids[cid] = where
        return ClipRecord(cid, split, label, str(video), **cut)

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
