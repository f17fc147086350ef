"""``pipeline train`` and ``pipeline eval``: stage two, from the cache only.

``pipeline train --exp NAME`` trains every variant of ``configs/experiments/NAME.py`` (or those
named with ``--variant``) into ``W/NAME/VARIANT/`` and writes ``W/NAME/results.md`` and
``results.json``; ``pipeline eval --exp NAME --variant V --checkpoint PATH`` evaluates one
checkpoint. Neither decodes a video or runs a pose model: clips come from the cache entry that
``pipeline extract`` filled (found by recomputing its key, or given with ``--entry``).
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import List, Optional

import typer

from pipeline.commands.common import CacheRootOpt, checked_device, console, folder_option, path_str

CFG_HELP = ("Override any config value, mmengine style: KEY=VALUE (repeatable, several after one -c "
             "(train, eval, explain), or several in one quoted string), each checked (an unknown key or a wrong type is an error naming it). Keys: train.* (the "
             "schedule: max_epochs, warmup_epochs, lr, weight_decay, batch_size, accumulative_counts, amp, "
             "val_interval, seed, ...), model.* (every model switch, e.g. model.ucmr.num_blocks=2, "
             "model.clip.pretrained_path=/w/ViT-B-16.pt), data.* (the entry and the items: dataset, "
             "extract.short_side, pose_options.checkpoint, num_workers, flip_prob, ...), runner.* (raw mmengine "
             "Runner arguments). `pipeline train --print-config` shows every key of a variant.")


def setup_run(device: Optional[str]) -> None:
    """CUDA hidden before torch looks when the run is on the cpu."""
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch looks at CUDA


def options_with_root(cfg_options: Optional[List[str]], root: Optional[Path]) -> dict:
    """``--cfg-options`` parsed, with ``--root`` as ``data.root``."""
    from stages.train.config import parse_cfg_options

    try:
        opts = parse_cfg_options(cfg_options)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--cfg-options")
    if root is not None:
        if not root.is_dir():
            raise typer.BadParameter(f"{root}: no such folder (the raw dataset's root)", param_hint="--root")
        given = opts.setdefault("data.root", str(root))
        if os.path.abspath(str(given)) != os.path.abspath(str(root)):  # (-c won, unsaid)
            raise typer.BadParameter(f"--root {root} and -c data.root={given} disagree; give one",
                                     param_hint="--root")
    return opts


def _same_number(given, want: int) -> bool:
    """Whether a -c value is the number ``want`` (``0.0`` and ``"0"`` are 0)."""
    try:
        return float(given) == want
    except (TypeError, ValueError):
        return False


def checkpoint_run(exp: str, variant: Optional[str], checkpoint: Path, dataset: Optional[str], opts: dict,
                   cache_root: Optional[Path], entry: Optional[str]):
    """(run config, cache entry) of the variant a checkpoint belongs to (default: the variant it
    records, else the experiment's first), on the cache entry the checkpoint was trained on (its
    run record; ``--entry`` names another), the run config built from that entry as `train --entry`
    builds it (:func:`stages.train.sweep.entry_run_options`); a missing checkpoint is a
    FileNotFoundError, an entry whose classes are not the checkpoint's a ValueError."""
    from cache import EntryNotFoundError
    from stages.data.entry_lookup import find_entry
    from stages.train.checkpoints import read_checkpoint_meta
    from stages.train.config import build_run_config, list_variants, load_experiment, refuse_idle_overrides
    from stages.train.runner import check_trained_model_type
    from stages.train.sweep import entry_run_options, experiment_dir_name

    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint {checkpoint}")
    exp_cfg = load_experiment(exp)  # an unknown experiment is said before the checkpoint is opened
    try:
        meta = read_checkpoint_meta(checkpoint)
    except (EOFError, RuntimeError, OSError, KeyError, ValueError, pickle.UnpicklingError) as ex:
        # torch.load's words for a file that is not a checkpoint
        raise ValueError(f"checkpoint {checkpoint} cannot be read ({type(ex).__name__}: {ex})") from None
    rec = meta.get("run_record") or {}
    variants = list_variants(exp_cfg)
    # the variant the checkpoint records, when it is one of this experiment's (else the first)
    v = variant or (rec.get("variant") if rec.get("variant") in variants else variants[0])
    trained_on = (rec.get("entry") or {}).get("key")
    root = path_str(cache_root)
    if entry or trained_on:
        try:
            opts, dataset, e = entry_run_options(entry or trained_on, root, dataset, opts)
        except EntryNotFoundError:
            if entry:
                raise
            raise EntryNotFoundError(f"checkpoint {checkpoint} was trained on cache entry {trained_on}, which is not "
                                     "in this cache: give --entry KEY of an entry with its classes (`pipeline cache "
                                     "ls`), or --cache-root of the cache it was trained from") from None
    cfg = build_run_config(exp, v, dataset=dataset, cfg_options=opts)
    cfg["exp_name"] = experiment_dir_name(exp_cfg, exp, dataset)  # as a training run names it
    check_trained_model_type(rec, cfg, checkpoint, exp)
    if not (entry or trained_on):  # a checkpoint from before runs were recorded: the entry the run config names
        e = find_entry(cfg.data.to_dict(), cache_root=root)
    if variant and rec.get("variant") in variants and variant != rec["variant"]:
        raise ValueError(f"checkpoint {checkpoint} was trained as variant {rec['variant']} "
                         f"({rec.get('experiment')}); --variant {variant} names another: leave --variant out "
                         "(the checkpoint's own is used)")
    recorded = rec.get("run_config")
    if recorded:  # the model its weights belong to, whatever this command's experiment defaults to
        from stages.train.runner import trained_model_settings

        trained, unknown = trained_model_settings(recorded, cfg, e, opts)
        if trained:
            from stages.settings import SettingsError

            try:
                cfg = build_run_config(exp, v, dataset=dataset, cfg_options={**opts, **trained})
                cfg["exp_name"] = experiment_dir_name(exp_cfg, exp, dataset)
            except SettingsError as ex:
                raise ValueError(f"checkpoint {checkpoint} records model settings this version refuses "
                                 f"({'; '.join(f'{k}={val!r}' for k, val in trained.items())}): {ex}. It was trained "
                                 "by another version of this code") from None
            console.print(f"[yellow]note:[/] {checkpoint} was trained with "
                          + "; ".join(f"{k}={val!r}" for k, val in trained.items())
                          + " (this command's config says otherwise): it is built and measured so", highlight=False)
        if unknown:
            console.print(f"[yellow]note:[/] {checkpoint} records model settings this version does not have "
                          f"({', '.join(unknown[:5])}): it was trained by another version", highlight=False)
        said = (rec.get("experiment"), rec.get("variant"))
        if said != (cfg.get("exp_name"), v) and said[1] is not None:
            console.print(f"[yellow]note:[/] {checkpoint} was trained as {said[0]}/{said[1]}; the outputs are labelled "
                          f"{cfg.get('exp_name')}/{v}", highlight=False)
    refuse_idle_overrides(cfg, opts, f"the model of {checkpoint.name}")
    classes = (meta.get("dataset_meta") or {}).get("classes")
    if classes is not None and list(classes) != list(e.classes):
        raise ValueError(f"cache entry {e.key} ({e.dataset}, {len(e.classes)} classes) has other classes than "
                         f"checkpoint {checkpoint} was trained on ({len(classes)} classes"
                         + (f", entry {trained_on}" if trained_on else "") + "): give --entry of the training entry")
    return cfg, e


def train(
    exp: str = typer.Option(..., "--exp", "-e", help="Experiment: a name under configs/experiments/ (demo, ucmr_ablate, table4_components, ...) or a path to one."),
    variant: Optional[List[str]] = typer.Option(None, "--variant", "-V", help="Train only these variants (repeatable, or a comma list). Default: every variant, in the paper's row order."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Train on this dataset instead of the experiment's (configs/_base_/datasets/NAME.py). '--dataset demo' ALSO applies configs/_base_/datasets/demo.py: the tiny random-init CLIP, the demo's pose input and its short CPU schedule (each variant keeps its other switches); results go to W/NAME-demo/."),
    work_dir: Path = typer.Option(Path("work_dirs"), "--work-dir", "-w", help="Root of the outputs: W/NAME/VARIANT/ per variant (checkpoints, logs, TensorBoard, curves.png, confusion.png, result.json) and W/NAME/results.{md,json}."),
    cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options", "-c", help=CFG_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue each unfinished variant from the last checkpoint in its work dir (model, optimiser, schedule, epoch, seed)."),
    force: bool = typer.Option(False, "--force", help="Retrain variants that finished before (a rerun skips them by default)."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="Train on an incomplete cache entry's clips instead of refusing it (the refusal lists the missing clips)."),
    entry: Optional[str] = typer.Option(None, "--entry", help="Use this cache entry (key, unique key prefix or path) instead of looking it up from the dataset config. The run config's data settings become the entry's own, and the outputs go to W/NAME-DATASET/ when its dataset is not the experiment's."),
    cache_root: Optional[Path] = CacheRootOpt,
    root: Optional[Path] = typer.Option(None, "--root", help="The raw dataset's root (data.root): for --check-sources and the extract command a missing entry names; the entry lookup does not use it, and nothing is decoded."),
    launcher: str = typer.Option("none", "--launcher", help="'none' (one process) or 'pytorch' (under torchrun: torchrun --nproc_per_node N -m pipeline train ... --launcher pytorch; NCCL on GPUs, gloo on CPU)."),
    device: Optional[str] = typer.Option(None, "--device", callback=checked_device, help="cuda or cpu. Default: cuda when available. bf16 autocast on cuda (train.amp), fp32 on cpu."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (model init, shuffling, augmentation). Default: train.seed (0)."),
    check_sources: bool = typer.Option(False, "--check-sources", help="Before training, re-plan the entry from the raw dataset (data.root, or the root it was made from) and refuse it if the dataset's files changed since it was made (names what changed). Parses annotations and stats videos; decodes nothing."),
    print_config: bool = typer.Option(False, "--print-config", help="Print each selected variant's resolved run config (every key, defaults filled in) and stop."),
    tracker: Optional[List[str]] = typer.Option(None, "--tracker", help="Experiment trackers, repeatable or a comma list: tensorboard, mlflow (experiment = the experiment, run = the variant; $MLFLOW_TRACKING_URI, else a local store W/NAME/mlruns), wandb ($WANDB_PROJECT, default pevl; WANDB_MODE=offline to sync later), or none. Default: tensorboard. mlflow and wandb need `pip install -e .[trackers]`."),
    json_out: bool = typer.Option(False, "--json", help="Print the experiment's result rows as JSON on stdout (instead of the table)."),
):
    """Train every variant of an experiment from the cache, then write its results table."""
    setup_run(device)
    from pipeline.logs import is_quiet
    from stages.train.sweep import run_sweep
    from stages.train.trackers import parse_trackers

    opts = options_with_root(cfg_options, root)
    if seed is not None:  # one place for the seed, so --print-config shows the one the run uses
        if "train.seed" in opts and not _same_number(opts["train.seed"], seed):
            raise typer.BadParameter(f"--seed {seed} and -c train.seed={opts['train.seed']} disagree; give one",
                                     param_hint="--seed")
        opts["train.seed"] = seed
    # every option checked before --print-config says the command would run
    if launcher not in ("none", "pytorch"):
        raise typer.BadParameter("--launcher must be 'none' or 'pytorch'")
    refuse_launcher_outside_torchrun(launcher, "train")
    try:
        trackers = parse_trackers(tracker)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--tracker")
    if print_config:
        _print_configs(exp, variant, dataset, opts, entry, path_str(cache_root))
        return
    rank = int(os.environ.get("RANK", "0")) if launcher == "pytorch" else 0

    def say(msg: str) -> None:
        from rich.markup import escape

        tag, sep, rest = msg.partition("] ")
        if (rank != 0 and tag != "[fail") or (is_quiet() and tag not in ("[fail", "[busy", "[warn")):
            return  # (every process's failure is said: under torchrun it may be one process's alone)
        style = {"[fail": "red", "[done": "green", "[skip": "yellow", "[warn": "yellow", "[busy": "yellow"}.get(tag, "bold")
        if msg.startswith("[") and sep:
            console.print(f"[{style}]{escape(tag + ']')}[/] {escape(rest)}", highlight=False)
        else:
            console.print(escape(msg), highlight=False)

    try:
        rep = run_sweep(exp, variants=variant, dataset=dataset, work_dir=work_dir, cfg_options=opts, resume=resume,
                        allow_partial=allow_partial, entry=entry, cache_root=path_str(cache_root),
                        launcher=launcher, device=device, force=force, check_sources=check_sources,
                        say=say, trackers=trackers)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: checkpoints are kept; rerun with --resume to continue.")
        raise typer.Exit(130)
    if rank != 0:
        raise typer.Exit(1 if rep.unfinished else 0)
    if json_out:
        from pipeline.output import print_json

        print_json([o.row or dict(variant=o.variant, status=o.status, error=o.error) for o in rep.outcomes])
    else:
        _summary(rep)
    if rep.unfinished or rep.results_error:
        raise typer.Exit(1)


def _print_configs(exp: str, variants: Optional[List[str]], dataset: Optional[str], opts: dict,
                   entry: Optional[str] = None, cache_root: Optional[str] = None) -> None:
    """Each selected variant's resolved run config, as an mmengine Python config (with ``entry``:
    as `train --entry` runs it)."""
    from mmengine.config import Config

    from pipeline.commands.common import out
    from stages.train.config import build_run_config, idle_overrides, load_experiment
    from stages.train.sweep import entry_run_options, select_variants

    if entry:
        opts, dataset, _ = entry_run_options(entry, cache_root, dataset, opts)

    for v in select_variants(load_experiment(exp), variants):
        cfg = build_run_config(exp, v, dataset=dataset, cfg_options=opts)
        out.print(f"# {exp} / {v}" + (f" on {dataset}" if dataset else ""), highlight=False)
        out.print("# model.num_classes, num_joints and num_persons are set from the cache entry when the run starts "
                  "(the config saved beside the run holds them)", highlight=False, markup=False)
        for key, what in idle_overrides(cfg, opts).items():
            out.print(f"# -c {key} {what}", highlight=False, markup=False)
        out.print(Config(cfg.to_dict()).pretty_text, highlight=False, markup=False)


def _summary(rep) -> None:
    """The variants' table on stdout; where the files are on stderr (failures were said as they happened)."""
    from rich.table import Table

    from pipeline.output import info, out, print_table

    t = Table(title=f"{rep.experiment}: {len(rep.outcomes)} variant(s)")
    paper = {r["variant"]: r for r in rep.rows}  # (the table's rows carry the paper's numbers)
    paper_mean = any(r.get("paper_mean_class_acc") is not None for r in rep.rows)
    for col in ("variant", "status", "top-1", "paper", "top-5", "mean", *(["paper mean"] if paper_mean else []),
                "params M", "GFLOPs"):
        t.add_column(col, justify="left" if col in ("variant", "status") else "right")
    for o in rep.outcomes:
        r = {**paper.get(o.variant, {}), **(o.row or {})}
        f = (lambda k, nd=2: "-" if r.get(k) is None else f"{r[k]:.{nd}f}")
        status = {"trained": "[green]trained[/]", "skipped": "[yellow]done before[/]", "failed": "[red]failed[/]",
                  "busy": "[yellow]another run trains it[/]"}[o.status] + (
            " [yellow](other config)[/]" if o.other_config else "")
        t.add_row(o.variant, status, f("top1"), f("paper_top1", 1), f("top5"), f("mean_class_acc"),
                  *([f("paper_mean_class_acc", 1)] if paper_mean else []), f("tunable_params_m", 3), f("gflops", 3))
    print_table(t, to=out)
    info(f"work dirs: {rep.exp_dir}/<variant>/ (checkpoints, logs, curves.png, confusion.png)", markup=False)
    if rep.rows and not rep.results_error:
        info(f"results: {rep.exp_dir / 'results.md'} and {rep.exp_dir / 'results.json'}", markup=False)


def refuse_launcher_outside_torchrun(launcher: str, command: str) -> None:
    """``--launcher pytorch`` without torchrun (mmengine said only 'RANK expected')."""
    if launcher == "pytorch" and "RANK" not in os.environ:
        raise typer.BadParameter(f"'pytorch' runs under torchrun, which sets RANK and WORLD_SIZE: torchrun "
                                 f"--nproc_per_node N -m pipeline {command} ... --launcher pytorch", param_hint="--launcher")


def eval_(
    exp: str = typer.Option(..., "--exp", "-e", help="Experiment name or path (as for train)."),
    variant: Optional[str] = typer.Option(None, "--variant", "-V", help="The variant the checkpoint belongs to (default: the one it records, else the experiment's first)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by `pipeline train` (W/NAME/VARIANT/epoch_N.pth)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="As for train (demo also switches to the tiny model)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate. Default: the dataset config's test_split."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", "-o", callback=folder_option, help="Where metrics.json, confusion.{json,png} and predictions.json go. Default: eval_<checkpoint name>/ beside the checkpoint (-<split> with --split, -<experiment> under another experiment than its folder's)."),
    cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options", "-c", help=CFG_HELP),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="Evaluate on an incomplete entry's clips."),
    entry: Optional[str] = typer.Option(None, "--entry", help="Cache entry key, prefix or path to evaluate on. Default: the entry the checkpoint was trained on (its run record), else the run config's lookup."),
    cache_root: Optional[Path] = CacheRootOpt,
    root: Optional[Path] = typer.Option(None, "--root", help="The raw dataset's root (data.root): only for the extract command a missing entry names; the entry lookup does not use it."),
    launcher: str = typer.Option("none", "--launcher", help="'none' or 'pytorch' (torchrun)."),
    device: Optional[str] = typer.Option(None, "--device", callback=checked_device, help="cuda or cpu (default: cuda when available)."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics (metrics.json's row) as JSON on stdout."),
):
    """Evaluate a checkpoint: every class text once, 3 crops x 1 clip, Top-1/Top-5/mean class accuracy
    and a confusion matrix (JSON and PNG)."""
    refuse_launcher_outside_torchrun(launcher, "eval")
    setup_run(device)
    from pipeline.output import print_json
    from stages.train.runner import evaluate_checkpoint

    opts = options_with_root(cfg_options, root)
    cfg, e = checkpoint_run(exp, variant, checkpoint, dataset, opts, cache_root, entry)
    e.require_complete(allow_partial)
    od = out_dir or checkpoint.parent / default_eval_dir(checkpoint, cfg.get("exp_name"), split)
    row = evaluate_checkpoint(cfg, str(checkpoint), e, od, launcher=launcher, device=device,
                              allow_partial=allow_partial, split=split)
    if row is None:
        return
    if json_out:
        print_json(row)
        return
    from pipeline.output import out

    out.print(f"[bold]{row['experiment']}/{row['variant']}[/] on {row['dataset']} {row['split']} "  # the result: stdout
              f"({row['num_test_clips']} clips, 3 crops): top-1 {row['top1']:.2f}  top-5 {row['top5']:.2f}  "
              f"mean class {row['mean_class_acc']:.2f}", highlight=False)
    console.print(f"written to {od}", highlight=False, markup=False)


def default_eval_dir(checkpoint: Path, exp_name: Optional[str], split: Optional[str]) -> str:
    """``eval_<checkpoint name>``, with ``-<split>`` for a --split and ``-<experiment>`` when the run
    is labelled with another experiment than the one whose folder holds the checkpoint
    (W/NAME/VARIANT/epoch_N.pth): one eval no longer overwrites another's metrics."""
    name = f"eval_{checkpoint.stem}"
    if split:
        name += f"-{split}"
    if exp_name and checkpoint.resolve().parent.parent.name != exp_name:
        name += f"-{exp_name}"
    return name


if __name__ == "__main__":  # python -m pipeline.commands.train (torchrun without the console script)
    from pipeline.commands.common import wrap_commands

    app = typer.Typer(add_completion=False, rich_markup_mode=None)
    app.command("train")(train)
    app.command("eval")(eval_)
    wrap_commands(app)(sys.argv[1:])
