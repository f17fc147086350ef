"""FineGym element-level datasets: ``gym99`` and ``gym288``.

Accepted layout under ``--root`` (every folder is optional; the first that holds a file wins)::

    ROOT/
      gym99_train_element_v1.1.txt   split files, one "<clip_id> <label>" per line; looked up
      gym99_val_element.txt          in ROOT, ROOT/annotations, ROOT/annotation, ROOT/splits,
      gym288_train_element_v1.1.txt  ROOT/lists (v1.0 names "..._train_element.txt" accepted
      gym288_val_element.txt         when no v1.1 file exists; recorded in meta)
      finegym_annotation_info_v1.1.json (or _v1.0.json): the published annotation JSON, needed
                                     only for layouts 2 and 3 (same folders as the split files;
                                     adapter option ``annotation=PATH`` overrides)
      videos in ROOT, ROOT/videos, ROOT/subactions, ROOT/elements, ROOT/clips, ROOT/actions,
                ROOT/events, ROOT/event_videos, ROOT/full_videos, ROOT/raw

Videos, searched per clip in this order (extensions .mp4, .mkv, .webm, .avi):

1. pre-cut element clips ``<clip_id>.mp4`` (mmaction2's ``subactions/``): the whole file.
2. event videos ``<youtube id>_E_xxxxxx_yyyyyy.mp4``: cut at the action segment's timestamps,
   which the annotation JSON gives relative to the event start.
3. full videos ``<youtube id>.mp4|.mkv|.webm``: cut at event start (the ``xxxxxx`` of the event
   id, in seconds) plus the segment timestamps.

Clip ids are ``<youtube id>_E_<6 digits>_<6 digits>_A_<4 digits>_<4 digits>``. A segment with
several stages (vault) is cut from the first stage's start to the last stage's end. Cuts are
``ClipRecord.start_time/end_time`` in seconds into the file the record points at; extraction
cuts while decoding and writes no intermediate file. A clip found nowhere is reported by
``DatasetIndex.missing()`` with the element-clip path (or, when only full/event videos are
present, the full-video path and its cut).

Label texts come from the shipped ``labels/finegym/gym{99,288}_categories.txt``
(``Clabel: N; set: S; Glabel: G; (XX) text``; the split files' labels are the Clabels). The
apparatus code is written out: ``"(BB) salto backward tucked"`` becomes
``"salto backward tucked (balance beam)"``. Texts that would still be identical for two classes
(Gym99 58/70, Gym288 180/216, 181/217, 185/222: the same element in two sets) get the set name
from ``set_categories.txt`` in readable form instead:
``"salto backward tucked (balance beam, flight salto)"`` and
``"salto backward tucked (balance beam, dismounts)"``. ``meta["duplicates_resolved"]`` lists them.

Person boxes (adapter option ``boxes=PATH``): ground-truth athlete boxes, one ``[x1, y1, x2, y2]``
(original pixels) per decoded frame of the clip as cut, in one of

* JSON ``{clip_id: [[x1, y1, x2, y2] or null, ...]}``;
* ``.npz`` with one ``(F, 4)`` float array per clip id (NaN rows = no box), read with
  ``allow_pickle=False``;
* ``.pkl`` with the same mapping as JSON, read only through the restricted unpickler of
  :mod:`stages.safe_pickle` (numpy arrays and plain containers; nothing else).

Frames without a box take the nearest frame's box; a clip without any box gets None (whole frame).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np

from stages.datasets.base import (
    ClipRecord,
    DatasetAdapter,
    DatasetIndex,
    DatasetLayoutError,
)
from stages.registry import DATASETS
from stages.safe_pickle import restricted_load

LABELS_DIR = Path(__file__).with_name("labels") / "finegym"
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi")
SPLIT_DIRS = ("", "annotations", "annotation", "splits", "lists")
VIDEO_DIRS = ("", "videos", "subactions", "elements", "clips", "actions", "events",
              "event_videos", "full_videos", "raw")
ANNOTATION_JSONS = ("finegym_annotation_info_v1.1.json", "finegym_annotation_info_v1.0.json")

CLIP_RE = re.compile(r"^(?P<yt>.+)_E_(?P<es>\d{6})_(?P<ee>\d{6})_A_(?P<as>\d{4})_(?P<ae>\d{4})$")
EVENT_RE = re.compile(r"^(?P<yt>.+)_E_(?P<es>\d{6})_(?P<ee>\d{6})$")
CATEGORY_RE = re.compile(
    r"^\s*Clabel:\s*(\d+)\s*;\s*set:\s*(\d+)\s*;\s*Glabel:\s*(\d+)\s*;\s*(.*?)\s*$"
)
SET_RE = re.compile(r"^\s*set:\s*(\d+)\s*;\s*(.*?)\s*$")
APPARATUS = {"VT": "vault", "FX": "floor exercise", "BB": "balance beam", "UB": "uneven bars"}
_SET_WORD_FIXES = {"fligh": "flight"}  # "UB_fligh_same_bar" in the published file


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_set_categories(path: Path) -> dict[int, str]:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = SET_RE.match(line)
        if not m:
            raise DatasetLayoutError(f"{path}:{n}: expected 'set: S; name', got {line!r}")
        out[int(m.group(1))] = m.group(2)
    return out


def readable_set(name: str) -> str:
    """``"BB_flight_salto"`` -> ``"balance beam, flight salto"``; ``"vault"`` -> ``"vault"``."""
    parts = name.split("_")
    head = APPARATUS.get(parts[0])
    words = [_SET_WORD_FIXES.get(w, w) for w in (parts[1:] if head else parts)]
    rest = " ".join(words)
    if head and rest:
        return f"{head}, {rest}"
    return head or rest


def parse_categories(path: Path, sets: dict[int, str]) -> tuple[list[str], list[dict]]:
    """Class texts (index = Clabel) and the duplicates resolved, from a categories file."""
    rows: dict[int, tuple[int, int, str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = CATEGORY_RE.match(line)
        if not m:
            raise DatasetLayoutError(
                f"{path}:{n}: expected 'Clabel: N; set: S; Glabel: G; (XX) text', got {line!r}"
            )
        c, s, g, text = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        if c in rows:
            raise DatasetLayoutError(f"{path}:{n}: Clabel {c} appears twice")
        rows[c] = (s, g, text)
    if sorted(rows) != list(range(len(rows))):
        raise DatasetLayoutError(f"{path}: Clabels are not 0..{len(rows) - 1}")

    def split_code(text: str) -> tuple[Optional[str], str]:
        m = re.match(r"^\((VT|FX|BB|UB)\)\s*(.*)$", text)
        return (m.group(1), m.group(2)) if m else (None, text)

    base = []
    for c in range(len(rows)):
        s, _, text = rows[c]
        code, desc = split_code(text)
        base.append((desc, APPARATUS.get(code) if code else None))
    plain = [f"{d} ({a})" if a else d for d, a in base]
    counts: dict[str, int] = {}
    for t in plain:
        counts[t] = counts.get(t, 0) + 1
    texts, resolved = [], []
    for c, t in enumerate(plain):
        if counts[t] > 1:
            s = rows[c][0]
            if s not in sets:
                raise DatasetLayoutError(f"set {s} of Clabel {c} is not in set_categories.txt")
            t = f"{base[c][0]} ({readable_set(sets[s])})"
            resolved.append({"clabel": c, "set": s, "original": rows[c][2], "text": t})
        texts.append(t)
    seen: dict[str, int] = {}
    for c, t in enumerate(texts):  # last resort, never expected with the published files
        if t in seen:
            texts[c] = f"{t} [class {c}]"
            resolved.append({"clabel": c, "original": rows[c][2], "text": texts[c]})
        seen[texts[c]] = c
    return texts, resolved


def load_boxes(path: os.PathLike | str) -> dict[str, np.ndarray]:
    """Read a boxes file (JSON, npz or restricted pickle) into ``{clip_id: (F, 4) float32}``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetLayoutError(f"boxes file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    elif suffix in (".pkl", ".pickle"):
        with open(p, "rb") as f:
            raw = restricted_load(f)
    elif suffix == ".json":
        raw = json.loads(p.read_text())
    else:
        raise DatasetLayoutError(f"boxes file {p}: expected .json, .npz or .pkl")
    if not isinstance(raw, dict):
        raise DatasetLayoutError(f"boxes file {p}: expected a mapping clip_id -> per-frame boxes")
    out = {}
    for k, v in raw.items():
        rows = [[np.nan] * 4 if b is None else b for b in v] if isinstance(v, list) else v
        arr = np.asarray(rows, dtype=np.float32).reshape(-1, 4) if len(rows) else np.zeros((0, 4), np.float32)
        out[str(k)] = arr
    return out


def _fill_missing_boxes(arr: np.ndarray) -> Optional[np.ndarray]:
    ok = np.all(np.isfinite(arr), axis=1)
    if not ok.any():
        return None
    if ok.all():
        return arr
    idx = np.flatnonzero(ok)
    pos = np.arange(len(arr))
    nearest = idx[np.abs(pos[:, None] - idx[None, :]).argmin(axis=1)]
    return arr[nearest]


class _FineGym(DatasetAdapter):
    """Shared implementation; the two registered names differ in the class set."""

    coarse_type = "gymnastic"
    skeleton = "coco17"
    variant = ""

    def __init__(self, root=None, **options):
        super().__init__(root, **options)
        self._boxes: Optional[dict[str, np.ndarray]] = None

    # -- files -------------------------------------------------------------------------------
    def _find(self, names: tuple[str, ...], dirs=SPLIT_DIRS) -> Optional[Path]:
        for name in names:
            for d in dirs:
                p = self.root / d / name
                if p.is_file():
                    return p
        return None

    def _split_file(self, split: str) -> tuple[Path, str]:
        v = self.variant
        names = {
            "train": (f"{v}_train_element_v1.1.txt", f"{v}_train_element.txt"),
            "val": (f"{v}_val_element.txt", f"{v}_val_element_v1.1.txt"),
        }[split]
        p = self._find(names)
        if p is None:
            where = ", ".join(str(self.root / d) if d else str(self.root) for d in SPLIT_DIRS)
            raise DatasetLayoutError(
                f"{self.name}: expected split file {names[0]} (or {names[1]}) in one of: {where}"
            )
        return p, p.name

    def _annotation_json(self) -> Optional[Path]:
        opt = self.options.get("annotation")
        if opt:
            p = Path(opt).expanduser().resolve()
            if not p.is_file():
                raise DatasetLayoutError(f"{self.name}: annotation JSON not found: {p}")
            return p
        return self._find(ANNOTATION_JSONS)

    def _scan_videos(self) -> tuple[dict, dict, dict]:
        """One directory listing per candidate folder: element clips, event and full videos."""
        elements: dict[str, Path] = {}
        events: dict[str, Path] = {}
        full: dict[str, Path] = {}
        for d in VIDEO_DIRS:
            folder = self.root / d
            if not folder.is_dir():
                continue
            with os.scandir(folder) as it:
                for e in it:
                    stem, ext = os.path.splitext(e.name)
                    if ext.lower() not in VIDEO_EXTS or not e.is_file():
                        continue
                    p = Path(e.path)
                    if CLIP_RE.match(stem):
                        elements.setdefault(stem, p)
                    elif EVENT_RE.match(stem):
                        events.setdefault(stem, p)
                    else:
                        full.setdefault(stem, p)
        return elements, events, full

    # -- load --------------------------------------------------------------------------------
    def load(self, progress=None) -> DatasetIndex:
        sets_path = LABELS_DIR / "set_categories.txt"
        cat_path = LABELS_DIR / f"{self.variant}_categories.txt"
        classes, resolved = parse_categories(cat_path, parse_set_categories(sets_path))

        source_files: list[str] = []
        lines: list[tuple[str, str, int]] = []
        split_names = {}
        for split in ("train", "val"):
            path, fname = self._split_file(split)
            split_names[split] = fname
            source_files.append(str(path))
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise DatasetLayoutError(
                        f"{path}:{n}: expected '<clip_id> <label>', got {line!r}"
                    )
                cid, label = parts[0], int(parts[1])
                if not CLIP_RE.match(cid):
                    raise DatasetLayoutError(
                        f"{path}:{n}: clip id {cid!r} is not "
                        "<youtube id>_E_<6 digits>_<6 digits>_A_<4 digits>_<4 digits>"
                    )
                if not 0 <= label < len(classes):
                    raise DatasetLayoutError(
                        f"{path}:{n}: label {label} outside [0, {len(classes)}) for {self.name}"
                    )
                lines.append((cid, split, label))

        elements, events, full = self._scan_videos()
        ann_path = self._annotation_json()
        ann = None
        if ann_path is not None:
            source_files.append(str(ann_path))
            try:
                ann = json.loads(ann_path.read_text())
            except json.JSONDecodeError as e:
                raise DatasetLayoutError(f"{ann_path}: not valid JSON ({e})") from None
        elif events or full:
            raise DatasetLayoutError(
                f"{self.name}: found event/full videos under {self.root} but no annotation JSON "
                f"({' or '.join(ANNOTATION_JSONS)}) in {self.root} or its annotations/ folder; "
                "it gives the action timestamps to cut them (or pass annotation=PATH)"
            )

        default_dir = next(
            (self.root / d for d in ("subactions", "videos", "elements", "clips")
             if (self.root / d).is_dir()),
            self.root / "subactions",
        )
        clips: list[ClipRecord] = []
        seen: set[str] = set()
        counts = {"element": 0, "event": 0, "full": 0, "missing": 0}
        for cid, split, label in lines:
            if cid in seen:
                raise DatasetLayoutError(f"{self.name}: clip {cid} listed twice in the split files")
            seen.add(cid)
            rec = self._record(cid, split, label, elements, events, full, ann, default_dir)
            counts[rec.extra["source"]] += 1
            clips.append(rec)

        meta = {
            "split_files": split_names,
            "label_files": {
                cat_path.name: _sha256(cat_path),
                sets_path.name: _sha256(sets_path),
            },
            "duplicates_resolved": resolved,
            "video_sources": counts,
        }
        if not split_names["train"].endswith("_v1.1.txt"):
            meta["note"] = "train split v1.0 (no v1.1 file found)"
        return DatasetIndex(
            name=self.name,
            classes=classes,
            coarse_type=self.coarse_type,
            skeleton=self.skeleton,
            clips=clips,
            root=str(self.root),
            source_files=source_files,
            meta=meta,
        )

    def _segment_times(self, ann, yt, event, action) -> Optional[tuple[float, float]]:
        if ann is None:
            return None
        seg = (((ann.get(yt) or {}).get(event) or {}).get("segments") or {}).get(action)
        if not seg:
            return None
        ts = seg.get("timestamps") or []
        try:
            starts = [float(t[0]) for t in ts]
            ends = [float(t[1]) for t in ts]
        except (TypeError, ValueError, IndexError):
            return None
        if not starts:
            return None
        return min(starts), max(ends)

    def _record(self, cid, split, label, elements, events, full, ann, default_dir) -> ClipRecord:
        m = CLIP_RE.match(cid)
        yt = m.group("yt")
        event = f"E_{m.group('es')}_{m.group('ee')}"
        action = f"A_{m.group('as')}_{m.group('ae')}"
        event_start = float(int(m.group("es")))
        base = {"youtube_id": yt, "event": event, "action": action}
        if cid in elements:
            return ClipRecord(cid, split, label, str(elements[cid]), extra={**base, "source": "element"})
        seg = self._segment_times(ann, yt, event, action)
        ev_key = f"{yt}_{event}"
        if seg is not None and ev_key in events:
            return ClipRecord(cid, split, label, str(events[ev_key]), start_time=seg[0],
                              end_time=seg[1], extra={**base, "source": "event"})
        if seg is not None and yt in full:
            return ClipRecord(cid, split, label, str(full[yt]), start_time=event_start + seg[0],
                              end_time=event_start + seg[1], extra={**base, "source": "full"})
        extra = {**base, "source": "missing"}
        if (ev_key in events or yt in full) and seg is None:
            extra["problem"] = f"no timestamps for {event}/{action} of {yt} in the annotation JSON"
            return ClipRecord(cid, split, label, None, extra=extra)
        if seg is not None and (events or full) and not elements:
            # full-video layout: point at the expected full video and its cut
            folder = next((p.parent for p in full.values()), self.root / "videos")
            return ClipRecord(cid, split, label, str(folder / f"{yt}.mp4"),
                              start_time=event_start + seg[0], end_time=event_start + seg[1],
                              extra=extra)
        return ClipRecord(cid, split, label, str(default_dir / f"{cid}.mp4"), extra=extra)

    # -- boxes -------------------------------------------------------------------------------
    def person_boxes(self, clip: ClipRecord) -> Optional[np.ndarray]:
        path = self.options.get("boxes")
        if not path:
            return None
        if self._boxes is None:
            self._boxes = load_boxes(path)
        arr = self._boxes.get(clip.clip_id)
        if arr is None or len(arr) == 0:
            return None
        return _fill_missing_boxes(arr)


@DATASETS.register_module("gym99")
class Gym99(_FineGym):
    name = "gym99"
    variant = "gym99"


@DATASETS.register_module("gym288")
class Gym288(_FineGym):
    name = "gym288"
    variant = "gym288"
