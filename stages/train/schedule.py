"""The training schedule (``train`` of a run config) and its one mapping onto mmengine's Runner.

:class:`ScheduleSettings` holds every schedule key with its default: the ``xclip`` recipe
(docs/training.md says why): PeVL Sec. 4.1's AdamW, base lr 8e-6, weight decay 0.05, 50 epochs,
3 warm-up epochs then cosine to zero, read as X-CLIP's code uses a base lr: 8e-6 for CLIP's own
weights and ten times that for every new module, AdamW betas (0.9, 0.98), label smoothing 0.1,
mixup 0.8. Other recipes in ``configs/_base_/schedules/`` (``paper_text``, ``aim``) state only
what differs. :func:`runner_kwargs` is the one place our keys become mmengine's:

====================================  ===============================================================
``train.*``                           mmengine
====================================  ===============================================================
lr, betas, eps, weight_decay          ``optim_wrapper.optimizer`` (AdamW)
param_groups, no_decay                ``optim_wrapper.paramwise_cfg`` (named groups, their lr and decay
                                      multipliers, the kinds without decay:
                                      :mod:`stages.train.param_groups`,
                                      :class:`~stages.train.runner_model.TunableOptimWrapperConstructor`)
label_smoothing, mixup_alpha          the loss (:class:`~stages.train.runner_model.RunnerModel`)
accumulative_counts, clip_grad        ``optim_wrapper.accumulative_counts``, ``.clip_grad``
amp                                   bf16: autocast in the model (no loss scaling); float16:
                                      ``AmpOptimWrapper`` (GradScaler); CPU: fp32
max_epochs, val_interval              ``train_cfg`` (EpochBasedTrainLoop)
warmup_epochs, warmup_start_factor    ``param_scheduler``: LinearLR then CosineAnnealingLR, per iteration
batch_size, test_batch_size           ``train_dataloader.batch_size``, ``test_dataloader.batch_size``
log_interval                          ``default_hooks.logger.interval``, ``log_processor.window_size``
max_keep_ckpts                        ``default_hooks.checkpoint.max_keep_ckpts`` (a checkpoint every epoch)
seed, deterministic                   ``randomness``
====================================  ===============================================================

``data.num_workers`` is the loaders' ``num_workers``. Anything else of mmengine's: ``runner.*``
(raw Runner arguments, merged last).
"""
from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import torch

from stages.data.device_frames import collate_items
from stages.nested_config import deep_merge, to_plain
from stages.registry import SCOPE
from stages.train.hooks import run_record, train_clips_record
from stages.train.metrics import evaluator_config
from stages.train.param_groups import NO_DECAY_KINDS, paramwise_cfg
from stages.settings import Settings, SettingsError, field


@dataclass(frozen=True)
class GradClipSettings(Settings):
    what = "schedule setting"

    max_norm: float = field(1.0, help="Clip the gradients' norm to this.")
    norm_type: float = field(2.0, help="The norm's p.")


@dataclass(frozen=True)
class CLIPGroupSettings(Settings):
    """The CLIP towers' own group (the base lr: X-CLIP fine-tunes CLIP at it)."""

    what = "schedule setting"

    lr_mult: float = field(1.0, help="lr = train.lr * this.")
    decay_mult: float = field(1.0, help="weight decay = train.weight_decay * this (kinds in train.no_decay: 0).")


@dataclass(frozen=True)
class NewModuleGroupSettings(Settings):
    """A group of modules PeVL / PGVT add to CLIP (X-CLIP trains its new modules at 10x the base lr)."""

    what = "schedule setting"

    lr_mult: float = field(10.0, help="lr = train.lr * this (X-CLIP: 10 for new modules).")
    decay_mult: float = field(1.0, help="weight decay = train.weight_decay * this (kinds in train.no_decay: 0).")


@dataclass(frozen=True)
class ParamGroupsSettings(Settings):
    """The optimiser's named groups (stages/train/param_groups.py says which parameter is in which)."""

    what = "schedule setting"

    clip: CLIPGroupSettings = field(default_factory=CLIPGroupSettings, help="The CLIP towers (tunable only with "
                                    "model.clip.frozen=False).")
    video: NewModuleGroupSettings = field(default_factory=NewModuleGroupSettings, help="Video adapters, projection, "
                                          "PGVT's video stream.")
    pose: NewModuleGroupSettings = field(default_factory=NewModuleGroupSettings, help="The pose side: embedding, "
                                         "pose encoder adapters, projection.")
    ucmr: NewModuleGroupSettings = field(default_factory=NewModuleGroupSettings, help="UCMR (P2V, V2P, eq. 3's "
                                         "temperature); PGVT's R-Adapters.")
    sgmc: NewModuleGroupSettings = field(default_factory=NewModuleGroupSettings, help="The text similarity's "
                                         "temperature.")
    text: NewModuleGroupSettings = field(default_factory=NewModuleGroupSettings, help="Text adapters and projection.")
    head: NewModuleGroupSettings = field(default_factory=NewModuleGroupSettings, help="Classifiers, fusion layers.")


@dataclass(frozen=True)
class ScheduleSettings(Settings):
    what = "schedule setting"

    max_epochs: int = field(50, help="Epochs (Sec. 4.1).")
    warmup_epochs: float = field(3, help="Linear warm-up epochs (fractions allowed: AIM's 2.5), then cosine to "
                                 "zero (Sec. 4.1).")
    warmup_start_factor: float = field(1e-3, help="lr at the first iteration = lr * this.")
    lr: float = field(8e-6, help="Base learning rate (Sec. 4.1); each group's is lr * its lr_mult "
                      "(train.param_groups).")
    weight_decay: float = field(0.05, help="AdamW weight decay (Sec. 4.1), times each group's decay_mult; none on "
                                "the kinds in train.no_decay.")
    param_groups: ParamGroupsSettings = field(default_factory=ParamGroupsSettings, help="The optimiser's named "
                                              "groups with their lr and weight-decay multipliers.")
    no_decay: tuple[Literal[NO_DECAY_KINDS], ...] = field(NO_DECAY_KINDS, help="Parameter kinds without weight "
                                                         "decay: norm, bias, embedding, scalar (temperatures, "
                                                         "gates).")
    betas: tuple[float, float] = field((0.9, 0.98), help="AdamW betas (X-CLIP's).")
    eps: float = field(1e-8, help="AdamW eps.")
    batch_size: int = field(16, help="Clips per process (GPU) and step; the paper does not state it.")
    test_batch_size: Optional[int] = field(None, help="Clips per evaluation batch (each is 3 views); default: "
                                           "batch_size.")
    accumulative_counts: int = field(1, help="Gradient accumulation: an optimiser step every N batches.")
    amp: Optional[Literal["bfloat16", "float16"]] = field("bfloat16", help="Autocast dtype on CUDA (none: fp32); "
                                                          "CPU runs fp32.")
    clip_grad: Optional[GradClipSettings] = field(None, help="Gradient clipping, e.g. {max_norm: 1.0}; none: off.")
    val_interval: int = field(5, help="Validate every N epochs (and after the last); 0: never during training.")
    log_interval: int = field(20, help="Iterations between log lines.")
    max_keep_ckpts: int = field(2, help="Checkpoints kept (one is written every epoch).")
    label_smoothing: float = field(0.1, help="Label smoothing of the loss (X-CLIP's): cross-entropy's targets, "
                                   "and the text-contrastive targets over the batch's texts.")
    mixup_alpha: float = field(0.8, help="Mixup (X-CLIP's alpha): each batch mixes every input (frames, joints, "
                               "mask grids) with a permutation of itself by lambda ~ Beta(alpha, alpha), and "
                               "the targets alike; 0: off.")
    seed: int = field(0, help="Seed of the model's initialisation, the shuffling and the augmentation.")
    deterministic: bool = field(False, help="cuDNN / torch deterministic algorithms.")

    def check(self, where: str = "", source_of=None) -> None:
        for k in ("max_epochs", "batch_size", "accumulative_counts", "log_interval", "max_keep_ckpts"):
            if getattr(self, k) < 1:
                raise SettingsError(f"{where}.{k} must be positive, got {getattr(self, k)}", f"{where}.{k}")
        if self.warmup_epochs < 0 or self.val_interval < 0:
            raise SettingsError(f"{where}.warmup_epochs and {where}.val_interval must be >= 0")
        if not 0 <= self.label_smoothing < 1 or self.mixup_alpha < 0:
            raise SettingsError(f"{where}.label_smoothing must be in [0, 1) and {where}.mixup_alpha >= 0")
        # checked with the config, not when a variant starts (each variant of a sweep then failed apart)
        for k in ("lr", "eps"):
            if not getattr(self, k) > 0:
                raise SettingsError(f"{where}.{k} must be positive, got {getattr(self, k)}", f"{where}.{k}")
        for k in ("weight_decay", "warmup_start_factor"):
            if getattr(self, k) < 0:
                raise SettingsError(f"{where}.{k} must be >= 0, got {getattr(self, k)}", f"{where}.{k}")
        if not all(0 <= b < 1 for b in self.betas):
            raise SettingsError(f"{where}.betas must each be in [0, 1), got {self.betas}", f"{where}.betas")
        if self.test_batch_size is not None and self.test_batch_size < 1:
            raise SettingsError(f"{where}.test_batch_size must be positive, got {self.test_batch_size}",
                                f"{where}.test_batch_size")
        if not 0 <= self.seed < 2 ** 32:  # numpy's and mmengine's seeding refuse others
            raise SettingsError(f"{where}.seed must be in [0, 2**32), got {self.seed}", f"{where}.seed")


def autocast_dtype(schedule: ScheduleSettings, device: str) -> Optional[str]:
    """The autocast dtype a run uses: ``amp`` on CUDA, none on CPU."""
    return schedule.amp if (schedule.amp and device == "cuda") else None


def runner_kwargs(cfg: Any, model, train_ds, test_ds, work_dir: Path, launcher: str, device: str,
                  resume: bool = False, load_from: Optional[str] = None, hooks: Optional[list] = None,
                  world_size: int = 1) -> dict:
    """The mmengine Runner arguments of a run config (``cfg``: the resolved run config, an mmengine
    ``Config``; ``cfg.train`` read through :class:`ScheduleSettings`)."""
    t = ScheduleSettings.from_dict(to_plain(cfg.train), where="train")
    cuda = device == "cuda"
    nw = int(cfg.data.num_workers)
    # each loader draws its workers' base seed from a generator of its own, not torch's global one,
    # which dropout draws from: so workers, persistent or not, and validations between epochs leave
    # the model's random stream as it was, and a resumed run continues it (RandomStateHook)
    loader_common = dict(num_workers=nw, persistent_workers=nw > 0, pin_memory=cuda,
                         collate_fn=dict(type=collate_items), generator=torch.Generator().manual_seed(t.seed))
    kw: dict[str, Any] = dict(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f"{cfg.get('exp_name', 'exp')}_{cfg.get('variant', 'v')}_{uuid.uuid4().hex[:8]}",
        launcher=launcher,
        default_scope=SCOPE,  # our registries (stages.registry) first, mmengine's behind them
        env_cfg=dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                     dist_cfg=dict(backend="nccl" if cuda else "gloo")),
        randomness=dict(seed=t.seed, deterministic=t.deterministic, diff_rank_seed=False),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=t.log_interval, log_metric_by_epoch=True),
            param_scheduler=dict(type="ParamSchedulerHook"),
            # whole or absent, the old one deleted after (stages/train/checkpoints.py)
            checkpoint=dict(type="AtomicCheckpointHook", interval=1, by_epoch=True, max_keep_ckpts=t.max_keep_ckpts,
                            save_last=True),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=[dict(type="RecordValHook"), dict(type="BackboneCheckpointHook"),
                      dict(type="RunRecordHook", record=run_record(cfg, test_ds.entry),
                           train_clips=train_clips_record(train_ds.rows, world_size)
                           if train_ds is not None else None)]
        + list(hooks or []),
        visualizer=dict(type="Visualizer", name=f"vis_{uuid.uuid4().hex[:12]}",
                        vis_backends=[dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")]),
        log_processor=dict(by_epoch=True, window_size=t.log_interval),
        log_level="INFO",
        resume=resume,
        load_from=load_from,
        cfg=type(cfg)(to_plain(cfg.to_dict())),
    )
    if launcher == "pytorch":  # mmengine reads the DDP wrapper from the config it dumps
        # DDP's search for unused parameters costs a graph walk every step: only for the variants
        # whose step can leave a tunable parameter without gradient (the model says; default: yes).
        # The scoped name: Runner.wrap_model looks the wrapper up in mmengine's root registry, which
        # finds our child registry's entries only by "stages.<name>".
        find_unused = bool(getattr(model.recognizer, "leaves_unused_parameters", True))
        kw["cfg"]["model_wrapper_cfg"] = dict(type=f"{SCOPE}.RecognizerDDP",
                                              find_unused_parameters=find_unused, broadcast_buffers=False)
    test_loader = dict(dataset=test_ds, batch_size=t.test_batch_size or t.batch_size,
                       sampler=dict(type="DefaultSampler", shuffle=False), drop_last=False, **loader_common)
    evaluator = evaluator_config(test_ds)
    kw.update(test_dataloader=test_loader, test_cfg=dict(type="TestLoop"), test_evaluator=evaluator)
    if train_ds is not None:
        epochs, warm = t.max_epochs, t.warmup_epochs
        drop_last = drops_last_batch(len(train_ds), t.batch_size, world_size)
        kw["train_dataloader"] = dict(dataset=train_ds, batch_size=t.batch_size, drop_last=drop_last,
                                      sampler=dict(type="EpochSeedSampler", shuffle=True), **loader_common)
        vi = t.val_interval
        kw["train_cfg"] = dict(by_epoch=True, max_epochs=epochs, val_interval=vi if vi > 0 else epochs + 1)
        if vi > 0:
            kw.update(val_dataloader=dict(test_loader), val_cfg=dict(type="ValLoop"), val_evaluator=dict(evaluator))
        # bf16 autocasts in the model and needs no loss scaling; fp16 needs AmpOptimWrapper's GradScaler
        amp = autocast_dtype(t, device)
        ow = dict(type="AmpOptimWrapper", dtype=amp) if amp == "float16" else dict(type="OptimWrapper")
        ow.update(optimizer=dict(type="AdamW", lr=t.lr, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay),
                  accumulative_counts=t.accumulative_counts, constructor="TunableOptimWrapperConstructor",
                  paramwise_cfg=paramwise_cfg(t.param_groups, t.no_decay))
        if t.clip_grad is not None:
            ow["clip_grad"] = t.clip_grad.to_dict()
        kw["optim_wrapper"] = ow
        sched = []
        per_epoch = _iterations_per_epoch(len(train_ds), t.batch_size, world_size, drop_last)
        if 0 < warm * per_epoch < 2:
            # mmengine's LinearLR reaches the base lr on its last iteration, so a warm-up of one
            # iteration (a tiny dataset: one batch an epoch) never leaves start_factor, and the chained
            # cosine after it carries that factor through the run: ramp over two iterations instead
            sched.append(dict(type="LinearLR", start_factor=t.warmup_start_factor, by_epoch=False, begin=0, end=2))
            total = max(2, epochs * per_epoch)
            sched.append(dict(type="CosineAnnealingLR", T_max=total - 1, eta_min=0.0, by_epoch=False, begin=1,
                              end=total))
        else:
            if warm > 0:
                sched.append(dict(type="LinearLR", start_factor=t.warmup_start_factor, by_epoch=True, begin=0,
                                  end=warm, convert_to_iter_based=True))
            sched.append(dict(type="CosineAnnealingLR", T_max=max(1, epochs - warm), eta_min=0.0, by_epoch=True,
                              begin=warm, end=max(epochs, warm + 1), convert_to_iter_based=True))
        kw["param_scheduler"] = sched
    runner_over = cfg.get("runner") or {}
    if runner_over:
        from stages.train.runner_overrides import check_runner_overrides

        kw = {**kw, **deep_merge({k: kw[k] for k in runner_over if k in kw and isinstance(kw[k], dict)},
                                 to_plain(runner_over))}
        check_runner_overrides(to_plain(runner_over), kw)
    return kw


def drops_last_batch(clips: int, batch_size: int, world: int) -> bool:
    """Whether training drops each process's last partial batch: with two full batches a process
    at least (a tiny set keeps its one partial batch, or it would train on nothing)."""
    return clips >= batch_size * world * 2


def epoch_coverage_note(clips: int, batch_size: int, world: int) -> str:
    """What an epoch does not train on once (``""``: every clip once): each process's last partial
    batch dropped, or, under torchrun, clips the sampler pads each process's share with."""
    share = math.ceil(clips / world)  # (the sampler pads the shares to one size with clips drawn again)
    seen = (share // batch_size) * batch_size * world if drops_last_batch(clips, batch_size, world) else share * world
    if seen < clips:
        return f" ({clips - seen} an epoch left out at random: each process's last partial batch)"
    if seen > clips:
        return f" ({seen - clips} an epoch seen twice: the sampler pads the processes' shares)"
    return ""


def _iterations_per_epoch(clips: int, batch_size: int, world: int, drop_last: bool) -> int:
    """Training iterations an epoch takes on each process (the sampler splits the clips over the
    processes, padding the last share)."""
    share = math.ceil(clips / world)
    return share // batch_size if drop_last else math.ceil(share / batch_size)


def world_size(launcher: str) -> int:
    return int(os.environ.get("WORLD_SIZE", "1")) if launcher == "pytorch" else 1
