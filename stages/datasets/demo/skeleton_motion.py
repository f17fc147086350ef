"""A 3D articulated figure, composable sub-actions, and its projection to COCO-17 joints.

The figure lives in metres. Body frame: ``x`` towards the figure's *left*, ``y`` up, ``z`` the way
it faces. World frame: ``X`` image-right, ``Y`` up, ``Z`` towards the camera, so at yaw 0 the figure
faces the camera and its left side is on the image's right (the COCO convention for a person facing
the camera). A turn is a rotation about the vertical axis; projected, the shoulders and hips narrow
and swap sides and the face joints disappear while the figure faces away.

A class is a list of sub-action *phrases* ("raise both arms", "jump with one turn", ...); each
phrase expands to timed *phases* that map the previous pose state to a run of pose states. Most
phases are stretched to fill the clip; *fast* phases (the turns of a jump, a run of kicks or waves)
last a fixed whole number of 16-frame sampling intervals and start on a 16-frame sample, so that
16 evenly spaced frames (segment middles) see the same poses for, say, two and three kicks, while
48 evenly spaced pose frames tell them apart. See ``docs/demo.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

# --------------------------------------------------------------------------------------------
# Pose state: one float vector per frame.
# --------------------------------------------------------------------------------------------
PARAMS = (
    "x", "z", "jump", "yaw", "lean",
    "l_sh_a", "l_sh_f", "l_el_a", "l_el_f",
    "r_sh_a", "r_sh_f", "r_el_a", "r_el_f",
    "l_hip_a", "l_hip_f", "l_knee",
    "r_hip_a", "r_hip_f", "r_knee",
)
P = {k: i for i, k in enumerate(PARAMS)}

# Angles are degrees. Shoulder/hip "a" = abduction (0 down, 90 sideways, 180 overhead), "f" =
# flexion (forward raise); elbow "a"/"f" are added to the shoulder's for the forearm; knee bends
# the shin backwards.
REST = {
    "x": 0.0, "z": 0.0, "jump": 0.0, "yaw": 0.0, "lean": 0.0,
    "l_sh_a": 10.0, "l_sh_f": 0.0, "l_el_a": 0.0, "l_el_f": 8.0,
    "r_sh_a": 10.0, "r_sh_f": 0.0, "r_el_a": 0.0, "r_el_f": 8.0,
    "l_hip_a": 4.0, "l_hip_f": 0.0, "l_knee": 0.0,
    "r_hip_a": 4.0, "r_hip_f": 0.0, "r_knee": 0.0,
}


def rest_state(**over: float) -> np.ndarray:
    s = np.array([REST[k] for k in PARAMS], dtype=np.float64)
    for k, v in over.items():
        s[P[k]] = v
    return s


# Bone lengths (m).
HIP_HALF = 0.10
SHOULDER_HALF = 0.19
SPINE = 0.52  # pelvis centre to neck
SHOULDER_DROP = 0.03
UPPER_ARM, FOREARM = 0.29, 0.27
THIGH, SHIN = 0.44, 0.43
ANKLE_HEIGHT = 0.08
HEAD_RADIUS = 0.11
HEAD_UP = 0.21  # neck to head centre
FOOT = 0.13

# Extra points used for drawing, appended after the 17 COCO joints.
NECK, HEAD, L_TOE, R_TOE, PELVIS = 17, 18, 19, 20, 21
NUM_POINTS = 22


# --------------------------------------------------------------------------------------------
# Style: the per-clip jitter of the motion (same draws whatever the class, see generate.py).
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotionStyle:
    phase_jitter: tuple[float, ...] = (1.0,) * 16  # multiplies each phase's nominal duration
    jump_height: float = 0.35
    kick_angle: float = 80.0
    squat_depth: float = 1.0  # scales squat hip/knee angles
    arm_raise: float = 170.0
    step: float = 0.45
    wave_amp: float = 105.0  # a wide wave: the wrist sweeps about as far as a kicking ankle rises
    lead: float = 0.2  # seconds idle before the first phrase (nominal)
    tail: float = 0.25

    @staticmethod
    def draw(rng: np.random.Generator) -> "MotionStyle":
        """A jittered style. Always makes the same number of draws."""
        return MotionStyle(
            phase_jitter=tuple(float(v) for v in rng.uniform(0.8, 1.25, 16)),
            jump_height=float(rng.uniform(0.28, 0.40)),
            kick_angle=float(rng.uniform(70.0, 88.0)),
            squat_depth=float(rng.uniform(0.85, 1.05)),
            arm_raise=float(rng.uniform(160.0, 178.0)),
            step=float(rng.uniform(0.35, 0.55)),
            wave_amp=float(rng.uniform(95.0, 120.0)),
            lead=float(rng.uniform(0.1, 0.35)),
            tail=float(rng.uniform(0.15, 0.4)),
        )


# --------------------------------------------------------------------------------------------
# Phases and phrases.
# --------------------------------------------------------------------------------------------
PhaseFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (start state (P,), u (n,)) -> (n, P)


@dataclass(frozen=True)
class Phase:
    fn: PhaseFn
    seconds: float = 0.0  # nominal length (stretched to fill the clip) ...
    fast_units: int = 0  # ... or a fixed number of 16-frame sampling intervals, aligned to them


def smooth(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _ramp(targets: dict[str, float], extra: Optional[Callable[[np.ndarray, np.ndarray], None]] = None) -> PhaseFn:
    """Ease from the start state to ``targets``; ``extra(out, u)`` may add overlays in place."""

    def fn(s0: np.ndarray, u: np.ndarray) -> np.ndarray:
        out = np.repeat(s0[None, :], len(u), axis=0)
        e = smooth(u)
        for k, v in targets.items():
            i = P[k]
            out[:, i] = s0[i] + (v - s0[i]) * e
        if extra is not None:
            extra(out, u)
        return out

    return fn


def _hold() -> PhaseFn:
    return _ramp({})


def _arms(a: float, f: float = 0.0, el_a: float = 0.0, el_f: float = 8.0) -> dict[str, float]:
    return {
        "l_sh_a": a, "r_sh_a": a, "l_sh_f": f, "r_sh_f": f,
        "l_el_a": el_a, "r_el_a": el_a, "l_el_f": el_f, "r_el_f": el_f,
    }


COUNT_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four"}
TIMES_WORDS = {1: "once", 2: "twice", 3: "three times", 4: "four times"}
SIDE = {"l": "left", "r": "right"}


def phrase_text(phrase: Sequence) -> str:
    kind, *args = phrase
    if kind == "raise_arms":
        return "raise both arms"
    if kind == "lower_arms":
        return "lower the arms"
    if kind == "jump":
        n = args[0]
        if n == 0:
            return "jump straight up"
        return f"jump with {COUNT_WORDS[n]} turn{'s' if n > 1 else ''}"
    if kind == "land_arms_out":
        return "land with arms out"
    if kind == "step_forward":
        return "step forward"
    if kind == "step_back":
        return "step back"
    if kind == "kick":
        side, n = args
        return f"kick with the {SIDE[side]} leg {TIMES_WORDS[n]}"
    if kind == "wave":
        side, n = args
        return f"wave the {SIDE[side]} hand {TIMES_WORDS[n]}"
    if kind == "squat":
        return "squat down"
    if kind == "stand_up":
        return "stand up"
    if kind == "turn_around":
        return "turn around"
    raise KeyError(f"unknown sub-action {kind!r}")


def phrase_phases(phrase: Sequence, style: MotionStyle) -> list[Phase]:
    kind, *args = phrase
    if kind == "raise_arms":
        return [Phase(_ramp(_arms(style.arm_raise, 0.0, 0.0, 4.0)), seconds=0.55)]
    if kind == "lower_arms":
        return [Phase(_ramp(_arms(10.0)), seconds=0.5)]
    if kind == "jump":
        n_turns = args[0]
        h = style.jump_height

        def air(out: np.ndarray, u: np.ndarray, s0=None) -> None:
            out[:, P["jump"]] = 4.0 * h * u * (1.0 - u)
            # legs snap straight early in the flight and stay straight
            e = smooth(u / 0.35)
            for k in ("l_hip_f", "r_hip_f", "l_knee", "r_knee", "lean"):
                out[:, P[k]] = out[0, P[k]] * (1.0 - e)

        def air_fn(s0: np.ndarray, u: np.ndarray, n=n_turns) -> np.ndarray:
            out = np.repeat(s0[None, :], len(u), axis=0)
            air(out, u)
            out[:, P["yaw"]] = s0[P["yaw"]] + 360.0 * n * u  # constant spin rate in the air
            return out

        crouch = {"l_hip_f": 40.0, "r_hip_f": 40.0, "l_knee": 70.0, "r_knee": 70.0, "lean": 18.0}
        return [Phase(_ramp(crouch), seconds=0.35), Phase(air_fn, fast_units=2)]
    if kind == "land_arms_out":

        def absorb(out: np.ndarray, u: np.ndarray) -> None:
            b = np.sin(np.pi * np.clip(u / 0.7, 0.0, 1.0))
            out[:, P["l_hip_f"]] = 35.0 * b
            out[:, P["r_hip_f"]] = 35.0 * b
            out[:, P["l_knee"]] = 60.0 * b
            out[:, P["r_knee"]] = 60.0 * b
            out[:, P["lean"]] = 15.0 * b

        return [Phase(_ramp(_arms(90.0, 0.0, 0.0, 0.0), absorb), seconds=0.6)]
    if kind in ("step_forward", "step_back"):
        dz = style.step if kind == "step_forward" else -style.step

        def lift(out: np.ndarray, u: np.ndarray) -> None:
            b = np.sin(np.pi * u)
            out[:, P["l_hip_f"]] += (30.0 if dz > 0 else 10.0) * b
            out[:, P["l_knee"]] += 45.0 * b

        def fn(s0: np.ndarray, u: np.ndarray) -> np.ndarray:
            return _ramp({"z": s0[P["z"]] + dz}, lift)(s0, u)

        return [Phase(fn, seconds=0.6)]
    if kind == "kick":
        side, n = args
        k = style.kick_angle

        def kick_fn(s0: np.ndarray, u: np.ndarray, side=side, n=n) -> np.ndarray:
            # Even in the kick phase: up and down are mirror images in time, so n and m kicks
            # in 5 sampling intervals look alike at the samples when n + m == 5.
            phi = 2.0 * np.pi * n * u
            out = np.repeat(s0[None, :], len(u), axis=0)
            up = 0.5 * (1.0 - np.cos(phi))
            out[:, P[f"{side}_hip_f"]] = s0[P[f"{side}_hip_f"]] + k * up
            out[:, P[f"{side}_knee"]] = s0[P[f"{side}_knee"]] + 55.0 * np.sin(phi) ** 2
            out[:, P["lean"]] = s0[P["lean"]] - 12.0 * up
            return out

        guard = {"l_sh_a": 70.0, "r_sh_a": 70.0, "l_el_f": 30.0, "r_el_f": 30.0}
        return [Phase(_ramp(guard), seconds=0.3), Phase(kick_fn, fast_units=5)]
    if kind == "wave":
        side, n = args
        amp = style.wave_amp

        def wave_fn(s0: np.ndarray, u: np.ndarray, side=side, n=n) -> np.ndarray:
            # Even in the wave phase, as the kick. The whole arm swings and the squatting body
            # rises a little with each swing (as the kick leans back): with the forearm alone the
            # waves moved one joint of 17, and the pose model learned the pair at one seed in three
            phi = 2.0 * np.pi * n * u
            out = np.repeat(s0[None, :], len(u), axis=0)
            up = 0.5 * (1.0 - np.cos(phi))
            out[:, P[f"{side}_el_a"]] = s0[P[f"{side}_el_a"]] + amp * up
            out[:, P[f"{side}_sh_a"]] = s0[P[f"{side}_sh_a"]] + 25.0 * up
            out[:, P["lean"]] = s0[P["lean"]] - 8.0 * up
            return out

        up = {f"{side}_sh_a": 125.0, f"{side}_el_a": 30.0, f"{side}_sh_f": 10.0}
        down = {f"{side}_sh_a": 10.0, f"{side}_el_a": 0.0, f"{side}_sh_f": 0.0}
        return [
            Phase(_ramp(up), seconds=0.4),
            Phase(wave_fn, fast_units=5),
            Phase(_ramp(down), seconds=0.35),
        ]
    if kind == "squat":
        d = style.squat_depth
        return [Phase(_ramp({"l_hip_f": 85.0 * d, "r_hip_f": 85.0 * d, "l_knee": 115.0 * d,
                             "r_knee": 115.0 * d, "lean": 32.0 * d}), seconds=0.6)]
    if kind == "stand_up":
        return [Phase(_ramp({"l_hip_f": 0.0, "r_hip_f": 0.0, "l_knee": 0.0, "r_knee": 0.0,
                             "lean": 0.0}), seconds=0.55)]
    if kind == "turn_around":

        def fn(s0: np.ndarray, u: np.ndarray) -> np.ndarray:
            return _ramp({"yaw": s0[P["yaw"]] + 180.0})(s0, u)

        return [Phase(fn, seconds=0.8)]
    raise KeyError(f"unknown sub-action {kind!r}")


# --------------------------------------------------------------------------------------------
# The classes.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionClass:
    key: str
    phrases: tuple[tuple, ...]

    @property
    def sub_actions(self) -> list[str]:
        return [phrase_text(p) for p in self.phrases]

    @property
    def text(self) -> str:
        return ", ".join(self.sub_actions)


CLASSES: tuple[ActionClass, ...] = (
    ActionClass("jump_straight", (("raise_arms",), ("jump", 0), ("land_arms_out",))),
    ActionClass("jump_turn1", (("raise_arms",), ("jump", 1), ("land_arms_out",))),
    ActionClass("jump_turn2", (("raise_arms",), ("jump", 2), ("land_arms_out",))),
    ActionClass("kick_right2", (("step_forward",), ("kick", "r", 2), ("step_back",))),
    ActionClass("kick_right3", (("step_forward",), ("kick", "r", 3), ("step_back",))),
    ActionClass("kick_left2", (("step_forward",), ("kick", "l", 2), ("step_back",))),
    ActionClass("wave_right2", (("squat",), ("wave", "r", 2), ("stand_up",))),
    ActionClass("wave_right3", (("squat",), ("wave", "r", 3), ("stand_up",))),
    ActionClass("squat_jump_turn1", (("squat",), ("stand_up",), ("jump", 1), ("land_arms_out",))),
    ActionClass("step_turn_around", (("step_forward",), ("raise_arms",), ("turn_around",), ("lower_arms",))),
)

# Class pairs that differ only in a fast motion: 16 segment-middle frames see identical poses,
# 48 evenly spaced pose frames tell them apart (with the reason, for docs and ``meta``).
# The flight of a jump lasts 2 sampling intervals (num_frames/16 frames each): two turns add
# exactly 360 deg per 16-frame sample, but only 120 deg per 48-frame sample. Kicks and waves run
# for 5 intervals: the kick/wave phase at the j-th sample is 2*pi*n*j/5, and n=2 and n=3 give
# mirror phases (2*pi*3j/5 = -2*pi*2j/5 mod 2*pi) of a motion that is symmetric in its phase.
ALIASING_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("jump_straight", "jump_turn2",
     "0 vs 2 turns in a 2-interval flight: +360 deg per 16-frame sample, +120 deg per 48-frame sample"),
    ("kick_right2", "kick_right3",
     "2 vs 3 kicks in 5 intervals: phases 2*2pi*j/5 and 3*2pi*j/5 mirror each other at the 16 samples"),
    ("wave_right2", "wave_right3",
     "2 vs 3 waves in 5 intervals: the same mirror-phase aliasing as the kicks"),
)


# --------------------------------------------------------------------------------------------
# Timeline.
# --------------------------------------------------------------------------------------------
def sample_indices(num_frames: int, count: int) -> np.ndarray:
    """Segment middles: ``floor((i + 0.5) * n / count)``, as stage one samples frames."""
    i = np.arange(count, dtype=np.float64)
    return np.minimum(np.floor((i + 0.5) * num_frames / count).astype(np.int64), num_frames - 1)


def _split_frames(total: int, weights: Sequence[float], mins: Sequence[int]) -> list[int]:
    """Integer lengths summing to ``total``: ``mins`` first, the rest proportional to ``weights``
    (cumulative rounding, so the result is deterministic and exact)."""
    if not weights:
        return []
    rest = total - sum(mins)
    if rest < 0:
        raise ValueError("too few frames")
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        w = np.ones_like(w)
    edges = np.round(np.concatenate([[0.0], np.cumsum(w)]) / w.sum() * rest).astype(int)
    return [int(m + v) for m, v in zip(mins, np.diff(edges))]


def schedule(phases: Sequence[Phase], num_frames: int, style: MotionStyle) -> tuple[list[int], list[int]]:
    """Start frame and length of each phase.

    Fast phases last ``round(fast_units * num_frames / 16)`` frames and start on a 16-frame sample
    index (``sample_indices(num_frames, 16)``); the stretchable phases, an idle lead-in and an idle
    tail fill the gaps in proportion to their jittered nominal lengths. With ``num_frames`` a
    multiple of 16 every 16-frame sample inside a fast phase falls at the same phase ``u`` whatever
    the class, which is what makes the aliasing pairs alias exactly.
    """
    unit = num_frames / 16.0
    grid = sample_indices(num_frames, 16)
    k = len(phases)
    weights = [p.seconds * style.phase_jitter[i % len(style.phase_jitter)] for i, p in enumerate(phases)]
    fast = {i: max(1, int(round(p.fast_units * unit))) for i, p in enumerate(phases) if p.fast_units}
    free = num_frames - sum(fast.values())
    n_stretch = k - len(fast)
    if free < n_stretch:
        raise ValueError(f"{num_frames} frames are too few for this class")
    total_w = sum(w for i, w in enumerate(weights) if i not in fast) + style.lead + style.tail
    per_w = free / total_w
    # 1) pin each fast phase to the grid index nearest its tentative start
    pinned: dict[int, int] = {}
    t = style.lead * per_w
    for i in range(k):
        if i not in fast:
            t += weights[i] * per_w
            continue
        prev_end = max((pinned[j] + fast[j] for j in pinned), default=0)
        need_before = prev_end + (i - max(pinned, default=-1) - 1)  # stretchables in between
        need_after = sum(1 if j not in fast else fast[j] for j in range(i + 1, k))
        ok = [int(g) for g in grid if g >= need_before and g + fast[i] + need_after <= num_frames]
        if not ok:
            raise ValueError(f"{num_frames} frames are too few for this class")
        g = min(ok, key=lambda g: (abs(g - t), g))
        pinned[i] = g
        t = g + fast[i]
    # 2) fill the gaps: group the stretchable phases between pinned ones
    starts = [0] * k
    lengths = [0] * k
    cut_points = [(-1, 0)] + [(i, pinned[i]) for i in sorted(pinned)] + [(k, num_frames)]
    for (a, a_start), (b, b_start) in zip(cut_points[:-1], cut_points[1:]):
        lo = a_start + (fast[a] if a >= 0 else 0)
        hi = b_start
        members = list(range(a + 1, b))
        pre = style.lead if a == -1 else 0.0
        post = style.tail if b == k else 0.0
        parts = _split_frames(hi - lo, [pre, *[weights[i] for i in members], post], [0, *[1] * len(members), 0])
        if not parts and hi != lo:
            raise ValueError("fast phases do not tile the grid")
        t = lo + (parts[0] if parts else 0)
        for j, i in enumerate(members):
            starts[i], lengths[i] = t, parts[1 + j]
            t += parts[1 + j]
        if b < k:
            starts[b], lengths[b] = b_start, fast[b]
    return starts, lengths


@dataclass
class Motion:
    states: np.ndarray  # (F, P)
    phase_starts: list[int]
    phase_lengths: list[int]
    fast: list[bool]  # which phases are pinned to the 16-frame grid


def build_motion(cls: ActionClass, num_frames: int, style: MotionStyle,
                 start: Optional[np.ndarray] = None) -> Motion:
    """The pose state of every frame of one clip of ``cls``."""
    phases = [ph for phrase in cls.phrases for ph in phrase_phases(phrase, style)]
    starts, lengths = schedule(phases, num_frames, style)
    s = rest_state() if start is None else np.asarray(start, dtype=np.float64).copy()
    out = np.empty((num_frames, len(PARAMS)), dtype=np.float64)
    out[: starts[0]] = s
    for ph, t, n in zip(phases, starts, lengths):
        u = np.arange(n, dtype=np.float64) / n
        out[t:t + n] = ph.fn(s, u)
        s = ph.fn(s, np.array([1.0]))[0]
    end = starts[-1] + lengths[-1]
    out[end:] = s
    return Motion(states=out, phase_starts=list(starts), phase_lengths=list(lengths), fast=[p.fast_units > 0 for p in phases])


# --------------------------------------------------------------------------------------------
# Forward kinematics.
# --------------------------------------------------------------------------------------------
def _limb_dir(abd_deg: np.ndarray, flex_deg: np.ndarray, side: float) -> np.ndarray:
    """Unit direction of a limb hanging down, abducted outwards then flexed forwards."""
    a = np.radians(abd_deg)
    f = np.radians(flex_deg)
    return np.stack([side * np.sin(a), -np.cos(a) * np.cos(f), np.cos(a) * np.sin(f)], axis=-1)


def _rot_x(deg: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations about x; positive tips +y towards +z (a forward lean)."""
    t = np.radians(deg)
    c, s = np.cos(t), np.sin(t)
    o, z = np.ones_like(t), np.zeros_like(t)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_y(deg: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations about the vertical; positive turns the forward +z towards +x."""
    t = np.radians(deg)
    c, s = np.cos(t), np.sin(t)
    o, z = np.ones_like(t), np.zeros_like(t)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def forward_kinematics(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World positions ``(F, NUM_POINTS, 3)`` of the COCO-17 joints plus the drawing points, and
    the face's forward direction ``(F, 3)`` in world coordinates."""
    st = np.asarray(states, dtype=np.float64)
    n = st.shape[0]
    g = lambda k: st[:, P[k]]  # noqa: E731
    lean = _rot_x(g("lean"))
    up = lambda v: np.einsum("nij,j->ni", lean, np.asarray(v, dtype=np.float64))  # noqa: E731
    upd = lambda d: np.einsum("nij,nj->ni", lean, d)  # noqa: E731
    pts = np.zeros((n, NUM_POINTS, 3), dtype=np.float64)
    # head and face (torso-relative, so they lean with it)
    pts[:, NECK] = up([0.0, SPINE, 0.0])
    pts[:, HEAD] = up([0.0, SPINE + HEAD_UP, 0.0])
    pts[:, 0] = up([0.0, SPINE + HEAD_UP - 0.015, HEAD_RADIUS])  # nose
    pts[:, 1] = up([0.038, SPINE + HEAD_UP + 0.025, HEAD_RADIUS * 0.85])  # left eye
    pts[:, 2] = up([-0.038, SPINE + HEAD_UP + 0.025, HEAD_RADIUS * 0.85])
    pts[:, 3] = up([HEAD_RADIUS * 0.95, SPINE + HEAD_UP, -0.01])  # left ear
    pts[:, 4] = up([-HEAD_RADIUS * 0.95, SPINE + HEAD_UP, -0.01])
    for side, sgn, sh, el, wr in (("l", 1.0, 5, 7, 9), ("r", -1.0, 6, 8, 10)):
        pts[:, sh] = up([sgn * SHOULDER_HALF, SPINE - SHOULDER_DROP, 0.0])
        d1 = upd(_limb_dir(g(f"{side}_sh_a"), g(f"{side}_sh_f"), sgn))
        d2 = upd(_limb_dir(g(f"{side}_sh_a") + g(f"{side}_el_a"), g(f"{side}_sh_f") + g(f"{side}_el_f"), sgn))
        pts[:, el] = pts[:, sh] + UPPER_ARM * d1
        pts[:, wr] = pts[:, el] + FOREARM * d2
    for side, sgn, hp, kn, an, toe in (("l", 1.0, 11, 13, 15, L_TOE), ("r", -1.0, 12, 14, 16, R_TOE)):
        pts[:, hp] = [sgn * HIP_HALF, 0.0, 0.0]
        d1 = _limb_dir(g(f"{side}_hip_a"), g(f"{side}_hip_f"), sgn)
        d2 = _limb_dir(g(f"{side}_hip_a"), g(f"{side}_hip_f") - g(f"{side}_knee"), sgn)
        pts[:, kn] = pts[:, hp] + THIGH * d1
        pts[:, an] = pts[:, kn] + SHIN * d2
        # the foot points along the shin's forward normal (flat on the floor when standing)
        fwd = np.stack([np.zeros(n), d2[:, 2], -d2[:, 1]], -1)
        pts[:, toe] = pts[:, an] + FOOT * fwd + np.array([0.0, -0.05, 0.0])
    pts[:, PELVIS] = 0.0
    face = upd(np.repeat(np.array([[0.0, 0.0, 1.0]]), n, 0))
    # body -> world: yaw, then place the pelvis so the lowest ankle is on the floor (+ jump)
    yaw = _rot_y(g("yaw"))
    pts = np.einsum("nij,npj->npi", yaw, pts)
    face = np.einsum("nij,nj->ni", yaw, face)
    lowest = np.minimum(pts[:, 15, 1], pts[:, 16, 1])
    pts[:, :, 0] += g("x")[:, None]
    pts[:, :, 1] += (ANKLE_HEIGHT + g("jump") - lowest)[:, None]
    pts[:, :, 2] += g("z")[:, None]
    return pts, face


# --------------------------------------------------------------------------------------------
# Camera and visibility.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    px_per_m: float  # image scale at the origin
    cx: float  # image x of the world origin
    ground_y: float  # image y of the world origin (on the floor)
    pitch: float = 12.0  # degrees, looking down
    distance: float = 7.0  # metres, for a mild perspective

    def view(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates ``(..., 2)`` and depth towards the camera ``(...)`` of world points."""
        a = math.radians(self.pitch)
        X, Y, Z = pts[..., 0], pts[..., 1], pts[..., 2]
        Yc = Y * math.cos(a) - Z * math.sin(a)
        Zc = Y * math.sin(a) + Z * math.cos(a)
        k = self.px_per_m * self.distance / (self.distance - Zc)
        uv = np.stack([self.cx + X * k, self.ground_y - Yc * k], -1)
        return uv, Zc

    def depth_dir(self, v: np.ndarray) -> np.ndarray:
        """The towards-camera component of world directions."""
        a = math.radians(self.pitch)
        return v[..., 1] * math.sin(a) + v[..., 2] * math.cos(a)


OCCLUDED_SCORE = 0.5


def project(pts: np.ndarray, face: np.ndarray, cam: Camera) -> dict:
    """COCO-17 keypoints/scores plus everything the renderer needs, per frame.

    Scores here are 1, or 0 for face joints on the far side of the head and joints outside the
    frame; ``generate.clip_poses`` lowers joints that the drawn figure covers (see
    ``render.occlusion``)."""
    uv, depth = cam.view(pts)
    face_z = cam.depth_dir(face)
    F = pts.shape[0]
    scores = np.ones((F, 17), dtype=np.float32)
    head_d = depth[:, HEAD]
    # face joints: seen only on the camera's side of the head
    scores[:, 0] = (depth[:, 0] - head_d > 0.03).astype(np.float32)
    scores[:, 1] = (depth[:, 1] - head_d > 0.0).astype(np.float32)
    scores[:, 2] = (depth[:, 2] - head_d > 0.0).astype(np.float32)
    scores[:, 3] = (depth[:, 3] - head_d > -0.03).astype(np.float32)
    scores[:, 4] = (depth[:, 4] - head_d > -0.03).astype(np.float32)
    # outside the frame
    x, y = uv[:, :17, 0], uv[:, :17, 1]
    out = (x < 0) | (y < 0) | (x > cam.width - 1) | (y > cam.height - 1)
    scores[out] = 0.0
    return {
        "keypoints": uv[:, :17].astype(np.float32),
        "scores": scores,
        "uv": uv,
        "depth": depth,
        "face_z": face_z,
        "scale": cam.px_per_m * cam.distance / (cam.distance - depth[:, HEAD]),
    }
