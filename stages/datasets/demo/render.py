"""Drawing the figure: outlined thick limbs, left limbs blue and right limbs orange, a torso whose
front and back differ in colour, a head with a face (eyes, nose) on the front and hair on the back,
and a floor shadow, over a plain or lightly textured background."""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from stages.datasets.demo import skeleton_motion as sm

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate drawing
_ONE = 1 << _SHIFT


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


@dataclass(frozen=True)
class Look:
    """Per-clip appearance: background and figure colours (RGB)."""

    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    horizon: float  # image y of the wall/floor edge, as a fraction of the height
    texture: str  # "plain" | "noise" | "stripes" | "tiles"
    texture_amp: float
    texture_seed: int
    left: tuple[int, int, int]
    right: tuple[int, int, int]
    torso_front: tuple[int, int, int]
    torso_back: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    outline: tuple[int, int, int] = (25, 25, 30)

    @staticmethod
    def draw(rng: np.random.Generator) -> "Look":
        """A jittered look. Always makes the same number of draws."""
        bh, bs, bv = rng.uniform(0, 1), rng.uniform(0.04, 0.22), rng.uniform(0.62, 0.86)
        fd = rng.uniform(-0.14, 0.08)
        fh = rng.uniform(-0.05, 0.05)
        horizon = rng.uniform(0.55, 0.75)
        texture = ("plain", "noise", "stripes", "tiles")[int(rng.integers(0, 4))]
        amp = rng.uniform(4.0, 9.0)
        tseed = int(rng.integers(0, 2**31 - 1))
        j = rng.uniform(-1, 1, 6)
        return Look(
            wall=_hsv(bh, bs, bv),
            floor=_hsv(bh + fh, bs * 1.2, bv + fd),
            horizon=float(horizon),
            texture=texture,
            texture_amp=float(amp),
            texture_seed=tseed,
            left=_hsv(0.61 + 0.03 * j[0], 0.80, 0.80 + 0.06 * j[1]),
            right=_hsv(0.05 + 0.02 * j[2], 0.85, 0.92 + 0.05 * j[3]),
            torso_front=_hsv(0.36 + 0.03 * j[4], 0.65, 0.62),
            torso_back=_hsv(0.36 + 0.03 * j[4], 0.55, 0.30),
            skin=_hsv(0.07, 0.38 + 0.08 * j[5], 0.80),
            hair=(45, 30, 25),
        )


def background(look: Look, width: int, height: int) -> np.ndarray:
    """The static background ``(H, W, 3)`` uint8 RGB."""
    img = np.empty((height, width, 3), dtype=np.float32)
    hy = int(round(look.horizon * height))
    img[:hy] = look.wall
    img[hy:] = look.floor
    trng = np.random.default_rng(look.texture_seed)
    a = look.texture_amp
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if look.texture == "noise":
        gh, gw = max(2, height // 12), max(2, width // 12)
        coarse = trng.uniform(-1, 1, (gh, gw)).astype(np.float32)
        img += a * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    elif look.texture == "stripes":
        period = trng.uniform(8, 18) * height / 128.0
        img[:hy] += (a * 0.7 * np.sign(np.sin(2 * np.pi * xx[:hy] / period)))[..., None]
    elif look.texture == "tiles":
        period = trng.uniform(14, 24) * height / 128.0
        lines = (np.mod(xx + 0.5 * (yy - hy), period) < 1.0) | (np.mod(yy - hy, period * 0.5) < 1.0)
        img[hy:] -= (a * 1.4 * lines[hy:])[..., None]
    # a faint vertical light gradient on every background
    img *= (1.0 + 0.05 * (yy / height - 0.5))[..., None]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


def _darker(c: tuple[int, int, int], k: float = 0.55) -> tuple[int, int, int]:
    return tuple(int(v * k) for v in c)  # type: ignore[return-value]


class _Canvas:
    """Draws each shape into the RGB image (anti-aliased) and/or a label map of item ids."""

    def __init__(self, img: Optional[np.ndarray], labels: Optional[np.ndarray]):
        self.img, self.labels = img, labels
        self.item = 0

    def line(self, a, b, color, thick, fill=True) -> None:
        t = max(1, int(round(thick)))
        if self.img is not None:
            cv2.line(self.img, _pt(a), _pt(b), color, t, cv2.LINE_AA, _SHIFT)
        if self.labels is not None and fill:
            cv2.line(self.labels, _pt(a), _pt(b), self.item, t, cv2.LINE_8, _SHIFT)

    def circle(self, c, r, color, fill=True) -> None:
        rr = max(1, int(round(r * _ONE)))
        if self.img is not None:
            cv2.circle(self.img, _pt(c), rr, color, -1, cv2.LINE_AA, _SHIFT)
        if self.labels is not None and fill:
            cv2.circle(self.labels, _pt(c), rr, self.item, -1, cv2.LINE_8, _SHIFT)

    def poly(self, pts, color, outline, ol) -> None:
        poly = np.array([_pt(p) for p in pts], dtype=np.int32)
        if self.img is not None:
            cv2.fillConvexPoly(self.img, poly, color, cv2.LINE_AA, _SHIFT)
            cv2.polylines(self.img, [poly], True, outline, max(1, int(round(ol))), cv2.LINE_AA, _SHIFT)
        if self.labels is not None:
            cv2.fillConvexPoly(self.labels, poly, self.item, cv2.LINE_8, _SHIFT)


# (a, b, side) segments drawn as limbs; their item ids are 2 + their position here
_LIMBS = (
    (5, 7, "l"), (7, 9, "l"), (6, 8, "r"), (8, 10, "r"),
    (11, 13, "l"), (13, 15, "l"), (12, 14, "r"), (14, 16, "r"),
    (15, sm.L_TOE, "l"), (16, sm.R_TOE, "r"),
)
TORSO_ID, HEAD_ID = 1, 14
_HAND_ID = {9: 12, 10: 13}
# the items each COCO joint belongs to: covered by any other item, the joint is occluded
JOINT_ITEMS: tuple[frozenset, ...] = tuple(
    frozenset({HEAD_ID}) if j < 5 else frozenset(
        ({TORSO_ID} if j in (5, 6, 11, 12) else set())
        | {2 + k for k, (a, b, _) in enumerate(_LIMBS) if j in (a, b)}
        | ({_HAND_ID[j]} if j in _HAND_ID else set())
    )
    for j in range(17)
)


def draw_frame(bg: Optional[np.ndarray], look: Look, uv: np.ndarray, depth: np.ndarray, face_z: float,
               scale: float, ground: Optional[np.ndarray] = None,
               labels: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """One frame: ``uv``/``depth`` are the projected points of one frame (NUM_POINTS), ``scale``
    the pixels per metre at the head, ``ground`` the floor point under the figure (for a shadow).
    With ``labels`` (an int32 ``(H, W)`` array of zeros) also paints each shape's item id there,
    nearest on top, so joint visibility can be read off what was drawn. ``bg=None``: labels only."""
    img = bg.copy() if bg is not None else None
    cv = _Canvas(img, labels)
    limb_w = max(2.0, 0.085 * scale)
    ol = max(1.0, 0.02 * scale)
    if ground is not None and img is not None:
        gx = min(img.shape[1] - 1, max(0, int(ground[0][0])))
        gy = min(img.shape[0] - 1, max(0, int(ground[0][1])))
        shade = _darker(tuple(int(v) for v in bg[gy, gx]), 0.75)
        cv2.ellipse(img, _pt(ground[0]), (int(0.32 * scale * _ONE), int(0.07 * scale * _ONE)), 0, 0, 360,
                    shade, -1, cv2.LINE_AA, _SHIFT)
    items = []  # (depth, order, item id, draw callable)
    torso = [5, 6, 12, 11]
    tdepth = float(depth[torso].mean()) - 0.05
    front = face_z > 0  # the torso faces the way the face does (no twist in this model)

    def draw_torso():
        cv.poly([uv[i] for i in torso], look.torso_front if front else look.torso_back, look.outline, ol)
        cv.line(uv[sm.NECK], (uv[5] + uv[6]) / 2, look.skin, limb_w * 0.9)

    items.append((tdepth, 0, TORSO_ID, draw_torso))
    for k, (a, b, side) in enumerate(_LIMBS):
        color = look.left if side == "l" else look.right

        def draw_limb(a=a, b=b, color=color):
            cv.line(uv[a], uv[b], look.outline, limb_w + 2 * ol, fill=False)
            cv.line(uv[a], uv[b], color, limb_w)

        items.append((float(depth[a] + depth[b]) / 2, 1, 2 + k, draw_limb))
    for w, side in ((9, "l"), (10, "r")):
        color = look.left if side == "l" else look.right

        def draw_hand(w=w, color=color):
            cv.circle(uv[w], limb_w * 0.75 + ol, look.outline, fill=False)
            cv.circle(uv[w], limb_w * 0.75, _darker(color, 0.8))

        items.append((float(depth[w]) + 0.01, 2, _HAND_ID[w], draw_hand))

    r = sm.HEAD_RADIUS * scale

    def draw_head():
        c = uv[sm.HEAD]
        cv.circle(c, r + ol, look.outline, fill=False)
        cv.circle(c, r, look.skin)
        if img is None:
            return
        if face_z < 0.35:
            # hair covers the back of the head; it slides to the far side as the face turns away
            off = (c - uv[0]) * (0.6 if face_z > -0.5 else 0.0)
            cv.circle(c + 0.25 * off, r * (0.95 if face_z < 0 else 0.8), look.hair, fill=False)
        if face_z > -0.1:
            for e in (1, 2):
                if depth[e] > depth[sm.HEAD]:
                    cv.circle(uv[e], max(0.6, 0.018 * scale), (20, 20, 20), fill=False)
            if depth[0] > depth[sm.HEAD] + 0.03:
                cv.circle(uv[0], max(0.7, 0.022 * scale), (150, 40, 40), fill=False)

    items.append((float(depth[sm.HEAD]), 3, HEAD_ID, draw_head))
    for _, _, item, fn in sorted(items, key=lambda t: (t[0], t[1])):
        cv.item = item
        fn()
    return img


def occlusion(look: Look, cam: sm.Camera, proj: dict) -> np.ndarray:
    """``(F, 17)`` bool: the joint's pixel is covered by a drawn shape it does not belong to."""
    F = proj["uv"].shape[0]
    out = np.zeros((F, 17), dtype=bool)
    labels = np.zeros((cam.height, cam.width), dtype=np.int32)
    for f in range(F):
        labels[:] = 0
        draw_frame(None, look, proj["uv"][f], proj["depth"][f], float(proj["face_z"][f]),
                   float(proj["scale"][f]), labels=labels)
        xy = np.round(proj["uv"][f, :17]).astype(np.int64)
        for j in range(17):
            x, y = xy[j]
            if 0 <= x < cam.width and 0 <= y < cam.height:
                lab = int(labels[y, x])
                out[f, j] = lab != 0 and lab not in JOINT_ITEMS[j]
    return out


def _ground(cam: sm.Camera, pts_world: np.ndarray) -> np.ndarray:
    floor = pts_world[:, sm.PELVIS].copy()
    floor[:, 1] = 0.0
    return cam.view(floor)[0]


def render_clip(look: Look, cam: sm.Camera, proj: dict, pts_world: np.ndarray,
                others: Sequence[tuple[Look, dict, np.ndarray]] = ()) -> np.ndarray:
    """All frames ``(F, H, W, 3)`` uint8 RGB of one clip; ``others`` (look, projection, world
    points) are figures drawn before the performer, so behind it."""
    bg = background(look, cam.width, cam.height)
    F = proj["uv"].shape[0]
    frames = np.empty((F, cam.height, cam.width, 3), dtype=np.uint8)
    ground_uv = _ground(cam, pts_world)
    other_ground = [_ground(cam, w) for _, _, w in others]
    for f in range(F):
        back = bg
        for (o_look, o, _), g in zip(others, other_ground):
            back = draw_frame(back, o_look, o["uv"][f], o["depth"][f], float(o["face_z"][f]), float(o["scale"][f]),
                              g[f:f + 1])
        frames[f] = draw_frame(back, look, proj["uv"][f], proj["depth"][f], float(proj["face_z"][f]),
                               float(proj["scale"][f]), ground_uv[f:f + 1])
    return frames
