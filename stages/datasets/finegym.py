"""FineGym element-level datasets: ``gym99`` and ``gym288``.

Two layouts are read as they lie on disk (docs/datasets.md shows both trees and what
``pipeline dataset info`` prints for each); ``meta["layout"]`` says which one was found.

**Published files** (the FineGym site's downloads, in ROOT or ROOT/annotations, annotation,
splits, lists)::

    gym99_train_element_v1.1.txt  (or _v1.0.txt)   "<clip_id> <label>" per line
    gym99_val_element.txt                          (the same for v1.0 and v1.1)
    gym288_train_element_v1.1.txt (or _v1.0.txt), gym288_val_element.txt
    finegym_annotation_info_v1.1.json (or _v1.0)   needed only to cut event or full videos

**mmaction2's** ``tools/data/gym`` (Gym99 only there; the same names with gym288 are accepted)::

    annotations/gym99_train_org.txt, gym99_val_org.txt   the published split files, renamed
                                                         (mmaction2 downloads v1.0)
    annotations/gym99_train.txt, gym99_val.txt           "<clip_id>.mp4 <label>", only the clips
                                                         whose subaction mp4 existed
    annotations/annotation.json                          the published annotation JSON, renamed
    annotations/event_annotation.json                    {"<yt>_E_..": segments of the event}
    videos/<yt>.mp4, events/<yt>_E_xxxxxx_yyyyyy.mp4, subactions/<clip_id>.mp4

Splits: the published split files define them (``_org`` files are those); v1.1 is preferred for
train unless option ``split_version=1.0`` asks for v1.0 (the split of mmaction2/PoseC3D's
``gym_2d.pkl``). mmaction2's filtered lists (``gym99_train.txt``) are used only when no published
file exists, with a note: they hold only the clips present when they were made.
``meta["split_files"]`` names the files and ``meta["train_split_version"]`` the version (from the
name, or for an ``_org`` file from its line count, matched against the published counts).

Videos (.mp4, .mkv, .webm, .avi) are searched in ROOT, videos/, subactions/, elements/, clips/,
actions/, events/, event_videos/, full_videos/, raw/ and classified by name. Per clip:

1. a pre-cut element clip ``<clip_id>.mp4`` (mmaction2's ``subactions/``): the whole file;
2. an event video ``<yt>_E_xxxxxx_yyyyyy.mp4``: cut at the segment's ``timestamps``, which the
   annotation JSON (or ``event_annotation.json``) gives relative to the event start;
3. the full video ``<yt>.mp4``: cut at the event's exact start, the event-level ``timestamps``
   of the annotation JSON, plus the segment's times. The ``xxxxxx`` of an event id are whole
   seconds, *truncated* (the FineGym site says so), so they are never used as the start.

A segment with several stages (vault) is cut from the first stage's start to the last stage's
end, as mmaction2's ``trim_subaction.py`` does. Cuts are ``start_time``/``end_time`` in seconds
into the file the record points at; extraction cuts while decoding. A clip none of these can
give is reported by ``DatasetIndex.missing()``; when a video exists but the annotation lacks the
times to cut it, ``extra["problem"]`` says why and ``meta["missing_reasons"]`` counts it.

Clip ids are ``<youtube id>_E_<6 digits>_<6 digits>_A_<4 digits>_<4 digits>``, parsed from the
right (YouTube ids may contain ``_``). mmaction2/pyskl skeleton files name the same clip
``<yt>_<6>_<6>_<4>_<4>`` (:meth:`clip_aliases`).

Label texts come from the shipped ``labels/finegym/gym{99,288}_categories.txt``
(``Clabel: N; set: S; Glabel: G; (XX) text``; the split files' labels are the Clabels). The
apparatus code is written out: ``"(BB) salto backward tucked"`` becomes
``"salto backward tucked (balance beam)"``. Texts that would still be identical for two classes
(Gym99 58/70, Gym288 180/216, 181/217, 185/222: the same element in two sets) get the set name
from ``set_categories.txt`` in readable form instead:
``"salto backward tucked (balance beam, flight salto)"`` and
``"salto backward tucked (balance beam, dismounts)"``. ``meta["duplicates_resolved"]`` lists them.

Person boxes (option ``boxes=PATH``): :mod:`stages.datasets.finegym_boxes`.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from stages.datasets.base import (
    AdapterOptions,
    ClipRecord,
    DatasetAdapter,
    DatasetIndex,
    DatasetLayoutError,
    read_json,
)
from stages.datasets.finegym_boxes import BoxFile, load_boxes
from stages.datasets.names import read_text_lines
from stages.registry import DATASET_ADAPTERS
from stages.settings import field

LABELS_DIR = Path(__file__).with_name("labels") / "finegym"
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi")
SPLIT_DIRS = ("", "annotations", "annotation", "splits", "lists")
VIDEO_DIRS = ("", "videos", "subactions", "elements", "clips", "actions", "events",
              "event_videos", "full_videos", "raw")
ANNOTATION_JSONS = {"1.1": "finegym_annotation_info_v1.1.json", "1.0": "finegym_annotation_info_v1.0.json"}
MMACTION2_ANNOTATION_JSON = "annotation.json"
MMACTION2_EVENT_JSON = "event_annotation.json"
SPLIT_VERSIONS = ("1.1", "1.0")
# Lines of the published split files (measured on the FineGym site's files, gh-pages 4175b57).
PUBLISHED_TRAIN_LINES = {("gym99", "1.0"): 20484, ("gym99", "1.1"): 26320,
                         ("gym288", "1.0"): 22671, ("gym288", "1.1"): 29334}
PUBLISHED_VAL_LINES = {"gym99": 8521, "gym288": 9646}

CLIP_RE = re.compile(r"^(?P<yt>.+)_E_(?P<es>\d{6})_(?P<ee>\d{6})_A_(?P<as>\d{4})_(?P<ae>\d{4})$")
EVENT_RE = re.compile(r"^(?P<yt>.+)_E_(?P<es>\d{6})_(?P<ee>\d{6})$")
# the same clip as mmaction2/pyskl skeleton and box files name it (without "E_" and "A_")
POSEC3D_ID_RE = re.compile(r"^(?P<yt>.+)_(?P<es>\d{6})_(?P<ee>\d{6})_(?P<as>\d{4})_(?P<ae>\d{4})$")
CATEGORY_RE = re.compile(
    r"^\s*Clabel:\s*(\d+)\s*;\s*set:\s*(\d+)\s*;\s*Glabel:\s*(\d+)\s*;\s*(.*?)\s*$"
)
SET_RE = re.compile(r"^\s*set:\s*(\d+)\s*;\s*(.*?)\s*$")
APPARATUS = {"VT": "vault", "FX": "floor exercise", "BB": "balance beam", "UB": "uneven bars"}
_SET_WORD_FIXES = {"fligh": "flight"}  # "UB_fligh_same_bar" in the published file


def clip_id_from_any(name: str) -> Optional[str]:
    """A FineGym element id from the split-file form or the PoseC3D form (``.mp4`` allowed)."""
    stem = name[:-4] if name.lower().endswith(".mp4") else name
    if CLIP_RE.match(stem):
        return stem
    m = POSEC3D_ID_RE.match(stem)
    if m:
        return f"{m['yt']}_E_{m['es']}_{m['ee']}_A_{m['as']}_{m['ae']}"
    return None


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


@dataclass(frozen=True)
class FineGymOptions(AdapterOptions):
    split_version: Optional[Literal["1.0", "1.1"]] = field(None, help="Train split version: 1.1 (the published "
                                                       "default) or 1.0 (mmaction2/PoseC3D's gym_2d.pkl). Default: "
                                                       "the newest found.")
    annotation: Optional[Path] = field(None, help="The annotation JSON (default: looked for under ROOT).")
    boxes: Optional[Path] = field(None, help="Ground-truth athlete boxes for HRNet (docs/datasets.md lists the "
                                        "accepted forms).")


class _FineGym(DatasetAdapter):
    """Shared implementation; the two registered names differ in the class set."""

    Options = FineGymOptions

    coarse_type = "gymnastic"
    skeleton = "coco17"
    variant = ""

    def __init__(self, root=None, **options):
        super().__init__(root, **options)
        self._boxes: Optional[BoxFile] = None
        self.split_version = self.options.split_version

    # -- files -------------------------------------------------------------------------------
    def _find(self, names, dirs=SPLIT_DIRS) -> Optional[Path]:
        for name in names:
            for d in dirs:
                p = self.root / d / name
                if p.is_file():
                    return p
        return None

    def _rel(self, p: Optional[Path]) -> Optional[str]:
        return None if p is None else os.path.relpath(p, self.root)

    def _train_version(self, path: Path, named: Optional[str], lines: int) -> Optional[str]:
        """The split version from the file name, else from its line count (an ``_org`` copy)."""
        if named:
            return named
        for version in SPLIT_VERSIONS:
            if PUBLISHED_TRAIN_LINES.get((self.variant, version)) == lines:
                return version
        return None

    def _split_files(self) -> dict:
        """Which files define the splits: the published ones, mmaction2's copies, or its lists."""
        v, want = self.variant, self.split_version
        train = []
        if want in (None, "1.1"):
            train.append((f"{v}_train_element_v1.1.txt", "1.1", "published"))
        if want in (None, "1.0"):
            train.append((f"{v}_train_element_v1.0.txt", "1.0", "published"))
        # an unversioned copy (renamed by hand) and mmaction2's: their version from their line count
        train += [(f"{v}_train_element.txt", None, "published"), (f"{v}_train_org.txt", None, "mmaction2"),
                  (f"{v}_train.txt", None, "mmaction2 list")]
        val = [(f"{v}_val_element.txt", None, "published"), (f"{v}_val_org.txt", None, "mmaction2"),
               (f"{v}_val.txt", None, "mmaction2 list")]
        out = {}
        for split, cands in (("train", train), ("val", val)):
            skipped = []  # (file, its version): files of another version than split_version asks for
            for name, version, kind in cands:
                p = self._find((name,))
                if p is None:
                    continue
                lines = _count_lines(p)
                if split == "train":
                    version = self._train_version(p, version, lines)
                    if want and version and version != want:
                        skipped.append((p, f"v{version} by its {lines} lines"))
                        continue  # e.g. an _org copy of v1.1 when v1.0 was asked for
                out[split] = {"path": p, "kind": kind, "version": version, "lines": lines}
                break
            else:
                where = ", ".join(str(self.root / d) if d else str(self.root) for d in SPLIT_DIRS)
                names = [n for n, _, _ in cands]
                if split == "train" and want:
                    for other in SPLIT_VERSIONS:
                        p = self._find((f"{v}_train_element_v{other}.txt",)) if other != want else None
                        if p is not None:
                            skipped.insert(0, (p, f"v{other}"))
                if skipped:
                    found = ", ".join(f"{self._rel(p)} ({why})" for p, why in skipped)
                    raise DatasetLayoutError(
                        f"{self.name}: split_version={want} asks for the v{want} train split, and no file here holds "
                        f"it: found only {found}, which split_version={want} skips. Add {names[0]} (the FineGym "
                        f"site's file) to one of: {where}; or drop -o split_version={want} to use the file found")
                raise DatasetLayoutError(
                    f"{self.name}: expected a {split} split file ({' or '.join(names)}) in one of: {where}")
        return out

    def _annotation_json(self) -> Optional[Path]:
        opt = self.options.annotation
        if opt:
            p = opt.resolve()
            if not p.is_file():
                raise DatasetLayoutError(f"{self.name}: annotation JSON not found: {p}")
            return p
        order = sorted(ANNOTATION_JSONS, key=lambda ver: ver != (self.split_version or "1.1"))
        return self._find(tuple(ANNOTATION_JSONS[ver] for ver in order) + (MMACTION2_ANNOTATION_JSON,))

    def _scan_videos(self) -> tuple[dict, dict, dict]:
        """One directory listing per candidate folder: element clips, event and full videos (an
        empty element or event file passed over, counted in ``_empty_cuts``)."""
        self._empty_cuts: set[str] = set()
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
                    cut = CLIP_RE.match(stem) or EVENT_RE.match(stem)
                    if cut and e.stat().st_size == 0:
                        # mmaction2's trim scripts run ffmpeg at -loglevel panic and keep what a failed
                        # cut left: an empty clip stands for nothing, and the event or the full video
                        # can still give the clip
                        self._empty_cuts.add(stem)
                        continue
                    if CLIP_RE.match(stem):
                        elements.setdefault(stem, p)
                    elif EVENT_RE.match(stem):
                        events.setdefault(stem, p)
                    else:
                        full.setdefault(stem, p)
        return elements, events, full

    def _read_split(self, path: Path, split: str, num_classes: int) -> list[tuple[str, str, int]]:
        rows = []
        for n, line in enumerate(read_text_lines(path), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DatasetLayoutError(f"{path}:{n}: expected '<clip_id> <label>', got {line!r}")
            cid = parts[0][:-4] if parts[0].lower().endswith(".mp4") else parts[0]
            label = int(parts[1])
            if not CLIP_RE.match(cid):
                raise DatasetLayoutError(
                    f"{path}:{n}: clip id {cid!r} is not "
                    "<youtube id>_E_<6 digits>_<6 digits>_A_<4 digits>_<4 digits>"
                )
            if not 0 <= label < num_classes:
                raise DatasetLayoutError(f"{path}:{n}: label {label} outside [0, {num_classes}) for {self.name}")
            rows.append((cid, split, label))
        return rows

    # -- load --------------------------------------------------------------------------------
    def load(self, progress=None) -> DatasetIndex:
        sets_path = LABELS_DIR / "set_categories.txt"
        cat_path = LABELS_DIR / f"{self.variant}_categories.txt"
        classes, resolved = parse_categories(cat_path, parse_set_categories(sets_path))

        splits = self._split_files()
        source_files = [str(splits["train"]["path"]), str(splits["val"]["path"])]
        lines = (self._read_split(splits["train"]["path"], "train", len(classes))
                 + self._read_split(splits["val"]["path"], "val", len(classes)))

        elements, events, full = self._scan_videos()
        ann_path = self._annotation_json()
        if ann_path is not None:
            source_files.append(str(ann_path))
        event_ann_path = self._find((MMACTION2_EVENT_JSON,))
        times = _Times(ann_path, event_ann_path if events else None)

        default_dir = next(
            (self.root / d for d in ("subactions", "videos", "elements", "clips")
             if (self.root / d).is_dir()),
            self.root / "subactions",
        )
        clips: list[ClipRecord] = []
        seen: set[str] = set()
        counts = {"element": 0, "event": 0, "full": 0, "missing": 0}
        reasons: dict[str, int] = {}
        for cid, split, label in lines:
            if cid in seen:
                raise DatasetLayoutError(f"{self.name}: clip {cid} listed twice in the split files")
            seen.add(cid)
            rec = self._record(cid, split, label, elements, events, full, times, default_dir)
            counts[rec.extra["source"]] += 1
            if rec.extra["source"] == "missing":
                why = rec.extra.get("problem_kind", "no video file")
                reasons[why] = reasons.get(why, 0) + 1
            clips.append(rec)
        if times.event_ann_used:
            source_files.append(str(event_ann_path))

        mm = any(s["kind"].startswith("mmaction2") for s in splits.values()) or (
            ann_path is not None and ann_path.name == MMACTION2_ANNOTATION_JSON) or times.event_ann_used
        meta = {
            "layout": "mmaction2 tools/data/gym" if mm else "published files",
            "split_files": {s: self._rel(v["path"]) for s, v in splits.items()},
            "split_source": _split_source(splits),
            "train_split_version": splits["train"]["version"] or "unknown",
            "split_file_lines": {s: v["lines"] for s, v in splits.items()},
            "annotation_json": self._rel(ann_path),
            "video_sources": counts,
            "label_files": {
                cat_path.name: _sha256(cat_path),
                sets_path.name: _sha256(sets_path),
            },
            "duplicates_resolved": resolved,
        }
        if times.event_ann_used:
            meta["event_annotation_json"] = self._rel(event_ann_path)
        if reasons:
            meta["missing_reasons"] = reasons
        if self._empty_cuts:
            meta["empty_cut_files_passed_over"] = len(self._empty_cuts)
        notes = _split_notes(self.variant, splits)
        if notes:
            meta["note"] = "; ".join(notes)
        if self.options.boxes:
            self._boxes = self._load_boxes()
            source_files.append(self._boxes.path)
            meta["boxes"] = self._boxes_meta(seen)
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

    def _record(self, cid, split, label, elements, events, full, times: "_Times", default_dir) -> ClipRecord:
        m = CLIP_RE.match(cid)
        yt = m.group("yt")
        event = f"E_{m.group('es')}_{m.group('ee')}"
        action = f"A_{m.group('as')}_{m.group('ae')}"
        base = {"youtube_id": yt, "event": event, "action": action}
        if cid in elements:
            return ClipRecord(cid, split, label, str(elements[cid]), extra={**base, "source": "element"})
        ev_key = f"{yt}_{event}"
        seg, seg_problem = times.segment(yt, event, action)
        if seg is not None and ev_key in events:
            return ClipRecord(cid, split, label, str(events[ev_key]), start_time=seg[0],
                              end_time=seg[1], extra={**base, "source": "event"})
        start, start_problem = times.event_start(yt, event, int(m.group("es")))
        if seg is not None and start is not None and yt in full:
            return ClipRecord(cid, split, label, str(full[yt]), start_time=round(start + seg[0], 6),
                              end_time=round(start + seg[1], 6), extra={**base, "source": "full"})
        extra = {**base, "source": "missing"}
        if cid in self._empty_cuts and not (ev_key in events or yt in full):
            extra.update(problem_kind="empty file (0 bytes)", problem=f"{cid}'s clip file is empty (0 bytes): a failed "
                         "cut, and no event or full video to cut it from")
            return ClipRecord(cid, split, label, None, extra=extra)
        if ev_key in events or yt in full:
            kind, detail = (seg_problem if seg is None else start_problem)
            have = str(events.get(ev_key) or full[yt])
            extra.update(problem_kind=kind, problem=f"{detail} (to cut {cid} from {have})")
            return ClipRecord(cid, split, label, None, extra=extra)
        if seg is not None and start is not None and (events or full) and not elements:
            # full-video layout: point at the expected full video and its cut
            folder = next((p.parent for p in full.values()), self.root / "videos")
            return ClipRecord(cid, split, label, str(folder / f"{yt}.mp4"), start_time=round(start + seg[0], 6),
                              end_time=round(start + seg[1], 6), extra=extra)
        return ClipRecord(cid, split, label, str(default_dir / f"{cid}.mp4"), extra=extra)

    def clip_aliases(self, clip: ClipRecord) -> tuple[str, ...]:
        """The id mmaction2/pyskl skeleton files use for this clip: ``E_``/``A_`` dropped."""
        m = CLIP_RE.match(clip.clip_id)
        return (f"{m['yt']}_{m['es']}_{m['ee']}_{m['as']}_{m['ae']}",) if m else ()

    # -- boxes -------------------------------------------------------------------------------
    def _load_boxes(self) -> BoxFile:
        return load_boxes(str(self.options.boxes), clip_id_from_any)

    def _boxes_meta(self, clip_ids: set[str]) -> dict:
        b = self._boxes
        have = clip_ids & set(b.boxes)
        if not have:
            raise DatasetLayoutError(
                f"{self.name}: boxes file {b.path} has boxes for none of the {len(clip_ids)} clips of the split "
                f"files ({len(b.boxes)} clips with boxes, e.g. {sorted(b.boxes)[:2]})")
        return {"file": self._rel(Path(b.path)) if Path(b.path).is_relative_to(self.root) else b.path,
                "forms": b.forms, "clips_with_boxes": len(have), "clips_without_boxes": len(clip_ids - have),
                "boxes_for_clips_not_in_the_splits": len(set(b.boxes) - clip_ids),
                "keys_not_clip_ids": len(b.unknown_keys)}

    def person_boxes(self, clip: ClipRecord) -> Optional[np.ndarray]:
        if not self.options.boxes:
            return None
        if self._boxes is None:
            self._boxes = self._load_boxes()
        return self._boxes.boxes.get(clip.clip_id)


class _Times:
    """Segment and event times from the annotation JSON (and mmaction2's event_annotation.json),
    parsed only when a clip needs them; each answer comes with the reason when there is none."""

    NO_JSON = "no annotation JSON to cut the event or full video"

    def __init__(self, ann_path: Optional[Path], event_ann_path: Optional[Path]):
        self.ann_path, self.event_ann_path = ann_path, event_ann_path
        self._ann = self._event_ann = None
        self.event_ann_used = False

    @staticmethod
    def _load(path: Path) -> dict:
        return read_json(path, dict, "a JSON object keyed by video id")

    @property
    def ann(self) -> Optional[dict]:
        if self._ann is None and self.ann_path is not None:
            self._ann = self._load(self.ann_path)
        return self._ann

    @property
    def event_ann(self) -> Optional[dict]:
        if self._event_ann is None and self.event_ann_path is not None:
            self._event_ann = self._load(self.event_ann_path)
        return self._event_ann

    def _no_json(self) -> tuple[str, str]:
        return self.NO_JSON, (f"the annotation JSON ({', '.join(ANNOTATION_JSONS.values())} or mmaction2's "
                              f"annotations/{MMACTION2_ANNOTATION_JSON}) is needed and was not found "
                              "(option annotation=PATH)")

    def segment(self, yt: str, event: str, action: str):
        """``((start, end) seconds from the event start, None)`` or ``(None, (kind, detail))``."""
        segments = None
        if self.ann is not None:
            segments = ((self.ann.get(yt) or {}).get(event) or {}).get("segments")
        if segments is None and self.event_ann is not None:
            segments = self.event_ann.get(f"{yt}_{event}")
            self.event_ann_used = self.event_ann_used or segments is not None
        if self.ann is None and self.event_ann is None:
            return None, self._no_json()
        seg = (segments or {}).get(action)
        ts = seg.get("timestamps") if isinstance(seg, dict) else None
        try:
            starts = [float(t[0]) for t in ts]
            ends = [float(t[1]) for t in ts]
        except (TypeError, ValueError, IndexError):
            starts = ends = []
        if not starts:
            return None, ("annotation has no times for the segment",
                          f"no timestamps for {event}/{action} of {yt} in the annotation")
        return (min(starts), max(ends)), None

    def event_start(self, yt: str, event: str, truncated_start: int):
        """``(exact start in the full video, None)`` or ``(None, (kind, detail))``."""
        if self.ann is None:
            return None, self._no_json()
        ev = (self.ann.get(yt) or {}).get(event) or {}
        try:
            start = float(ev["timestamps"][0][0])
        except (KeyError, TypeError, ValueError, IndexError):
            return None, ("annotation has no exact start for the event",
                          f"no event-level timestamps for {event} of {yt} in {self.ann_path.name}")
        if not truncated_start <= start < truncated_start + 1:
            return None, ("event start disagrees with the event id",
                          f"{event} of {yt} starts at {start} s by its timestamps, not within the "
                          f"second its id names")
        return start, None


def _count_lines(path: Path) -> int:
    return sum(1 for line in read_text_lines(path) if line.strip())


def _split_source(splits: dict) -> str:
    kinds = {v["kind"] for v in splits.values()}
    if kinds == {"published"}:
        return "the published split files"
    if "mmaction2 list" in kinds:
        return ("mmaction2's generated lists (gym*_train.txt / gym*_val.txt): they hold only the clips whose "
                "video existed when they were made, not the published split")
    return "mmaction2's copies of the published split files (*_org.txt)"


def _split_notes(variant: str, splits: dict) -> list[str]:
    notes = []
    t = splits["train"]
    if t["version"] is None:
        want = ", ".join(f"v{ver}: {PUBLISHED_TRAIN_LINES[(variant, ver)]}" for ver in SPLIT_VERSIONS)
        notes.append(f"train split version unknown: {t['lines']} lines match no published file ({want})")
    elif t["version"] == "1.0":
        notes.append("train split v1.0 (the one mmaction2's gym_2d.pkl covers); v1.1 adds training clips")
    if splits["val"]["lines"] != PUBLISHED_VAL_LINES.get(variant) and splits["val"]["kind"] != "mmaction2 list":
        notes.append(f"val split has {splits['val']['lines']} lines, the published file "
                     f"{PUBLISHED_VAL_LINES.get(variant)}")
    return notes


@DATASET_ADAPTERS.register_module("gym99")
class Gym99(_FineGym):
    name = "gym99"
    variant = "gym99"


@DATASET_ADAPTERS.register_module("gym288")
class Gym288(_FineGym):
    name = "gym288"
    variant = "gym288"
