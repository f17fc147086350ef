"""Person boxes for top-down pose (HRNet): dataset boxes -> an mmdet person detector -> whole frame.

The chain, per clip:

1. boxes the dataset supplies (:meth:`DatasetAdapter.person_boxes`: FineGym's ground-truth athlete
   boxes through the adapter option ``boxes=PATH``, the demo's boxes), as mmaction2 uses them;
2. otherwise, when ``--person-detector`` is given, the highest-scoring person box of an mmdet
   detector on each frame (mmaction2's skeleton extraction does the same with Faster R-CNN);
3. otherwise the whole frame, with ONE warning per chain (one per extraction run and process).

The detector sees the same streamed frames HRNet sees: :meth:`PersonBoxes.stream` wraps the
decoder's frame iterator, detects a batch of frames, appends their boxes to a growing list and
only then hands those frames on, so HRNet's ``boxes[i]`` exists when frame ``i`` reaches it.
Nothing is decoded twice and at most one detector batch of frames is held.

A detector changes the poses, so :class:`PoseWithPersonBoxes` (what ``stages.extract.plan.make_pose_source`` returns
for ``hrnet``) adds the detector's identity to the pose-source identity, hence to the entry key.
Without a detector the identity is HRNet's own, unchanged (existing entries keep their keys).

mmdet's detectors need mmcv's compiled ops (NMS, RoIAlign). ``mmcv-lite`` has none, so where only
mmcv-lite is installed, asking for a detector fails at planning time with
:class:`DetectorUnavailable`, naming the fix (full ``mmcv<2.2`` built with ops, on a GPU server).
"""
from __future__ import annotations

import importlib.util
import warnings
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from stages.datasets.base import ClipRecord, DatasetAdapter, PoseTrack
from stages.extract.pose.base import PoseSource


# Short names for --person-detector. mmaction2's tools/data/skeleton/ntu_pose_extraction.py uses
# Faster R-CNN R50-FPN 2x COCO with the highest-scoring person kept above 0.5 (det_score_thr).
DETECTOR_ALIASES = {
    "faster-rcnn": "faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py",
    "faster_rcnn": "faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py",
}
DETECTOR_CHECKPOINT_URLS = {
    "faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py": (
        "https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r50_fpn_2x_coco/"
        "faster_rcnn_r50_fpn_2x_coco_bbox_mAP-0.384_20200504_210434-a5d8aa15.pth"),
}
DEFAULT_SCORE_THR = 0.5
PERSON_LABEL = 0  # COCO's "person"

FULL_MMCV_HINT = (
    "mmdet person detectors need mmcv's compiled ops (NMS, RoIAlign), which mmcv-lite does not have. "
    "Install full mmcv built with ops (mmcv>=2.0,<2.2, matching your torch/CUDA, e.g. "
    "`pip uninstall mmcv-lite && mim install 'mmcv>=2.0,<2.2'`) on a GPU server, or leave "
    "--person-detector off (boxes then come from the dataset, else the whole frame)."
)


class DetectorUnavailable(RuntimeError):
    """A person detector was asked for but cannot be built or run here."""


class WholeFrameBoxesWarning(UserWarning):
    """HRNet runs on the whole frame: neither the dataset nor a detector gave person boxes."""


# -- mmdet detector ------------------------------------------------------------------------------
def mmcv_has_ops() -> bool:
    """Whether mmcv's compiled extension (``mmcv._ext``) is importable (full mmcv, not mmcv-lite)."""
    try:
        return importlib.util.find_spec("mmcv._ext") is not None
    except (ImportError, ValueError):
        return False


def mmdet_config_path(spec: str) -> tuple[Path, str]:
    """``--person-detector``: an alias, a config under mmdet's wheel (``mmdet/.mim/configs``,
    with or without ``.py``, with or without its folder), or a config file path.

    Returns (path, name for the identity).
    """
    spec = DETECTOR_ALIASES.get(spec, spec)
    p = Path(spec).expanduser()
    if p.is_file():
        return p.resolve(), p.name
    try:
        import mmdet
    except ImportError as e:
        raise DetectorUnavailable(f"--person-detector needs mmdet (pip install mmdet==3.3.0): {e}") from e
    cfg_root = Path(mmdet.__file__).parent / ".mim" / "configs"
    rel = spec if spec.endswith(".py") else spec + ".py"
    if (cfg_root / rel).is_file():
        return cfg_root / rel, rel
    hits = sorted(cfg_root.glob(f"**/{Path(rel).name}"))
    if len(hits) == 1:
        return hits[0], str(hits[0].relative_to(cfg_root))
    raise FileNotFoundError(
        f"--person-detector {spec!r}: not a file, and not a config under {cfg_root}"
        + (f" (ambiguous: {[str(h.relative_to(cfg_root)) for h in hits[:5]]})" if hits else "")
        + f"; known short names: {sorted(DETECTOR_ALIASES)}")


class MMDetPersonDetector:
    """The highest-scoring person box per frame from an mmdet 3.x detector, frames batched.

    Built through ``mmdet.apis.init_detector``; inference follows ``inference_detector``'s steps
    (the config's test pipeline on ndarray images, then ``model.test_step``) but with many frames
    per ``test_step`` instead of one.
    """

    def __init__(self, config: str, checkpoint: Optional[str], device: str = "cpu",
                 score_thr: float = DEFAULT_SCORE_THR, batch_size: int = 8):
        from cache.keys import file_sha256

        self.config_path, self.config_name = mmdet_config_path(config)
        if not mmcv_has_ops():
            raise DetectorUnavailable(f"--person-detector {config}: {FULL_MMCV_HINT}")
        if not checkpoint:
            url = DETECTOR_CHECKPOINT_URLS.get(self.config_name)
            raise DetectorUnavailable(
                f"--person-detector {config} needs --detector-checkpoint PATH (a local .pth; nothing is "
                "downloaded)" + (f"; the official weights: {url}" if url else ""))
        ck = Path(checkpoint).expanduser()
        if not ck.is_file():
            raise DetectorUnavailable(f"--detector-checkpoint {checkpoint}: no such file")
        self.checkpoint = ck.resolve()
        self.checkpoint_sha256 = file_sha256(self.checkpoint)
        self.device = device
        self.score_thr = float(score_thr)
        self.batch_size = max(1, int(batch_size))
        self._model = None
        self._pipeline = None

    def identity(self) -> dict:
        try:
            from importlib.metadata import version

            mmdet_version = version("mmdet")
        except Exception:  # pragma: no cover
            mmdet_version = None
        return {"name": "mmdet", "config": self.config_name, "checkpoint": self.checkpoint.name,
                "checkpoint_sha256": self.checkpoint_sha256, "score_thr": self.score_thr,
                "label": "person", "mmdet": mmdet_version}

    @property
    def model(self):
        if self._model is None:
            self._model = self._build()
        return self._model

    def _build(self):
        if not mmcv_has_ops():
            raise DetectorUnavailable(FULL_MMCV_HINT)
        try:
            from mmdet.apis import init_detector
            from mmdet.utils import get_test_pipeline_cfg
            from mmengine.dataset import Compose

            model = init_detector(str(self.config_path), str(self.checkpoint), device=self.device)
            pipeline = get_test_pipeline_cfg(model.cfg.copy())
            pipeline[0].type = "mmdet.LoadImageFromNDArray"
            self._pipeline = Compose(pipeline)
        except Exception as e:  # mmcv-lite: ModuleNotFoundError mmcv._ext, missing nms/RoIAlign kernels
            raise DetectorUnavailable(f"cannot build the person detector {self.config_name}: "
                                      f"{type(e).__name__}: {e}. {FULL_MMCV_HINT}") from e
        return model

    def detect(self, images: list[np.ndarray]) -> list[Optional[np.ndarray]]:
        """Per RGB uint8 image: the best person box ``(4,)`` xyxy above ``score_thr``, or None."""
        import torch
        from mmengine.dataset import pseudo_collate

        model = self.model
        try:
            data = [self._pipeline(dict(img=np.ascontiguousarray(img[..., ::-1]), img_id=i))  # BGR
                    for i, img in enumerate(images)]
            with torch.no_grad():
                results = model.test_step(pseudo_collate(data))
        except Exception as e:
            if "_ext" in str(e) or "mmcv" in str(e):
                raise DetectorUnavailable(f"person detector failed: {e}. {FULL_MMCV_HINT}") from e
            raise
        return [best_person_box(r.pred_instances, self.score_thr) for r in results]

    def close(self) -> None:
        self._model = None


def best_person_box(instances: Any, score_thr: float, label: int = PERSON_LABEL) -> Optional[np.ndarray]:
    """The highest-scoring ``label`` box of one image's ``pred_instances`` (bboxes/scores/labels)."""
    def arr(x):
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    labels, scores, bboxes = arr(instances.labels), arr(instances.scores), arr(instances.bboxes)
    keep = (labels == label) & (scores >= score_thr)
    if not keep.any():
        return None
    i = int(np.flatnonzero(keep)[np.argmax(scores[keep])])
    return bboxes[i].astype(np.float32).reshape(4)


# -- the chain ---------------------------------------------------------------------------------------
class PersonBoxes:
    """Where a clip's person boxes come from. One instance per extraction run (per process)."""

    def __init__(self, detector: Optional[MMDetPersonDetector] = None):
        self.detector = detector
        self._warned = False

    def identity(self) -> Optional[dict]:
        """The detector's identity (goes into the entry key), or None without a detector."""
        return self.detector.identity() if self.detector is not None else None

    def stream(self, clip: ClipRecord, dataset: DatasetAdapter,
               frames: Iterable[np.ndarray]) -> tuple[Iterator[np.ndarray], Optional[list], dict]:
        """``(frames, boxes, info)`` for a top-down pose source; ``frames`` is consumed lazily.

        ``boxes`` is None (whole frame), the dataset's ``(F, 4)`` array, or a list the detector
        fills one batch ahead of the frames it yields. ``info["source"]`` is what the clip used:
        ``"dataset"``, ``"detector"`` or ``"whole frame"`` (final once ``frames`` is exhausted).
        """
        boxes = dataset.person_boxes(clip) if dataset is not None else None
        if boxes is not None:
            return iter(frames), boxes, {"source": "dataset"}
        if self.detector is not None:
            info = {"source": "detector", "detector": self.detector.config_name, "frames": 0,
                    "frames_without_person": 0}
            out: list[np.ndarray] = []
            return self._detect_ahead(frames, out, info), out, info
        self._warn_whole_frame(dataset)
        return iter(frames), None, {"source": "whole frame"}

    def _detect_ahead(self, frames: Iterable[np.ndarray], out: list, info: dict) -> Iterator[np.ndarray]:
        it = iter(frames)
        last: Optional[np.ndarray] = None
        while True:
            batch = list(islice(it, self.detector.batch_size))
            if not batch:
                return
            for img, box in zip(batch, self.detector.detect(batch)):
                if box is None:  # no person above threshold: keep the last person box, else whole frame
                    info["frames_without_person"] += 1
                    h, w = img.shape[:2]
                    box = last if last is not None else np.array([0, 0, w, h], np.float32)
                else:
                    last = box
                out.append(box)
            info["frames"] += len(batch)
            yield from batch

    def _warn_whole_frame(self, dataset: Optional[DatasetAdapter]) -> None:
        if self._warned:
            return
        self._warned = True
        name = getattr(dataset, "name", "this dataset")
        msg = (f"HRNet runs on WHOLE FRAMES for clips of {name} without person boxes: the dataset "
               "supplies none for them (FineGym: -o boxes=PATH) and no --person-detector is set. "
               "Poses of small or off-centre people will be poor. (Warned once per run.)")
        warnings.warn(msg, WholeFrameBoxesWarning, stacklevel=2)

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()


_DEFAULT: Optional[PersonBoxes] = None


def default_person_boxes() -> PersonBoxes:
    """The chain for pose sources built without one (dataset boxes, else whole frame; warns once
    per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PersonBoxes()
    return _DEFAULT


class PoseWithPersonBoxes(PoseSource):
    """A frame-based pose source plus its :class:`PersonBoxes` chain (``.person_boxes``).

    ``estimate_track`` streams frames through ``.person_boxes`` before ``estimate``; everything else
    is the wrapped source's, except that a detector's identity joins the pose identity.
    """

    def __init__(self, inner: PoseSource, person_boxes: PersonBoxes):
        self.inner = inner
        self.person_boxes = person_boxes
        self.name = inner.name
        self.needs_frames = inner.needs_frames
        self.skeleton = inner.skeleton

    def identity(self) -> dict:
        ident = dict(self.inner.identity())
        det = self.person_boxes.identity()
        if det is not None:
            ident["person_detector"] = det
        return ident

    def estimate(self, clip: ClipRecord, frames, boxes, dataset: DatasetAdapter) -> PoseTrack:
        return self.inner.estimate(clip, frames, boxes, dataset)

    def clip_info(self, clip: ClipRecord) -> dict:
        return self.inner.clip_info(clip)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.person_boxes.close()

    def __getattr__(self, name: str):  # e.g. HRNet's .model, .estimate_images, .batch_size
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def with_person_boxes(pose: PoseSource, detector: Optional[str] = None, checkpoint: Optional[str] = None,
                      device: str = "cpu", score_thr: float = DEFAULT_SCORE_THR,
                      batch_size: int = 8) -> PoseWithPersonBoxes:
    """Wrap a frame-based pose source with the chain; builds (checks) the detector when asked."""
    if detector is None and checkpoint:
        raise ValueError("--detector-checkpoint given without --person-detector")
    det = MMDetPersonDetector(detector, checkpoint, device=device, score_thr=score_thr,
                              batch_size=batch_size) if detector else None
    return PoseWithPersonBoxes(pose, PersonBoxes(det))
