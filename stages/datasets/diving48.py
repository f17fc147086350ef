"""Diving48 (V2 annotations): ``diving48``.

Accepted layout under ``--root``::

    ROOT/
      Diving48_V2_train.json   [{"vid_name": str, "label": int, "start_frame": int,
      Diving48_V2_test.json      "end_frame": int}, ...]  (in ROOT, ROOT/annotations or
                                 ROOT/annotation; the V1 files Diving48_train.json /
                                 Diving48_test.json only with ``-o annotations=V1``)
      Diving48_vocab.json      optional: 48 [takeoff, somersaults, twists, flight position]
      rgb/<vid_name>.mp4       videos (also ROOT/videos/ or ROOT/ itself)

Splits: the dataset's own names, ``train`` and ``test`` (Diving48 has no validation split; the
published results are on ``test``).

Annotations: V2 by default, the corrected labels the published results use (mmaction2's
``tools/data/diving48`` fetches only these). V1 labels 6,639 of the 16,997 clips both versions list
differently and lists 1,042 clips V2 dropped, so a copy with only the V1 files is refused, naming
them, rather than read in V2's place; ``-o annotations=V1`` reads them on purpose (both splits).

Cuts: the published ``rgb`` videos are already trimmed to the dive, so each record is the whole
file; ``start_frame``/``end_frame`` are kept in ``ClipRecord.extra``. Adapter option
``frame_range=True`` applies them as the cut ``[start_frame, end_frame)`` instead.

Label texts: each class's composition from ``Diving48_vocab.json`` (or, without it, the shipped
copy ``labels/diving48/label_map_mmaction2.txt``, same order) made readable:
``["Back", "15som", "05Twis", "FREE"]`` -> ``"back takeoff, 1.5 somersaults, 0.5 twist, free
position"``; ``Dive`` -> ``"dive"`` (no somersault), ``NoTwis`` -> ``"no twist"``, ``STR`` ->
``"straight position"``. Coarse prompt type ``"diving"``.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from stages.datasets.base import (
    AdapterOptions,
    ClipRecord,
    DatasetAdapter,
    DatasetIndex,
    DatasetLayoutError,
    read_json,
)
from stages.registry import DATASET_ADAPTERS
from stages.settings import field

LABEL_MAP = Path(__file__).with_name("labels") / "diving48" / "label_map_mmaction2.txt"
ANN_DIRS = ("", "annotations", "annotation")
VIDEO_DIRS = ("rgb", "videos", "")
POSITIONS = {"FREE": "free", "PIKE": "pike", "TUCK": "tuck", "STR": "straight"}
#: each annotation version's file of a split
ANNOTATION_FILES = {"V2": "Diving48_V2_{split}.json", "V1": "Diving48_{split}.json"}
#: V1 against V2 over the clips both list (the published files, compared 2026-12-05)
V1_DIFFERS = "V1 labels 6,639 of the 16,997 clips both versions list differently and lists 1,042 clips V2 dropped"


def _number(digits: str) -> str:
    """``"15"`` -> ``"1.5"``, ``"05"`` -> ``"0.5"``, ``"2"`` -> ``"2"`` (Diving48 spelling)."""
    if len(digits) == 1:
        return digits
    return f"{digits[:-1]}.{digits[-1]}"


def _count(digits: str, noun: str) -> str:
    n = _number(digits)
    return f"{n} {noun}" + ("s" if float(n) > 1 else "")


def readable_composition(parts) -> str:
    """``[takeoff, somersaults, twists, position]`` -> readable label text."""
    if isinstance(parts, str):
        parts = parts.split("+")
    if len(parts) != 4:
        raise ValueError(f"expected [takeoff, somersaults, twists, position], got {parts!r}")
    takeoff, som, twist, pos = (str(p).strip() for p in parts)
    out = [f"{takeoff.lower()} takeoff"]
    m = re.fullmatch(r"(\d+)som", som, re.I)
    if som.lower() == "dive":
        out.append("dive")
    elif m:
        out.append(_count(m.group(1), "somersault"))
    else:
        out.append(som.lower())
    m = re.fullmatch(r"(\d+)twis", twist, re.I)
    if twist.lower() in ("notwis", "notwist"):
        out.append("no twist")
    elif m:
        out.append(_count(m.group(1), "twist"))
    else:
        out.append(twist.lower())
    out.append(f"{POSITIONS.get(pos.upper(), pos.lower())} position")
    return ", ".join(out)


@dataclass(frozen=True)
class Diving48Options(AdapterOptions):
    frame_range: bool = field(False, help="Cut each clip to the [start_frame, end_frame) its annotation gives "
                              "(default: the whole video, as the published clips are already trimmed).")
    annotations: Literal["V2", "V1"] = field("V2", help="Annotation version: V2 (Diving48_V2_*.json, the "
                                             "corrected labels the published results use) or V1 "
                                             "(Diving48_train/test.json, whose labels differ on 6,639 of the "
                                             "16,997 clips both list).")


@DATASET_ADAPTERS.register_module("diving48")
class Diving48(DatasetAdapter):
    name = "diving48"
    Options = Diving48Options
    coarse_type = "diving"
    skeleton = "coco17"

    def _find(self, names) -> Optional[Path]:
        for name in names:
            for d in ANN_DIRS:
                p = self.root / d / name
                if p.is_file():
                    return p
        return None

    def _annotation(self, split: str) -> Path:
        """The annotation file of ``split`` in the version asked for (``annotations``)."""
        version = self.options.annotations
        name = ANNOTATION_FILES[version].format(split=split)
        p = self._find((name,))
        if p is not None:
            return p
        other = "V1" if version == "V2" else "V2"
        found = self._find((ANNOTATION_FILES[other].format(split=split),))
        where = ", ".join(str(self.root / d) for d in ANN_DIRS)
        if found is not None and version == "V2":
            raise DatasetLayoutError(
                f"diving48: {found} is a V1 annotation file, and there is no {name} (in one of: {where}). "
                f"{V1_DIFFERS}; the published results use V2. Put the V2 files beside it (the dataset's "
                "page, or mmaction2's tools/data/diving48/download_annotations.sh), or read V1 on purpose "
                "with -o annotations=V1")
        if found is not None:
            raise DatasetLayoutError(f"diving48: annotations=V1 asks for {name}, but only the V2 file {found} is "
                                     f"there (in one of: {where}); drop -o annotations=V1 to read V2")
        raise DatasetLayoutError(f"diving48: expected {name} in one of: {where}")

    def _classes(self) -> tuple[list[str], Optional[Path], dict]:
        vocab = self._find(("Diving48_vocab.json",))
        if vocab is not None:
            try:
                entries = json.loads(vocab.read_text())
                texts = [readable_composition(e) for e in entries]
            except (json.JSONDecodeError, ValueError, TypeError) as e:
                raise DatasetLayoutError(
                    f"{vocab}: expected a JSON list of 48 [takeoff, somersaults, twists, "
                    f"position] entries ({e})"
                ) from None
            meta = {"label_source": str(vocab)}
        else:
            lines = [l.strip() for l in LABEL_MAP.read_text().splitlines() if l.strip()]
            texts = [readable_composition(l) for l in lines]
            meta = {"label_source": "shipped labels/diving48/label_map_mmaction2.txt",
                    "label_file_sha256": hashlib.sha256(LABEL_MAP.read_bytes()).hexdigest()}
        if len(set(texts)) != len(texts):
            raise DatasetLayoutError(f"diving48: class texts are not unique: {texts}")
        return texts, vocab, meta

    def load(self, progress=None) -> DatasetIndex:
        classes, vocab, meta = self._classes()
        video_dir = next((self.root / d for d in VIDEO_DIRS if d and (self.root / d).is_dir()), self.root)
        frame_range = self.options.frame_range
        source_files, clips = [], []
        seen = set()
        for split in ("train", "test"):
            path = self._annotation(split)
            source_files.append(str(path))
            rows = read_json(path, list, "a list of {vid_name, label, ...}")
            for i, r in enumerate(rows):
                if not isinstance(r, dict) or "vid_name" not in r or "label" not in r:
                    raise DatasetLayoutError(
                        f"{path}: entry {i} lacks vid_name/label (expected "
                        "{vid_name, label, start_frame, end_frame})"
                    )
                vid, label = str(r["vid_name"]), int(r["label"])
                if not 0 <= label < len(classes):
                    raise DatasetLayoutError(f"{path}: {vid}: label {label} outside [0, {len(classes)})")
                if vid in seen:
                    raise DatasetLayoutError(f"{path}: {vid} listed twice")
                seen.add(vid)
                sf, ef = r.get("start_frame"), r.get("end_frame")
                extra = {"start_frame": sf, "end_frame": ef}
                cut = {}
                if frame_range and sf is not None and ef is not None:
                    cut = {"start_frame": int(sf), "end_frame": int(ef)}
                clips.append(ClipRecord(vid, split, label, str(video_dir / f"{vid}.mp4"),
                                        extra=extra, **cut))
        if vocab is not None:
            source_files.append(str(vocab))
        version = self.options.annotations
        meta.update({"annotation_version": {"train": version, "test": version}, "frame_range_applied": frame_range})
        return DatasetIndex(
            name=self.name, classes=classes, coarse_type=self.coarse_type, skeleton=self.skeleton,
            clips=clips, root=str(self.root), source_files=source_files, meta=meta,
        )
