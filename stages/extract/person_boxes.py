"""Person boxes for top-down pose (HRNet): dataset boxes -> an mmdet person detector -> whole frame.

The chain, per clip:

1. boxes the dataset supplies (:meth:`DatasetAdapter.person_boxes`: FineGym's ground-truth athlete
   boxes through the adapter option ``boxes=PATH``, the demo's boxes), as mmaction2 uses them.
   They are checked against the decoded frames (:func:`check_dataset_boxes`: pixels of these
   frames, not normalized, inside the picture; frames without a box take the nearest frame's box,
   noted) and one is used per decoded frame: when the dataset gives as many boxes as the header
   promises frames they stream with the frames; otherwise the frames are held until the clip is
   decoded and each takes the box nearest in time (noted), or, when the counts differ by more
   than 2x, the clip is refused (:class:`PersonBoxError`, the clip named). Never a silent
   whole-frame box for a frame the dataset's boxes do not reach;
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


class DetectorWeightsError(ValueError):
    """A ``--detector-checkpoint`` that is damaged or does not fit the configured detector."""


def detector_file_problem(path: Path, sha256: str) -> Optional[str]:
    """What is wrong with a detector checkpoint file as bytes (zip CRCs, a release name's sha256
    prefix), else None."""
    from stages.torch_files import name_hash_problem, zip_problem

    return zip_problem(path) or name_hash_problem(path, sha256)


def load_detector_weights(model, path: Path, sha256: str) -> None:
    """``path``'s weights into ``model``, every tensor or none: checked whole first (zip CRCs, an
    OpenMMLab release name's sha256 prefix), read with ``torch.load(weights_only=True)``, a DDP
    ``module.`` prefix removed, and refused naming what is missing, left over or misshapen. The
    class names in its ``meta`` become the model's ``dataset_meta``, as ``init_detector`` does."""
    import torch

    from stages.torch_files import safe_globals, weights_only_refusal

    why = detector_file_problem(path, sha256)
    if why:
        raise DetectorWeightsError(f"--detector-checkpoint {path}: {why}")
    try:
        with safe_globals():
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise DetectorWeightsError(f"--detector-checkpoint {path}: torch.load(weights_only=True) cannot read it "
                                   f"({weights_only_refusal(e)})") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise DetectorWeightsError(f"--detector-checkpoint {path}: holds no state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        raise DetectorWeightsError(
            f"--detector-checkpoint {path} does not fit the configured detector: {len(missing)} tensors missing "
            f"{missing[:3]}, {len(unexpected)} not in the model {unexpected[:3]}, {len(shape)} of another shape "
            f"{shape[:3]}. Give the checkpoint of --person-detector's config (or that checkpoint's config)")
    model.load_state_dict(state, strict=False)  # every tensor checked above; BN counters torch fills in
    meta = ckpt.get("meta") or {}
    if isinstance(meta.get("dataset_meta"), dict):
        model.dataset_meta = {k.lower(): v for k, v in meta["dataset_meta"].items()}
    elif "CLASSES" in meta:
        model.dataset_meta = {"classes": meta["CLASSES"]}


class DetectorUnavailable(RuntimeError):
    """A person detector was asked for but cannot be built or run here."""


class WholeFrameBoxesWarning(UserWarning):
    """HRNet runs on the whole frame: neither the dataset nor a detector gave person boxes."""


class PersonBoxError(RuntimeError):
    """A dataset's boxes do not fit the clip (the message names it): recorded as its failure."""


# A dataset's box count may differ from the decoded frames by this factor at most (another frame
# rate); beyond it the boxes were made for another cut and are refused.
MAX_BOX_COUNT_RATIO = 2.0
# A box may reach this far (fraction of the frame) outside the picture; farther, the boxes were
# made for another resolution or orientation.
MAX_BOX_OVERHANG = 0.25


def check_dataset_boxes(clip_id: str, boxes, frame_size: Optional[tuple[int, int]]) -> tuple[np.ndarray, list[str]]:
    """A dataset's ``(T, 4)`` xyxy boxes checked against the decoded ``(height, width)``; NaN rows
    (frames without a box) filled from the nearest frame. Returns the boxes and notes; raises
    :class:`PersonBoxError` naming the clip and the first offending frame."""
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4 or len(arr) == 0:
        raise PersonBoxError(f"clip {clip_id}: the dataset's person boxes have shape {arr.shape}, expected (T, 4)")
    notes = []
    ok = np.isfinite(arr).all(axis=1)
    if not ok.any():
        raise PersonBoxError(f"clip {clip_id}: the dataset gives no finite person box")
    if not ok.all():
        idx = np.flatnonzero(ok)
        nearest = idx[np.abs(np.arange(len(arr))[:, None] - idx[None, :]).argmin(axis=1)]
        notes.append(f"dataset boxes: {int((~ok).sum())} of {len(arr)} frames without a box take the nearest "
                     "frame's box")
        arr = arr[nearest]
    bad = np.flatnonzero((arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1]))
    if len(bad):
        raise PersonBoxError(f"clip {clip_id}: person box of frame {bad[0]} {arr[bad[0]].tolist()} is empty "
                             "(expected x1 < x2, y1 < y2)")
    if frame_size is not None:
        h, w = frame_size
        if max(h, w) > 8 and float(np.abs(arr).max()) <= 1.5:
            raise PersonBoxError(f"clip {clip_id}: person boxes lie within [0, 1.5] (e.g. {arr[0].tolist()}): "
                                 f"normalized coordinates? expected pixels of the {w}x{h} frames")
        mx, my = MAX_BOX_OVERHANG * w, MAX_BOX_OVERHANG * h
        out = np.flatnonzero((arr[:, 0] < -mx) | (arr[:, 1] < -my) | (arr[:, 2] > w + mx) | (arr[:, 3] > h + my)
                             | (arr[:, 0] >= w) | (arr[:, 1] >= h) | (arr[:, 2] <= 0) | (arr[:, 3] <= 0))
        if len(out):
            raise PersonBoxError(f"clip {clip_id}: person box of frame {out[0]} {arr[out[0]].tolist()} lies outside "
                                 f"the {w}x{h} decoded frames: boxes for another resolution or orientation?")
    return arr, notes


def box_for_frame(j: int, given: int, frames: int) -> int:
    """Index of the box nearest in time to decoded frame ``j`` when ``given`` boxes span ``frames``."""
    return min(int((j + 0.5) * given / frames), given - 1)


def dataset_box_notes(clip_id: str, info: dict, decoded: int) -> list[str]:
    """After decoding: whether the dataset's boxes met the frames one to one (notes), or refuse."""
    given = info["given"]
    notes = list(info.get("notes", ()))
    if given == decoded:
        return notes
    if info["aligned"] == "by time":
        return notes + [f"dataset boxes: {given} for {decoded} decoded frames; each frame took the box nearest in time"]
    # streamed one per frame because the header promised as many frames as boxes
    if not 1 / MAX_BOX_COUNT_RATIO <= given / decoded <= MAX_BOX_COUNT_RATIO:
        raise PersonBoxError(f"clip {clip_id}: the dataset gives {given} person boxes, the clip decoded {decoded} "
                             "frames: boxes for another cut?")
    extra = (f"the last {decoded - given} frames took the last box" if decoded > given
             else f"the last {given - decoded} boxes were not used")
    return notes + [f"dataset boxes: {given} for {decoded} decoded frames (the header promised {given}): one box per "
                    f"frame from the first; {extra}"]


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
        # whole, before any clip (the model and its strict load come with the first clip's frames)
        why = detector_file_problem(self.checkpoint, self.checkpoint_sha256)
        if why:
            raise DetectorWeightsError(f"--detector-checkpoint {self.checkpoint}: {why}")
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

            # built without weights, then loaded here: strictly and with weights_only=True (init_detector's
            # mmengine load_checkpoint is strict=False, so another detector's file half-loads with a log line)
            model = init_detector(str(self.config_path), None, device="cpu")
            load_detector_weights(model, self.checkpoint, self.checkpoint_sha256)
            model.to(self.device)
            pipeline = get_test_pipeline_cfg(model.cfg.copy())
            pipeline[0].type = "mmdet.LoadImageFromNDArray"
            self._pipeline = Compose(pipeline)
        except DetectorWeightsError:
            raise
        except Exception as e:  # mmcv-lite: ModuleNotFoundError mmcv._ext, missing nms/RoIAlign kernels
            raise DetectorUnavailable(f"cannot build the person detector {self.config_name}: "
                                      f"{type(e).__name__}: {e}. {FULL_MMCV_HINT}") from e
        return model

    def detect(self, images: list[np.ndarray], top: int = 1) -> list[Optional[np.ndarray]]:
        """Per RGB uint8 image: the best person box ``(4,)`` xyxy above ``score_thr``, or None;
        ``top`` > 1: the best ``top`` person boxes ``(m, 4)`` (m <= top, best first, m = 0: none)."""
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
        if top > 1:
            return [top_person_boxes(r.pred_instances, self.score_thr, top) for r in results]
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


def top_person_boxes(instances: Any, score_thr: float, top: int, label: int = PERSON_LABEL) -> np.ndarray:
    """The ``top`` highest-scoring ``label`` boxes of one image's ``pred_instances`` above
    ``score_thr``, best first: ``(m, 4)``, m <= top (ties: the lower index first)."""
    def arr(x):
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    labels, scores, bboxes = arr(instances.labels), arr(instances.scores), arr(instances.bboxes)
    keep = np.flatnonzero((labels == label) & (scores >= score_thr))
    keep = keep[np.argsort(-scores[keep], kind="stable")][:top]
    return bboxes[keep].astype(np.float32).reshape(-1, 4)


# -- the chain ---------------------------------------------------------------------------------------
class PersonBoxes:
    """Where a clip's person boxes come from. One instance per extraction run (per process).

    ``persons`` > 1 (stage-one setting): a detector gives up to that many boxes per frame (each
    element of the boxes list is then ``(m, 4)``); the dataset's boxes and the whole frame are one
    person per frame, said in ``info["persons_note"]`` (the other people are zero-score)."""

    def __init__(self, detector: Optional[MMDetPersonDetector] = None, persons: int = 1):
        self.detector = detector
        self.persons = int(persons)
        self._warned = False

    def identity(self) -> Optional[dict]:
        """The detector's identity (goes into the entry key), or None without a detector."""
        return self.detector.identity() if self.detector is not None else None

    def stream(self, clip: ClipRecord, dataset: DatasetAdapter, frames: Iterable[np.ndarray],
               expected_frames: Optional[int] = None, frame_size: Optional[tuple[int, int]] = None,
               ) -> tuple[Iterator[np.ndarray], Optional[list], dict]:
        """``(frames, boxes, info)`` for a top-down pose source; ``frames`` is consumed lazily.

        ``boxes`` is None (whole frame) or a list filled ahead of the frames yielded: box ``i``
        exists when frame ``i`` comes out (the boxes used, one per decoded frame).
        ``info["source"]`` is what the clip used: ``"dataset"``, ``"detector"`` or ``"whole frame"``
        (final once ``frames`` is exhausted). ``expected_frames`` (what the header promises) and
        ``frame_size`` (decoded height, width) are for checking and aligning a dataset's boxes.
        """
        frames, boxes, info = self._stream(clip, dataset, frames, expected_frames, frame_size)
        if self.persons > 1 and info["source"] != "detector":
            info["persons_note"] = (f"persons={self.persons}: the person boxes ({info['source']}) are one per frame, "
                                    f"so HRNet sees one person; persons 2..{self.persons} are zero-score (a "
                                    "--person-detector gives several)")
        return frames, boxes, info

    def _stream(self, clip: ClipRecord, dataset: DatasetAdapter, frames: Iterable[np.ndarray],
                expected_frames: Optional[int], frame_size: Optional[tuple[int, int]],
                ) -> tuple[Iterator[np.ndarray], Optional[list], dict]:
        boxes = dataset.person_boxes(clip) if dataset is not None else None
        if boxes is not None:
            checked, notes = check_dataset_boxes(clip.clip_id, boxes, frame_size)
            one_to_one = expected_frames is not None and len(checked) == expected_frames
            info = {"source": "dataset", "given": len(checked), "notes": notes,
                    "aligned": "one per frame" if one_to_one else "by time"}
            out: list[np.ndarray] = []
            gen = self._dataset_stream if one_to_one else self._dataset_by_time
            return gen(clip.clip_id, frames, checked, out), out, info
        if self.detector is not None:
            info = {"source": "detector", "detector": self.detector.config_name, "frames": 0,
                    "frames_without_person": 0}
            out: list[np.ndarray] = []
            return self._detect_ahead(frames, out, info), out, info
        self._warn_whole_frame(dataset)
        return iter(frames), None, {"source": "whole frame"}

    @staticmethod
    def _dataset_stream(clip_id: str, frames: Iterable[np.ndarray], boxes: np.ndarray,
                        out: list) -> Iterator[np.ndarray]:
        for j, img in enumerate(frames):
            out.append(boxes[min(j, len(boxes) - 1)])
            yield img

    @staticmethod
    def _dataset_by_time(clip_id: str, frames: Iterable[np.ndarray], boxes: np.ndarray,
                         out: list) -> Iterator[np.ndarray]:
        # the count differs from what the header promised: hold the clip's frames until it is
        # decoded, so every frame takes the box nearest in time
        held = list(frames)
        n, given = len(held), len(boxes)
        if n and not 1 / MAX_BOX_COUNT_RATIO <= given / n <= MAX_BOX_COUNT_RATIO:
            raise PersonBoxError(f"clip {clip_id}: the dataset gives {given} person boxes, the clip decoded {n} "
                                 "frames: boxes for another cut?")
        for j, img in enumerate(held):
            out.append(boxes[box_for_frame(j, given, n)])
            yield img

    def _detect_ahead(self, frames: Iterable[np.ndarray], out: list, info: dict) -> Iterator[np.ndarray]:
        """The frames, passed on while their person boxes go into ``out`` a detector batch ahead:
        the best box ``(4,)`` per frame, or with ``persons`` > 1 up to that many ``(m, 4)``, best
        first. A frame without a person keeps the previous frame's boxes, else the whole frame."""
        people = self.persons > 1
        it = iter(frames)
        last: Optional[np.ndarray] = None
        while True:
            batch = list(islice(it, self.detector.batch_size))
            if not batch:
                return
            for img, found in zip(batch, self.detector.detect(batch, top=self.persons)):
                if people:
                    found = np.asarray(found if found is not None else [], np.float32).reshape(-1, 4)
                if found is None or len(found) == 0:
                    info["frames_without_person"] += 1
                    h, w = img.shape[:2]
                    whole = np.array([0, 0, w, h], np.float32)
                    found = last if last is not None else (whole[None] if people else whole)
                else:
                    last = found
                out.append(found)
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

    def weights(self) -> Optional[dict]:
        return self.inner.weights()

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
                      batch_size: int = 8, persons: int = 1) -> PoseWithPersonBoxes:
    """Wrap a frame-based pose source with the chain (up to ``persons`` boxes per frame from a
    detector); builds (checks) the detector when asked."""
    if detector is None and checkpoint:
        raise ValueError("--detector-checkpoint given without --person-detector")
    det = MMDetPersonDetector(detector, checkpoint, device=device, score_thr=score_thr,
                              batch_size=batch_size) if detector else None
    return PoseWithPersonBoxes(pose, PersonBoxes(det, persons))
