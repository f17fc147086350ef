"""Train and evaluate one variant with mmengine's Runner, from a cache entry only.

:func:`train_variant` builds the recognizer in its Runner model (:mod:`.runner_model`), the
datasets over the entry (:mod:`stages.data`), and the Runner from the schedule
(:func:`.schedule.runner_kwargs`: AdamW on the tunable parameters, warm-up then cosine, bf16 on
CUDA, a checkpoint every epoch holding the trainable state and naming the backbone
(:mod:`.hooks`), ``--resume``, TensorBoard + JSON scalars, a seed, ``torchrun`` data parallelism
(:mod:`.distributed`)); a two-stage variant first copies other variants' final weights
(:mod:`.warm_start`). After training it evaluates the final weights (3 crops x 1 clip) and writes
into the variant's work dir (:mod:`.report`):

* ``result.json``: the variant's row of the experiment table (also marks the variant done);
* ``confusion.json`` / ``confusion.png``, ``predictions.json``;
* ``curves.png``: training loss, learning rate and validation accuracy over epochs;
* mmengine's own ``epoch_N.pth``, ``last_checkpoint``, ``<timestamp>/`` logs (``.log``, ``vis_data/
  scalars.json``, the trackers' files: :mod:`.trackers`) and the config that ran
  (:func:`run_config_of`: the model's class and joint counts of the entry).

:func:`evaluate_checkpoint` evaluates a saved checkpoint the same way.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from mmengine.config import Config
from mmengine.dist import get_dist_info

import stages.data.epoch_sampler  # noqa: F401  (registers EpochSeedSampler)
import stages.train.hooks  # noqa: F401  (registers the hooks)
import stages.train.metrics  # noqa: F401  (registers the metric)
import stages.train.runner_model  # noqa: F401  (registers the wrappers)
import stages.train.trackers  # noqa: F401  (registers the tracker backends)
from cache import CacheEntry
from cache.readers import reading
from stages.data.dataset import CacheClipDataset
from stages.data.settings import DataSettings
from stages.nested_config import dotted_leaves, to_plain
from stages.skeletons import entry_skeleton
from stages.train import report
from stages.train.checkpoints import (checkpoint_safe_globals, load_checkpoint_into, read_checkpoint_meta,
                                     resume_checkpoint)
from stages.train.config import recorded_as_now, with_neutral_settings
from stages.train.distributed import init_distributed, resolve_device
from stages.train.hooks import RecordValHook, TrainTimeHook, train_clips_record
from stages.train.metrics import metric_row
from stages.train.schedule import ScheduleSettings, autocast_dtype, runner_kwargs, world_size
from stages.train.train_log import LoggingRunner, setup_line
from stages.train.trackers import DEFAULT_TRACKERS, vis_backends
from stages.train.warm_start import init_from_variants

log = logging.getLogger(__name__)



def check_entry_fits(cfg: Config, entry: CacheEntry, model) -> dict:
    """Model sizes from the built model and the entry; raise early on a mismatch, naming the
    ``pipeline extract`` command that makes an entry the model can read.

    An entry on another grid is not regridded here: its frames were resized so both sides are
    whole cells of *its* grid (e.g. 256 x 448 px for 16), so crops and flips on another lattice
    would not be whole cells, which the store guarantees (docs/cache.md)."""
    from stages.geometry import resized_size

    size, patch = model_input_size(model)
    arch = cfg.model.clip.get("arch", "the model")
    if entry.grid_cell != patch:
        raise ValueError(
            f"cache entry {entry.key} has {entry.grid_cell}-pixel mask cells, but {arch} reads {patch}-pixel patches: "
            f"its grids do not line up with the model's patches. Make an entry on a {patch}-pixel grid:\n"
            f"  {_extract_command(cfg, entry, grid_cell=patch)}\n"
            f"and train with data.extract.grid_cell={patch} (--cfg-options) so it is found, or --entry KEY.")
    ss = int(entry.settings.get("short_side", size))
    actual = min(resized_size(ss, ss, ss, patch))  # the short side as stage one rounded it to whole cells
    if actual < size:
        want = max(size, 256)
        raise ValueError(
            f"cache entry {entry.key} has a short side of {actual} px, smaller than the {size}-pixel crop of {arch}. "
            f"Make an entry with a larger one:\n  {_extract_command(cfg, entry, short_side=want)}\n"
            f"and train with data.extract.short_side={want} (--cfg-options) so it is found, or --entry KEY.")
    return dict(crop_size=size, patch=patch)


def model_input_size(model) -> tuple[int, int]:
    """(crop size, patch size) in pixels of a Runner model's CLIP image tower."""
    vis = model.recognizer.clip.visual
    size = int(vis.image_size[0] if isinstance(vis.image_size, (tuple, list)) else vis.image_size)
    patch = int(vis.patch_size[0] if isinstance(vis.patch_size, (tuple, list)) else vis.patch_size)
    return size, patch


def _extract_command(cfg: Config, entry: CacheEntry, **settings) -> str:
    """``pipeline extract`` of the run's data config with the entry's own stage-one settings and
    ``settings`` changed."""
    from stages.data.entry_lookup import extract_command
    from stages.extract.settings import ExtractSettings

    data = to_plain(cfg.get("data") or {})
    data.setdefault("dataset", entry.dataset)
    if not data.get("root") and entry.attrs.get("dataset_root"):
        data["root"] = entry.attrs["dataset_root"]
    own = {k: v for k, v in entry.settings.items() if k in ExtractSettings.keys()}
    data["extract"] = {**own, **settings}
    if entry.settings.get("pose_source") and not data.get("pose_source"):
        data["pose_source"] = entry.settings["pose_source"]
    return extract_command(data, always=tuple(settings))


def prepare_model_cfg(cfg: Config, entry: CacheEntry) -> dict:
    """``cfg.model`` with the class and joint counts (all people's, and how many people) of the entry (or of its
    :class:`~stages.data.entry_record.EntryRecord`)."""
    m = to_plain(cfg.model)
    m["num_classes"] = len(entry.classes)
    m["num_joints"] = entry_skeleton(entry.skeleton, entry.settings).num_joints  # J = j x n
    m["num_persons"] = entry.persons
    return m


def run_config_of(cfg: Config, entry: CacheEntry) -> Config:
    """The config a run saves (mmengine dumps it beside the run): ``cfg`` with the model's class and
    joint counts of the entry it ran on, so ``--exp SAVED.py`` builds the same model."""
    d = to_plain(cfg.to_dict())
    d["model"] = prepare_model_cfg(cfg, entry)
    return Config(d)


def pixels_on_device(d: DataSettings, entry: CacheEntry, device: str) -> dict:
    """Where the items' pixel work happens (:class:`CacheClipDataset`'s ``decode_on_device`` and
    ``views_on_device``) under the data settings ``d``: on a CUDA device the views' cut, resize and
    flip (``data.views_on_device``) and, asked for with a JPEG entry, the decoding
    (``data.decode_on_device``); otherwise in the loader workers. Asking for decoding where it
    cannot apply gives a one-line notice."""
    cuda = device == "cuda"
    decode = d.decode_on_device
    if decode and not entry.codec.device_decodable:
        log.warning("data.decode_on_device: cache entry %s stores %s frames, which are not decoded on a device "
                    "(extract with --frames-codec jpeg for that)", entry.key, entry.frames_codec)
        decode = False
    elif decode and not cuda:
        log.warning("data.decode_on_device: no CUDA device, so the loader workers decode the JPEG frames on the CPU")
        decode = False
    return dict(decode_on_device=decode, views_on_device=cuda and d.views_on_device)


def build_datasets(cfg: Config, entry: CacheEntry, crop_size: int, allow_partial: bool,
                   train: bool = True, device: str = "cpu") -> tuple[Optional[CacheClipDataset], CacheClipDataset]:
    d = DataSettings.from_dict(to_plain(cfg.data), where="data")
    common = dict(item_kwargs(cfg, crop_size, entry.grid_cell), allow_partial=allow_partial,
                  **pixels_on_device(d, entry, device))
    train_ds = (CacheClipDataset(entry, d.train_split, mode="train", random_pose_offsets=d.random_pose_offsets,
                                 candidate_frames=d.candidate_frames, **common) if train else None)
    test_ds = CacheClipDataset(entry, d.test_split, **test_item_kwargs(cfg), **common)
    return train_ds, test_ds


def item_kwargs(cfg: Config, crop_size: int, grid_cell: int) -> dict:
    """How a run's items are made, train and test alike (:class:`CacheClipDataset` arguments):
    frame counts, seed, and the views (``data``'s training crop, flip and test views) at
    ``crop_size`` on the entry's ``grid_cell``."""
    from stages.data.views import ViewSampler

    t = ScheduleSettings.from_dict(to_plain(cfg.train), where="train")
    d = DataSettings.from_dict(to_plain(cfg.data), where="data")
    m = cfg.model
    return dict(crop_size=crop_size, num_pose_frames=int(m.num_pose_frames), num_video_frames=int(m.num_video_frames),
                seed=t.seed, views=ViewSampler.from_settings(d, crop_size, grid_cell))


def test_item_kwargs(cfg: Config) -> dict:
    """The test protocol's item arguments (the views): evaluation and ``pipeline predict`` share them."""
    return dict(mode="test")


def build_wrapped_model(cfg: Config, entry: CacheEntry, device: str):
    """The run's :class:`RunnerModel` for ``entry`` (a :class:`CacheEntry` or the
    :class:`~stages.data.entry_record.EntryRecord` a checkpoint carries: its classes and skeleton)."""
    from mmengine.runner import set_random_seed

    from stages.train.runner_model import RunnerModel

    set_random_seed(int(cfg.train.seed), deterministic=bool(cfg.train.get("deterministic", False)))
    t = ScheduleSettings.from_dict(to_plain(cfg.train))
    model = RunnerModel(prepare_model_cfg(cfg, entry), entry.classes, entry.coarse_type,
                        amp_dtype=autocast_dtype(t, device), label_smoothing=t.label_smoothing,
                        mixup_alpha=t.mixup_alpha, seed=t.seed)
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


def train_variant(cfg: Config, work_dir: os.PathLike, entry: CacheEntry, **kw) -> Optional[dict]:
    """Train one variant into ``work_dir`` and evaluate it (:func:`_train_variant`), marked as a
    reader of ``entry`` all along, so `pipeline cache gc` leaves the entry alone meanwhile."""
    with reading(entry.path):
        return _train_variant(cfg, work_dir, entry, **kw)


def _train_variant(cfg: Config, work_dir: os.PathLike, entry: CacheEntry, *, launcher: str = "none",
                  device: Optional[str] = None, resume: bool = False, allow_partial: bool = False,
                  hooks: Optional[list] = None, on_runner: Optional[Callable] = None,
                  say: Optional[Callable[[str], None]] = None,
                  trackers: Sequence[str] = DEFAULT_TRACKERS, result_extra: Optional[dict] = None) -> Optional[dict]:
    """Train one variant into ``work_dir`` and evaluate it; returns its result row on rank 0
    (None elsewhere). ``hooks``: extra mmengine hook configs (tests); ``say``: where to print the
    pretrained weights the model was built on and the run's settings (``pipeline train``);
    ``trackers``: experiment trackers (:mod:`stages.train.trackers`); ``result_extra``: fields the
    row's ``result.json`` carries besides (the sweep's ``config_hash``), written with it in one
    write, so that no kill leaves a result without them."""
    work_dir = Path(work_dir)
    dev = resolve_device(device)
    init_distributed(launcher)
    rank, world = get_dist_info()
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
    model = build_wrapped_model(cfg, entry, dev)
    if rank == 0 and say is not None:
        from stages.model.clip_loader import describe_pretrained

        say(f"[weights] {cfg.get('exp_name')}/{cfg.get('variant')}: CLIP "
            f"{describe_pretrained(getattr(model.recognizer.clip, 'pretrained_identity', None))}")
    # a two-stage variant (PGVT Table 4 (3), late fusion) starts from other variants' final weights
    init_sources = init_from_variants(model, cfg.init_from, work_dir.parent) if cfg.get("init_from") else {}
    sizes = check_entry_fits(cfg, entry, model)
    train_ds, test_ds = build_datasets(cfg, entry, sizes["crop_size"], allow_partial, train=True, device=dev)
    cost = model_cost(cfg, entry, model) if rank == 0 else {}
    if rank == 0 and say is not None:
        say(f"[setup] {cfg.get('exp_name')}/{cfg.get('variant')}: "
            + setup_line(cfg, entry, model, train_ds, test_ds, dev, world))
        if entry.random_pose_weights:
            say(f"[warn] {cfg.get('exp_name')}/{cfg.get('variant')}: entry {entry.key}'s poses come from a pose model "
                "with random weights (stage one ran with --pose-checkpoint none): they mean nothing; such an entry "
                "tests the pipeline, its results say nothing of the model")
    # the newest whole checkpoint, whatever last_checkpoint says (a kill may have cut a save short)
    resume_from = resume_checkpoint(work_dir) if resume else None
    run_hooks = [dict(type="TrainTimeHook"), dict(type="EpochLogHook"),
                 dict(type="FiniteLossHook", resume_from=str(resume_from) if resume_from else None),
                 dict(type="RandomStateHook")] + list(hooks or [])
    run_cfg = run_config_of(cfg, entry)
    processes = world_size(launcher)
    if resume_from is not None:
        check_resumes_this_run(resume_from, run_cfg, entry, train_clips_record(train_ds.rows, processes))
    kw = runner_kwargs(run_cfg, model, train_ds, test_ds, work_dir, launcher, dev,
                       resume=resume_from is not None, load_from=str(resume_from) if resume_from else None,
                       hooks=run_hooks, world_size=processes)
    kw["visualizer"]["vis_backends"] = vis_backends(trackers, str(cfg.get("exp_name")), str(cfg.get("variant")),
                                                    work_dir, tags=dict(dataset=entry.dataset, entry=entry.key))
    runner = LoggingRunner(**kw)
    if on_runner:
        on_runner(runner)
    with checkpoint_safe_globals():
        try:
            runner.train()
        except ValueError as e:
            if resume_from is None or not any(s in str(e) for s in OTHER_OPTIMISER_GROUPS):
                raise
            # (the config is the same, the code is not: e.g. parameters it now keeps frozen)
            raise ValueError(f"--resume: {resume_from} holds the optimiser state of other tunable parameters than "
                             f"this model has ({e}): it was written by another version of this code. Train without "
                             "--resume: the old checkpoints are set aside, not lost") from None
    clock = next(h for h in runner.hooks if isinstance(h, TrainTimeHook))
    train_s = clock.total()
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
        test_views=str(cfg.data.test_views), num_train_clips=len(train_ds),
        paper_top1=cfg.get("paper_top1"), **cost, epochs=int(runner.epoch),
        arch=cfg.model.clip.arch, **model.pretrained_fields(),
        # the frames the variant reads (None for a modality it does not have)
        num_video_frames=int(cfg.model.num_video_frames) if "video" in cfg.model.modalities else None,
        num_pose_frames=int(cfg.model.num_pose_frames) if "pose" in cfg.model.modalities else None,
        crop_size=sizes["crop_size"], lr=float(cfg.train.lr), batch_size=int(cfg.train.batch_size),
        accumulative_counts=int(cfg.train.accumulative_counts), world_size=world, device=dev,
        amp=model.amp_dtype, seed=int(cfg.train.seed), train_seconds=round(train_s, 1),
        train_segments=clock.segments,
        checkpoint=_last_checkpoint(work_dir), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"init_from": init_sources} if init_sources else {}),
    )
    report.save_evaluation(work_dir, res, entry.classes, test_ds, title=f"{row['experiment']} / {row['variant']}")
    try:
        report.plot_curves(work_dir, work_dir / "curves.png", title=f"{row['experiment']} / {row['variant']}")
    except Exception as e:  # noqa: BLE001
        log.warning("could not draw the training curves: %s", e)
    row.update(result_extra or {})
    report.write_json(work_dir / report.RESULT_FILE, row)
    return row


def _last_checkpoint(work_dir: Path) -> Optional[str]:
    p = work_dir / "last_checkpoint"
    if p.is_file():
        return p.read_text().strip()
    return None


#: run-config keys that change nothing a resumed run computes: how many processes load the data
#: (docs/training.md: the batches are the same), what is logged and kept, when validation runs and
#: with what batch, and where this machine keeps files (the CLIP weights themselves are compared
#: by their sha256 when the checkpoint loads: BackboneCheckpointHook)
NOT_THE_RUN = frozenset({"data.num_workers", "data.root", "train.log_interval", "train.max_keep_ckpts",
                         "train.val_interval", "train.test_batch_size", "model.clip.pretrained_path",
                         "model.clip.cache_dir"})


#: torch's words for an optimiser state of other parameter groups than the optimiser's
OTHER_OPTIMISER_GROUPS = ("different number of parameter groups", "doesn't match the size of optimizer's group")


def check_resumes_this_run(checkpoint: Path, run_cfg: Config, entry: CacheEntry,
                           train_clips: Optional[dict] = None) -> None:
    """Refuse to resume from a checkpoint that another config wrote (a run abandoned for a changed
    setting: its weights, optimiser and schedule would go on under this run's name), naming the
    keys that differ, or that was trained on another cache entry. Keys of :data:`NOT_THE_RUN` may
    change. A key the checkpoint's record lacks is a setting newer than the code that wrote it (or
    one this code dropped): taken as it is now, and named in a warning. A checkpoint without a run
    record (written before 2026-12) is taken as it is."""
    from stages.train.hooks import RUN_RECORD_KEY, TRAIN_CLIPS_KEY, run_record

    meta = read_checkpoint_meta(checkpoint)
    record = meta.get(RUN_RECORD_KEY) or {}
    their_clips = meta.get(TRAIN_CLIPS_KEY)
    theirs_n, ours_n = (their_clips or {}).get("processes"), (train_clips or {}).get("processes")
    if theirs_n is not None and ours_n is not None and theirs_n != ours_n:  # (records before 2026-12-06 lack it)
        raise ValueError(f"--resume: {checkpoint} was trained by {theirs_n} process(es), this run has {ours_n}: its "
                         "iterations per epoch, batch per step and learning-rate schedule would not go on. Resume "
                         f"with as many (torchrun --nproc_per_node {theirs_n}), or train without --resume: the old "
                         "checkpoints are set aside, not lost")
    same_clips = ("count", "uids_sha256")
    if train_clips is not None and their_clips and any(their_clips.get(k) != train_clips.get(k) for k in same_clips):
        raise ValueError(f"--resume: {checkpoint} was trained on {their_clips['count']} clips, this run reads "
                         f"{train_clips['count']}" + (" (other clips, as many)" if their_clips["count"] ==
                                                      train_clips["count"] else "") + " of entry " + entry.key
                         + ": its schedule (iterations per epoch) and data order would not go on. Resume over the "
                         "clips it trained on (`pipeline extract` redoes those missing), or train without --resume: "
                         "the old checkpoints are set aside, not lost")
    theirs = record.get("run_config")
    if theirs is None:
        return
    their_entry = (record.get("entry") or {}).get("key")
    if their_entry and their_entry != entry.key:
        raise ValueError(f"--resume: {checkpoint} was trained on cache entry {their_entry}, this run reads entry "
                         f"{entry.key}: its weights and schedule would go on over other clips. Resume on entry "
                         f"{their_entry} (--entry {their_entry}), or train without --resume: the old checkpoints "
                         "are set aside, not lost")
    mine = run_record(run_cfg, entry)["run_config"]
    # (a record without a setting added later at its neutral value computed that value)
    theirs_flat = with_neutral_settings(dotted_leaves(recorded_as_now(theirs)))
    mine_flat = with_neutral_settings(dotted_leaves(mine))
    diff, newer = [], []
    for k in sorted(set(theirs_flat) | set(mine_flat)):
        both = k in theirs_flat and k in mine_flat
        if k in NOT_THE_RUN or (both and theirs_flat[k] == mine_flat[k]):
            continue
        if both:
            diff.append(f"{k}: {theirs_flat[k]!r} -> {mine_flat[k]!r}")
        elif _setting_of_another_version(k, theirs_flat if k not in theirs_flat else mine_flat):
            newer.append(k)
        else:  # a value that changed shape ({} -> a dict, None -> a dict) or a free-form dict's own keys
            diff.append(f"{k}: {theirs_flat.get(k, '(absent)')!r} -> {mine_flat.get(k, '(absent)')!r}")
    if diff:
        raise ValueError(f"--resume: {checkpoint} was written by a run of another config ({'; '.join(diff[:5])}"
                         + (f"; {len(diff) - 5} more" if len(diff) > 5 else "") + "). Resume with the config it was "
                         "trained with, or train without --resume: the old checkpoints are set aside, not lost")
    if newer:
        log.warning("--resume: %s was written by code without the settings %s (or with settings this code no longer "
                    "has); they take this run's values %s", checkpoint, ", ".join(newer),
                    {k: mine_flat.get(k) for k in newer if k in mine_flat})


#: run-config dicts whose keys are values, not settings (a variant's sources, raw mmengine
#: arguments, a pose source's or adapter's options): a key they gain or lose is a change
FREE_FORM = ("init_from", "runner", "model_wrapper_cfg", "data.pose_options", "data.dataset_options")


def _setting_of_another_version(key: str, lacking: dict) -> bool:
    """Whether ``key``, present on one side of a resume comparison and absent from ``lacking``
    (the other side's dotted leaves), is a setting that one version of the code has and the other
    not: its group is a dict on both sides (another of its keys is there), it is not inside a
    :data:`FREE_FORM` dict, and no part of its path is a value on the lacking side."""
    group = key.rpartition(".")[0]
    if any(group == f or group.startswith(f + ".") for f in FREE_FORM):
        return False
    if any(key.startswith(k + ".") or k.startswith(key + ".") for k in lacking):  # a value on one side, a dict
        return False                                                                # on the other ({}, None)
    return any(k.rpartition(".")[0] == group for k in lacking)


#: model settings that do not define the model a checkpoint's weights belong to: where the
#: training machine kept files (this machine's are given with -c), and what acts only in training
NOT_THE_MODEL = frozenset({"pretrained_path", "cache_dir", "checkpoint", "drop_path"})
#: the data settings of how a run measured its test split: an evaluation of its checkpoint takes them
#: as recorded (its metrics then match the run's own), unless its -c sets them
TEST_PROTOCOL = ("data.test_views",)


def check_trained_model_type(record: dict, cfg: Config, checkpoint: os.PathLike, exp: str) -> None:
    """Refuse to build, for a checkpoint whose run record (``record``: ``meta.run_record``) says
    which model its weights are (``model.type``: PeVL, PGVT), another model because the command
    named another experiment (the weights then failed to load with a message about settings
    "this version refuses", or a CLIP file to fetch)."""
    theirs = ((record or {}).get("run_config") or {}).get("model", {}).get("type")
    ours = cfg.model.get("type")
    if theirs and ours and theirs != ours:
        raise ValueError(f"checkpoint {checkpoint} holds a {theirs} model (trained as {record.get('experiment')}/"
                         f"{record.get('variant')}); --exp {exp} builds a {ours} for variant {cfg.get('variant')}: "
                         "give the experiment it was trained with")


def trained_model_settings(recorded: dict, cfg: Config, entry: CacheEntry, given: dict) -> tuple[dict, list[str]]:
    """What a checkpoint's recorded run config (``recorded``: ``meta.run_record.run_config``) says
    the model was, against ``cfg`` built for evaluating it: ``(options, unknown)``, where ``options``
    are the ``model.*`` settings (dotted, as ``--cfg-options`` takes them) whose trained value
    differs from ``cfg``'s, to build the model the weights belong to (a training ``-c`` that changed
    no tensor shape would otherwise be dropped without a word: the weights load, the model differs),
    and ``unknown`` the recorded model settings this version does not have. A setting ``given``
    (this command's ``-c``) that contradicts the trained one is a ValueError naming both. The
    recorded :data:`TEST_PROTOCOL` is in ``options`` too where it differs and ``given`` does not set it."""
    ours = dotted_leaves(to_plain(cfg.model), "model")
    made = dotted_leaves(to_plain(run_config_of(cfg, entry).model), "model")  # with what the entry adds
    theirs = dotted_leaves(recorded_as_now(recorded).get("model") or {}, "model")
    options, unknown, clash = {}, [], []
    for k, v in theirs.items():
        if k.rsplit(".", 1)[-1] in NOT_THE_MODEL:
            continue
        if k not in made:
            unknown.append(k)
        elif k in ours and made[k] != v:
            if k in given:
                clash.append(f"{k}: trained {v!r}, -c gives {given[k]!r}")
            options[k] = v
    if clash:
        raise ValueError(f"the checkpoint's weights were trained with other model settings than this command gives "
                         f"({'; '.join(clash)}): leave them out, its model is built as it was trained")
    # and the test protocol the run measured with, unless this command's -c asks for another on purpose
    recorded_data = dotted_leaves(recorded.get("data") or {}, "data")
    ours_data = dotted_leaves(to_plain(cfg.data), "data")
    for k in TEST_PROTOCOL:
        if k in recorded_data and k in ours_data and recorded_data[k] != ours_data[k] and k not in given:
            options[k] = recorded_data[k]
    return options, unknown


def evaluate_checkpoint(cfg: Config, checkpoint: str, entry: CacheEntry, out_dir: os.PathLike,
                        **kw) -> Optional[dict]:
    """Evaluate ``checkpoint`` (:func:`_evaluate_checkpoint`), marked as a reader of ``entry``."""
    with reading(entry.path):
        return _evaluate_checkpoint(cfg, checkpoint, entry, out_dir, **kw)


def _evaluate_checkpoint(cfg: Config, checkpoint: str, entry: CacheEntry, out_dir: os.PathLike, *,
                        launcher: str = "none", device: Optional[str] = None, allow_partial: bool = False,
                        split: Optional[str] = None) -> Optional[dict]:
    """Evaluate ``checkpoint`` (3 crops x 1 clip, every class text once) into ``out_dir``."""
    out_dir = Path(out_dir)
    dev = resolve_device(device)
    init_distributed(launcher)
    rank, _ = get_dist_info()
    if split:
        cfg.data.test_split = split
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    model = build_wrapped_model(cfg, entry, dev)
    # every tensor of the variant's model from the checkpoint, or a refusal naming what does not fit
    # (mmengine's load_from loads what matches and leaves the rest at random init, with a log line)
    load_checkpoint_into(model, checkpoint)
    sizes = check_entry_fits(cfg, entry, model)
    _, test_ds = build_datasets(cfg, entry, sizes["crop_size"], allow_partial, train=False, device=dev)
    cost = model_cost(cfg, entry, model) if rank == 0 else {}
    kw = runner_kwargs(run_config_of(cfg, entry), model, None, test_ds, out_dir, launcher, dev,
                       world_size=world_size(launcher))
    runner = LoggingRunner(**kw)
    t0 = time.time()
    with checkpoint_safe_globals():
        runner.test()
    if rank != 0:
        return None
    res = runner.test_loop.evaluator.metrics[0].last_result
    row = dict(experiment=cfg.get("exp_name"), variant=cfg.get("variant"), dataset=entry.dataset, entry=entry.key,
               split=test_ds.split, checkpoint=str(checkpoint), num_classes=len(entry.classes),
               num_test_clips=len(test_ds), **metric_row(res), test_views=str(cfg.data.test_views),
               paper_top1=cfg.get("paper_top1"), **cost,
               arch=cfg.model.clip.arch, **model.pretrained_fields(), device=dev, eval_seconds=round(time.time() - t0, 1))
    report.save_evaluation(out_dir, res, entry.classes, test_ds, title=f"{row['experiment']} / {row['variant']}")
    report.write_json(out_dir / "metrics.json", row)
    return row
