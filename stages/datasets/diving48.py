"""Diving48 (V2 annotations): ``diving48``.

Accepted layout under ``--root``::

    ROOT/
      Diving48_V2_train.json   [{"vid_name": str, "label": int, "start_frame": int,
      Diving48_V2_test.json      "end_frame": int}, ...]  (in ROOT, ROOT/annotations or
                                 ROOT/annotation; the V1 names Diving48_train.json /
                                 Diving48_test.json are used only when no V2 file exists,
                                 recorded in meta["annotation_version"])
      Diving48_vocab.json      optional: 48 [takeoff, somersaults, twists, flight position]
      rgb/<vid_name>.mp4       videos (also ROOT/videos/ or ROOT/ itself)

Splits: the dataset's own names, ``train`` and ``test`` (Diving48 has no validation split; the
published results are on ``test``).

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
from typing import Optional

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

    def _annotation(self, split: str) -> tuple[Path, str]:
        v2 = f"Diving48_V2_{split}.json"
        p = self._find((v2,))
        if p is not None:
            return p, "V2"
        p = self._find((f"Diving48_{split}.json",))
        if p is not None:
            return p, "V1"
        where = ", ".join(str(self.root / d) for d in ANN_DIRS)
        raise DatasetLayoutError(f"diving48: expected {v2} in one of: {where}")

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
        source_files, clips, versions = [], [], {}
        seen = set()
        for split in ("train", "test"):
            path, version = self._annotation(split)
            versions[split] = version
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
        meta.update({"annotation_version": versions, "frame_range_applied": frame_range})
        return DatasetIndex(
            name=self.name, classes=classes, coarse_type=self.coarse_type, skeleton=self.skeleton,
            clips=clips, root=str(self.root), source_files=source_files, meta=meta,
        )
