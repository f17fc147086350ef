"""Pictures of predictions: a video's frames with the poses drawn and its top labels; a long
video's timeline of labels. Frames are drawn as ``pipeline cache show`` draws cached clips
(:func:`stages.show.frame_overlay`: poses, mask grid, person boxes)."""
from __future__ import annotations

import csv
import os
import textwrap
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from stages.show import caption_band, frame_overlay, printable, tile, write_mp4, write_png
from stages.skeletons import Skeleton


def top_text(top: Sequence, k: int = 3) -> str:
    return "\n".join(f"{i + 1}. {t.label} ({t.score:.3f})" for i, t in enumerate(top[:k]))


def prediction_sheet(res, skeleton: Skeleton, k: int = 3) -> np.ndarray:
    """The clip's cached-size frames with poses drawn, under a caption with the top labels."""
    clip = res.clip
    frames = [frame_overlay(clip, t, skeleton) for t in range(len(clip.frames))]
    sheet = tile(frames)
    head = f"{res.name}: {res.poses}\n{top_text(res.top, k)}"
    return np.concatenate([caption_band(sheet.shape[1], head), sheet])


def write_prediction_png(path: os.PathLike, res, skeleton: Skeleton, k: int = 3) -> Path:
    return write_png(Path(path), prediction_sheet(res, skeleton, k))


def write_prediction_mp4(path: os.PathLike, res, skeleton: Skeleton, fps: float = 4.0, k: int = 3) -> Path:
    """The cached frames with poses drawn and the top labels under each (as ``cache show --video``)."""
    clip = res.clip
    frames = [frame_overlay(clip, t, skeleton) for t in range(len(clip.frames))]
    band = caption_band(frames[0].shape[1], top_text(res.top, k))
    return write_mp4(Path(path), [np.concatenate([f, band]) for f in frames], fps)


def write_windows_mp4(path: os.PathLike, res, fps: float = 2.0) -> Path:
    """Each window's middle frame (poses drawn) with the window's time and top label."""
    pics = []
    for w in res.windows:
        if w.picture is None:
            continue
        when = f"{w.start_s:.1f}-{w.end_s:.1f} s" if w.start_s is not None else f"frames {w.start_frame}-{w.end_frame}"
        band = caption_band(w.picture.shape[1], f"{when}: {top_text(w.top, 1)[3:]}", lines=3)
        pics.append(np.concatenate([w.picture, band]))
    if not pics:
        raise ValueError(f"{res.name}: no window pictures to write")
    return write_mp4(Path(path), pics, fps)


WINDOW_CSV_COLUMNS = ("video", "window", "start_s", "end_s", "start_frame", "end_frame", "rank", "class_id", "label",
                      "score")


def window_rows(res, k: int) -> list[dict]:
    """One row per window and rank (the CSV of a long video's windows)."""
    rows = []
    for i, w in enumerate(res.windows or []):
        for r, t in enumerate(w.top[:k]):
            rows.append(dict(video=res.name, window=i, start_s=_r(w.start_s), end_s=_r(w.end_s),
                             start_frame=w.start_frame, end_frame=w.end_frame, rank=r + 1, class_id=t.class_id,
                             label=t.label, score=f"{t.score:.6g}"))
    return rows


def _r(x):
    return "" if x is None else f"{x:.3f}"


def write_windows_csv(path: os.PathLike, res, k: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # (a file name that is not UTF-8: its bytes escaped, as --json and --csv write them)
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        w = csv.DictWriter(f, fieldnames=WINDOW_CSV_COLUMNS)
        w.writeheader()
        w.writerows(window_rows(res, k))
    return path


def write_timeline_png(path: os.PathLike, res, title: str = "") -> Path:
    """A long video's windows along time: a strip of window frames (when kept), each window's
    top-1 label as a bar in that label's row, and the top-1 score."""
    from stages.train.report import pyplot, save_figure

    plt = pyplot()
    ws = res.windows
    secs = ws[0].start_s is not None
    t0 = [w.start_s if secs else w.start_frame for w in ws]
    t1 = [w.end_s if secs else w.end_frame for w in ws]
    labels = list(dict.fromkeys(w.top[0].class_id for w in ws))  # rows in order of first appearance
    text = {w.top[0].class_id: w.top[0].label for w in ws}
    row = {c: i for i, c in enumerate(labels)}
    pics = [w for w in ws if w.picture is not None]
    shown = [pics[int(round(i))] for i in np.linspace(0, len(pics) - 1, min(8, len(pics)))] if pics else []
    strip = tile([w.picture for w in shown], cols=len(shown)) if shown else None
    heights = ([10 * strip.shape[0] / strip.shape[1] + 0.3] if shown else []) + [0.45 * len(labels) + 0.8, 1.3]
    fig, axes = plt.subplots(len(heights), 1, figsize=(10, sum(heights) + 0.8),
                             gridspec_kw=dict(height_ratios=heights))
    axes = list(np.atleast_1d(axes))
    if shown:
        ax = axes.pop(0)
        ax.imshow(strip)
        ax.set_axis_off()
        ax.set_title("middle frames of windows at " + ", ".join(
            f"{(w.start_s + w.end_s) / 2:.1f} s" if secs else f"frame {(w.start_frame + w.end_frame) // 2}"
            for w in shown), fontsize=7)
    ax, ax2 = axes
    cmap = plt.get_cmap("tab10")
    for w, a, b in zip(ws, t0, t1):
        c = w.top[0].class_id
        ax.barh(row[c], b - a, left=a, height=0.7, color=cmap(row[c] % 10), alpha=0.45, edgecolor="white", lw=0.8)
    ax.set_yticks(range(len(labels)), ["\n".join(textwrap.wrap(f"{c}: {text[c]}", 34)[:3]) for c in labels],
                  fontsize=7)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.invert_yaxis()
    ax.set_xlim(min(t0), max(t1))
    ax.set_title("top-1 label of each window", fontsize=8)
    mid = [(a + b) / 2 for a, b in zip(t0, t1)]
    ax2.plot(mid, [w.top[0].score for w in ws], "-o", ms=3, color="black", lw=1)
    ax2.set_xlim(min(t0), max(t1))
    ax2.set_ylabel("top-1 score", fontsize=8)
    ax2.set_xlabel("seconds" if secs else "frames", fontsize=8)
    fig.suptitle(printable(title or res.name), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110, bbox_inches="tight")


#: the most UTF-8 bytes a stem may take: a file name holds 255, and the longest made from a stem
#: adds 43 (``.STEM_timeline.png.XXXXXXXX.tmp.png`` while written, ``.STEM.result.json...`` likewise)
MAX_STEM_BYTES = 200


def output_stem(name: str) -> str:
    """A file-name stem for a video's outputs (its name under the folder, separators as ``__``)."""
    stem, ext = os.path.splitext(name)
    stem = stem if ext else name
    return stem.replace(os.sep, "__").replace("/", "__") or "video"


def output_stems(videos: Sequence[Any], owner: Optional[Callable[[str], Optional[str]]] = None) -> dict[str, str]:
    """Each video's (``.path``, ``.name``) outputs' stem, distinct: :func:`output_stem`, and for
    videos that would share one (``sub/a.mp4`` and ``sub__a.mp4``, ``x.mp4`` and ``x.avi``, one
    name under two folders, ``Clip.mp4`` and ``clip.mp4`` on a filesystem blind to case), or whose stem ``owner(stem)`` says an earlier run's result holds for
    another video (``predict d1/x.mp4`` then ``predict d2/x.mp4`` into one ``--out``), that stem
    with a digest of the video's path (the same on every run)."""
    import hashlib
    from collections import Counter

    plain = {v.path: output_stem(v.name) for v in videos}
    shared = Counter(s.lower() for s in plain.values())  # one name to macOS' and SMB's filesystems

    def apart(p: str, s: str) -> bool:
        return shared[s.lower()] > 1 or (owner is not None and owner(s) not in (None, p))

    def digest(p: str) -> str:
        return hashlib.sha1(p.encode("utf-8", "surrogateescape")).hexdigest()[:8]

    def fitted(p: str, s: str) -> str:
        # a long name (or folders flattened into one) cut to fit, the path's digest keeping it apart
        b = s.encode("utf-8", "surrogateescape")
        if len(b) <= MAX_STEM_BYTES:
            return s
        return f"{b[:MAX_STEM_BYTES - 10].decode('utf-8', 'ignore')}__{digest(p)}"

    return {p: fitted(p, f"{s}__{digest(p)}" if apart(p, s) else s) for p, s in plain.items()}
