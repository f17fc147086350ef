"""Toyota-Smarthome (trimmed): ``toyota_smarthome``.

Accepted layout under ``--root``::

    ROOT/mp4/<Class>_p<NN>_r<NN>_v<NN>_c<NN>.mp4    clips (also ROOT/videos/, ROOT/video/, ROOT/)
    ROOT/skeletons/<clip>_pose3d2d.json             optional LCR-Net 2D/3D skeletons, one file per
                                                    clip (also ROOT/skeleton/, ROOT/json/,
                                                    ROOT/pose/; names <clip>.json and
                                                    <clip>_pose.json too; option skeleton_dir)

The file names are the index (``p`` subject, ``r`` repetition, ``v`` take, ``c`` camera), so no
clip is ever missing and ``source_files`` is empty.

Protocols (adapter option ``protocol``; the published ones as we know them, stated as
assumptions and overridable with ``train_subjects`` / ``val_subjects`` / ``train_cameras`` /
``val_cameras`` / ``test_cameras``, lists of ints):

* ``cs`` (default), cross-subject, 31 classes (``cs_classes_31_DERIVED.txt``), all cameras:
  train subjects 3, 4, 6, 7, 9, 12, 13, 15, 17, 19, 25; every other subject is ``test``; no
  ``val`` unless ``val_subjects`` names some (taken out of train).
* ``cv1``, cross-view, 19 classes (``cv_classes_19_DERIVED.txt``): train camera 1, val camera 6,
  test camera 2.
* ``cv2``, cross-view, 19 classes: train cameras 1, 3, 4, 6, val camera 5, test camera 2.

Clips of cameras a cross-view protocol does not use (7, and 3-5 in cv1) are dropped, as are clips
whose class is not in the protocol's class list. In particular **Pour.Fromcup** (14 clips, present
in the published cross-subject split lists but not among the 31 classes) is dropped, never given
a 32nd label: the 31-class protocol is what results are reported on. ``meta["dropped"]`` counts
every dropped clip by reason.

Class text: the class name made readable with a fixed table (``"Drink.Fromcup"`` -> ``"drink from
cup"``, ``"Cook.Cleandishes"`` -> ``"cook, clean dishes"``, ``"WatchTV"`` -> ``"watch TV"``);
unknown names fall back to splitting on ``.`` and capitals. Coarse type ``"daily living"``.

Poses (pose source ``dataset``, skeleton ``toyota13``): the LCR-Net JSON per clip::

    {"njts": 13, "frames": [[{"pose2d": [26 numbers], "pose3d": [39 numbers],
                              "cumscore": float}, ...],   # one list of persons per frame
                            ...]}

(a bare list of frames, or ``frames`` as a dict keyed by frame number, is accepted too).
``pose2d`` as 26 numbers is read as 13 x followed by 13 y (LCR-Net's layout; option
``pose2d_layout="xy"`` for interleaved x, y pairs); a nested 13 x 2 list is read as is. Main person
per frame: the detection with the highest ``cumscore`` (``score`` if that is absent), ties to the
larger joint bounding box. The chosen person's joints get score 1 (LCR-Net gives no per-joint
confidence), a frame with no detection gets zeros. Coordinates are in the clip's pixels; the
frame size is option ``frame_size`` (default 480 x 640, the released mp4 size).
"""
from __future__ import annotations

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
    PoseTrack,
)
from stages.registry import DATASETS

LABELS_DIR = Path(__file__).with_name("labels") / "toyota_smarthome"
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm")
VIDEO_DIRS = ("mp4", "videos", "video", "")
SKELETON_DIRS = ("skeletons", "skeleton", "json", "pose")
SKELETON_NAMES = ("{}_pose3d2d.json", "{}.json", "{}_pose.json")
CLIP_RE = re.compile(r"^(?P<cls>.+?)_p(?P<p>\d+)_r(?P<r>\d+)_v(?P<v>\d+)_c(?P<c>\d+)$")
NJOINTS = 13

CS_TRAIN_SUBJECTS = (3, 4, 6, 7, 9, 12, 13, 15, 17, 19, 25)
PROTOCOLS = {
    "cs": {"classes": "cs_classes_31_DERIVED.txt"},
    "cv1": {"classes": "cv_classes_19_DERIVED.txt", "train": (1,), "val": (6,), "test": (2,)},
    "cv2": {"classes": "cv_classes_19_DERIVED.txt", "train": (1, 3, 4, 6), "val": (5,), "test": (2,)},
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
    if v is None:
        return tuple(default)
    if isinstance(v, (int, str)):
        v = [v]
    return tuple(int(str(x).lstrip("pPcC")) for x in v)


@DATASETS.register_module("toyota_smarthome")
class ToyotaSmarthome(DatasetAdapter):
    name = "toyota_smarthome"
    coarse_type = "daily living"
    skeleton = "toyota13"
    has_poses = True
    extract_defaults = {"pose_source": "dataset"}

    def _video_folder(self) -> Path:
        for d in VIDEO_DIRS:
            folder = self.root / d
            if folder.is_dir() and any(
                CLIP_RE.match(os.path.splitext(n)[0]) for n in os.listdir(folder)
                if os.path.splitext(n)[1].lower() in VIDEO_EXTS
            ):
                return folder
        raise DatasetLayoutError(
            f"toyota_smarthome: expected clips named <Class>_pNN_rNN_vNN_cNN.mp4 in "
            f"{self.root / 'mp4'}, {self.root / 'videos'} or {self.root}; found none"
        )

    def load(self, progress=None) -> DatasetIndex:
        protocol = str(self.options.get("protocol", "cs")).lower()
        if protocol not in PROTOCOLS:
            raise DatasetLayoutError(
                f"toyota_smarthome: protocol {protocol!r} is not one of {sorted(PROTOCOLS)}"
            )
        spec = PROTOCOLS[protocol]
        names = [l.strip() for l in (LABELS_DIR / spec["classes"]).read_text().splitlines() if l.strip()]
        label_of = {n: i for i, n in enumerate(names)}
        if protocol == "cs":
            train_s = set(_ints(self.options.get("train_subjects"), CS_TRAIN_SUBJECTS))
            val_s = set(_ints(self.options.get("val_subjects"), ()))
            rule = {"train_subjects": sorted(train_s - val_s), "val_subjects": sorted(val_s),
                    "test_subjects": "all others", "cameras": "all"}
        else:
            cams = {s: set(_ints(self.options.get(f"{s}_cameras"), spec[s]))
                    for s in ("train", "val", "test")}
            rule = {f"{s}_cameras": sorted(c) for s, c in cams.items()}

        folder = self._video_folder()
        clips, dropped = [], {}
        files = sorted(os.listdir(folder))
        for fname in files:
            stem, ext = os.path.splitext(fname)
            if ext.lower() not in VIDEO_EXTS:
                continue
            m = CLIP_RE.match(stem)
            if not m:
                dropped["unrecognised name"] = dropped.get("unrecognised name", 0) + 1
                continue
            cls, subj, cam = m.group("cls"), int(m.group("p")), int(m.group("c"))
            if cls not in label_of:
                key = f"class {cls} not in the {protocol} protocol"
                dropped[key] = dropped.get(key, 0) + 1
                continue
            if protocol == "cs":
                split = "val" if subj in val_s else "train" if subj in train_s else "test"
            else:
                split = next((s for s in ("train", "val", "test") if cam in cams[s]), None)
                if split is None:
                    key = f"camera c{cam:02d} not in the {protocol} protocol"
                    dropped[key] = dropped.get(key, 0) + 1
                    continue
            clips.append(ClipRecord(
                stem, split, label_of[cls], str(folder / fname),
                extra={"class_name": cls, "subject": subj, "camera": cam,
                       "repetition": int(m.group("r")), "take": int(m.group("v"))},
            ))
        return DatasetIndex(
            name=self.name, classes=[readable_class(n) for n in names], coarse_type=self.coarse_type,
            skeleton=self.skeleton, clips=clips, root=str(self.root), source_files=[],
            meta={"protocol": protocol, "split_rule": rule, "class_names": names,
                  "dropped": dropped, "video_folder": str(folder)},
        )

    # -- poses -------------------------------------------------------------------------------
    def _skeleton_file(self, clip_id: str) -> Optional[Path]:
        opt = self.options.get("skeleton_dir")
        dirs = [Path(opt).expanduser()] if opt else [self.root / d for d in SKELETON_DIRS]
        for d in dirs:
            for pat in SKELETON_NAMES:
                p = d / pat.format(clip_id)
                if p.is_file():
                    return p
        return None

    def dataset_poses(self, clip: ClipRecord) -> PoseTrack:
        path = self._skeleton_file(clip.clip_id)
        if path is None:
            where = self.options.get("skeleton_dir") or ", ".join(str(self.root / d) for d in SKELETON_DIRS)
            raise FileNotFoundError(
                f"toyota_smarthome: no skeleton for {clip.clip_id} "
                f"(expected {clip.clip_id}_pose3d2d.json in {where})"
            )
        fs = self.options.get("frame_size", (480, 640))
        return parse_lcrnet_json(path, frame_size=(int(fs[0]), int(fs[1])),
                                 layout=str(self.options.get("pose2d_layout", "xxyy")))


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
    for k in ("cumscore", "score"):
        if k in det:
            return float(np.asarray(det[k]).reshape(-1)[0])
    return 1.0


def parse_lcrnet_json(path: os.PathLike, frame_size=(480, 640), layout: str = "xxyy") -> PoseTrack:
    """One clip's LCR-Net JSON -> the main person's 13 joints per frame (module docstring)."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
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
        best, best_key = None, None
        for det in dets or []:
            if not isinstance(det, dict) or "pose2d" not in det:
                continue
            try:
                p = _pose2d(det, layout)
            except ValueError as e:
                raise DatasetLayoutError(f"{path}: frame {t}: {e}") from None
            area = float(np.ptp(p[:, 0]) * np.ptp(p[:, 1]))
            key = (_det_score(det), area)
            if best_key is None or key > best_key:
                best, best_key = p, key
        if best is not None:
            kps[t] = best
            scores[t] = 1.0
    return PoseTrack(keypoints=kps, scores=scores, frame_size=tuple(frame_size))
