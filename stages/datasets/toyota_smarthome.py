"""Toyota-Smarthome (trimmed): ``toyota_smarthome``.

Layout under ``--root`` as the release unpacks and common loaders arrange it (docs/datasets.md)::

    ROOT/mp4/<Class>_p<NN>_r<NN>_v<NN>_c<NN>.mp4   clips (also ROOT/videos/, ROOT/video/, ROOT/)
    ROOT/splits/train_CS.txt, validation_CS.txt, test_CS.txt     optional: the published split
    ROOT/splits/train_CV1.txt ... test_CV2.txt                   lists (or in ROOT; option split_dir)
    ROOT/skeletonv12/<clip>_pose3d.json            optional LCR-Net skeletons, one file per clip:
    ROOT/json/<clip>.json                          the refined v1.2 release (pi-ViT's layout), the
                                                   original release (its archive unpacks to json/),
                                                   or smarthome_skeletons/ (2s-AGCN/UNIK loaders;
                                                   also under smarthome_raw/), skeletons/, skeleton/,
                                                   pose/; option skeleton_dir

Protocols (adapter option ``protocol``), as the authors' published split lists define them
(``srijandas07/i3d_smarthome/splits``):

* ``cs`` (default), cross-subject, 31 classes (``cs_classes_31_DERIVED.txt``), all cameras:
  train subjects 3, 4, 6, 7, 9, 12, 13, 15, 17; validation 19, 25; test 2, 10, 11, 14, 16, 18, 20.
* ``cv1``, cross-view, 19 classes (``cv_classes_19_DERIVED.txt``): train camera 1, validation
  camera 5, test camera 2.
* ``cv2``, cross-view, 19 classes: train cameras 1, 3, 4, 6, 7, validation 5, test 2.

**Which source defines the splits** (``meta["split_source"]``): the published lists
``train_<P>.txt``, ``validation_<P>.txt``, ``test_<P>.txt`` (``P`` = CS, CV1, CV2; one clip file
name per line) when all three are found in option ``split_dir``, ROOT/splits or ROOT. Then a
listed clip whose video is absent is reported missing (``meta["listed_without_video"]``) and a
video no list names is dropped and counted. Without the lists, the file names are the index and
the subject / camera rule above assigns the splits; options ``train_subjects``, ``val_subjects``,
``test_subjects``, ``train_cameras``, ``val_cameras``, ``test_cameras`` (lists of ints) change it.

Clips of subjects or cameras the protocol does not use, and clips whose class is not in the
protocol's class list, are dropped; ``meta["dropped"]`` counts every dropped clip by reason. In
particular **Pour.Fromcup** (14 clips, present in the published cross-subject split lists but not
among the 31 classes) is dropped, never given a 32nd label: the 31-class protocol is what results
are reported on.

Class text: the class name made readable with a fixed table (``"Drink.Fromcup"`` -> ``"drink from
cup"``, ``"Cook.Cleandishes"`` -> ``"cook, clean dishes"``, ``"WatchTV"`` -> ``"watch TV"``);
unknown names fall back to splitting on ``.`` and capitals. Coarse type ``"daily living"``.

Poses (pose source ``dataset``, skeleton ``toyota13``): the LCR-Net JSON per clip, found in the
first skeleton folder above that holds any (``meta["skeleton_folder"]``, with how many clips have
a file), named ``<clip>_pose3d.json`` (v1.2), ``<clip>.json`` (original), or ``<clip>_pose3d2d.json``
/ ``<clip>_pose.json`` (local conventions, kept)::

    {"njts": 13, "frames": [[{"pose2d": [26 numbers], "pose3d": [39 numbers],
                              "cumscore": float}, ...],   # one list of persons per frame
                            ...]}

(a bare list of frames, or ``frames`` as a dict keyed by frame number, is accepted too).
``pose2d`` as 26 numbers is read as 13 x followed by 13 y (LCR-Net's layout; option
``pose2d_layout="xy"`` for interleaved x, y pairs); a nested 13 x 2 list is read as is; a pose of
all ``-1`` is no detection (as the v1.2 files mark it), a joint at ``(-1, -1)`` one not found
(score 0). Main person per frame: the detection with the highest ``cumscore`` (``score`` if that
is absent), the first of equals, and the first when none carries a score (v1.2 files): the
authors' ``json_to_npz.py`` takes ``frames[i][0]``, and LCR-Net writes each frame's detections
sorted by ``cumscore``, highest first, so the two agree. The chosen person's joints get score 1
(LCR-Net gives no per-joint confidence), a frame with no detection gets zeros. Coordinates are in the clip's
pixels; the frame size is option ``frame_size`` (default 480 x 640, the released mp4 size).
"""
from __future__ import annotations

import json
import logging
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
    PoseTrack,
)
from stages.datasets.names import is_hidden, is_text, not_text_note, read_text_lines, report_skipped
from stages.registry import DATASET_ADAPTERS
from stages.settings import field

log = logging.getLogger(__name__)
LABELS_DIR = Path(__file__).with_name("labels") / "toyota_smarthome"
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm")
VIDEO_DIRS = ("mp4", "videos", "video", "")
SPLIT_DIRS = ("splits", "")
SKELETON_DIRS = ("skeletonv12", "smarthome_skeletons", "smarthome_raw/smarthome_skeletons", "json",
                 "skeletons", "skeleton", "pose")
SKELETON_SUFFIXES = ("_pose3d.json", ".json", "_pose3d2d.json", "_pose.json")
CLIP_RE = re.compile(r"^(?P<cls>[^/\\]+?)_p(?P<p>\d+)_r(?P<r>\d+)_v(?P<v>\d+)_c(?P<c>\d+)$")
NJOINTS = 13
SPLIT_LIST_NAMES = {"train": "train_{}.txt", "val": "validation_{}.txt", "test": "test_{}.txt"}

PROTOCOLS = {
    "cs": {"classes": "cs_classes_31_DERIVED.txt", "by": "subjects", "lists": "CS",
           "train": (3, 4, 6, 7, 9, 12, 13, 15, 17), "val": (19, 25), "test": (2, 10, 11, 14, 16, 18, 20)},
    "cv1": {"classes": "cv_classes_19_DERIVED.txt", "by": "cameras", "lists": "CV1",
            "train": (1,), "val": (5,), "test": (2,)},
    "cv2": {"classes": "cv_classes_19_DERIVED.txt", "by": "cameras", "lists": "CV2",
            "train": (1, 3, 4, 6, 7), "val": (5,), "test": (2,)},
}

READABLE = {
    "Cook.Cleandishes": "cook, clean dishes", "Cook.Cleanup": "cook, clean up",
    "Cook.Cut": "cook, cut", "Cook.Stir": "cook, stir", "Cook.Usestove": "cook, use stove",
    "Cutbread": "cut bread", "Drink.Frombottle": "drink from bottle",
    "Drink.Fromcan": "drink from can", "Drink.Fromcup": "drink from cup",
    "Drink.Fromglass": "drink from glass", "Eat.Attable": "eat at table",
    "Eat.Snack": "eat snack", "Enter": "enter", "Getup": "get up", "Laydown": "lay down",
    "Leave": "leave", "Makecoffee.Pourgrains": "make coffee, pour grains",
    "Makecoffee.Pourwater": "make coffee, pour water", "Maketea.Boilwater": "make tea, boil water",
    "Maketea.Insertteabag": "make tea, insert tea bag", "Pour.Frombottle": "pour from bottle",
    "Pour.Fromcan": "pour from can", "Pour.Fromcup": "pour from cup",
    "Pour.Fromkettle": "pour from kettle", "Readbook": "read book", "Sitdown": "sit down",
    "Takepills": "take pills", "Uselaptop": "use laptop", "Usetablet": "use tablet",
    "Usetelephone": "use telephone", "Walk": "walk", "WatchTV": "watch TV",
}


def readable_class(name: str) -> str:
    if name in READABLE:
        return READABLE[name]
    parts = [re.sub(r"(?<=[a-z])(?=[A-Z])", " ", p).lower() for p in name.split(".") if p]
    return ", ".join(parts)


def _ints(v, default):
    """Subject or camera numbers from an option: ints, "p19"/"c05", or "19,25" from the command line."""
    if v is None:
        return tuple(default)
    if isinstance(v, str):
        v = [x for x in re.split(r"[,\s]+", v) if x]
    elif isinstance(v, int):
        v = [v]
    return tuple(int(str(x).lstrip("pPcC")) for x in v)


def _unit_numbers(value):
    """Subjects / cameras as the file names write them (``p03``, ``c05``) or as numbers."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        return value
    return [str(x).strip().lstrip("pPcC") if isinstance(x, str) else x for x in items]


@dataclass(frozen=True)
class ToyotaOptions(AdapterOptions):
    protocol: Literal["cs", "cv1", "cv2"] = field("cs", help="cs: cross-subject, 31 classes; cv1 / cv2: cross-view, 19.")
    split_dir: Optional[Path] = field(None, help="Folder of the published split lists (default: ROOT/splits, ROOT).")
    skeleton_dir: Optional[Path] = field(None, help="Folder of the LCR-Net skeleton JSON files (default: looked for "
                                              "under ROOT, docs/datasets.md).")
    frame_size: tuple[int, int] = field((480, 640), help="Height,width of the videos the skeletons' pixels refer to.")
    pose2d_layout: Literal["xxyy", "xy"] = field("xxyy", help="pose2d as 13 x then 13 y (LCR-Net) or x,y pairs.")
    train_subjects: Optional[tuple[int, ...]] = field(None, parse=_unit_numbers, help="Without split lists: the "
                                                        "train subjects, e.g. 3,4 or p03,p04 (default: the protocol's).")
    val_subjects: Optional[tuple[int, ...]] = field(None, parse=_unit_numbers, help="As train_subjects, for val.")
    test_subjects: Optional[tuple[int, ...]] = field(None, parse=_unit_numbers, help="As train_subjects, for test.")
    train_cameras: Optional[tuple[int, ...]] = field(None, parse=_unit_numbers, help="Without split lists "
                                                       "(cross-view): the train cameras, e.g. 1 or c01 (default: the "
                                                       "protocol's).")
    val_cameras: Optional[tuple[int, ...]] = field(None, parse=_unit_numbers, help="As train_cameras, for val.")
    test_cameras: Optional[tuple[int, ...]] = field(None, parse=_unit_numbers, help="As train_cameras, for test.")


@DATASET_ADAPTERS.register_module("toyota_smarthome")
class ToyotaSmarthome(DatasetAdapter):
    Options = ToyotaOptions
    name = "toyota_smarthome"
    coarse_type = "daily living"
    skeleton = "toyota13"
    has_poses = True
    # how the LCR-Net files are read (part of the pose source's identity, so the entry key): the first
    # of the best-scored detections, joints at (-1, -1) unseen; before it, ties and unscored
    # detections went to the larger box and such joints counted as seen
    pose_reading = "lcrnet: first of the highest cumscore, joints at -1 unseen"
    extract_defaults = {"pose_source": "dataset"}

    def __init__(self, root=None, **options):
        super().__init__(root, **options)
        self._skeletons: Optional[tuple[Optional[Path], dict[str, Path]]] = None

    def _video_folder(self, required: bool) -> Path:
        for d in VIDEO_DIRS:
            folder = self.root / d
            if folder.is_dir() and any(
                CLIP_RE.match(os.path.splitext(n)[0]) for n in os.listdir(folder)
                if os.path.splitext(n)[1].lower() in VIDEO_EXTS
            ):
                return folder
        if not required:
            return self.root / "mp4"
        raise DatasetLayoutError(
            f"toyota_smarthome: expected clips named <Class>_pNN_rNN_vNN_cNN.mp4 in "
            f"{self.root / 'mp4'}, {self.root / 'videos'} or {self.root}; found none"
        )

    def _split_lists(self, suffix: str) -> Optional[dict[str, Path]]:
        """The published lists of this protocol, if all three are found; an error if only some are."""
        opt = self.options.split_dir
        if opt:
            dirs = [opt]
            if not dirs[0].is_dir():
                raise DatasetLayoutError(f"toyota_smarthome: split_dir {dirs[0]} is not a folder")
        else:
            dirs = [self.root / d for d in SPLIT_DIRS]
        for d in dirs:
            found = {s: d / n.format(suffix) for s, n in SPLIT_LIST_NAMES.items()}
            have = {s: p for s, p in found.items() if p.is_file()}
            if len(have) == 3:
                return have
            if have:
                lacking = ", ".join(p.name for s, p in found.items() if s not in have)
                raise DatasetLayoutError(f"toyota_smarthome: {d} has {', '.join(p.name for p in have.values())} "
                                         f"but not {lacking}; the three lists define the splits together")
        if opt:
            names = ", ".join(n.format(suffix) for n in SPLIT_LIST_NAMES.values())
            raise DatasetLayoutError(f"toyota_smarthome: split_dir {dirs[0]} lacks {names}")
        return None

    @staticmethod
    def _read_list(path: Path) -> list[str]:
        stems = []
        for n, line in enumerate(read_text_lines(path), 1):
            # a list written or moved by hand may carry the folder (mp4/Walk_p03_r01_v16_c06.mp4):
            # the clip is its file name, looked up in the video folder as a bare name is
            name = line.strip().replace("\\", "/").rsplit("/", 1)[-1]
            if not name:
                if line.strip():
                    raise DatasetLayoutError(f"{path}:{n}: expected a clip file name "
                                             f"<Class>_pNN_rNN_vNN_cNN.mp4, got {line!r}")
                continue
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTS:
                stem = name
            if not CLIP_RE.match(stem):
                raise DatasetLayoutError(f"{path}:{n}: expected a clip file name "
                                         f"<Class>_pNN_rNN_vNN_cNN.mp4, got {line!r}")
            stems.append(stem)
        return stems

    def _other_protocols_lists(self) -> list[str]:
        """The protocols (``CS``, ``CV1``, ``CV2``) whose three published lists are where this one's
        were looked for."""
        dirs = [self.options.split_dir] if self.options.split_dir else [self.root / d for d in SPLIT_DIRS]
        return [spec["lists"] for spec in PROTOCOLS.values()
                if any(all((d / n.format(spec["lists"])).is_file() for n in SPLIT_LIST_NAMES.values()) for d in dirs)]

    def _rule(self, spec: dict) -> dict[str, set[int]]:
        unit = spec["by"]
        return {s: set(_ints(getattr(self.options, f"{s}_{unit}", None), spec[s])) for s in ("train", "val", "test")}

    def load(self, progress=None) -> DatasetIndex:
        protocol = self.options.protocol
        spec = PROTOCOLS[protocol]
        names = [l.strip() for l in (LABELS_DIR / spec["classes"]).read_text().splitlines() if l.strip()]
        label_of = {n: i for i, n in enumerate(names)}
        lists = self._split_lists(spec["lists"])
        folder = self._video_folder(required=lists is None)
        videos = {}
        skipped: list[str] = []
        if folder.is_dir():
            for fname in sorted(os.listdir(folder)):
                stem, ext = os.path.splitext(fname)
                if is_hidden(fname):  # macOS's ._<clip>.mp4 beside every clip of a zip made on a Mac
                    continue
                if ext.lower() in VIDEO_EXTS and not is_text(fname):  # no Toyota clip name is (names.py)
                    report_skipped(skipped, not_text_note(folder, fname, "a clip id"))
                elif ext.lower() in VIDEO_EXTS:
                    videos.setdefault(stem, folder / fname)
        skel_dir, skel_files = self._skeleton_files()
        dropped: dict[str, int] = {}

        def drop(reason: str) -> None:
            dropped[reason] = dropped.get(reason, 0) + 1

        meta: dict = {"protocol": protocol, **({"skipped_names": skipped} if skipped else {})}
        if lists is not None:
            assign: list[tuple[str, str]] = []
            seen: dict[str, str] = {}
            for split, path in lists.items():
                for stem in self._read_list(path):
                    if stem in seen:
                        raise DatasetLayoutError(f"toyota_smarthome: {stem} is listed in both "
                                                 f"{lists[seen[stem]].name} and {path.name}")
                    seen[stem] = split
                    assign.append((stem, split))
            for stem in videos:
                if CLIP_RE.match(stem) and stem not in seen:
                    drop("video not in the split lists")
            meta["split_source"] = "published split lists: " + ", ".join(
                os.path.relpath(p, self.root) if p.is_relative_to(self.root) else str(p) for p in lists.values())
            source_files = [str(p) for p in lists.values()]
        else:
            rule = self._rule(spec)
            key = "p" if spec["by"] == "subjects" else "c"
            assign = []
            for stem in videos:
                m = CLIP_RE.match(stem)
                if not m:
                    drop("unrecognised name")
                    continue
                if m.group("cls") not in label_of:
                    drop(f"class {m.group('cls')} not in the {protocol} protocol")
                    continue
                num = int(m.group(key))
                split = next((s for s in ("train", "val", "test") if num in rule[s]), None)
                if split is None:
                    drop(f"{'subject p' if key == 'p' else 'camera c'}{num:02d} not in the {protocol} protocol")
                    continue
                assign.append((stem, split))
            others = self._other_protocols_lists()
            meta["split_source"] = (
                "protocol rule on the file names (no published split lists found)" if not others else
                f"protocol rule on the file names: no {spec['lists']} split lists found, though "
                f"{', '.join(others)} lists are (-o protocol={others[0].lower()} uses them)")
            if others:
                log.warning("toyota_smarthome: protocol %s: %s", protocol, meta["split_source"])
            meta["split_rule"] = {f"{s}_{spec['by']}": sorted(v) for s, v in rule.items()}
            source_files = []

        clips = []
        listed_without_video = 0
        for stem, split in assign:
            m = CLIP_RE.match(stem)
            cls = m.group("cls")
            if cls not in label_of:
                drop(f"class {cls} not in the {protocol} protocol")
                continue
            video = videos.get(stem)
            if video is None:
                listed_without_video += 1
                video = folder / f"{stem}.mp4"
            extra = {"class_name": cls, "subject": int(m.group("p")), "camera": int(m.group("c")),
                     "repetition": int(m.group("r")), "take": int(m.group("v"))}
            if stem in skel_files:
                extra["pose_file"] = str(skel_files[stem])
            clips.append(ClipRecord(stem, split, label_of[cls], str(video), extra=extra))
        if lists is not None:
            meta["listed_without_video"] = listed_without_video
        meta.update({
            "class_names": names, "dropped": dropped, "video_folder": str(folder),
            "skeleton_folder": str(skel_dir) if skel_dir else None,
            "clips_with_skeleton": sum(1 for c in clips if "pose_file" in c.extra),
        })
        return DatasetIndex(
            name=self.name, classes=[readable_class(n) for n in names], coarse_type=self.coarse_type,
            skeleton=self.skeleton, clips=clips, root=str(self.root), source_files=source_files, meta=meta,
        )

    # -- poses -------------------------------------------------------------------------------
    def _skeleton_files(self) -> tuple[Optional[Path], dict[str, Path]]:
        """The skeleton folder used and ``{clip id: file}`` in it (one listing, once per process)."""
        if self._skeletons is None:
            opt = self.options.skeleton_dir
            dirs = [opt] if opt else [self.root / d for d in SKELETON_DIRS]
            if opt and not dirs[0].is_dir():
                raise DatasetLayoutError(f"toyota_smarthome: skeleton_dir {dirs[0]} is not a folder")
            self._skeletons = (None, {})
            for d in dirs:
                if not d.is_dir():
                    continue
                files: dict[str, Path] = {}
                names = set(os.listdir(d))
                for suffix in SKELETON_SUFFIXES:  # earlier suffixes win for the same clip
                    for n in sorted(names):
                        if n.endswith(suffix) and CLIP_RE.match(n[: -len(suffix)]):
                            files.setdefault(n[: -len(suffix)], d / n)
                if files:
                    self._skeletons = (d, files)
                    break
        return self._skeletons

    def clips_without_poses(self, clips: list[ClipRecord]) -> list[str]:
        _, files = self._skeleton_files()
        return [c.clip_id for c in clips if c.clip_id not in files]

    def dataset_poses(self, clip: ClipRecord) -> PoseTrack:
        folder, files = self._skeleton_files()
        path = files.get(clip.clip_id)
        if path is None:
            where = folder or self.options.skeleton_dir or ", ".join(
                str(self.root / d) for d in SKELETON_DIRS)
            raise FileNotFoundError(
                f"toyota_smarthome: no skeleton for {clip.clip_id} "
                f"(expected {clip.clip_id}_pose3d.json or {clip.clip_id}.json in {where})"
            )
        return parse_lcrnet_json(path, frame_size=self.options.frame_size, layout=self.options.pose2d_layout)


def _pose2d(det: dict, layout: str) -> np.ndarray:
    raw = np.asarray(det["pose2d"], dtype=np.float32)
    if raw.ndim == 2 and raw.shape == (NJOINTS, 2):
        return raw
    if raw.ndim == 2 and raw.shape == (2, NJOINTS):
        return raw.T
    flat = raw.reshape(-1)
    if flat.size != 2 * NJOINTS:
        raise ValueError(f"pose2d has {flat.size} numbers, expected {2 * NJOINTS}")
    if layout == "xy":
        return flat.reshape(NJOINTS, 2)
    return flat.reshape(2, NJOINTS).T


def _det_score(det: dict) -> float:
    """The detection's ``cumscore`` (``score`` if that is absent); -inf without either, so that a
    frame whose detections carry no score keeps its first, as the authors' tools read it."""
    for k in ("cumscore", "score"):
        if k in det:
            return float(np.asarray(det[k]).reshape(-1)[0])
    return float("-inf")


def parse_lcrnet_json(path: os.PathLike, frame_size=(480, 640), layout: str = "xxyy") -> PoseTrack:
    """One clip's LCR-Net JSON -> the main person's 13 joints per frame (module docstring)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except ValueError as e:  # not JSON, or not UTF-8
        raise DatasetLayoutError(f"{path}: not valid JSON ({e})") from None
    frames = data.get("frames") if isinstance(data, dict) else data
    if isinstance(frames, dict):
        frames = [frames[k] for k in sorted(frames, key=lambda k: int(re.sub(r"\D", "", k) or 0))]
    if not isinstance(frames, list):
        raise DatasetLayoutError(f"{path}: expected {{'frames': [[{{'pose2d': ...}}, ...], ...]}}")
    kps = np.zeros((len(frames), NJOINTS, 2), np.float32)
    scores = np.zeros((len(frames), NJOINTS), np.float32)
    for t, dets in enumerate(frames):
        if isinstance(dets, dict):
            dets = [dets]
        best, best_score = None, None
        for det in dets or []:
            if not isinstance(det, dict) or "pose2d" not in det:
                continue
            try:
                p = _pose2d(det, layout)
            except ValueError as e:
                raise DatasetLayoutError(f"{path}: frame {t}: {e}") from None
            if np.all(p == -1):  # how the v1.2 files mark a frame without a detection
                continue
            score = _det_score(det)
            if best_score is None or score > best_score:  # the first of equals (LCR-Net sorts by cumscore)
                best, best_score = p, score
        if best is not None:
            kps[t] = best
            # a joint at (-1, -1) is one the file marks as not found: unseen, not a joint in the corner
            scores[t] = np.where(np.all(best == -1, axis=1), 0.0, 1.0)
    return PoseTrack(keypoints=kps, scores=scores, frame_size=tuple(frame_size))
