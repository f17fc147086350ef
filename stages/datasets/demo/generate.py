"""Deterministic generation of the demo dataset: motion -> joints -> frames -> H.264 mp4 + npz poses.

Everything about a clip comes from ``numpy.random.default_rng([seed, split, index])``: the same
(split, index) gets the same "performer" (appearance, camera, timing jitter) in every class, so the
classes differ only in what the figure does. ``ensure()`` generates into a temporary sibling
directory and renames it into place, under a lock, so concurrent callers end with one dataset.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from stages.datasets.base import DatasetLayoutError
from stages.datasets.demo import render
from stages.datasets.demo import skeleton_motion as sm

log = logging.getLogger(__name__)

# 2: the figure stands higher, so its feet stay inside the test crops; 3: wider waves (95-120 deg
# instead of 50-70), so two vs three waves at 48 pose frames are as visible as two vs three kicks;
# 4: a wave swings the whole arm and lifts the squatting body a little (not the forearm alone)
GENERATOR_VERSION = 4
MARKER = ".complete.json"
ANNOTATIONS = "annotations.json"
SPLIT_CODES = {"train": 0, "val": 1}

DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 0,
    "clips_per_class": [24, 8],  # train, val
    "num_frames": [64, 80, 96],  # each clip draws one; multiples of 16 keep the aliasing exact
    "size": [176, 128],  # width, height (even, for yuv420p)
    "fps": 24,
}
#: options beside DEFAULT_CONFIG that enter the config only when set (so the defaults' folders,
#: annotations and bytes stay what they were): the fraction of clips with a second, idle figure
OPTIONAL_CONFIG: dict[str, Any] = {"bystanders": 0.0}
# settings of the encoder: fixed, single-threaded, for byte-identical output
ENCODER = {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": 20, "preset": "fast", "threads": 1}

ProgressFn = Callable[[int, int], None]


def normalize_config(**options: Any) -> dict[str, Any]:
    """Validated generation settings (JSON-able, canonical): unknown keys are an error."""
    unknown = set(options) - set(DEFAULT_CONFIG) - set(OPTIONAL_CONFIG)
    if unknown:
        raise ValueError(f"unknown demo dataset option(s) {sorted(unknown)}; known: "
                         f"{sorted(set(DEFAULT_CONFIG) | set(OPTIONAL_CONFIG))} (plus workers, progress)")
    cfg = {**DEFAULT_CONFIG, **{k: v for k, v in options.items() if v is not None}}
    if "bystanders" in cfg:
        b = float(cfg["bystanders"])
        if not 0.0 <= b <= 1.0:
            raise ValueError(f"bystanders must be a fraction of the clips in [0, 1], got {cfg['bystanders']!r}")
        if b == OPTIONAL_CONFIG["bystanders"]:
            del cfg["bystanders"]
        else:
            cfg["bystanders"] = b
    cfg["seed"] = int(cfg["seed"])
    cpc = cfg["clips_per_class"]
    if isinstance(cpc, str) and "," in cpc:
        cpc = cpc.split(",")
    if isinstance(cpc, (int, np.integer, str)):
        n = int(cpc)
        if n < 1:  # 0 made a dataset of no training clip and one validation clip per class
            raise ValueError(f"clips_per_class must be >= 1 (train clips per class; val gets a third), got {n}")
        cpc = [n, max(1, round(n / 3))]
    cpc = [int(v) for v in cpc]
    if len(cpc) != 2 or min(cpc) < 0 or sum(cpc) < 1:
        raise ValueError(f"clips_per_class must be N or (train, val), got {cfg['clips_per_class']!r}")
    cfg["clips_per_class"] = cpc
    nf = cfg["num_frames"]
    if isinstance(nf, str) and "," in nf:
        nf = nf.split(",")
    nf = [int(nf)] if isinstance(nf, (int, np.integer, str)) else [int(v) for v in nf]
    if not nf or min(nf) < 32:
        raise ValueError(f"num_frames must be >= 32, got {cfg['num_frames']!r}")
    cfg["num_frames"] = nf
    size = cfg["size"]
    if isinstance(size, str):
        size = [int(v) for v in size.lower().replace(",", "x").split("x")]
    w, h = (int(v) for v in size)
    if w < 32 or h < 32 or w % 2 or h % 2:
        raise ValueError(f"size must be even (width, height) >= 32, got {cfg['size']!r}")
    cfg["size"] = [w, h]
    cfg["fps"] = int(cfg["fps"])
    return cfg


def config_tag(cfg: Mapping[str, Any]) -> str:
    """Folder name under the data root: ``demo-v<GENERATOR_VERSION>`` for the defaults, else with a settings hash."""
    base = f"demo-v{GENERATOR_VERSION}"
    if dict(cfg) == normalize_config():
        return base
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    return f"{base}-{h}"


# --------------------------------------------------------------------------------------------
# One clip.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipSpec:
    clip_id: str
    split: str
    label: int
    index: int


def clip_specs(cfg: Mapping[str, Any]) -> list[ClipSpec]:
    n_train, n_val = cfg["clips_per_class"]
    out = []
    for split, n in (("train", n_train), ("val", n_val)):
        for label, cls in enumerate(sm.CLASSES):
            for i in range(n):
                out.append(ClipSpec(f"demo_{cls.key}_{split}_{i:03d}", split, label, i))
    return out


@dataclass(frozen=True)
class Performer:
    """Everything random about a clip except its class."""

    num_frames: int
    style: sm.MotionStyle
    look: render.Look
    camera: sm.Camera
    yaw0: float
    x0: float


def performer(cfg: Mapping[str, Any], split: str, index: int) -> Performer:
    rng = np.random.default_rng([int(cfg["seed"]), SPLIT_CODES[split], int(index)])
    w, h = cfg["size"]
    choices = cfg["num_frames"]
    num_frames = int(choices[int(rng.integers(0, len(choices)))])
    style = sm.MotionStyle.draw(rng)
    look = render.Look.draw(rng)
    scale = h / 128.0 * float(rng.uniform(36.0, 43.0))
    cam = sm.Camera(
        width=w,
        height=h,
        px_per_m=scale,
        cx=w / 2.0 + float(rng.uniform(-0.12, 0.12)) * w,
        # feet at 0.74-0.80 of the height: inside every 112-pixel crop of the 128-pixel frames
        ground_y=h * float(rng.uniform(0.74, 0.80)),
        pitch=float(rng.uniform(8.0, 16.0)),
        distance=7.0,
    )
    yaw0 = float(rng.uniform(-25.0, 25.0))
    x0 = 0.0
    return Performer(num_frames, style, look, cam, yaw0, x0)


def clip_motion(cfg: Mapping[str, Any], label: int, split: str, index: int) -> tuple[Performer, np.ndarray, np.ndarray]:
    """The performer, world points ``(F, NUM_POINTS, 3)`` and face directions of one clip."""
    perf = performer(cfg, split, index)
    start = sm.rest_state(yaw=perf.yaw0, x=perf.x0)
    motion = sm.build_motion(sm.CLASSES[label], perf.num_frames, perf.style, start=start)
    pts, face = sm.forward_kinematics(motion.states)
    return perf, pts, face


def _hide_self_occluded(look: render.Look, cam: sm.Camera, proj: dict) -> None:
    # joints covered by another part of the drawn figure: body joints "occluded", face joints unseen
    hidden = render.occlusion(look, cam, proj)
    sc = proj["scores"]
    sc[:, 5:] = np.where(hidden[:, 5:], np.minimum(sc[:, 5:], sm.OCCLUDED_SCORE), sc[:, 5:])
    sc[:, :5] = np.where(hidden[:, :5], 0.0, sc[:, :5])


def bystander(cfg: Mapping[str, Any], split: str, index: int, num_frames: int,
              cam: sm.Camera) -> Optional[dict]:
    """The second, idle figure of a clip (``bystanders`` of the clips have one), or None: standing
    at rest beside and behind the performer, facing the camera, breathing (a slow arm sway). Drawn
    from a generator of its own, so the performer is the same as without it."""
    frac = float(cfg.get("bystanders", 0.0))
    if frac <= 0.0:
        return None
    rng = np.random.default_rng([int(cfg["seed"]), SPLIT_CODES[split], int(index), 1])
    if rng.random() >= frac:
        return None
    look = render.Look.draw(rng)
    side = 1.0 if rng.random() < 0.5 else -1.0
    x, z, yaw = side * float(rng.uniform(1.45, 1.75)), float(rng.uniform(-1.8, -1.2)), float(rng.uniform(-20, 20))
    states = np.repeat(sm.rest_state(yaw=yaw, x=x, z=z)[None], num_frames, 0)
    sway = 3.0 * np.sin(np.linspace(0.0, 2 * np.pi * float(rng.uniform(0.5, 1.0)), num_frames))
    for k in ("l_sh_a", "r_sh_a"):
        states[:, sm.P[k]] += sway
    pts, face = sm.forward_kinematics(states)
    proj = sm.project(pts, face, cam)
    _hide_self_occluded(look, cam, proj)
    proj["look"], proj["world"] = look, pts
    return proj


def clip_poses(cfg: Mapping[str, Any], label: int, split: str, index: int) -> dict:
    """Ground-truth projection of one clip (keypoints, scores, and drawing data), no rendering.
    ``others``: the idle figures beside the performer (see :func:`bystander`), drawn behind it;
    their joints the performer covers are not lowered (they stand apart)."""
    perf, pts, face = clip_motion(cfg, label, split, index)
    proj = sm.project(pts, face, perf.camera)
    _hide_self_occluded(perf.look, perf.camera, proj)
    proj["performer"] = perf
    proj["world"] = pts
    other = bystander(cfg, split, index, perf.num_frames, perf.camera)
    proj["others"] = [other] if other is not None else []
    return proj


def render_clip(cfg: Mapping[str, Any], label: int, split: str, index: int) -> tuple[np.ndarray, dict]:
    proj = clip_poses(cfg, label, split, index)
    perf = proj["performer"]
    frames = render.render_clip(perf.look, perf.camera, proj, proj["world"],
                                others=[(o["look"], o, o["world"]) for o in proj["others"]])
    return frames, proj


def encode_mp4(frames: np.ndarray, path: os.PathLike, fps: int) -> None:
    """H.264 through ffmpeg-python driving the imageio-ffmpeg binary, single-threaded."""
    import ffmpeg
    import imageio_ffmpeg

    n, h, w, _ = frames.shape
    (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)
        .output(str(path), vcodec=ENCODER["vcodec"], pix_fmt=ENCODER["pix_fmt"], crf=ENCODER["crf"],
                preset=ENCODER["preset"], **{"threads": ENCODER["threads"], "fflags": "+bitexact",
                                            "flags": "+bitexact", "map_metadata": -1, "an": None})
        .overwrite_output()
        .run(cmd=imageio_ffmpeg.get_ffmpeg_exe(), input=np.ascontiguousarray(frames).tobytes(), quiet=True)
    )


def save_npz(path: os.PathLike, **arrays: np.ndarray) -> bytes:
    """``np.savez`` layout (readable by ``np.load(allow_pickle=False)``) with fixed zip timestamps,
    so the bytes depend only on the arrays. Returns the bytes written."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, arr.getvalue())
    data = buf.getvalue()
    Path(path).write_bytes(data)
    return data


def _write_clip(cfg: Mapping[str, Any], spec: ClipSpec, out: Path) -> dict:
    frames, proj = render_clip(cfg, spec.label, spec.split, spec.index)
    encode_mp4(frames, out / "videos" / f"{spec.clip_id}.mp4", cfg["fps"])
    others = {}
    if proj["others"]:  # the idle figures' joints beside the performer's: (M - 1, F, 17, 2), (M - 1, F, 17)
        others = {"others_keypoints": np.stack([o["keypoints"] for o in proj["others"]]),
                  "others_scores": np.stack([o["scores"] for o in proj["others"]])}
    data = save_npz(out / "poses" / f"{spec.clip_id}.npz", keypoints=proj["keypoints"], scores=proj["scores"],
                    **others)
    return {
        "id": spec.clip_id,
        "split": spec.split,
        "label": spec.label,
        "video": f"videos/{spec.clip_id}.mp4",
        "poses": f"poses/{spec.clip_id}.npz",
        "num_frames": int(frames.shape[0]),
        "poses_sha256": hashlib.sha256(data).hexdigest(),
    }


# --------------------------------------------------------------------------------------------
# The whole dataset.
# --------------------------------------------------------------------------------------------
def annotations_header(cfg: Mapping[str, Any]) -> dict:
    w, h = cfg["size"]
    return {
        "name": "demo",
        "generator_version": GENERATOR_VERSION,
        "seed": cfg["seed"],
        "config": dict(cfg),
        "coarse_type": "gymnastic",
        "skeleton": "coco17",
        "fps": cfg["fps"],
        "frame_size": [h, w],
        "encoder": ENCODER,
        "classes": [
            {"id": i, "key": c.key, "label": c.text, "sub_actions": c.sub_actions}
            for i, c in enumerate(sm.CLASSES)
        ],
        "aliasing_pairs": [
            {"classes": [a, b], "why": why} for a, b, why in sm.ALIASING_PAIRS
        ],
    }


def generate(out_dir: os.PathLike, cfg: Mapping[str, Any], progress: Optional[ProgressFn] = None,
             workers: int = 1) -> dict:
    """Write the whole dataset into ``out_dir`` (created; must not hold a dataset). Returns the
    annotations. Clips are independent, so ``workers`` threads (rendering and encoding release
    the GIL for much of their time) give the same bytes as one."""
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "poses").mkdir(parents=True, exist_ok=True)
    specs = clip_specs(cfg)
    total = len(specs)
    t0 = time.monotonic()
    done = 0
    if progress:
        progress(0, total)
    clips: list[dict] = [None] * total  # type: ignore[list-item]
    if workers <= 1:
        for i, spec in enumerate(specs):
            clips[i] = _write_clip(cfg, spec, out)
            done += 1
            if progress:
                progress(done, total)
    else:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            futs = [ex.submit(_write_clip, cfg, spec, out) for spec in specs]
            for i, fut in enumerate(futs):
                clips[i] = fut.result()
                done += 1
                if progress:
                    progress(done, total)
    ann = {**annotations_header(cfg), "clips": clips}
    (out / ANNOTATIONS).write_text(json.dumps(ann, indent=1, sort_keys=True) + "\n")
    log.debug("generated demo dataset: %d clips in %.1fs at %s", total, time.monotonic() - t0, out)
    return ann


def _marker_body(cfg: Mapping[str, Any]) -> dict:
    return {"generator_version": GENERATOR_VERSION, "config": dict(cfg)}


def is_complete(root: os.PathLike, cfg: Optional[Mapping[str, Any]] = None) -> bool:
    m = Path(root) / MARKER
    if not m.is_file():
        return False
    if cfg is None:
        return True
    try:
        return json.loads(m.read_text()) == _marker_body(cfg)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (``fcntl.flock``) held for the block; a no-op where flock is
    missing (the rename below is atomic on its own)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows)
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class DemoRootError(DatasetLayoutError):
    """``--root`` holds something other than the demo dataset asked for."""


def ensure(root: os.PathLike, cfg: Mapping[str, Any], progress: Optional[ProgressFn] = None,
           workers: int = 1) -> Path:
    """Make sure a complete dataset for ``cfg`` is at ``root``; generate it if not.

    Safe for concurrent callers (threads, processes, machines sharing a filesystem): generation
    happens in ``<root>.tmp-<unique>`` under ``<root>.lock``, and the finished folder is renamed
    into place; a caller that finds the marker waits for nothing and generates nothing.
    """
    root = Path(root)
    if is_complete(root, cfg):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root.parent / f".{root.name}.lock"):
        if is_complete(root, cfg):
            return root
        _check_replaceable(root, cfg)
        # leftovers of an interrupted generation (we hold the lock, so nobody is writing them)
        for stale in root.parent.glob(f".{root.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            generate(tmp, cfg, progress=progress, workers=workers)
            (tmp / MARKER).write_text(json.dumps(_marker_body(cfg), sort_keys=True) + "\n")
            if root.exists():  # an empty folder the user made
                root.rmdir()
            try:
                os.rename(tmp, root)
            except OSError:
                # someone without the lock (a filesystem where flock is void) won the race
                if not is_complete(root, cfg):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            log.info("generated the demo dataset at %s", root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root


def _check_replaceable(root: Path, cfg: Mapping[str, Any]) -> None:
    if not root.exists():
        return
    if root.is_dir() and not any(root.iterdir()):
        return
    marker = root / MARKER
    if marker.is_file():
        try:
            have = json.loads(marker.read_text())
        except ValueError:
            have = None
        raise DemoRootError(
            f"{root} holds a demo dataset generated with other settings ({have}); requested "
            f"{_marker_body(cfg)}. Point --root elsewhere or delete that folder."
        )
    raise DemoRootError(
        f"{root} exists and is not a generated demo dataset (no {MARKER}); point --root at an "
        "empty or missing folder, or delete it."
    )


def read_poses(path: os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The performer's joints ``(F, 17, 2)`` and scores ``(F, 17)``."""
    with np.load(path, allow_pickle=False) as z:
        return z["keypoints"].astype(np.float32), z["scores"].astype(np.float32)


def read_people(path: os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Every figure of a clip, the performer first: joints ``(M, F, 17, 2)``, scores ``(M, F, 17)``."""
    with np.load(path, allow_pickle=False) as z:
        kp, sc = z["keypoints"][None], z["scores"][None]
        if "others_keypoints" in z.files:
            kp = np.concatenate([kp, z["others_keypoints"]])
            sc = np.concatenate([sc, z["others_scores"]])
    return kp.astype(np.float32), sc.astype(np.float32)


def sample_indices(num_frames: int, count: int) -> np.ndarray:
    return sm.sample_indices(num_frames, count)


__all__: Sequence[str] = (
    "DEFAULT_CONFIG", "GENERATOR_VERSION", "normalize_config", "config_tag", "clip_specs", "performer",
    "clip_motion", "clip_poses", "render_clip", "encode_mp4", "save_npz", "generate", "ensure",
    "is_complete", "read_poses", "sample_indices", "DemoRootError",
)
