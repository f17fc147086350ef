"""HRNet-w32 (COCO, 256x192) top-down 2D pose through ``mmpose.apis``, person crops batched.

mmpose's own ``inference_topdown`` runs one image (its boxes) per forward pass, as mmaction2's
skeleton extraction does. Here the crops of many frames go through the model together, which is
what makes a GPU worth having (``bench/extract.py`` measures the difference).
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from cache.keys import file_sha256
from stages.datasets.base import ClipRecord, DatasetAdapter, PoseTrack
from stages.extract.pose.base import PoseSource, PoseSourceError
from stages.registry import POSE_SOURCES

log = logging.getLogger(__name__)

HRNET_CONFIG = "body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_8xb64-210e_coco-256x192.py"
HRNET_CHECKPOINT_URL = (
    "https://download.openmmlab.com/mmpose/top_down/hrnet/hrnet_w32_coco_256x192-c78dce93_20200708.pth"
)
HRNET_CHECKPOINT_SHA256_PREFIX = "c78dce93"  # the hash prefix in the official file name


class PoseCheckpointMissing(FileNotFoundError):
    pass


class RandomPoseWeightsWarning(UserWarning):
    """HRNet was built without a checkpoint."""


def mmpose_config_path(rel: str = HRNET_CONFIG) -> Path:
    """The config file that ships inside the mmpose wheel (``mmpose/.mim/configs``)."""
    import mmpose

    p = Path(mmpose.__file__).parent / ".mim" / "configs" / rel
    if not p.is_file():
        raise FileNotFoundError(f"mmpose config {rel} not found under {p.parent}; is mmpose 1.3 installed?")
    return p


def find_checkpoint(spec: Optional[str]) -> Optional[Path]:
    """Resolve ``--pose-checkpoint``: a path, ``none`` (random weights), or the default.

    The default is the official file, looked for (never downloaded) in ``$PEVL_WEIGHTS``,
    ``<cache>/weights`` and torch's hub checkpoint folder.
    """
    if spec is not None and spec.lower() == "none":
        return None
    if spec:
        p = Path(spec).expanduser()
        if not p.is_file():
            raise PoseCheckpointMissing(f"--pose-checkpoint {spec}: no such file")
        return p
    from cache import default_root

    name = HRNET_CHECKPOINT_URL.rsplit("/", 1)[1]
    dirs = [os.environ.get("PEVL_WEIGHTS"), default_root() / "weights",
            Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"]
    for d in dirs:
        if d and (Path(d) / name).is_file():
            return Path(d) / name
    raise PoseCheckpointMissing(
        f"the HRNet-w32 COCO 256x192 checkpoint ({name}) is not on this machine and there is no network "
        f"to fetch it. Download it from {HRNET_CHECKPOINT_URL} and pass --pose-checkpoint PATH (or put it in "
        f"$PEVL_WEIGHTS or {default_root() / 'weights'}); --pose-checkpoint none runs random weights "
        "(poses meaningless, for testing only)."
    )


def load_pose_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)``, admitting the few numpy types mmpose puts in ``meta``."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError: numpy objects in meta
        if "numpy" not in str(e):
            raise
        import numpy.core.multiarray as ma

        allowed = [ma._reconstruct, np.ndarray, np.dtype, ma.scalar] + [type(np.dtype(t)) for t in
                                                                         ("f4", "f8", "i4", "i8", "u1", "b1", "O")]
        with torch.serialization.safe_globals(allowed):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt if isinstance(ckpt, dict) else {"state_dict": ckpt}


@POSE_SOURCES.register_module("hrnet")
class HRNetPoseSource(PoseSource):
    name = "hrnet"
    needs_frames = True
    skeleton = "coco17"

    def __init__(self, checkpoint: Optional[str] = None, device: str = "cpu", batch_size: int = 32,
                 flip_test: bool = True, config: str = HRNET_CONFIG, seed: int = 0):
        from stages.compat import ensure_mmpose

        ensure_mmpose()
        self.config_rel = config
        self.device = device
        self.batch_size = batch_size
        self.flip_test = flip_test
        self.checkpoint = find_checkpoint(checkpoint)
        self.checkpoint_sha256 = file_sha256(self.checkpoint) if self.checkpoint else None
        self.seed = seed
        self._model = None
        if self.checkpoint is None:
            msg = ("HRNET RUNS WITH RANDOM WEIGHTS (--pose-checkpoint none): the poses mean nothing. "
                   "Use this only to test the pipeline.")
            warnings.warn(msg, RandomPoseWeightsWarning, stacklevel=2)

    def identity(self) -> dict:
        return {
            "name": self.name,
            "config": self.config_rel,
            "checkpoint": self.checkpoint.name if self.checkpoint else "none (random init)",
            "checkpoint_sha256": self.checkpoint_sha256,
            "random_init_seed": None if self.checkpoint else self.seed,
            "flip_test": self.flip_test,
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
        from mmengine.runner.checkpoint import _load_checkpoint_to_model
        from mmpose.apis import init_model
        from mmengine.dataset import Compose

        cfg = Config.fromfile(mmpose_config_path(self.config_rel))
        cfg.model.test_cfg.flip_test = self.flip_test
        torch.manual_seed(self.seed)
        model = init_model(cfg, None, device="cpu")
        if self.checkpoint is not None:
            ckpt = load_pose_checkpoint(self.checkpoint)
            _load_checkpoint_to_model(model, ckpt, strict=False)
            meta = ckpt.get("meta", {})
            if isinstance(meta, dict) and "dataset_meta" in meta:
                model.dataset_meta = meta["dataset_meta"]
        model.to(self.device).eval()
        self._pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
        return model

    # -- inference ----------------------------------------------------------------------------
    def estimate_images(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass over the crops of several images: ``images`` RGB uint8, ``boxes`` xyxy.

        Returns keypoints (N, V, 2) in image pixels and scores (N, V).
        """
        import torch
        from mmengine.dataset import pseudo_collate

        model = self.model
        data = []
        for img, box in zip(images, boxes):
            info = dict(img=np.ascontiguousarray(img[..., ::-1]),  # mmpose expects BGR like cv2
                        bbox=np.asarray(box, np.float32)[None], bbox_score=np.ones(1, np.float32))
            info.update(model.dataset_meta)
            data.append(self._pipeline(info))
        with torch.no_grad():
            results = model.test_step(pseudo_collate(data))
        kps = np.stack([r.pred_instances.keypoints[0] for r in results]).astype(np.float32)
        scs = np.stack([r.pred_instances.keypoint_scores[0] for r in results]).astype(np.float32)
        return kps, np.clip(scs, 0.0, 1.0)

    def estimate(self, clip: ClipRecord, frames: Optional[Iterable[np.ndarray]], boxes: Optional[np.ndarray],
                 dataset: DatasetAdapter) -> PoseTrack:
        if frames is None:
            raise PoseSourceError("HRNet needs decoded frames")
        kps, scs = [], []
        batch_img: list[np.ndarray] = []
        batch_box: list[np.ndarray] = []
        size = None
        i = 0
        for img in frames:
            size = img.shape[:2]
            h, w = size
            box = boxes[i] if boxes is not None and i < len(boxes) else np.array([0, 0, w, h], np.float32)
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
