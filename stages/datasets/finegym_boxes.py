"""FineGym ground-truth athlete boxes (adapter option ``boxes=PATH``), read strictly.

mmaction2 and pyskl extracted their FineGym skeletons with ground-truth athlete boxes and publish
them as ``gym_gt_bboxes.pkl`` (https://download.openmmlab.com/mmaction/pyskl/data/gym/gym_gt_bboxes.pkl).
No public README, issue or code describes that file's inner layout (its keys, whether rows carry a
score, pixels or normalized, which frames they index); see docs/datasets.md. So this reader
accepts the forms it can *check*, and refuses anything else with the file, the clip and the
shape named, rather than reshape numbers into boxes they may not be:

* the top level is a mapping from a clip to its boxes; a key is the split files' clip id
  (``<yt>_E_<6>_<6>_A_<4>_<4>``) or the form mmaction2/pyskl skeleton files use for the same clip
  (``<yt>_<6>_<6>_<4>_<4>``), with or without ``.mp4``;
* a clip's value holds one row per decoded frame of the clip as cut, in the frames' pixels:
  ``(T, 4)`` ``x1, y1, x2, y2``; ``(T, 5)`` the same plus a score column (a row whose score is
  0 or NaN is a frame without a box); ``(1, T, 4)`` or ``(1, T, 5)`` (one person) squeezed to
  ``(T, 4|5)`` on purpose; in JSON (and pickled lists) a list of rows, ``null`` for a frame
  without a box;
* a file is JSON, ``.npz`` (read with ``allow_pickle=False``) or a pickle read only through the
  restricted unpickler of :mod:`stages.safe_pickle`.

Rows that are NaN (no box) are returned as NaN; the person-box chain
(:mod:`stages.extract.person_boxes`) fills them from the nearest frame, checks the boxes against the
decoded frames and aligns their count with a note, or refuses the clip.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from stages.datasets.base import DatasetLayoutError, read_json
from stages.safe_pickle import restricted_load

SUPPORTED = ("(T, 4) x1 y1 x2 y2 per frame, (T, 5) with a score column, (1, T, 4|5) for one person, "
             "or a list of rows with null for a frame without a box")


@dataclass
class BoxFile:
    """A parsed boxes file: ``boxes[clip_id]`` is ``(T, 4)`` float32 with NaN rows for no box."""

    path: str
    boxes: dict[str, np.ndarray]
    forms: dict[str, int] = field(default_factory=dict)  # which accepted form, how many clips
    unknown_keys: list[str] = field(default_factory=list)  # keys that name no clip id form


def _read(p: Path) -> Any:
    suffix = p.suffix.lower()
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if suffix in (".pkl", ".pickle"):
        with open(p, "rb") as f:
            try:
                return restricted_load(f)
            except pickle.UnpicklingError as e:
                raise pickle.UnpicklingError(f"boxes file {p}: {e}") from None
    if suffix == ".json":
        return read_json(p)
    raise DatasetLayoutError(f"boxes file {p}: expected .json, .npz or .pkl")


def _rows(p: Path, key: str, value: Any) -> tuple[np.ndarray, str]:
    """One clip's value as a ``(T, 4|5)`` float array and the name of its form; refuses others."""
    def refuse(what: str) -> DatasetLayoutError:
        return DatasetLayoutError(f"boxes file {p}: clip {key!r}: {what}; supported: {SUPPORTED}")

    if isinstance(value, (list, tuple)):
        widths = {len(r) for r in value if r is not None and isinstance(r, (list, tuple, np.ndarray))}
        if any(r is not None and not isinstance(r, (list, tuple, np.ndarray)) for r in value):
            raise refuse("a list whose items are not rows of numbers")
        if len(widths) > 1 or (widths and widths.pop() not in (4, 5)):
            raise refuse(f"rows of {sorted({len(r) for r in value if r is not None})} numbers")
        width = next((len(r) for r in value if r is not None), 4)
        try:
            arr = np.array([[np.nan] * width if r is None else r for r in value], dtype=np.float64)
        except (TypeError, ValueError):
            raise refuse("rows that are not numbers") from None
        arr = arr.reshape(len(value), width)
        form = "list of rows" + (" with a score" if width == 5 else "")
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiu":
            raise refuse(f"an array of dtype {value.dtype}")
        arr = value.astype(np.float64)
        form = f"(T, {arr.shape[-1]})" if arr.ndim == 2 else ""
        if arr.ndim == 3 and arr.shape[0] == 1 and arr.shape[-1] in (4, 5):
            arr = arr[0]
            form = f"(1, T, {arr.shape[-1]}) squeezed"
        if arr.ndim != 2 or arr.shape[-1] not in (4, 5):
            raise refuse(f"an array of shape {value.shape}")
    else:
        raise refuse(f"a {type(value).__name__}")
    if arr.shape[-1] == 5:
        score = arr[:, 4]
        arr = np.where((np.isfinite(score) & (score > 0))[:, None], arr[:, :4], np.nan)
        form = form or "(T, 5)"
    return arr.astype(np.float32), form


def load_boxes(path: os.PathLike | str, clip_id_of: Callable[[str], Optional[str]]) -> BoxFile:
    """Read and check a boxes file; ``clip_id_of(key)`` maps a key to a clip id (None: not one)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetLayoutError(f"boxes file not found: {p}")
    raw = _read(p)
    if not isinstance(raw, dict):
        raise DatasetLayoutError(
            f"boxes file {p}: expected a mapping clip id -> per-frame boxes, got a {type(raw).__name__}; "
            f"supported per clip: {SUPPORTED}")
    out = BoxFile(path=str(p), boxes={})
    for k, v in raw.items():
        cid = clip_id_of(str(k))
        if cid is None:
            out.unknown_keys.append(str(k))
            continue
        if cid in out.boxes:
            raise DatasetLayoutError(f"boxes file {p}: clip {cid} appears twice (as {k!r} and another key)")
        arr, form = _rows(p, str(k), v)
        out.forms[form] = out.forms.get(form, 0) + 1
        if len(arr) and np.isfinite(arr).all(axis=1).any():
            out.boxes[cid] = arr
    if raw and not out.forms:
        shown = ", ".join(repr(k) for k in list(raw)[:3])
        raise DatasetLayoutError(
            f"boxes file {p}: no key names a clip (keys look like {shown}); expected "
            "<yt>_E_<6 digits>_<6 digits>_A_<4 digits>_<4 digits> or <yt>_<6>_<6>_<4>_<4>")
    return out
