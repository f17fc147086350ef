"""What a training run says while it runs, at a level the command line chooses.

* :class:`LoggingRunner`: mmengine's Runner whose ``MMLogger`` prints through Python's ``logging``
  (logger ``mmengine``) instead of to stdout, each INFO record as DEBUG: its environment dump, the
  config, the hook table and the per-iteration lines are there at ``-v`` and in the run's own log
  file (``<work dir>/<time>/<time>.log``, everything at INFO, unchanged), not on the console.
* :class:`EpochLogHook`: one line per reported epoch (:func:`report_epochs`: the first, about ten
  spread over the run, every validated one, the last): epoch, mean loss, lr, seconds per epoch,
  ETA and the validation's numbers, on logger ``stages.train.progress`` at INFO.
* :func:`setup_line`: the run's settings in one line (model, frames, schedule, data, device).
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import time
from typing import Any, Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import Runner

from stages.durations import duration_text
from stages.registry import HOOKS
from stages.stderr_handler import CurrentStderrHandler

log = logging.getLogger("stages.train.progress")


class _ToLogging(CurrentStderrHandler):
    """Hands an MMLogger record to Python's ``mmengine`` logger, INFO and below as DEBUG. A
    StreamHandler only because mmengine's MLflow backend looks at its logger's handlers' streams;
    it writes nothing itself."""
    def emit(self, record: logging.LogRecord) -> None:
        rec = logging.makeLogRecord(copy.copy(record.__dict__))  # the file handler keeps the original
        if rec.levelno <= logging.INFO:
            rec.levelno, rec.levelname = logging.DEBUG, "DEBUG"
        rec.name = "mmengine"
        target = logging.getLogger("mmengine")
        if target.isEnabledFor(rec.levelno):
            target.handle(rec)


def bridge_mmlogger(logger: logging.Logger) -> logging.Logger:
    """Replace an MMLogger's console handler (stdout) by :class:`_ToLogging` at the same level
    (mmengine sets it to ERROR on ranks other than 0); its file handler stays."""
    for h in list(logger.handlers):
        if type(h) is logging.StreamHandler:  # not the FileHandler (a StreamHandler subclass)
            bridge = _ToLogging()
            bridge.setLevel(h.level)
            for f in h.filters:
                bridge.addFilter(f)
            logger.handlers[logger.handlers.index(h)] = bridge
    return logger


class LoggingRunner(Runner):
    """mmengine's :class:`~mmengine.runner.Runner`, logging through :func:`bridge_mmlogger`; what
    mmengine prints to stdout while it loads a checkpoint ("Loads checkpoint by local backend ...")
    is logged at DEBUG instead (stdout carries a command's results, e.g. ``--json``)."""

    def build_logger(self, log_level: Any = "INFO", log_file: Optional[str] = None, **kwargs):
        return bridge_mmlogger(super().build_logger(log_level=log_level, log_file=log_file, **kwargs))

    def load_checkpoint(self, *args, **kwargs):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            checkpoint = super().load_checkpoint(*args, **kwargs)
        for line in printed.getvalue().splitlines():
            logging.getLogger("mmengine").debug(line)
        return checkpoint


def report_epochs(max_epochs: int, val_interval: int = 0) -> list[int]:
    """The epochs :class:`EpochLogHook` reports: the first, every ``ceil(max_epochs / 10)``-th, every
    validated one (``val_interval``; 0: none during training) and the last."""
    stride = max(1, math.ceil(max_epochs / 10))
    out = {1, max_epochs}
    out.update(e for e in range(1, max_epochs + 1) if e % stride == 0)
    if val_interval > 0:
        out.update(e for e in range(1, max_epochs + 1) if e % val_interval == 0)
    return sorted(out)


@HOOKS.register_module()
class EpochLogHook(Hook):
    """One log line per reported epoch (:func:`report_epochs`), on rank 0::

        epoch 4/40: loss 1.234, lr 1.98e-03, 11.9 s/epoch, eta 7m12s
        epoch 10/40: loss 0.812, lr 1.71e-03, 11.8 s/epoch, eta 5m54s; val top-1 45.00, top-5 90.00, mean class 44.00
    """

    priority = "LOW"

    def __init__(self):
        self.losses: list[float] = []
        self.epoch_start = 0.0
        self.seconds: list[float] = []  # per epoch of this segment, validation included
        self.pending: Optional[str] = None
        self.pending_epoch = 0

    def before_train_epoch(self, runner) -> None:
        self.losses = []
        self.epoch_start = time.monotonic()

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Optional[dict] = None) -> None:
        loss = (outputs or {}).get("loss")
        if loss is not None:
            self.losses.append(float(loss.detach()) if hasattr(loss, "detach") else float(loss))

    def after_train_epoch(self, runner) -> None:
        n = runner.epoch + 1  # mmengine counts the epoch after this hook
        loop = runner.train_loop
        will_val = (runner.val_loop is not None and n >= getattr(loop, "val_begin", 1)
                    and (n % loop.val_interval == 0 or n == runner.max_epochs))
        lr = None
        try:
            lrs = runner.optim_wrapper.get_lr()
            lr = float(next(iter(lrs.values()))[0])
        except Exception:  # noqa: BLE001  (a line without lr rather than no line)
            pass
        loss = sum(self.losses) / len(self.losses) if self.losses else float("nan")
        parts = [f"epoch {n}/{runner.max_epochs}: loss {loss:.3f}"] + ([f"lr {lr:.2e}"] if lr is not None else [])
        self.pending, self.pending_epoch = ", ".join(parts), n
        if not will_val:
            self._emit(runner, n)

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        if self.pending is None or self.pending_epoch != runner.epoch:
            return
        m = metrics or {}
        names = (("top1", "top-1"), ("top5", "top-5"), ("mean_class_acc", "mean class"))
        val = ", ".join(f"{label} {float(m[k]):.2f}" for k, label in names if k in m)
        self._emit(runner, runner.epoch, f"; val {val}" if val else "")

    def _emit(self, runner, n: int, tail: str = "") -> None:
        self.seconds.append(time.monotonic() - self.epoch_start)
        line, self.pending = self.pending, None
        val_interval = runner.train_loop.val_interval if runner.val_loop is not None else 0
        if get_rank() != 0 or n not in report_epochs(runner.max_epochs, val_interval):
            return
        per = sum(self.seconds) / len(self.seconds)
        left = per * (runner.max_epochs - n)
        log.info("%s, %.1f s/epoch%s%s", line, per, f", eta {duration_text(left)}" if n < runner.max_epochs else "", tail)


def setup_line(cfg, entry, model, train_ds, test_ds, device: str, world: int = 1) -> str:
    """The run's settings in one line: model and backbone, frames, schedule, data, device."""
    from stages.train.schedule import epoch_coverage_note

    t, m = cfg.train, cfg.model
    clip = m.clip
    weights = "pretrained" if (clip.get("pretrained") or clip.get("pretrained_path")) else "random weights"
    frozen = "frozen" if clip.get("frozen", True) else "trained"
    mods = "+".join(m.get("modalities") or [])
    frames = []
    if "video" in (m.get("modalities") or []):
        frames.append(f"{m.num_video_frames} video")
    if "pose" in (m.get("modalities") or []):
        frames.append(f"{m.num_pose_frames} pose")
    params = sum(p.numel() for p in model.tunable_parameters()) / 1e6
    sched = (f"{t.max_epochs} epochs (warm-up {t.warmup_epochs}), batch {t.batch_size}"
             + (f" x {t.accumulative_counts}" if t.accumulative_counts > 1 else "")
             + (f" x {world} processes" if world > 1 else "")
             + f", AdamW lr {t.lr:g} wd {t.weight_decay:g}, seed {t.seed}")
    amp = t.amp if (t.amp and device == "cuda") else "fp32"
    n_train = len(train_ds) if train_ds is not None else 0
    covered = epoch_coverage_note(n_train, t.batch_size, world) if n_train else ""
    return (f"{m.type} {clip.arch} ({weights}, {frozen}), {mods}, {' + '.join(frames) or 'no'} frames, "
            f"{params:.2f} M tunable; {sched}; {entry.dataset} {n_train} train{covered} / {len(test_ds)} "
            f"{test_ds.split} clips{failed_clips_note(entry, train_ds, test_ds)}, {len(entry.classes)} classes"
            f"{classes_without_clips_note(entry.classes, train_ds, test_ds)}; {device} {amp}")


def classes_without_clips_note(classes: list, train_ds, test_ds, shown: int = 3) -> str:
    """The classes the run's train split has no clip of (trained as targets never seen: their
    score is only pushed down) and those its test split has none of (in the mean class accuracy
    only when predicted, as 0), or nothing."""
    parts = []
    for what, ds in (("train", train_ds), (getattr(test_ds, "split", "test"), test_ds)):
        if ds is None:
            continue
        have = {int(r["label"]) for r in ds.rows}
        lacking = [i for i in range(len(classes)) if i not in have]
        if lacking:
            named = ", ".join(f"{i} {classes[i]!r}" for i in lacking[:shown]) + (" ..." if len(lacking) > shown else "")
            parts.append(f"{len(lacking)} without a {what} clip: {named}")
    return f" ({'; '.join(parts)})" if parts else ""


def failed_clips_note(entry, train_ds, test_ds) -> str:
    """How many clips of the run's splits stage one failed (left out of them), and where they are listed."""
    splits = {d.split for d in (train_ds, test_ds) if d is not None}
    rows = {r["uid"]: r for r in entry.clips(done_only=False)}
    n = sum(1 for uid in entry.failures() if rows.get(uid, {}).get("split") in splits)
    return f" ({n} failed in stage one, left out: `pipeline cache info {entry.key[:12]}`)" if n else ""
