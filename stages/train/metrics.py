"""Top-1, Top-5, mean class accuracy, the fine-pair top-1 (demo) and the confusion matrix, as an
mmengine metric."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from stages.registry import METRICS


def evaluator_config(test_ds) -> dict:
    """The Runner's evaluator of a test dataset (over an entry): Top-1/5, mean class accuracy, and
    the fine pairs' Top-1 where the dataset names fine pairs."""
    return dict(type="PeVLClassificationMetric", num_classes=len(test_ds.classes),
                fine_classes=fine_pair_classes(test_ds.entry.attrs.get("dataset_meta")))


def fine_pair_classes(dataset_meta: Optional[dict]) -> Optional[list[int]]:
    """The class ids of a dataset's fine pairs, from its cache entry's ``dataset_meta``: the demo's
    ``aliasing_pairs`` (pairs that 16 segment-middle frames cannot tell apart, docs/demo.md), or
    any dataset's ``fine_pairs``; a pair is a list (or ``{"classes": [...]}``) of class ids or of
    class keys listed in ``class_keys``. None when the dataset names none; a key that is not a
    class is an error (it would silently shrink the metric)."""
    meta = dataset_meta or {}
    pairs = meta.get("fine_pairs") or meta.get("aliasing_pairs") or []
    keys = {k: i for i, k in enumerate(meta.get("class_keys") or [])}
    ids = set()
    for p in pairs:
        for c in (p["classes"] if isinstance(p, dict) else p):
            if isinstance(c, str) and not c.isdigit():
                if c not in keys:
                    raise ValueError(f"fine pair names class {c!r}, which is not among the dataset's class_keys")
                ids.add(keys[c])
            else:
                ids.add(int(c))
    return sorted(ids) or None


def classification_metrics(scores: np.ndarray, labels: np.ndarray, num_classes: Optional[int] = None,
                           fine_classes: Optional[Sequence[int]] = None) -> dict:
    """Percentages: ``top1``, ``top5`` (top-min(5, C)), ``mean_class_acc`` (mmaction2's: the mean
    of each class' top-1 recall over the classes present in ``labels`` or predicted, a predicted
    class absent from ``labels`` counting 0; with every class in ``labels``, the mean over all),
    plus ``confusion`` (C x C counts, rows = true class) and ``per_class_acc`` (None for classes
    absent from ``labels``). With
    ``fine_classes`` also ``fine_pair_top1``: top-1 (argmax over all classes) over the clips whose
    true class is one of them (None if there are none)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    bad = np.isnan(scores).any(1) if scores.ndim == 2 else np.zeros(0, bool)
    if bad.any():  # argmax over NaN is class 0: top-1 at chance, a plausible weak model
        raise ValueError(f"{int(bad.sum())} of {len(scores)} clips have NaN class scores: the model's weights are "
                         "not finite (a run that diverged), so there is nothing to measure")
    c = int(num_classes or scores.shape[1])
    n = len(labels)
    if n == 0:
        empty = dict(top1=0.0, top5=0.0, mean_class_acc=0.0, confusion=np.zeros((c, c), np.int64),
                     per_class_acc=[None] * c, num_samples=0)
        return empty | ({"fine_pair_top1": None} if fine_classes else {})
    # argmax takes the first maximum: ties (classes with one shared text) go to the lower class id
    pred = scores.argmax(1)
    k = min(5, c)
    # stable top-k: sort by (-score, class id)
    order = np.lexsort((np.broadcast_to(np.arange(c), scores.shape), -scores), axis=1)[:, :k]
    top5 = (order == labels[:, None]).any(1)
    conf = np.zeros((c, c), dtype=np.int64)
    np.add.at(conf, (labels, pred), 1)
    support = conf.sum(1)
    per_class = [float(conf[i, i] / support[i] * 100) if support[i] else None for i in range(c)]
    # mmaction2's mean_class_accuracy (the code base AIM and PoseC3D report with): over the classes
    # that are true or predicted, a predicted class with no clip of its own counting 0
    counted = [a if a is not None else 0.0 for a, hit in zip(per_class, support + conf.sum(0)) if hit]
    res = dict(top1=float((pred == labels).mean() * 100), top5=float(top5.mean() * 100),
               mean_class_acc=float(np.mean(counted)) if counted else 0.0, confusion=conf,
               per_class_acc=per_class, num_samples=n, predictions=pred)
    if fine_classes:
        on = np.isin(labels, np.asarray(list(fine_classes), dtype=np.int64))
        res["fine_pair_top1"] = float((pred[on] == labels[on]).mean() * 100) if on.any() else None
    return res


def metric_row(res: dict) -> dict:
    """The accuracy fields of a results row (percent, 4 decimals): top1, top5, mean_class_acc and,
    for a dataset with fine pairs (the demo), fine_pair_top1."""
    row = {k: round(res[k], 4) for k in ("top1", "top5", "mean_class_acc")}
    if "fine_pair_top1" in res:
        row["fine_pair_top1"] = None if res["fine_pair_top1"] is None else round(res["fine_pair_top1"], 4)
    return row


@METRICS.register_module()
class PeVLClassificationMetric(BaseMetric):
    """Collects each clip's view-averaged class scores; computes :func:`classification_metrics`.

    The full result of the last evaluation (confusion matrix, per-class accuracy, per-clip
    predictions) stays in :attr:`last_result` on the process that computed it (rank 0) so the
    caller can save it.
    """

    default_prefix: Optional[str] = ""  # metric keys stay top1 / top5 / mean_class_acc

    def __init__(self, num_classes: int, fine_classes: Optional[Sequence[int]] = None, collect_device: str = "cpu",
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = int(num_classes)
        self.fine_classes = list(fine_classes) if fine_classes else None
        self.last_result: Optional[dict] = None

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            sc = s["scores"]
            sc = sc.numpy() if isinstance(sc, torch.Tensor) else np.asarray(sc)
            self.results.append(dict(scores=sc.astype(np.float32), label=int(s["label"]), index=int(s["index"])))

    def compute_metrics(self, results: list) -> dict:
        # DDP pads the last batch with repeats; mmengine already cut results to the dataset size,
        # but a clip seen twice (odd sizes) is still counted once, by index.
        seen, uniq = set(), []
        for r in results:
            if r["index"] not in seen:
                seen.add(r["index"])
                uniq.append(r)
        uniq.sort(key=lambda r: r["index"])
        scores = np.stack([r["scores"] for r in uniq]) if uniq else np.zeros((0, self.num_classes))
        labels = np.array([r["label"] for r in uniq], dtype=np.int64)
        res = classification_metrics(scores, labels, self.num_classes, self.fine_classes)
        res["indices"] = [r["index"] for r in uniq]
        res["scores"] = scores  # (N, C) view-averaged, in ``indices`` order (predictions.json keeps them)
        self.last_result = res
        return {k: v for k, v in metric_row(res).items() if v is not None}
