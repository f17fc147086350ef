"""The Runner hooks of a training run: which epoch was validated last, which CLIP weights a
checkpoint belongs to, the run a checkpoint comes from (what ``pipeline predict`` needs), and the
training time over the segments of a resumed run."""
from __future__ import annotations

import time

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from stages.registry import HOOKS
from stages.train.checkpoints import backbone_differences

#: the checkpoint ``meta`` key of :class:`RunRecordHook`'s record
RUN_RECORD_KEY = "run_record"
RUN_RECORD_VERSION = 1


@HOOKS.register_module()
class RecordValHook(Hook):
    """Remembers after which training epoch the last validation ran (same on every rank)."""

    priority = "LOWEST"

    def __init__(self):
        self.last_val_epoch = -1

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.last_val_epoch = runner.epoch


@HOOKS.register_module()
class BackboneCheckpointHook(Hook):
    """Names the CLIP weights in every checkpoint (which holds the trainable state only when the
    backbone is frozen pretrained weights), and refuses to load a checkpoint trained on others."""

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})["backbone"] = self._model(runner).backbone_identity()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = (checkpoint.get("meta") or {}).get("backbone")
        if saved is None:  # written before checkpoints named their backbone: it holds all weights
            return
        differ = backbone_differences(saved, self._model(runner).backbone_identity())
        if differ:
            raise ValueError(f"the checkpoint was trained on other CLIP weights ({'; '.join(differ)}): its adapters "
                             "and heads only make sense on those weights (set model.clip.* to match)")


def run_record(cfg, entry) -> dict:
    """What a checkpoint needs to be used on new videos without its work dir or the cache: the
    experiment and variant, the resolved run config, and the record of the cache entry it was
    trained on (:class:`stages.data.entry_record.EntryRecord`: stage one's request and settings,
    the pose source's identity, the class texts). Plain JSON."""
    from stages.data.entry_record import EntryRecord, plain_json
    from stages.nested_config import to_plain

    return plain_json({"version": RUN_RECORD_VERSION, "experiment": cfg.get("exp_name"),
                       "variant": cfg.get("variant"), "run_config": to_plain(cfg),
                       "entry": EntryRecord.from_entry(entry).to_dict()})


@HOOKS.register_module()
class RunRecordHook(Hook):
    """Writes :func:`run_record` into every checkpoint's ``meta`` (``meta["run_record"]``), and the
    clips it trains on (``meta["train_clips"]``, :func:`train_clips_record`) where given."""

    def __init__(self, record: dict, train_clips: dict | None = None):
        self.record = record
        self.train_clips = train_clips

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.setdefault("meta", {})
        meta[RUN_RECORD_KEY] = self.record
        if self.train_clips is not None:
            meta[TRAIN_CLIPS_KEY] = self.train_clips


#: the checkpoint ``meta`` key of the clips a run trains on
TRAIN_CLIPS_KEY = "train_clips"


def train_clips_record(rows, processes: int = 1) -> dict:
    """How many clips a run trains on and a digest of their ids in order (``rows``: the training
    dataset's plan rows), and over how many processes (torchrun's world size): a resume over other
    clips (an entry that lost some, read with ``--allow-partial``) or another process count would
    keep the old iterations per epoch (and batch per step) and data order."""
    from cache.digests import uids_digest

    uids = [r["uid"] for r in rows]
    return {"count": len(uids), "uids_sha256": uids_digest(uids), "processes": int(processes)}


@HOOKS.register_module()
class TrainTimeHook(Hook):
    """Training time summed over the segments of a resumed run: each checkpoint holds the seconds
    trained up to it (``meta.train_seconds``) and how many segments made it
    (``meta.train_segments``); resuming from one continues both. :meth:`total` is the run's
    training time so far (the time between the last checkpoint and a kill is not counted: those
    epochs are trained again)."""

    priority = "VERY_LOW"

    def __init__(self):
        self.before = 0.0
        self.segments = 1
        self.start: float | None = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get("meta") or {}
        if "train_seconds" in meta:  # a checkpoint of this run's earlier segment (only resuming loads one)
            self.before = float(meta["train_seconds"])
            self.segments = int(meta.get("train_segments", 1)) + 1

    def before_train(self, runner) -> None:
        self.start = time.monotonic()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.setdefault("meta", {})
        meta["train_seconds"] = round(self.total(), 1)
        meta["train_segments"] = self.segments

    def total(self) -> float:
        return self.before + (time.monotonic() - self.start if self.start is not None else 0.0)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """The global random generators in every checkpoint (``meta.rng_state``: torch's, the current CUDA
    device's, numpy's, Python's), set again when a run resumes from it, just before training goes
    on: dropout and stochastic depth (PGVT's head, PoseFormer) draw from torch's, and mmengine only
    seeds it again on resume, so a resumed run drew other masks than the uninterrupted one. (The
    data loaders draw from generators of their own: ``runner_kwargs``.) Under data parallelism every
    rank is seeded alike (``diff_rank_seed=False``), so rank 0's state is every rank's."""

    priority = "VERY_LOW"

    def __init__(self):
        self.pending = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        import random

        import numpy as np
        import torch

        kind, keys, pos, has_gauss, gauss = np.random.get_state()  # (keys as a tensor: what weights_only loads)
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        checkpoint.setdefault("meta", {})["rng_state"] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.pending = (checkpoint.get("meta") or {}).get("rng_state")  # (only a resume loads one here)

    def before_train(self, runner) -> None:
        import random

        import numpy as np
        import torch

        state, self.pending = self.pending, None
        if not state:
            return  # a fresh run, or a checkpoint of code that did not keep the state
        # (mmengine's resume maps the checkpoint to the run's device: the states come back as CUDA
        # tensors wherever CUDA is, and the setters take CPU byte tensors)
        torch.set_rng_state(state["torch"].cpu())
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(_as_tuples(state["python"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"].cpu())


def _as_tuples(x):
    """``random.setstate`` wants tuples where a round trip through a checkpoint may give lists."""
    return tuple(_as_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def _tensors(names: list[str]) -> str:
    """``N tensors: a, b, c, ...`` for a message."""
    return f"{len(names)} tensors: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (:class:`FiniteLossHook`)."""


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stops training at the first iteration whose loss is NaN or infinite.

    Nothing else notices: the optimiser turns every weight it touches into NaN (float16 training's
    GradScaler skips such steps instead: there it stops after :attr:`SCALED_PATIENCE` in a row), the scores argmax
    to class 0 (top-1 at chance, a plausible weak result), and the checkpoint hook keeps the NaN
    epochs in place of the last good one. Checked after every iteration (the logger already
    reads the loss back each iteration, so this costs no extra device sync) and before the
    checkpoint hook (priority), so no weights the bad step made are validated or saved. Under
    data parallelism the ranks agree first (one all-reduce of a flag), so all of them stop."""

    priority = "ABOVE_NORMAL"

    #: float16 training (``AmpOptimWrapper``'s GradScaler) skips a step whose gradients are not
    #: finite, so a few non-finite losses leave the weights as they were: it stops after this many
    #: in a row (then every step is skipped: nothing trains)
    SCALED_PATIENCE = 50

    def __init__(self, resume_from: str | None = None):
        self.streak = 0
        self.resume_from = resume_from

    def after_train_epoch(self, runner) -> None:
        """A step whose gradient was not finite while its loss was leaves NaN weights that the loss
        shows only at the next iteration: after the epoch's last step, the checkpoint hook (after
        this one) would save them in place of the last good checkpoint. Checked on every rank (the
        ranks agree on a flag), since the checkpoint is saved on rank 0 alone."""
        import os

        import torch
        from mmengine.dist import all_reduce, get_world_size

        from stages.train.checkpoints import LAST_CHECKPOINT

        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            return
        finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named])
        bad = [n for (n, _), ok in zip(named, finite.tolist()) if not ok]
        if get_world_size() > 1:
            flag = torch.tensor(float(bool(bad)), device=finite.device)
            all_reduce(flag, op="max")
            if flag.item() and not bad:
                bad = ["(not finite on another rank)"]
        if not bad:
            return
        try:  # the newest checkpoint before this epoch's
            last = open(os.path.join(runner.work_dir, LAST_CHECKPOINT)).read().strip()
        except OSError:
            last = None
        raise NonFiniteLossError(
            f"the weights after epoch {runner.epoch + 1} hold NaN or infinity ({_tensors(bad)}), though every loss "
            "was finite: a step's gradient was not finite. They were not saved; "
            + (f"the newest checkpoint, {last}, holds weights from before it. " if last else "no checkpoint was "
               "saved. ") + "Train again with a lower train.lr, or with train.clip_grad set")

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Every save, whenever it comes (``runner.default_hooks.checkpoint.by_epoch=False`` saves
        by iteration), buffers too, in a run of one process: mmengine calls this on rank 0 alone, so
        under data parallelism only :meth:`after_train_epoch`'s agreed check may stop the run."""
        from mmengine.dist import get_world_size

        from stages.train.checkpoints import non_finite_tensors

        if get_world_size() > 1:
            return
        bad = non_finite_tensors(checkpoint.get("state_dict") or {})
        if bad:
            raise NonFiniteLossError(
                f"the weights at epoch {runner.epoch + 1}, iteration {runner.iter} hold NaN or infinity "
                f"({_tensors(bad)}): not saved. Train again with a lower train.lr, or with train.clip_grad set")

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """``--resume`` from a checkpoint whose weights are not finite (saved before they were checked)
        would train on NaN: refused, naming the file."""
        from stages.train.checkpoints import non_finite_tensors

        bad = non_finite_tensors(checkpoint.get("state_dict") or {})
        if bad:
            raise NonFiniteLossError(
                f"--resume: checkpoint {self.resume_from or '(the newest)'} holds NaN or infinity ({_tensors(bad)}): "
                "the run that saved it diverged. Move it out of the folder to resume from the one before, or train "
                "again without --resume")

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        import torch
        from mmengine.dist import all_reduce, get_world_size

        terms = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in (outputs or {}).items()
                 if isinstance(v, (torch.Tensor, float, int))}
        bad = {k: float(v) for k, v in terms.items() if not torch.isfinite(torch.as_tensor(v)).all()}
        if get_world_size() > 1:
            loss = terms.get("loss")
            flag = torch.tensor(float(bool(bad)), device=loss.device if isinstance(loss, torch.Tensor) else "cpu")
            all_reduce(flag, op="max")
            if flag.item() and not bad:
                bad = {"loss": "not finite on another rank"}
        if not bad:
            self.streak = 0
            return
        self.streak += 1
        if hasattr(runner.optim_wrapper, "loss_scaler") and self.streak < self.SCALED_PATIENCE:
            return  # the scaler skipped this step and lowers its scale
        lrs = runner.optim_wrapper.get_lr() if hasattr(runner.optim_wrapper, "get_lr") else {}
        lr = next(iter(lrs.values()), [None])[0] if lrs else None
        last = runner.message_hub.get_info("last_ckpt")
        raise NonFiniteLossError(
            f"the training loss is not finite at epoch {runner.epoch + 1}, iteration {batch_idx + 1} "
            + (f"({self.streak} iterations in a row, float16 loss scaling skipping each) " if self.streak > 1 else "")
            + f"({', '.join(f'{k} {v}' for k, v in bad.items())}); training stopped before the weights this step "
            "made were validated or saved. "
            + (f"The newest checkpoint, {last}, holds weights from before it. " if last else "No checkpoint was saved. ")
            + "Usual causes: a learning rate too high for this model and batch"
            + (f" (the lr at this step: {lr:.3g}; train.lr sets it)" if isinstance(lr, float) else "")
            + ", or float16 overflow (train.amp); train again with a lower train.lr")
