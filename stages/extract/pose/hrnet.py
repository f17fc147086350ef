"""HRNet-w32 (COCO, 256x192) top-down 2D pose through mmpose, person crops batched on the device.

mmpose's own ``inference_topdown`` runs one image (its boxes) per forward pass, as mmaction2's
skeleton extraction does, and prepares every crop on the CPU. Here the crops of many frames are
cut, normalised and flipped on the model's device in one batched operation
(:mod:`stages.extract.pose.topdown`, equal to mmpose's pipeline), the original and flipped crops
share one forward pass, and the heatmaps are decoded there too. ``bench/extract.py`` measures it
against ``inference_topdown``.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

import numpy as np

from stages.datasets.base import ClipRecord, DatasetAdapter, PoseTrack
from stages.devices import resolve_device_name
from stages.extract.pose.base import PoseContext, PoseSource, PoseSourceError, PoseSourceOptions
from stages.extract.pose.checkpoint import (PoseCheckpointMismatch, check_pose_checkpoint,  # noqa: F401
                                             read_pose_checkpoint)
from stages.extract.pose.topdown import TopdownSpec, autocast_dtype_for, frames_on_device, topdown_keypoints
from stages.registry import POSE_SOURCES
from stages.settings import field
from stages.skeletons import get_skeleton

log = logging.getLogger(__name__)

HRNET_CONFIG = "body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_8xb64-210e_coco-256x192.py"
HRNET_CHECKPOINT_URL = (
    "https://download.openmmlab.com/mmpose/top_down/hrnet/hrnet_w32_coco_256x192-c78dce93_20200708.pth"
)
POSE_PRECISIONS = ("auto", "fp32", "fp16", "bf16")
CUDNN_PAD_TO = 8  # crops per forward pass rounded up to this on CUDA: few shapes for cudnn.benchmark


class PoseCheckpointMissing(FileNotFoundError):
    pass


class RandomPoseWeightsWarning(UserWarning):
    """HRNet was built without a checkpoint."""


def mmpose_config_path(rel: str = HRNET_CONFIG) -> Path:
    """The config file that ships inside the mmpose wheel (``mmpose/.mim/configs``), or ``rel``
    itself when it is a config file's path (``--pose-config``)."""
    import mmpose

    if rel.endswith(".py") and Path(rel).expanduser().is_file():
        return Path(rel).expanduser()
    p = Path(mmpose.__file__).parent / ".mim" / "configs" / rel
    if not p.is_file():
        raise FileNotFoundError(f"mmpose config {rel} not found under {p.parent}; is mmpose 1.3 installed?")
    return p


#: ``--pose-checkpoint``'s default: the official file, found locally
OFFICIAL_CHECKPOINT = "official"


def find_checkpoint(spec: Optional[str]) -> Optional[Path]:
    """Resolve ``--pose-checkpoint``: a path, ``none`` (random weights), or ``official`` (None too).

    The default is the official file, looked for (never downloaded) in ``$PEVL_WEIGHTS``,
    ``$PEVL_CACHE/weights`` (the default cache root's, :func:`cache.default_root`; not ``--cache-root``'s)
    and torch's hub checkpoint folder.
    """
    if spec is not None and spec.lower() == "none":
        return None
    if spec and spec != OFFICIAL_CHECKPOINT:
        p = Path(spec).expanduser()
        if not p.is_file():
            raise PoseCheckpointMissing(f"--pose-checkpoint {spec}: no such file")
        return p
    from cache import default_root

    name = HRNET_CHECKPOINT_URL.rsplit("/", 1)[1]
    import torch.hub

    # torch's own answer for its hub folder ($TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub)
    dirs = [os.environ.get("PEVL_WEIGHTS"), default_root() / "weights", Path(torch.hub.get_dir()) / "checkpoints"]
    for d in dirs:
        if d and (Path(d) / name).is_file():
            return Path(d) / name
    raise PoseCheckpointMissing(
        f"the HRNet-w32 COCO 256x192 checkpoint ({name}) is not in {', '.join(str(d) for d in dirs if d)}, and this "
        f"tool never downloads. Download it from {HRNET_CHECKPOINT_URL} and pass --pose-checkpoint PATH (pipeline predict: "
        f"--pose-option checkpoint=PATH), or put it in $PEVL_WEIGHTS or {default_root() / 'weights'}; checkpoint "
        "none runs random weights (poses meaningless, for testing only)."
    )


def resolve_precision(precision: str, device: str) -> str:
    """``--pose-precision``: ``auto`` is fp16 autocast on CUDA (mmpose trains this HRNet in fp16 as
    well, ``td-hm_hrnet-w32_fp16-8xb64-210e_coco-256x192``, at the same AP) and fp32 elsewhere."""
    if precision not in POSE_PRECISIONS:
        raise ValueError(f"--pose-precision {precision!r}: one of {', '.join(POSE_PRECISIONS)}")
    cuda = str(device).startswith("cuda")
    if precision == "auto":
        return "fp16" if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise ValueError("--pose-precision fp16 on a CPU: torch runs fp16 convolutions on CPUs ~100x slower "
                         "than fp32; use bf16 or fp32 there")
    return precision


@dataclass(frozen=True)
class HRNetOptions(PoseSourceOptions):
    checkpoint: str = field(OFFICIAL_CHECKPOINT, help="HRNet checkpoint: a local .pth file (loaded strictly: a "
                            "file that does not fit the config is refused before any clip is decoded), 'official' (the "
                            "official HRNet-w32 COCO 256x192 file, looked for in $PEVL_WEIGHTS, $PEVL_CACHE/weights "
                            "(the default cache root's weights/ when unset; not --cache-root's) and torch's hub folder; never "
                            "downloaded) or 'none' (random weights: poses meaningless, tests only).")
    config: str = field(HRNET_CONFIG, help="mmpose top-down config (a path under mmpose's .mim/configs, or a file), "
                        "e.g. body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w48_8xb32-210e_coco-384x288.py for "
                        "an HRNet-w48 384x288 checkpoint. The checkpoint must fit it exactly.")
    batch_size: int = field(32, in_key=False, help="Person crops (frames) per HRNet batch, across frames; with the "
                            "flip test each forward pass also carries their flipped copies.")
    flip_test: bool = field(True, help="HRNet flip test (averages the flipped crop's heatmaps, as the official "
                            "evaluation does; about twice the cost).")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = field(
        "auto", help="HRNet arithmetic: auto (fp16 autocast on CUDA, fp32 on CPU), fp32, fp16 (CUDA only) or bf16. "
                     "Anything but fp32 joins the entry key (the joints differ slightly).")
    person_detector: Optional[str] = field(None, help="Person boxes for clips whose dataset gives none: an mmdet "
                                           "config (a file, a path under mmdet's .mim/configs, or faster-rcnn), "
                                           "highest-scoring person per frame. Needs full mmcv<2.2 with compiled ops "
                                           "(not mmcv-lite); none: the whole frame, with a warning.")
    detector_checkpoint: Optional[str] = field(None, help="Local .pth checkpoint of person_detector (never "
                                               "downloaded); its hash joins the entry key.")


@POSE_SOURCES.register_module("hrnet")
class HRNetPoseSource(PoseSource):
    name = "hrnet"
    needs_frames = True
    skeleton = "coco17"
    multi_person = True  # persons > 1: every person box of a frame, linked over frames (pose/tracks.py)
    Options = HRNetOptions

    @classmethod
    def from_options(cls, options: Any, context: PoseContext) -> PoseSource:
        """HRNet with its person-box chain: dataset boxes, an optional detector, else the whole frame
        (a detector joins the identity, so the entry key)."""
        from stages.extract.person_boxes import with_person_boxes

        o = options
        src = cls(checkpoint=o.checkpoint, device=context.device, batch_size=o.batch_size, flip_test=o.flip_test,
                  precision=o.precision, config=o.config, persons=context.persons)
        return with_person_boxes(src, detector=o.person_detector, checkpoint=o.detector_checkpoint,
                                 device=context.device, persons=context.persons)

    def __init__(self, checkpoint: Optional[str] = OFFICIAL_CHECKPOINT, device: str = "cpu", batch_size: int = 32,
                 flip_test: bool = True, config: Optional[str] = None, seed: int = 0, precision: str = "auto",
                 persons: int = 1):
        from stages.compat import ensure_mmpose

        ensure_mmpose()
        device = resolve_device_name(device)  # "auto" reached torch, and every clip failed on it
        self.config_rel = config or HRNET_CONFIG
        self.config_path = mmpose_config_path(self.config_rel)
        self.device = device
        self.precision = resolve_precision(precision, device)
        self.batch_size = batch_size
        self.flip_test = flip_test
        self.checkpoint = find_checkpoint(checkpoint)
        self.checkpoint_sha256 = None
        self._weights: Optional[dict] = None
        # strict, before any clip is decoded: the file must fit the configured model exactly, and the
        # model predict this source's joints (checked on the meta device); only then is the file's
        # sha256 part of the entry's identity
        ckpt = read_pose_checkpoint(self.checkpoint) if self.checkpoint is not None else None
        check_pose_checkpoint(ckpt, self.config_path, self.config_rel, self.skeleton,
                              get_skeleton(self.skeleton).num_joints, flip_test=flip_test)
        if ckpt is not None:
            self.checkpoint_sha256 = ckpt.sha256
            self._weights = ckpt.provenance()
        self.seed = seed
        self._model = None
        self.persons = int(persons)  # people per frame (stage-one setting; the settings key has it)
        self.selections: dict[str, dict] = {}  # persons > 1: each clip's tracks (clip_info)
        if self.checkpoint is None:
            msg = ("HRNET RUNS WITH RANDOM WEIGHTS (checkpoint none: --pose-checkpoint none, or predict's "
                   "--pose-option checkpoint=none): the poses mean nothing. Use this only to test the pipeline.")
            warnings.warn(msg, RandomPoseWeightsWarning, stacklevel=2)

    def weights(self) -> Optional[dict]:
        return self._weights

    def identity(self) -> dict:
        return {
            "name": self.name,
            "config": self.config_rel,
            "checkpoint": self.checkpoint.name if self.checkpoint else "none (random init)",
            "checkpoint_sha256": self.checkpoint_sha256,
            "random_init_seed": None if self.checkpoint else self.seed,
            "flip_test": self.flip_test,
            # fp32 adds nothing, so entries made before autocast existed keep their keys
            **({"precision": self.precision} if self.precision != "fp32" else {}),
        }

    # -- model ----------------------------------------------------------------------------
    @property
    def model(self):
        if self._model is None:
            self._model = self._build()
        return self._model

    def _build(self):
        import torch
        from mmengine.config import Config
        from mmpose.apis import init_model

        cfg = Config.fromfile(self.config_path)
        cfg.model.test_cfg.flip_test = self.flip_test
        torch.manual_seed(self.seed)
        model = init_model(cfg, None, device="cpu")
        if self.checkpoint is not None:
            ckpt = read_pose_checkpoint(self.checkpoint)
            if ckpt.sha256 != self.checkpoint_sha256:
                raise PoseSourceError(f"--pose-checkpoint {self.checkpoint} changed since this extraction was planned "
                                      f"(sha256 {self.checkpoint_sha256[:12]}... then, {ckpt.sha256[:12]}... now)")
            # strict; the model's own pre-hooks rename mmpose 0.x keys (keypoint_head -> head)
            model.load_state_dict(ckpt.state, strict=True)
            meta = ckpt.meta
            if isinstance(meta, dict) and "dataset_meta" in meta:
                model.dataset_meta = meta["dataset_meta"]
            log.info("HRNet %s: %d/%d tensors loaded from %s (%s layout%s, sha256 %s)", Path(self.config_rel).stem,
                     len(model.state_dict()), len(model.state_dict()), self.checkpoint, ckpt.layout,
                     "".join(f"; {n}" for n in ckpt.notes), ckpt.sha256)
        model.to(self.device).eval()
        self.spec = TopdownSpec.from_model(model)
        if str(self.device).startswith("cuda"):
            # One input size (256x192) for the whole run: let cuDNN pick its fastest kernels once.
            torch.backends.cudnn.benchmark = True
            if self.precision == "fp32":
                torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32, not TF32 convolutions
        return model

    # -- inference ----------------------------------------------------------------------------
    def estimate_images(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass over the crops of several images: ``images`` RGB uint8 of one size,
        ``boxes`` one xyxy box each. Returns keypoints (N, V, 2) in image pixels and scores (N, V).
        """
        import torch

        model = self.model
        box_arr = np.asarray(boxes, np.float32).reshape(-1, 4)
        cuda = str(self.device).startswith("cuda")
        with torch.inference_mode():
            frames, frame_index = frames_on_device(images, self.device)
            kps, scores = topdown_keypoints(model, self.spec, frames, frame_index, box_arr, self.flip_test,
                                            autocast_dtype_for(self.precision), pad_to=CUDNN_PAD_TO if cuda else 1)
        return kps, np.clip(scores, 0.0, 1.0)

    def estimate_people_images(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`estimate_images` with any number of boxes per image: ``boxes[i]`` (m_i, 4)
        xyxy in ``images[i]``. Returns keypoints (sum m_i, V, 2) and scores (sum m_i, V), image by image."""
        import torch

        model = self.model
        counts = [len(b) for b in boxes]
        box_arr = np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes])
        cuda = str(self.device).startswith("cuda")
        with torch.inference_mode():
            frames, index = frames_on_device(images, self.device)
            frame_index = torch.repeat_interleave(index, torch.as_tensor(counts, device=index.device))
            kps, scores = topdown_keypoints(model, self.spec, frames, frame_index, box_arr, self.flip_test,
                                            autocast_dtype_for(self.precision), pad_to=CUDNN_PAD_TO if cuda else 1)
        return kps, np.clip(scores, 0.0, 1.0)

    def _estimate_people(self, clip: ClipRecord, frames: Iterable[np.ndarray], boxes) -> PoseTrack:
        """``persons`` > 1: HRNet on every person box of each frame (``boxes[i]``: (m_i, 4), or one
        box), the detections linked into tracks over the frames and the best ``persons`` kept,
        person-major (:mod:`stages.extract.pose.tracks`)."""
        from stages.extract.pose.tracks import keep_best_tracks, link_boxes

        per_box: list[np.ndarray] = []
        kps: list[np.ndarray] = []
        scs: list[np.ndarray] = []
        batch_img: list[np.ndarray] = []
        batch_box: list[np.ndarray] = []
        size = None

        def flush():
            if not batch_img:
                return
            k, s = self.estimate_people_images(batch_img, batch_box)
            at = 0
            for b in batch_box:
                kps.append(k[at: at + len(b)])
                scs.append(s[at: at + len(b)])
                at += len(b)
            batch_img.clear()
            batch_box.clear()

        for i, img in enumerate(frames):
            size = img.shape[:2]
            h, w = size
            given = boxes[i] if boxes is not None and i < len(boxes) else np.array([0, 0, w, h], np.float32)
            b = np.asarray(given, np.float32).reshape(-1, 4)
            if len(b) == 0:
                b = np.array([[0, 0, w, h]], np.float32)
            if not np.isfinite(b).all():
                raise PoseSourceError(f"a person box of frame {i} is {b.tolist()}: not finite")
            batch_img.append(img)
            batch_box.append(b)
            per_box.append(b)
            if sum(len(x) for x in batch_box) >= self.batch_size:
                flush()
        flush()
        if size is None:
            raise PoseSourceError("no frames to estimate poses on")
        ids = link_boxes(per_box)
        kp, sc, bx, summary = keep_best_tracks(ids, kps, scs, self.persons, per_box)
        summary["most_boxes_in_a_frame"] = max(len(b) for b in per_box)
        self.selections[clip.clip_id] = summary
        return PoseTrack(kp, sc, frame_size=tuple(size), person_boxes=bx)

    def clip_info(self, clip: ClipRecord) -> dict:
        return dict(self.selections.get(clip.clip_id, {}))

    def estimate(self, clip: ClipRecord, frames: Optional[Iterable[np.ndarray]], boxes: Optional[np.ndarray],
                 dataset: DatasetAdapter) -> PoseTrack:
        if frames is None:
            raise PoseSourceError("HRNet needs decoded frames")
        if self.persons > 1:
            return self._estimate_people(clip, frames, boxes)
        kps, scs = [], []
        batch_img: list[np.ndarray] = []
        batch_box: list[np.ndarray] = []
        size = None
        i = 0
        for img in frames:
            size = img.shape[:2]
            h, w = size
            box = boxes[i] if boxes is not None and i < len(boxes) else np.array([0, 0, w, h], np.float32)
            if not np.isfinite(box).all():
                raise PoseSourceError(f"the person box of frame {i} is {np.asarray(box).tolist()}: not finite")
            batch_img.append(img)
            batch_box.append(box)
            i += 1
            if len(batch_img) == self.batch_size:
                k, s = self.estimate_images(batch_img, batch_box)
                kps.append(k)
                scs.append(s)
                batch_img, batch_box = [], []
        if batch_img:
            k, s = self.estimate_images(batch_img, batch_box)
            kps.append(k)
            scs.append(s)
        if size is None:
            raise PoseSourceError("no frames to estimate poses on")
        return PoseTrack(np.concatenate(kps), np.concatenate(scs), frame_size=tuple(size))
