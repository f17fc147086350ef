"""People over the frames of a clip: per-frame detections linked into tracks, the n best kept.

A top-down pose source with several person boxes per frame (stage-one setting ``persons`` n > 1)
gives, per frame, ``m_f`` people (their boxes, joints and scores) in no particular order. Stage one
stores people by track, person-major in the joint axis (docs/cache.md), so the detections are
linked over frames and ranked:

* linking (:func:`link_boxes`): greedily, frame by frame, the pair of (track, detection) with the
  highest box IoU first, while it is at least ``min_iou``; a track continues from the last box it
  had (it may skip frames); a detection left over starts a new track;
* ranking (:func:`keep_best_tracks`): by mean joint score over the clip (frames a track is absent
  from count as 0), best first, ties to the track that started first; the n best are kept, the
  rest dropped; fewer than n tracks leave zero-score people.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

#: two boxes of consecutive sightings of one person overlap at least this much
MIN_IOU = 0.3


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4), xyxy: (n, m)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def link_boxes(frame_boxes: Sequence[np.ndarray], min_iou: float = MIN_IOU) -> list[np.ndarray]:
    """Track id of every detection: ``frame_boxes[f]`` (m_f, 4) -> ``ids[f]`` (m_f,) int, ids
    numbered in the order tracks start (module docstring)."""
    last: list[np.ndarray] = []  # each track's last box
    out = []
    for boxes in frame_boxes:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        if last and len(boxes):
            iou = box_iou(np.stack(last), boxes)
            taken = set()
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                t, d = divmod(int(flat), len(boxes))
                if iou[t, d] < min_iou:
                    break
                if t in taken or ids[d] >= 0:
                    continue
                ids[d] = t
                taken.add(t)
        for d in np.flatnonzero(ids < 0):
            ids[d] = len(last)
            last.append(boxes[d])
        for d, t in enumerate(ids):
            last[t] = boxes[d]
        out.append(ids)
    return out


def keep_best_tracks(ids: Sequence[np.ndarray], keypoints: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                     persons: int, boxes: Optional[Sequence[np.ndarray]] = None):
    """The ``persons`` best tracks, person-major: per frame ``f`` the detections' track ids
    ``ids[f]`` (m_f,), joints ``keypoints[f]`` (m_f, V, 2), ``scores[f]`` (m_f, V) and boxes
    ``boxes[f]`` (m_f, 4). Returns keypoints (F, persons * V, 2), scores (F, persons * V), boxes
    (F, persons, 4) (NaN where a person is absent; None without ``boxes``) and a summary (how
    many tracks there were, which were kept, their mean scores)."""
    f_count = len(ids)
    v = next((np.asarray(k).shape[1] for k in keypoints if len(k)), None)
    if v is None:
        raise ValueError("no person in any frame")
    n_tracks = int(max((int(i.max()) + 1 for i in ids if len(i)), default=0))
    total = np.zeros(n_tracks)
    for i, s in zip(ids, scores):
        np.add.at(total, np.asarray(i, np.int64), np.asarray(s, np.float64).sum(axis=1))
    mean = total / (f_count * v)
    order = np.argsort(-mean, kind="stable")[:persons]
    slot = np.full(n_tracks, -1, np.int64)
    slot[order] = np.arange(len(order))
    kp = np.zeros((f_count, persons, v, 2), np.float32)
    sc = np.zeros((f_count, persons, v), np.float32)
    bx = np.full((f_count, persons, 4), np.nan, np.float32) if boxes is not None else None
    for f in range(f_count):
        for d, t in enumerate(np.asarray(ids[f], np.int64)):
            p = slot[t]
            if p < 0:
                continue
            kp[f, p], sc[f, p] = keypoints[f][d], scores[f][d]
            if bx is not None:
                bx[f, p] = boxes[f][d]
    summary = {"tracks": n_tracks, "kept": [int(t) for t in order],
               "mean_scores": [round(float(mean[t]), 4) for t in order]}
    if len(order) < persons:
        summary["missing_persons"] = persons - len(order)
    return kp.reshape(f_count, persons * v, 2), sc.reshape(f_count, persons * v), bx, summary
