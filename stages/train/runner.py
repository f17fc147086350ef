"""Train and evaluate one variant with mmengine's Runner, from a cache entry only.

:func:`train_variant` turns a run config (:func:`stages.train.config.build_run_config`) into an
mmengine Runner: AdamW on the tunable parameters only, linear warm-up then cosine to zero (per
iteration), bf16 autocast on CUDA (in the model, no loss scaling; fp16 through ``AmpOptimWrapper``;
fp32 on CPU), gradient accumulation, a checkpoint every epoch holding the trainable state and
naming the backbone (``--resume`` continues from the last), TensorBoard + JSON scalars, a seed,
and ``torchrun`` data parallelism (``launcher='pytorch'``: NCCL on GPUs, gloo on CPU). After
training it evaluates the final weights (3 crops x 1 clip), and writes into the variant's work dir:

* ``result.json``: the variant's row of the experiment table (also marks the variant done);
* ``confusion.json`` / ``confusion.png``, ``predictions.json``;
* ``curves.png``: training loss, learning rate and validation accuracy over epochs;
* mmengine's own ``epoch_N.pth``, ``last_checkpoint``, ``<timestamp>/`` logs (``.log``, ``vis_data/
  scalars.json``, TensorBoard events) and the config.

:func:`evaluate_checkpoint` evaluates a saved checkpoint the same way.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from mmengine.config import Config
from mmengine.dist import get_dist_info, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

import stages.data.epoch_sampler  # noqa: F401  (registers EpochSeedSampler)
import stages.train.metrics  # noqa: F401  (registers the metric)
import stages.train.model  # noqa: F401  (registers the wrappers)
from cache import CacheEntry
from stages.data.dataset import CacheClipDataset
from stages.data.device_frames import collate_items
from stages.nested_config import deep_merge, to_plain
from stages.registry import HOOKS, SCOPE
from stages.skeletons import get_skeleton
from stages.train import report
from stages.train.checkpoints import resume_checkpoint  # (also registers AtomicCheckpointHook)
from stages.train.metrics import fine_pair_classes, metric_row

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"


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
        ours = self._model(runner).backbone_identity()
        keys = ("arch", "pretrained", "frozen") + (("pretrained_size",) if saved.get("pretrained_path") else ())
        if any(saved.get(k) != ours.get(k) for k in keys):
            raise ValueError(f"the checkpoint was trained on backbone {saved}, but this model is built on {ours}: "
                             "its adapters and heads only make sense on those weights (set model.clip.* to match)")


def checkpoint_safe_globals():
    """torch >= 2.6 loads with ``weights_only=True``; mmengine checkpoints also hold the message
    hub (``HistoryBuffer`` of numpy arrays). Admit exactly those types, not arbitrary pickles."""
    import builtins

    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    if int(np.__version__.split(".")[0]) >= 2:
        from numpy._core import multiarray as ma
    else:
        from numpy.core import multiarray as ma
    allowed = [HistoryBuffer, ma.scalar, ma._reconstruct, np.ndarray, np.dtype,
               builtins.getattr]
    allowed += list({type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64,
                                                  np.uint8, np.bool_)})
    return torch.serialization.safe_globals(allowed)


def init_distributed(launcher: str) -> None:
    """Start the process group for ``launcher='pytorch'`` (torchrun): NCCL with CUDA, else gloo.

    mmengine would always pin a CUDA device first; on CPU machines that fails, so the group is
    started here and mmengine finds it already initialised."""
    if launcher == "none" or is_distributed():
        return
    import torch.distributed as dist

    if launcher != "pytorch":
        raise ValueError(f"launcher must be 'none' or 'pytorch', got {launcher!r}")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")


def check_entry_fits(cfg: Config, entry: CacheEntry, model) -> dict:
    """Model sizes from the built model and the entry; raise early on a mismatch."""
    vis = model.pevl.clip.visual
    size = int(vis.image_size[0] if isinstance(vis.image_size, (tuple, list)) else vis.image_size)
    patch = int(vis.patch_size[0] if isinstance(vis.patch_size, (tuple, list)) else vis.patch_size)
    if entry.grid_cell != patch:
        raise ValueError(f"cache entry {entry.key} has {entry.grid_cell}-pixel mask cells but the model's patch is "
                         f"{patch}: extract with --grid-cell {patch}")
    ss = int(entry.settings.get("short_side", size))
    if ss < size:
        raise ValueError(f"cache entry {entry.key} has a short side of {ss} px, smaller than the model's {size} "
                         f"crop: extract with --short-side {max(size, 256)}")
    return dict(crop_size=size, patch=patch)


def prepare_model_cfg(cfg: Config, entry: CacheEntry) -> dict:
    """``cfg.model`` with the class and joint counts of the entry."""
    m = cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model)
    m["num_classes"] = len(entry.classes)
    m["num_joints"] = get_skeleton(entry.skeleton).num_joints
    return m


def decode_on_device(data_cfg: dict, entry: CacheEntry, device: str) -> bool:
    """``data.decode_on_device`` where it can apply (JPEG frames, a CUDA device); otherwise a
    one-line notice and the loader decodes on the CPU as usual."""
    if not data_cfg.get("decode_on_device"):
        return False
    if entry.frames_codec != "jpeg":
        log.warning("data.decode_on_device: cache entry %s stores %s frames, not JPEG; nothing to decode on the "
                    "device (extract with --frames-codec jpeg for that)", entry.key, entry.frames_codec)
        return False
    if device != "cuda":
        log.warning("data.decode_on_device: no CUDA device, so the loader workers decode the JPEG frames on the CPU")
        return False
    return True


def build_datasets(cfg: Config, entry: CacheEntry, crop_size: int, allow_partial: bool,
                   train: bool = True, device: str = "cpu") -> tuple[Optional[CacheClipDataset], CacheClipDataset]:
    t, m, d = cfg.train, cfg.model, cfg.data
    common = dict(crop_size=crop_size, num_pose_frames=int(m.num_pose_frames),
                  num_video_frames=int(m.num_video_frames), seed=int(t.seed), allow_partial=allow_partial,
                  decode_on_device=decode_on_device(d, entry, device))
    train_ds = (CacheClipDataset(entry, d.get("train_split", "train"), mode="train", flip_prob=float(t.flip_prob),
                                 random_pose_offsets=bool(t.random_pose_offsets), **common) if train else None)
    test_ds = CacheClipDataset(entry, d.get("test_split", "val"), mode="test", **common)
    return train_ds, test_ds


def _amp(cfg: Config, device: str) -> Optional[str]:
    amp = cfg.train.get("amp")
    return amp if (amp and device == "cuda") else None


def runner_kwargs(cfg: Config, model, train_ds, test_ds, work_dir: Path, launcher: str, device: str,
                  resume: bool = False, load_from: Optional[str] = None, hooks: Optional[list] = None) -> dict:
    """The mmengine Runner arguments for a run config (see the schedule config for the keys)."""
    t = cfg.train
    cuda = device == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1")) if launcher == "pytorch" else 1
    nw = int(t.num_workers)
    bs = int(t.batch_size)
    tbs = int(t.test_batch_size or bs)
    loader_common = dict(num_workers=nw, persistent_workers=nw > 0, pin_memory=cuda,
                         collate_fn=dict(type=collate_items))
    kw: dict[str, Any] = dict(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f"{cfg.get('exp_name', 'exp')}_{cfg.get('variant', 'v')}_{uuid.uuid4().hex[:8]}",
        launcher=launcher,
        default_scope=SCOPE,  # our registries (stages.registry) first, mmengine's behind them
        env_cfg=dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                     dist_cfg=dict(backend="nccl" if cuda else "gloo")),
        randomness=dict(seed=int(t.seed), deterministic=bool(t.get("deterministic", False)), diff_rank_seed=False),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=int(t.log_interval), log_metric_by_epoch=True),
            param_scheduler=dict(type="ParamSchedulerHook"),
            # whole or absent, the old one deleted after (stages/train/checkpoints.py)
            checkpoint=dict(type="AtomicCheckpointHook", interval=1, by_epoch=True,
                            max_keep_ckpts=int(t.max_keep_ckpts), save_last=True),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=[dict(type="RecordValHook"), dict(type="BackboneCheckpointHook")] + list(hooks or []),
        visualizer=dict(type="Visualizer", name=f"vis_{uuid.uuid4().hex[:12]}",
                        vis_backends=[dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")]),
        log_processor=dict(by_epoch=True, window_size=max(1, int(t.log_interval))),
        log_level="INFO",
        resume=resume,
        load_from=load_from,
        cfg=Config({k: v for k, v in cfg.to_dict().items()}),
    )
    if launcher == "pytorch":  # mmengine reads the DDP wrapper from the config it dumps
        # DDP's search for unused parameters costs a graph walk every step: only for the variants
        # whose step can leave a tunable parameter without gradient (the model says; default: yes).
        # The scoped name: Runner.wrap_model looks the wrapper up in mmengine's root registry, which
        # finds our child registry's entries only by "stages.<name>".
        find_unused = bool(getattr(model.pevl, "leaves_unused_parameters", True))
        kw["cfg"]["model_wrapper_cfg"] = dict(type=f"{SCOPE}.PeVLDistributedDataParallel",
                                              find_unused_parameters=find_unused, broadcast_buffers=False)
    test_loader = dict(dataset=test_ds, batch_size=tbs, sampler=dict(type="DefaultSampler", shuffle=False),
                       drop_last=False, **loader_common)
    evaluator = dict(type="PeVLClassificationMetric", num_classes=len(test_ds.classes),
                     fine_classes=fine_pair_classes(test_ds.entry.attrs.get("dataset_meta")))
    kw.update(test_dataloader=test_loader, test_cfg=dict(type="TestLoop"), test_evaluator=evaluator)
    if train_ds is not None:
        epochs, warm = int(t.max_epochs), int(t.warmup_epochs)
        drop_last = len(train_ds) >= bs * world * 2
        kw["train_dataloader"] = dict(dataset=train_ds, batch_size=bs, drop_last=drop_last,
                                      sampler=dict(type="EpochSeedSampler", shuffle=True), **loader_common)
        vi = int(t.get("val_interval") or 0)
        kw["train_cfg"] = dict(by_epoch=True, max_epochs=epochs, val_interval=vi if vi > 0 else epochs + 1)
        if vi > 0:
            kw.update(val_dataloader=dict(test_loader), val_cfg=dict(type="ValLoop"), val_evaluator=dict(evaluator))
        # bf16 autocasts in the model and needs no loss scaling; fp16 needs AmpOptimWrapper's GradScaler
        amp = _amp(cfg, device)
        ow = dict(type="AmpOptimWrapper", dtype=amp) if amp == "float16" else dict(type="OptimWrapper")
        ow.update(optimizer=dict(type="AdamW", lr=float(t.lr), betas=tuple(t.betas), eps=float(t.eps),
                                 weight_decay=float(t.weight_decay)),
                  accumulative_counts=int(t.accumulative_counts), constructor="TunableOptimWrapperConstructor")
        if t.get("clip_grad"):
            ow["clip_grad"] = dict(t.clip_grad)
        kw["optim_wrapper"] = ow
        sched = []
        if warm > 0:
            sched.append(dict(type="LinearLR", start_factor=float(t.warmup_start_factor), by_epoch=True, begin=0,
                              end=warm, convert_to_iter_based=True))
        sched.append(dict(type="CosineAnnealingLR", T_max=max(1, epochs - warm), eta_min=0.0, by_epoch=True,
                          begin=warm, end=max(epochs, warm + 1), convert_to_iter_based=True))
        kw["param_scheduler"] = sched
    runner_over = cfg.get("runner") or {}
    if runner_over:
        kw = {**kw, **deep_merge({k: kw[k] for k in runner_over if k in kw and isinstance(kw[k], dict)},
                                 to_plain(runner_over))}
    return kw


def resolve_device(device: Optional[str]) -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but no CUDA device is visible")
    return "cuda" if device.startswith("cuda") else "cpu"


def build_wrapped_model(cfg: Config, entry: CacheEntry, device: str):
    from mmengine.runner import set_random_seed

    from stages.train.model import PeVLRunnerModel

    set_random_seed(int(cfg.train.seed), deterministic=bool(cfg.train.get("deterministic", False)))
    model = PeVLRunnerModel(prepare_model_cfg(cfg, entry), entry.classes, entry.coarse_type,
                            amp_dtype=_amp(cfg, device))
    return model


def model_cost(cfg: Config, entry: CacheEntry, model) -> dict:
    """Tunable params (M) of the built model; GFLOPs per clip (fvcore convention) at the run's
    architecture and frame counts, from the model library's counter, or None with the reason."""
    params = sum(p.numel() for p in model.tunable_parameters()) / 1e6
    out = dict(tunable_params_m=round(params, 4), gflops=None, gflops_note=None)
    try:
        from stages.model.flops import model_stats

        st = model_stats(prepare_model_cfg(cfg, entry), arch=cfg.model.clip.arch,
                         num_video_frames=int(cfg.model.num_video_frames),
                         num_pose_frames=int(cfg.model.num_pose_frames))
        out["gflops"] = round(float(st["gflops"]), 4)
    except Exception as e:  # noqa: BLE001  (a missing counter must not fail a finished training)
        out["gflops_note"] = f"FLOP count unavailable: {type(e).__name__}: {e}"
    return out


def init_from_variants(model, init_from: dict, exp_dir: Path) -> dict[str, str]:
    """Copy into ``model`` (the runner model) the weights that other variants of the same experiment
    finished with: ``init_from = {variant: [name prefixes of the built model, e.g. 'pose_']}``, read
    from ``exp_dir/<variant>/``'s final checkpoint. Every parameter and buffer of ``model`` under a
    prefix must be in that checkpoint with the same shape. Returns ``{variant: checkpoint path}``.

    Raises ``FileNotFoundError`` naming the command to run when a source variant has not finished."""
    own = model.state_dict()
    wrapper = "pevl."  # the runner model holds the plain model as .pevl
    used: dict[str, str] = {}
    picked: dict[str, torch.Tensor] = {}
    for variant, prefixes in to_plain(init_from).items():
        prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        vdir = exp_dir / variant
        ckpt = _finished_checkpoint(vdir)
        if ckpt is None:
            raise FileNotFoundError(
                f"this variant starts from the final weights of {variant!r}, which has not finished in {exp_dir} "
                f"(no {vdir / RESULT_FILE} with its checkpoint): train it first (pipeline train --variant "
                f"{variant} with this experiment, --dataset and --work-dir)")
        with checkpoint_safe_globals():
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        wanted = [k for k in own if any(k.startswith(wrapper + p) for p in prefixes)]
        if not wanted:
            raise ValueError(f"init_from {variant!r}: the model has nothing under {prefixes}")
        missing = [k for k in wanted if k not in state]
        bad = [k for k in wanted if k in state and state[k].shape != own[k].shape]
        if missing or bad:
            raise ValueError(f"init_from {variant!r} ({ckpt}): {len(missing)} weights missing "
                             f"{[k.removeprefix(wrapper) for k in missing[:4]]}, {len(bad)} of another shape "
                             f"{[k.removeprefix(wrapper) for k in bad[:4]]}: is it a run of this experiment?")
        picked.update((k, state[k]) for k in wanted)
        used[variant] = str(ckpt)
        log.info("initialised %d tensors under %s from %s", len(wanted), prefixes, ckpt)
    # only the picked tensors: the rest (a new head, the frozen CLIP) stays as built
    unexpected = model.load_state_dict(picked, strict=False).unexpected_keys
    assert not unexpected, unexpected  # picked from our own state dict's keys
    return used


def _finished_checkpoint(vdir: Path) -> Optional[Path]:
    """The final checkpoint of a finished variant dir (its result.json's, found beside it if the
    recorded path was relative to another working directory), else None."""
    row = read_result(vdir)
    if row is None or not row.get("checkpoint"):
        return None
    for cand in (Path(row["checkpoint"]), vdir / Path(row["checkpoint"]).name):
        if cand.is_file():
            return cand
    return None


def train_variant(cfg: Config, work_dir: os.PathLike, entry: CacheEntry, *, launcher: str = "none",
                  device: Optional[str] = None, resume: bool = False, allow_partial: bool = False,
                  hooks: Optional[list] = None, on_runner: Optional[Callable] = None) -> Optional[dict]:
    """Train one variant into ``work_dir`` and evaluate it; returns its result row on rank 0
    (None elsewhere). ``hooks``: extra mmengine hook configs (tests)."""
    from mmengine.runner import Runner

    work_dir = Path(work_dir)
    dev = resolve_device(device)
    init_distributed(launcher)
    rank, world = get_dist_info()
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
    model = build_wrapped_model(cfg, entry, dev)
    # a two-stage variant (PGVT Table 4 (3), late fusion) starts from other variants' final weights
    init_sources = init_from_variants(model, cfg.init_from, work_dir.parent) if cfg.get("init_from") else {}
    sizes = check_entry_fits(cfg, entry, model)
    train_ds, test_ds = build_datasets(cfg, entry, sizes["crop_size"], allow_partial, train=True, device=dev)
    cost = model_cost(cfg, entry, model) if rank == 0 else {}
    # the newest whole checkpoint, whatever last_checkpoint says (a kill may have cut a save short)
    resume_from = resume_checkpoint(work_dir) if resume else None
    kw = runner_kwargs(cfg, model, train_ds, test_ds, work_dir, launcher, dev, resume=resume_from is not None,
                       load_from=str(resume_from) if resume_from else None, hooks=hooks)
    t0 = time.time()
    runner = Runner(**kw)
    if on_runner:
        on_runner(runner)
    with checkpoint_safe_globals():
        runner.train()
    train_s = time.time() - t0
    rec = next(h for h in runner.hooks if isinstance(h, RecordValHook))
    # the validation after the last epoch already evaluated the final weights on the test split
    # (same data, same views); otherwise (no validation, or a resumed run that had finished) test
    if rec.last_val_epoch == runner.max_epochs:
        metric = runner.val_loop.evaluator.metrics[0]
    else:
        with checkpoint_safe_globals():
            runner.test()
        metric = runner.test_loop.evaluator.metrics[0]
    if rank != 0:
        return None
    res = metric.last_result
    row = dict(
        experiment=cfg.get("exp_name"), variant=cfg.get("variant"), dataset=entry.dataset, entry=entry.key,
        split=test_ds.split, num_classes=len(entry.classes), num_test_clips=len(test_ds), **metric_row(res),
        paper_top1=cfg.get("paper_top1"), **cost, epochs=int(runner.epoch),
        arch=cfg.model.clip.arch, pretrained=cfg.model.clip.get("pretrained") or cfg.model.clip.get("pretrained_path"),
        # the frames the variant reads (None for a modality it does not have)
        num_video_frames=int(cfg.model.num_video_frames) if "video" in cfg.model.modalities else None,
        num_pose_frames=int(cfg.model.num_pose_frames) if "pose" in cfg.model.modalities else None,
        crop_size=sizes["crop_size"], lr=float(cfg.train.lr), batch_size=int(cfg.train.batch_size),
        accumulative_counts=int(cfg.train.accumulative_counts), world_size=world, device=dev,
        amp=_amp(cfg, dev), seed=int(cfg.train.seed), train_seconds=round(train_s, 1),
        checkpoint=_last_checkpoint(work_dir), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"init_from": init_sources} if init_sources else {}),
    )
    report.save_evaluation(work_dir, res, entry.classes, test_ds, title=f"{row['experiment']} / {row['variant']}")
    try:
        report.plot_curves(work_dir, work_dir / "curves.png", title=f"{row['experiment']} / {row['variant']}")
    except Exception as e:  # noqa: BLE001
        log.warning("could not draw the training curves: %s", e)
    report.write_json(work_dir / RESULT_FILE, row)
    return row


def _last_checkpoint(work_dir: Path) -> Optional[str]:
    p = work_dir / "last_checkpoint"
    if p.is_file():
        return p.read_text().strip()
    return None


def evaluate_checkpoint(cfg: Config, checkpoint: str, entry: CacheEntry, out_dir: os.PathLike, *,
                        launcher: str = "none", device: Optional[str] = None, allow_partial: bool = False,
                        split: Optional[str] = None) -> Optional[dict]:
    """Evaluate ``checkpoint`` (3 crops x 1 clip, every class text once) into ``out_dir``."""
    from mmengine.runner import Runner

    out_dir = Path(out_dir)
    dev = resolve_device(device)
    init_distributed(launcher)
    rank, _ = get_dist_info()
    if split:
        cfg.data.test_split = split
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    model = build_wrapped_model(cfg, entry, dev)
    sizes = check_entry_fits(cfg, entry, model)
    _, test_ds = build_datasets(cfg, entry, sizes["crop_size"], allow_partial, train=False, device=dev)
    cost = model_cost(cfg, entry, model) if rank == 0 else {}
    kw = runner_kwargs(cfg, model, None, test_ds, out_dir, launcher, dev, load_from=str(checkpoint))
    runner = Runner(**kw)
    t0 = time.time()
    with checkpoint_safe_globals():
        runner.test()
    if rank != 0:
        return None
    res = runner.test_loop.evaluator.metrics[0].last_result
    row = dict(experiment=cfg.get("exp_name"), variant=cfg.get("variant"), dataset=entry.dataset, entry=entry.key,
               split=test_ds.split, checkpoint=str(checkpoint), num_classes=len(entry.classes),
               num_test_clips=len(test_ds), **metric_row(res), paper_top1=cfg.get("paper_top1"), **cost,
               device=dev, eval_seconds=round(time.time() - t0, 1))
    report.save_evaluation(out_dir, res, entry.classes, test_ds, title=f"{row['experiment']} / {row['variant']}")
    report.write_json(out_dir / "metrics.json", row)
    return row


def read_result(work_dir: os.PathLike) -> Optional[dict]:
    p = Path(work_dir) / RESULT_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None
