"""Pictures of what stage one cached: frames with poses, mask grids and person boxes drawn on them.

``pipeline cache show`` uses these to let a person check a real dataset's cuts, boxes and poses
before spending GPU days on it. Everything is drawn from a :class:`cache.entry.ClipData` (what
``CacheEntry.read_clip`` returns), in the cached frames' pixels:

* the **mask grid** of each cached frame as a translucent overlay: per cell, the largest joint
  confidence any joint plane holds there (what P2V turns into its patch mask);
* the **person box** HRNet cropped, when the clip has one (``ClipData.person_boxes``);
* the **pose**: skeleton edges and joints, coloured by confidence from red (0) through yellow to
  green (1); joints with score 0 are not drawn.
"""
from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from cache.entry import ClipData
from stages.skeletons import Skeleton

GRID_COLOUR = (0, 170, 255)  # RGB
BOX_COLOUR = (255, 220, 0)
GRID_ALPHA = 0.45
CAPTION_LINE = 14  # pixels per caption line
CAPTION_FONT = 0.36


def confidence_colour(score: float) -> tuple[int, int, int]:
    """RGB from red (0) through yellow (0.5) to green (1)."""
    s = float(np.clip(score, 0.0, 1.0))
    return (int(round(255 * min(1.0, 2 * (1 - s)))), int(round(255 * min(1.0, 2 * s))), 0)


def frame_overlay(clip: ClipData, t: int, skeleton: Skeleton) -> np.ndarray:
    """Cached frame ``t`` (index into ``clip.frames``) with its grid, box and pose drawn (RGB)."""
    img = clip.frames[t].astype(np.float32)
    h, w = img.shape[:2]
    cell = clip.grid_cell
    heat = np.asarray(clip.grids[t], np.float32).max(axis=0)  # (H/cell, W/cell)
    heat = np.kron(heat, np.ones((cell, cell), np.float32))[:h, :w, None]
    img = img * (1 - GRID_ALPHA * heat) + np.array(GRID_COLOUR, np.float32) * GRID_ALPHA * heat
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    sx, sy = clip.scale
    f = int(clip.frame_indices[t])
    if clip.person_boxes is not None:  # (F, 4), or (F, n, 4) with several people (NaN: absent)
        for box in np.asarray(clip.person_boxes[f], np.float32).reshape(-1, 4):
            if not np.isfinite(box).all():
                continue
            x1, y1, x2, y2 = (box * np.array([sx, sy, sx, sy], np.float32)).tolist()
            cv2.rectangle(img, (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2))), BOX_COLOUR, 1,
                          cv2.LINE_AA)
    kp = clip.keypoints_in_frame()[f]
    sc = clip.scores[f]
    pts = [(int(round(x)), int(round(y))) for x, y in kp]
    r = max(2, round(min(h, w) / 90))
    for a, b in skeleton.limbs:
        if sc[a] > 0 and sc[b] > 0:
            cv2.line(img, pts[a], pts[b], confidence_colour(min(sc[a], sc[b])), max(1, r // 2), cv2.LINE_AA)
    for v in np.argsort(sc):  # the most confident on top
        if sc[v] > 0:
            cv2.circle(img, pts[v], r, confidence_colour(sc[v]), -1, cv2.LINE_AA)
    return img


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines that fit ``width`` pixels (words kept whole unless one alone is too long)."""
    def fits(s: str) -> bool:
        return cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, CAPTION_FONT, 1)[0][0] <= width - 8

    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            cand = f"{line} {word}".strip()
            if fits(cand) or not line:
                line = cand
            else:
                lines.append(line)
                line = word
            while not fits(line) and len(line) > 1:  # one word wider than the tile: cut it
                cut = max(1, len(line) - 1)
                while cut > 1 and not fits(line[:cut]):
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return lines


def drawable(text: str) -> str:
    """``text`` as OpenCV's Hershey fonts can draw it: ASCII, anything else as '?'. A file name that
    is not UTF-8 reaches Python as lone surrogates (``'caf\udce9.mp4'``), on which OpenCV's text
    functions crash the process (SIGSEGV), not raise."""
    return text.encode("ascii", "replace").decode("ascii")


def printable(text: str) -> str:
    """``text`` with what no encoder takes (the lone surrogates of a file name that is not UTF-8)
    as '?': for titles drawn by matplotlib, which refuses them."""
    return text.encode("utf-8", "replace").decode("utf-8")


def caption_band(width: int, text: str, lines: Optional[int] = None) -> np.ndarray:
    """A dark band with ``text`` wrapped to ``width``; ``lines`` fixes its height (for tiling)."""
    rows = _wrap(drawable(text), width)
    n = lines or len(rows)
    band = np.full((n * CAPTION_LINE + 4, width, 3), 24, np.uint8)
    for i, row in enumerate(rows[:n]):
        cv2.putText(band, row, (4, (i + 1) * CAPTION_LINE - 2), cv2.FONT_HERSHEY_SIMPLEX, CAPTION_FONT,
                    (235, 235, 235), 1, cv2.LINE_AA)
    return band


def tile(images: Sequence[np.ndarray], cols: Optional[int] = None, gap: int = 2) -> np.ndarray:
    """Images (same size, RGB) on one sheet, row by row."""
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    h, w = images[0].shape[:2]
    sheet = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = im
    return sheet


def clip_title(clip: ClipData, label_text: Optional[str]) -> str:
    boxes = clip.attrs.get("person_boxes") or "none (poses not estimated from frames)"
    cut = clip.attrs.get("cut") or {}
    where = ", ".join(f"{k} {v}" for k, v in cut.items()) or "whole file"
    notes = clip.attrs.get("notes") or []
    return (f"{clip.clip_id} [{clip.split}] class {clip.label}: {label_text or ''}\n"
            f"{clip.num_frames} frames decoded ({where}); cached frames {clip.frame_indices.tolist()}; "
            f"person boxes: {boxes}" + (f"\nnotes: {'; '.join(notes)}" if notes else ""))


def clip_sheet(clip: ClipData, skeleton: Skeleton, label_text: Optional[str] = None) -> np.ndarray:
    """Every cached frame of a clip with its overlays, one sheet with a title line."""
    frames = [frame_overlay(clip, t, skeleton) for t in range(len(clip.frames))]
    sheet = tile(frames)
    return np.concatenate([caption_band(sheet.shape[1], clip_title(clip, label_text)), sheet])


def gallery_sheet(clips: Sequence[ClipData], skeleton: Skeleton, label_texts: Sequence[Optional[str]]) -> np.ndarray:
    """The middle cached frame of each clip with its overlays and a caption, on one sheet."""
    images = [frame_overlay(clip, len(clip.frames) // 2, skeleton) for clip in clips]
    size = images[0].shape[1], images[0].shape[0]
    images = [im if (im.shape[1], im.shape[0]) == size else _letterbox(im, size) for im in images]  # portrait ones
    caps = [f"{clip.clip_id} [{clip.split}]\n{clip.label}: {text or ''}" for clip, text in zip(clips, label_texts)]
    lines = max(len(_wrap(c, size[0])) for c in caps)
    return tile([np.concatenate([caption_band(size[0], c, lines), im]) for c, im in zip(caps, images)])


def _letterbox(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    k = min(w / img.shape[1], h / img.shape[0])
    small = cv2.resize(img, (max(1, int(img.shape[1] * k)), max(1, int(img.shape[0] * k))),
                       interpolation=cv2.INTER_AREA)
    out = np.full((h, w, 3), 255, np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y: y + small.shape[0], x: x + small.shape[1]] = small
    return out


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # encoded here, written by Python: cv2.imwrite crashes (SIGSEGV) on a path holding the lone
    # surrogates of a name that is not UTF-8
    ok, png = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(png.tobytes())
    return path


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """An H.264 MP4 of RGB frames (padded to even sizes, as yuv420p needs), with our ffmpeg."""
    from stages.extract.ffmpeg_binary import ffmpeg_exe, ffmpeg_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    raw = np.zeros((len(frames), ph, pw, 3), np.uint8)
    for i, f in enumerate(frames):
        raw[i, :h, :w] = f
    cmd = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{pw}x{ph}", "-r", f"{fps:g}", "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-crf", "18", ffmpeg_path(path)]
    proc = subprocess.run(cmd, input=raw.tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise OSError(f"ffmpeg could not write {path}: {proc.stderr.decode(errors='replace').strip()}")
    return path
