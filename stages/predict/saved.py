"""Each video's result as a file beside its pictures (``pipeline predict --out DIR``), so a killed
run (a folder of thousands of recordings, HRNet on each) continues where it stopped.

A result is written, atomically, after the video's pictures: ``DIR/<stem>.result.json`` holds the
result (every class's score, the windows' too) and the identity of what made it: the checkpoint
(path, size, modification time), the run config's hash, the training entry, the pose source's
identity (its model and weights' sha256, or the skeleton file's, flip test, precision, person
detector) and whether cached poses were reused, ``--window`` / ``--stride``, the pictures asked
for (``--video``, ``--fps``; not ``--top-k``: the ranks are made again from the saved scores),
and the video (path, size, modification time). A rerun
into the same folder takes a video's result from its file when every part of the identity is the
same, and predicts the others; a changed video, checkpoint or option is predicted again. Failed
videos, and windowed ones whose decoding stopped early (``VideoResult.whole`` False), write no
result: a rerun tries them again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from cache.keys import file_identity
from stages.predict.inputs import VideoInput
from stages.predict.predictor import Label, VideoResult, WindowResult, top_labels

#: what a result file's format is; a file of another version is predicted again (2: a classifier's
#: views averaged as probabilities, 2026-12-06; 3: window times after a late video stream's delay,
#: skeleton-file annotations matched by the video's folder too)
RESULT_VERSION = 3
SUFFIX = ".result.json"


def _file_stamp(path: os.PathLike) -> dict:
    return file_identity(str(Path(path).resolve()))


def run_identity(run: Any, predictor: Any, window: Optional[float], stride: Optional[float],
                 pictures: dict) -> dict:
    """What makes a run's results what they are, but the video: checkpoint, run config (its
    ``--cfg-options`` applied), training entry, pose source and its options, whether cached poses
    are reused, windows, the pictures asked for (``pictures``: their options, e.g. top-k, video)."""
    from stages.train.sweep import config_hash

    ident = {"version": RESULT_VERSION, "checkpoint": _file_stamp(run.checkpoint), "run_config": config_hash(run.cfg),
             "entry": run.record.key, "pose_source": predictor.pose_spec, "pose_identity": predictor.pose_identity,
             # (options outside the pose identity change what is found too: a skeleton file's match=name)
             "pose_options": dict(predictor.o.pose_options),
             "reuse_poses": predictor.cached is not None, "window": window, "stride": stride or window,
             "pictures": pictures}
    return json.loads(json.dumps(ident, sort_keys=True, default=str))  # as a result file holds it


def labels(top: Sequence[Label], k: Optional[int] = None) -> list[dict]:
    """Ranked labels as plain values (the first ``k``)."""
    return [dict(rank=i + 1, class_id=t.class_id, label=t.label, score=t.score) for i, t in enumerate(top[:k])]


def result_dict(r: VideoResult, k: Optional[int] = None) -> dict:
    """One video's result as plain values (``pipeline predict --json``'s per-video entry): the top
    ``k`` labels and every class's score, of the video or of each window."""
    d: dict = dict(video=r.video, name=r.name, ok=r.ok)
    if not r.ok:
        return dict(d, error=r.error)
    d.update(poses=r.poses, sha256=r.sha256, fps=r.fps, num_frames=r.num_frames, notes=list(r.notes))
    if r.windows is not None:
        d["windows"] = [dict(start_frame=w.start_frame, end_frame=w.end_frame, start_s=w.start_s, end_s=w.end_s,
                             top=labels(w.top, k), scores=[float(x) for x in w.scores]) for w in r.windows]
    else:
        d.update(top=labels(r.top, k), scores=[float(x) for x in r.scores])
    return d


def result_path(out_dir: os.PathLike, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{SUFFIX}"


def save_result(out_dir: os.PathLike, stem: str, identity: dict, video: VideoInput, r: VideoResult) -> Path:
    """Write ``r`` (a result that is ok) with the identity it was made under, atomically."""
    from cache.fsutil import atomic_write_json

    path = result_path(out_dir, stem)
    atomic_write_json(path, {"identity": {**identity, "video": _file_stamp(video.path)}, "result": result_dict(r)})
    return path


def result_owner(out_dir: os.PathLike, stem: str) -> Optional[str]:
    """The video (its path) whose result an earlier run wrote under ``stem`` in ``out_dir``, if any."""
    try:
        return json.loads(result_path(out_dir, stem).read_text())["result"]["video"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_result(out_dir: os.PathLike, stem: str, identity: dict, video: VideoInput, classes: Sequence[str],
                k: int) -> Optional[VideoResult]:
    """The result an earlier run wrote for ``video`` under the same identity, else None (no file,
    another identity, an unreadable file: the video is predicted again)."""
    path = result_path(out_dir, stem)
    try:
        saved = json.loads(path.read_text())
        same = saved["identity"] == {**identity, "video": _file_stamp(video.path)}
        d = saved["result"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same or not d.get("ok") or d.get("video") != video.path:
        return None
    r = VideoResult(video=video.path, name=video.name, poses=d.get("poses", ""), sha256=d.get("sha256"),
                    notes=list(d.get("notes") or []), fps=d.get("fps"), num_frames=d.get("num_frames"))
    if d.get("windows") is not None:
        r.windows = []
        for w in d["windows"]:
            scores = np.asarray(w["scores"], np.float32)
            r.windows.append(WindowResult(w["start_frame"], w["end_frame"], w["start_s"], w["end_s"], scores=scores,
                                          top=top_labels(scores, classes, k)))
    else:
        r.scores = np.asarray(d["scores"], np.float32)
        r.top = top_labels(r.scores, classes, k)
    return r
