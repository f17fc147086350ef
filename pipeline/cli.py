"""The ``pipeline`` command line: stage one (extract), the cache, datasets, and stage two."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(
    help="PeVL pipeline: cache stage-one features once (`extract`), then train and ablate from the cache.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect, check and clean the shared feature cache.", no_args_is_help=True)
dataset_app = typer.Typer(help="Look at a dataset's annotations without decoding anything.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.add_typer(dataset_app, name="dataset")

console = Console(stderr=True)
out = Console()

# -- options shared by several commands -------------------------------------------------------
DatasetOpt = typer.Option(..., "--dataset", "-d", help="Dataset name: demo, gym99, gym288, diving48, haa500, toyota_smarthome, custom.")
RootOpt = typer.Option(None, "--root", help="Where the raw dataset lives, as its publishers distribute it (the demo needs none: it is generated under the cache root).")
CacheRootOpt = typer.Option(None, "--cache-root", envvar="PEVL_CACHE", help="Cache root shared by the lab. Default: $PEVL_CACHE, else ~/.cache/pevl.")
DatasetOptsOpt = typer.Option(None, "--dataset-option", "-o", help="Adapter option KEY=VALUE (e.g. protocol=cv1 for toyota_smarthome, boxes=PATH for FineGym). Repeatable.")
CoarseTypeOpt = typer.Option(None, "--coarse-type", help="Coarse action type for the text prompt '{label}, a video of {type} action' (custom datasets).")


def _setup_logging(verbose: bool) -> None:
    import warnings

    # Third-party import-time chatter (pkg_resources, mmcv-lite's missing ops) drowns our output.
    for mod in ("mmengine", "mmcv", "mmpose", "mmdet", "torch", "timm", "open_clip"):
        warnings.filterwarnings("ignore", module=mod)
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _kv(items: Optional[List[str]]) -> dict:
    outd = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {it!r}")
        outd[k.strip()] = v.strip()
    return outd


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
                    transient=False, disable=not console.is_terminal and os.environ.get("PEVL_PROGRESS") != "1")


def _dataset_options(dataset_option, coarse_type) -> dict:
    opts = _kv(dataset_option)
    if coarse_type:
        opts["coarse_type"] = coarse_type
    return opts


def _demo_progress_option(dataset: str, opts: dict, prog: Progress) -> None:
    if dataset == "demo":
        task = {}

        def cb(i, n):
            if "t" not in task:
                task["t"] = prog.add_task("generating demo videos", total=n)
            prog.update(task["t"], completed=i)

        opts["progress"] = cb


# -- extract ------------------------------------------------------------------------------------
@app.command()
def extract(
    dataset: str = DatasetOpt,
    root: Optional[Path] = RootOpt,
    cache_root: Optional[Path] = CacheRootOpt,
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Extraction processes on this machine; each runs its own decoder and pose model and they share the work through per-clip claims."),
    device: str = typer.Option("cpu", "--device", help="Where the pose model runs: cpu or cuda (or cuda:N)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Extract at most N clips in this run (the entry stays visibly incomplete; a rerun continues)."),
    pose_source: Optional[str] = typer.Option(None, "--pose-source", help="hrnet (mmpose HRNet-w32 COCO 256x192), dataset (poses the dataset ships: demo, toyota_smarthome) or pkl:PATH (mmaction2/pyskl 2D skeleton file). Default: the dataset's choice (demo: dataset; others: hrnet)."),
    pose_checkpoint: Optional[str] = typer.Option(None, "--pose-checkpoint", help="HRNet checkpoint: a local .pth file, or 'none' for random weights (poses meaningless, tests only). Default: the official file, looked for in $PEVL_WEIGHTS, <cache>/weights and torch's hub folder; never downloaded."),
    pose_batch_size: int = typer.Option(32, "--pose-batch-size", min=1, help="Person crops per HRNet forward pass (across frames)."),
    pose_flip_test: bool = typer.Option(True, "--pose-flip-test/--no-pose-flip-test", help="HRNet flip test (averages the flipped crop's heatmaps, as the official evaluation does; about twice the cost)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: take every N-th clip starting at K (0 <= K < N), so N processes or hosts fill one entry together, e.g. --shard $SLURM_ARRAY_TASK_ID/N."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", help="Video frames cached per clip at segment middles (T_v). Default 16."),
    short_side: Optional[int] = typer.Option(None, "--short-side", help="Short side of cached frames in pixels (rounded to the grid cell). Default 256 (demo: 128)."),
    grid_cell: Optional[int] = typer.Option(None, "--grid-cell", help="Mask-grid cell in pixels; must equal the ViT patch size the grids serve. Default 16."),
    frames_codec: Optional[str] = typer.Option(None, "--frames-codec", help="Compression of cached frames: lz4 (default), zstd or none."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Forget recorded failures and try those clips again."),
    engine: str = typer.Option("local", "--engine", help="local: --workers processes on this machine. dask: the clips still to do go to a Dask cluster in chunks (needs the dask extra: pip install -e .[dask]); claims still coordinate, so shard jobs and other runs may share the entry."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="With --engine dask: a running scheduler's address (tcp://HOST:8786; its workers must see the dataset and cache at the same paths), or local:N to start N single-threaded worker processes here. Default: local:<--workers>."),
    person_detector: Optional[str] = typer.Option(None, "--person-detector", help="HRNet person boxes for clips whose dataset gives none: an mmdet config (a file, a path under mmdet's .mim/configs, or faster-rcnn), highest-scoring person per frame. Needs full mmcv<2.2 with compiled ops (not mmcv-lite). Default: off (whole frame, with a warning)."),
    detector_checkpoint: Optional[str] = typer.Option(None, "--detector-checkpoint", help="Local .pth checkpoint of --person-detector (never downloaded); its hash joins the entry key."),
    dataset_option: Optional[List[str]] = DatasetOptsOpt,
    coarse_type: Optional[str] = CoarseTypeOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
):
    """Decode, pose and grid every clip of a dataset into the shared cache (resumable; a no-op when done)."""
    from pipeline.extract import ExtractOptions, parse_shard, run_extract

    _setup_logging(verbose)
    try:
        shard_t = parse_shard(shard)
    except ValueError as e:
        raise typer.BadParameter(str(e))
    prog = _progress()
    dopts = _dataset_options(dataset_option, coarse_type)
    _demo_progress_option(dataset, dopts, prog)
    opts = ExtractOptions(
        dataset=dataset, root=str(root) if root else None, cache_root=str(cache_root) if cache_root else None,
        pose_source=pose_source, pose_checkpoint=pose_checkpoint, device=device, workers=workers, limit=limit,
        shard=shard_t, retry_failed=retry_failed, pose_batch_size=pose_batch_size, pose_flip_test=pose_flip_test,
        settings=dict(num_frames=num_frames, short_side=short_side, grid_cell=grid_cell, frames_codec=frames_codec),
        dataset_options=dopts, person_detector=person_detector, detector_checkpoint=detector_checkpoint,
    )
    if engine not in ("local", "dask"):
        raise typer.BadParameter(f"--engine {engine}: want local or dask")
    if scheduler and engine != "dask":
        raise typer.BadParameter("--scheduler needs --engine dask")
    state = {}

    def on_start(plan, todo, already):
        state["task"] = prog.add_task(f"extracting {plan.index.name}", total=todo)
        console.print(f"entry [bold]{plan.key}[/] at {plan.entry_dir}\n"
                      f"  {len(plan.plan)} clips, {already} already cached in this shard, {todo} to do; "
                      f"pose source {plan.pose_spec}")
        if str(plan.pose_identity.get("checkpoint", "")).startswith("none"):
            console.print("[bold red]WARNING: HRNet runs with RANDOM WEIGHTS (--pose-checkpoint none): "
                          "the cached poses mean nothing. Use this only to test the pipeline.[/]")

    def progress(event, clip_id, reason):
        prog.advance(state["task"])
        if event == "failed":
            console.print(f"[red]failed[/] {clip_id}: {reason}")

    try:
        with prog:
            if engine == "dask":
                from pipeline.distributed import run_extract_dask

                rep = run_extract_dask(opts, scheduler, 0, progress=progress, on_start=on_start)
            else:
                rep = run_extract(opts, progress=progress, on_start=on_start)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished clips are kept; rerun the same command to resume.")
        raise typer.Exit(130)
    except Exception as e:  # planning errors: layout, missing checkpoint, bad option
        if verbose:
            raise
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2)
    _print_extract_summary(rep)
    if rep.failures:
        raise typer.Exit(1)


def _print_extract_summary(rep) -> None:
    st = rep.entry.status()
    c = rep.counters
    console.print(
        f"[bold]summary[/] entry {rep.entry.key}: {st.done}/{st.total} clips cached, {st.failed} failed, "
        f"{len(st.missing)} missing; this run: {len(rep.done_now)} extracted, {len(rep.failed_now)} failed, "
        f"{rep.already} already there; decoded {c.decoded_clips} clips ({c.decoded_frames} frames), "
        f"{c.pose_calls} pose calls, {rep.seconds:.1f} s. "
        + ("[green]complete[/]" if rep.complete else "[yellow]incomplete[/] (rerun to continue)"))
    fails = rep.failures
    if fails:
        new = {cid for cid, _ in rep.failed_now}
        console.print(f"[red]{len(fails)} clip(s) failed[/] (see failures/ in the entry; --retry-failed retries):")
        for uid, f in list(fails.items())[:50]:
            tag = " (this run)" if f.get("clip_id") in new else ""
            console.print(f"  {f.get('clip_id', uid)}{tag}: {f.get('reason')}")
        if len(fails) > 50:
            console.print(f"  ... and {len(fails) - 50} more")


# -- dataset info --------------------------------------------------------------------------------
@dataset_app.command("info")
def dataset_info(
    dataset: str = DatasetOpt,
    root: Optional[Path] = RootOpt,
    cache_root: Optional[Path] = CacheRootOpt,
    dataset_option: Optional[List[str]] = DatasetOptsOpt,
    coarse_type: Optional[str] = CoarseTypeOpt,
    show_classes: bool = typer.Option(False, "--classes", help="List every class text."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
):
    """Parse a dataset's annotations and report splits, clip counts, classes and missing videos."""
    from pipeline.extract import ExtractOptions, build_adapter

    dopts = _dataset_options(dataset_option, coarse_type)
    prog = _progress()
    _demo_progress_option(dataset, dopts, prog)
    try:
        with prog:
            adapter = build_adapter(ExtractOptions(dataset=dataset, root=str(root) if root else None,
                                                   cache_root=str(cache_root) if cache_root else None,
                                                   dataset_options=dopts))
            index = adapter.load()
    except Exception as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2)
    missing = index.missing()
    per_class: dict[int, int] = {}
    for c in index.clips:
        per_class[c.label] = per_class.get(c.label, 0) + 1
    info = {
        "dataset": index.name, "root": index.root, "num_classes": index.num_classes,
        "coarse_type": index.coarse_type, "skeleton": index.skeleton, "clips": len(index.clips),
        "splits": index.split_counts(), "missing_videos": len(missing),
        "missing_examples": [c.clip_id for c in missing[:20]],
        "classes_without_clips": [i for i in range(index.num_classes) if i not in per_class],
        "annotation_files": index.source_files, "meta": index.meta,
    }
    if show_classes:
        info["classes"] = index.classes
    if as_json:
        out.print_json(json.dumps(info, default=str))
        return
    t = Table(title=f"{index.name}: {index.num_classes} classes, coarse type '{index.coarse_type}'", show_header=False)
    for k in ("root", "skeleton", "clips"):
        t.add_row(k, str(info[k]))
    for s, n in sorted(index.split_counts().items()):
        t.add_row(f"split {s}", str(n))
    t.add_row("missing videos", str(len(missing)) + (f" (e.g. {', '.join(info['missing_examples'][:5])})" if missing else ""))
    if info["classes_without_clips"]:
        t.add_row("classes with no clip", str(len(info["classes_without_clips"])))
    for k, v in index.meta.items():
        t.add_row(str(k), str(v))
    out.print(t)
    if show_classes:
        ct = Table("class", "clips", "label text")
        for i, txt in enumerate(index.classes):
            ct.add_row(str(i), str(per_class.get(i, 0)), txt)
        out.print(ct)


# -- cache -----------------------------------------------------------------------------------------
def _store(cache_root):
    from cache import CacheStore
    from pipeline.paths import default_cache_root

    return CacheStore(cache_root or default_cache_root())


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


@cache_app.command("ls")
def cache_ls(
    cache_root: Optional[Path] = CacheRootOpt,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset's entries."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List cache entries with size, completeness and settings."""
    from cache.fsutil import dir_size

    store = _store(cache_root)
    rows = []
    for e in store.entries(dataset):
        st = e.status()
        s = e.settings
        rows.append({"key": e.key, "dataset": e.dataset, "status": "complete" if st.complete else "incomplete",
                     "done": st.done, "failed": st.failed, "total": st.total, "bytes": dir_size(e.path),
                     "pose": s.get("pose_source"), "frames": s.get("num_frames"), "short_side": s.get("short_side"),
                     "created": e.attrs.get("created", {}).get("time"), "path": str(e.path)})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    t = Table(title=f"cache {store.root}")
    t.add_column("key", no_wrap=True)
    for col in ("dataset", "status", "clips", "failed", "size", "pose", "T_v", "short side", "created"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["key"], r["dataset"], r["status"], f"{r['done']}/{r['total']}", str(r["failed"]),
                  _human(r["bytes"]), str(r["pose"]), str(r["frames"]), str(r["short_side"]), str(r["created"]))
    out.print(t)


@cache_app.command("info")
def cache_info(
    key: str = typer.Argument(..., help="Entry key (a unique prefix is enough) or path."),
    cache_root: Optional[Path] = CacheRootOpt,
):
    """Show an entry's manifest: provenance, settings, counts and failures (live status)."""
    store = _store(cache_root)
    try:
        e = store.open(key)
    except Exception as ex:
        console.print(f"[red]error:[/] {ex}")
        raise typer.Exit(2)
    m = e.manifest()
    st = e.status()
    m["live_status"] = {"complete": st.complete, "done": st.done, "failed": st.failed,
                        "in_flight_claims": st.claimed, "missing": len(st.missing)}
    m["path"] = str(e.path)
    out.print_json(json.dumps(m, default=str))


@cache_app.command("verify")
def cache_verify(
    key: Optional[str] = typer.Argument(None, help="Entry key or path; default: every entry."),
    cache_root: Optional[Path] = CacheRootOpt,
    quick: bool = typer.Option(False, "--quick", help="Shapes only; skip re-hashing array contents."),
):
    """Check entries: every cached clip opens, has the right shapes and (default) matches its digests."""
    store = _store(cache_root)
    entries = [store.open(key)] if key else store.entries()
    bad = 0
    prog = _progress()
    with prog:
        for e in entries:
            task = prog.add_task(f"verifying {e.key}", total=max(1, e.status().done))
            rep = store.verify(e, deep=not quick, progress=lambda i, n: prog.update(task, completed=i))
            st = e.status()
            state = "complete" if st.complete else f"incomplete ({len(st.missing)} missing)"
            if rep.ok:
                console.print(f"[green]ok[/] {e.key} ({e.dataset}): {rep.checked} clips checked, {state}")
            else:
                bad += 1
                console.print(f"[red]{len(rep.problems)} problem(s)[/] in {e.key} ({e.dataset}):")
                for p in rep.problems[:50]:
                    console.print(f"  {p}")
    if bad:
        raise typer.Exit(1)


@cache_app.command("gc")
def cache_gc(
    cache_root: Optional[Path] = CacheRootOpt,
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only say what would be removed."),
    incomplete_older_than: Optional[float] = typer.Option(None, "--incomplete-older-than", help="Also remove incomplete entries untouched for this many days."),
    keep_last: Optional[int] = typer.Option(None, "--keep-last", help="Also keep only the newest N complete entries of each dataset x setting (older source-file sets are superseded)."),
):
    """Remove what is stale: killed writers' leftovers, dead claims, old-format entries (and optionally more)."""
    store = _store(cache_root)
    acts = store.gc_plan(incomplete_older_than_days=incomplete_older_than, keep_last=keep_last)
    if not acts:
        console.print("nothing to remove")
        return
    for a in acts:
        console.print(f"{'would remove' if dry_run else 'removing'} {a.path} ({_human(a.bytes)}): {a.why}")
    if not dry_run:
        freed = store.gc(acts)
        console.print(f"freed {_human(freed)}")


@cache_app.command("export")
def cache_export(
    key: str = typer.Argument(..., help="Entry key (a unique prefix is enough) or path."),
    h5: Path = typer.Option(..., "--h5", help="Output HDF5 file (written beside, then renamed into place)."),
    cache_root: Optional[Path] = CacheRootOpt,
):
    """Copy an entry into one HDF5 file (same arrays and attributes) for tools that read HDF5."""
    from cache.store import export_hdf5

    e = _store(cache_root).open(key)
    prog = _progress()
    with prog:
        task = prog.add_task(f"exporting {e.key}", total=max(1, e.status().done))
        n = export_hdf5(e, h5, progress=lambda i, t: prog.update(task, completed=i))
    console.print(f"wrote {n} clips to {h5}")


def _register_optional_commands() -> None:
    """Stage-two commands live in their own modules; register those that are present."""
    import importlib

    for mod, names in (("pipeline.commands.stats", ("stats",)), ("pipeline.commands.train", ("train", "eval"))):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        for n in names:
            fn = getattr(m, n if n != "eval" else "eval_", None) or getattr(m, n, None)
            if fn is not None:
                app.command(n)(fn)


_register_optional_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
