"""``pipeline extract``: stage one, filling (or finishing) one cache entry."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from pipeline.commands.common import (CacheRootOpt, CoarseTypeOpt, DatasetOpt, DatasetOptsOpt, RootOpt, SchemaHelp,
                                      checked_device, console, dataset_options, load_progress_callback, parse_kv,
                                      path_str, progress_bar)
from pipeline.output import info


_SETTINGS = "stages.extract.settings:ExtractSettings"
_HRNET = "stages.extract.pose.hrnet:HRNetOptions"


def extract(
    dataset: str = DatasetOpt,
    root: Optional[Path] = RootOpt,
    cache_root: Optional[Path] = CacheRootOpt,
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Extraction processes on this machine; each runs its own decoder and pose model and they share the work through per-clip claims."),
    device: str = typer.Option("cpu", "--device", callback=checked_device, help="Where the pose model runs: cpu or cuda (or cuda:N). With --workers N, cuda spreads the workers over the visible GPUs."),
    decode_workers: Optional[int] = typer.Option(None, "--decode-workers", min=0, help="Processes per extraction process that decode clips (ffmpeg, the resize) ahead of the pose model, so neither waits for the other; 0 decodes in the pose process. Default: 2 with a CUDA device, 0 on CPU."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Extract at most N clips in this run (the entry stays visibly incomplete; a rerun continues)."),
    pose_source: Optional[str] = typer.Option(None, "--pose-source", help="hrnet (mmpose HRNet-w32 COCO 256x192), dataset (poses the dataset ships: demo, toyota_smarthome) or pkl:PATH (mmaction2/pyskl 2D skeleton file). Default: the dataset's choice (demo, toyota_smarthome: dataset; others: hrnet)."),
    pose_option: Optional[List[str]] = typer.Option(None, "--pose-option", "-P", help="Pose-source option KEY=VALUE, repeatable, typed and checked (`pipeline dataset info --dataset NAME --pose-source SPEC --options` lists them). The --pose-* flags below are HRNet's most used ones."),
    pose_checkpoint: Optional[str] = typer.Option(None, "--pose-checkpoint", help=SchemaHelp(_HRNET, "checkpoint")),
    pose_config: Optional[str] = typer.Option(None, "--pose-config", help=SchemaHelp(_HRNET, "config")),
    pose_batch_size: Optional[int] = typer.Option(None, "--pose-batch-size", min=1, help=SchemaHelp(_HRNET, "batch_size")),
    pose_flip_test: Optional[bool] = typer.Option(None, "--pose-flip-test/--no-pose-flip-test", help=SchemaHelp(_HRNET, "flip_test"), show_default=False),
    pose_precision: Optional[str] = typer.Option(None, "--pose-precision", help=SchemaHelp(_HRNET, "precision")),
    person_detector: Optional[str] = typer.Option(None, "--person-detector", help=SchemaHelp(_HRNET, "person_detector", prefix="HRNet: ")),
    detector_checkpoint: Optional[str] = typer.Option(None, "--detector-checkpoint", help=SchemaHelp(_HRNET, "detector_checkpoint")),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: take every N-th clip starting at K (0 <= K < N), so N processes or hosts fill one entry together, e.g. --shard $SLURM_ARRAY_TASK_ID/N."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", help=SchemaHelp(_SETTINGS, "num_frames")),
    frames_per_segment: Optional[int] = typer.Option(None, "--frames-per-segment", help=SchemaHelp(_SETTINGS, "frames_per_segment")),
    persons: Optional[int] = typer.Option(None, "--persons", help=SchemaHelp(_SETTINGS, "persons")),
    short_side: Optional[int] = typer.Option(None, "--short-side", help=SchemaHelp(_SETTINGS, "short_side")),
    grid_cell: Optional[int] = typer.Option(None, "--grid-cell", help=SchemaHelp(_SETTINGS, "grid_cell")),
    frames_codec: Optional[str] = typer.Option(None, "--frames-codec", help=SchemaHelp(_SETTINGS, "frames_codec")),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality", help=SchemaHelp(_SETTINGS, "jpeg_quality")),
    min_frames: Optional[int] = typer.Option(None, "--min-frames", help=SchemaHelp(_SETTINGS, "min_frames")),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Forget recorded failures and try those clips again."),
    engine: str = typer.Option("local", "--engine", help="local: --workers processes on this machine. dask: the clips still to do go to a Dask cluster in chunks (needs the dask extra: pip install -e .[dask]); claims still coordinate, so shard jobs and other runs may share the entry."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="With --engine dask: a running scheduler's address (tcp://HOST:8786; its workers must see the dataset and cache at the same paths), or local:N to start N single-threaded worker processes here. Default: local:<--workers>."),
    missing_poses: str = typer.Option("error", "--missing-poses", help="Clips the pose source has no poses for (a skeleton file covering part of a split, skeletons missing for some clips), counted before any work: error (stop and say how many, per split), skip (leave them out of the entry: another clip list, another key) or fail (keep them in it as failed clips, without decoding them)."),
    dataset_option: Optional[List[str]] = DatasetOptsOpt,
    coarse_type: Optional[str] = CoarseTypeOpt,
):
    """Decode, pose and grid every clip of a dataset into the shared cache (resumable; a no-op when done).
    In a terminal a progress bar shows how far it is; in a log (nohup, SLURM) a line every 30 s
    (PEVL_PROGRESS_INTERVAL) says clips done, rate and ETA."""
    from stages.devices import resolve_device_name
    from stages.extract.plan import ExtractOptions, parse_shard

    try:
        shard_t = parse_shard(shard)
    except ValueError as e:
        raise typer.BadParameter(str(e))
    if engine not in ("local", "dask"):
        raise typer.BadParameter(f"--engine {engine}: want local or dask")
    if scheduler and engine != "dask":
        raise typer.BadParameter("--scheduler needs --engine dask")
    prog = progress_bar()
    flags = dict(checkpoint=pose_checkpoint, config=pose_config, batch_size=pose_batch_size, flip_test=pose_flip_test,
                 precision=pose_precision, person_detector=person_detector, detector_checkpoint=detector_checkpoint)
    opts = ExtractOptions(
        dataset=dataset, root=path_str(root), cache_root=path_str(cache_root), pose_source=pose_source,
        pose_options={**parse_kv(pose_option), **{k: v for k, v in flags.items() if v is not None}},
        device=resolve_device_name(device), workers=workers, limit=limit, shard=shard_t, retry_failed=retry_failed,
        decode_workers=decode_workers,
        settings={k: v for k, v in dict(num_frames=num_frames, frames_per_segment=frames_per_segment,
                                         persons=persons, short_side=short_side, grid_cell=grid_cell,
                                         frames_codec=frames_codec, jpeg_quality=jpeg_quality,
                                         min_frames=min_frames).items() if v is not None},
        dataset_options=dataset_options(dataset_option, coarse_type), missing_poses=missing_poses,
    )
    from cache import CacheStore
    from cache.sharing import umask_hides_from_group
    from stages.extract.plan import request_of
    from stages.extract.run import my_clips
    from stages.settings import SettingsError

    try:  # every option checked before anything is said or made, each error naming the flag given
        request = request_of(opts)
    except SettingsError as e:
        name = e.key.rsplit(".", 1)[-1]
        flag = f"--{name.replace('_', '-')}" if name in opts.settings else None
        if flag is None:
            raise
        raise SettingsError(str(e).replace(e.key, flag, 1), flag) from None
    side, cell = int(request.settings["short_side"]), int(request.settings["grid_cell"])
    if side % cell:  # the entry records the side asked for; the frames have the rounded one
        from stages.geometry import resized_size

        console.print(f"[yellow]note:[/] short side {side} is not a multiple of the grid cell {cell}: frames are "
                      f"cached with a short side of {resized_size(side, side, side, cell)[0]} (each clip records its "
                      "frame size)", highlight=False)
    new_root = CacheStore(opts.cache_root).root
    if new_root.is_symlink() and not new_root.exists():  # (mkdir then fails with "File exists", naming nothing)
        raise typer.BadParameter(f"the cache root {new_root} is a symlink to {os.readlink(new_root)}, which does not "
                                 "exist: is its filesystem mounted?", param_hint="--cache-root")
    if not new_root.exists():  # a mistyped path, or a shared mount that is down, would start a cache here
        console.print(f"[yellow]note:[/] no cache at {new_root} yet: starting one there (if the lab's cache "
                      "should be there, stop: its filesystem may not be mounted)", highlight=False)
    hidden = umask_hides_from_group(new_root)
    if hidden:
        console.print(f"[yellow]warning:[/] {hidden}", highlight=False)
    state = {}

    def on_start(plan, todo, already):
        state["task"] = prog.add_task(f"extracting {plan.index.name}", total=todo, unit="clips")
        info(f"entry [bold]{plan.key}[/] at {plan.entry_dir}\n"
             f"  {len(plan.clips)} clips, {already} already cached in this shard, {todo} to do; "
             f"pose source {plan.pose_spec}")
        if shard_t[1] > 1 and not my_clips(plan, shard_t):
            # Exit 0 all the same: a job array sized above the clip count (one --array for datasets
            # of any size) has empty shards by design, and a failing task would mark the array
            # failed (or requeue it) for nothing. An entry left incomplete is refused where it
            # matters, by `pipeline train`, and the summary says what is still missing.
            console.print(f"[yellow]note:[/] shard {shard_t[0]}/{shard_t[1]} owns no clip: {plan.index.name} has "
                          f"{len(plan.clips)} clips, so only shards 0 to {len(plan.clips) - 1} of {shard_t[1]} "
                          "have any; this run has nothing to do", highlight=False)
        if not already:
            _say_near_entries(plan, opts.cache_root)

    def progress(event, clip_id, reason):
        prog.advance(state["task"])
        if event == "failed":
            console.print(f"[red]failed[/] {escape(str(clip_id))}: {escape(str(reason))}", highlight=False)

    run_kw = dict(progress=progress, on_start=on_start,
                  load_progress=load_progress_callback(prog, f"preparing {dataset}"))
    try:
        with prog:
            if engine == "dask":
                from pipeline.engines.dask import run_extract_dask

                rep = run_extract_dask(opts, scheduler, 0, **run_kw)
            else:
                from pipeline.engines.local import run_extract

                rep = run_extract(opts, **run_kw)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished clips are kept; rerun the same command to resume.")
        raise typer.Exit(130)
    _print_summary(rep, shard_t)
    # the status says what this run did: clips that failed now (reported above) exit 1; a rerun that
    # adds no failure exits 0 however many failed before (listed as a reminder), so `extract &&
    # train` goes on once the failures are known
    if rep.failed_now:
        raise typer.Exit(1)


def _say_near_entries(plan, cache_root) -> None:
    """Before a new entry is extracted: the dataset's entries whose request differs from this one
    only in the adapter's options (a coarse type left out on a rerun makes a new entry and runs
    the pose model over every clip again), each with what differs."""
    from cache import CacheStore

    for e in CacheStore(cache_root).entries(plan.index.name):
        theirs = e.attrs.get("request")
        if e.key == plan.key or not theirs:
            continue
        diff = plan.request.differences(theirs)
        if diff and all(d.startswith("dataset_options.") for d in diff):
            st = e.status()
            console.print(f"[yellow]note:[/] entry {e.key} ({st.done}/{st.total} clips cached) differs from this one "
                          f"only in {'; '.join(diff)}: this run extracts every clip again into a new entry. If you "
                          "meant that one, stop (nothing is lost) and give its options (--coarse-type, -o KEY=VALUE).",
                          highlight=False)


#: clips whose notes the summary lists (the rest are counted)
NOTED_CLIPS_SHOWN = 10


def _print_notes(rep) -> None:
    """The notes of the clips extracted now (what stage one saw and kept: errors the decoder
    concealed, a rotation, a longer audio track, poses resampled): counted, the first clips' shown,
    so that kept damage is seen in the run, not only in the clips' attributes."""
    noted = [(cid, rep.notes_now[cid]) for cid in rep.done_now if rep.notes_now.get(cid)]
    if not noted:
        return
    console.print(f"notes on {len(noted)} of the {len(rep.done_now)} clips extracted now (kept; `pipeline cache show "
                  f"{rep.entry.key[:12]} CLIP` prints a clip's):")
    for cid, notes in noted[:NOTED_CLIPS_SHOWN]:
        console.print(f"  {escape(cid)}: {escape('; '.join(str(n) for n in notes))}", highlight=False)
    if len(noted) > NOTED_CLIPS_SHOWN:
        console.print(f"  ... and {len(noted) - NOTED_CLIPS_SHOWN} more")


def _print_claimed(entry, missing: list[str]) -> None:
    """The missing clips someone holds a claim on: whose, and since when, so a claim that never
    goes away can be told from a writer still at work. Claims of writers that are gone (a dead
    process on this host, no heartbeat for the ttl) are said apart: the next run that reaches
    their clips takes them over at once, nothing waits for them."""
    import time

    from cache import claims
    from cache.layout import CLAIMS_DIR, clip_uid

    held, gone = [], []
    for cid in missing:
        p = entry.path / CLAIMS_DIR / clip_uid(cid)
        try:
            touched = p.stat().st_mtime
        except OSError:
            continue
        rec = claims.read_owner(p) or {}
        ago = time.time() - touched
        when = f"{ago:.0f} s ago" if ago >= 0 else f"{-ago:.0f} s in the future: a clock running ahead"
        stale, _ = claims.judge(p)  # the same judgement a run makes before it takes a claim over
        (gone if stale else held).append(
            f"{cid} (claims/{p.name}: {rec.get('host', '?')} pid {rec.get('pid', '?')}, touched {when})")

    def listed(items: list[str]) -> str:
        return "; ".join(items[:5]) + (f"; ... and {len(items) - 5} more" if len(items) > 5 else "")

    if held:
        console.print(f"{len(held)} missing clip(s) are claimed by other writers, left to them (should one die, "
                      "a run on its host takes its claim over at once, a run elsewhere once the claim is untouched "
                      f"for {claims.DEFAULT_TTL:.0f} s): " + listed(held), highlight=False, markup=False)
    if gone:
        console.print(f"{len(gone)} missing clip(s) hold claims of writers that are gone (a process on this host "
                      f"that has ended, or no heartbeat for {claims.DEFAULT_TTL:.0f} s): the next run that reaches "
                      "these clips takes them over at once (a rerun of their shard, or a run without --shard; "
                      "`pipeline cache gc` removes such claims): " + listed(gone), highlight=False, markup=False)


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


def _print_shard_standing(standing, total: int) -> None:
    """What a sharded run leaves missing outside its shard, and what finishes it. Runs of another
    shard count N on the entry are warned about: their shards and these do not split the clips
    between them (0/2 beside 2/3 leaves clips that no shard owns), so every shard of both can end
    with exit 0 and the entry still incomplete."""
    k, n = standing.shard
    missing = standing.missing_here + standing.missing_elsewhere
    if standing.other_counts:
        theirs = "; ".join(", ".join(f"{x}/{m}" for x in ks[:4])
                           + (f", ... ({len(ks)} shards)" if len(ks) > 4 else "") + f" (N = {m})"
                           for m, ks in standing.other_counts.items())
        console.print(f"[yellow]warning:[/] runs of this entry used --shard {theirs} beside this --shard {k}/{n} "
                      f"(N = {n}): shards of different counts do not split the clips between them, so some may "
                      f"belong to no shard that runs. {missing} of the entry's {total} clips {_are(missing)} "
                      "still missing: run `pipeline extract` without --shard (the same other options) to finish "
                      "them; it skips what is done and leaves alone what other runs are doing.", highlight=False)
    elif standing.missing_elsewhere:
        console.print(f"{standing.missing_elsewhere} of the entry's {total} clips {_are(standing.missing_elsewhere)} "
                      f"still missing outside shard {k}/{n}: the other shards of {n} finish them, or one run "
                      "without --shard (the same other options) does.", highlight=False)


def _print_summary(rep, shard: tuple[int, int] = (0, 1)) -> None:
    from stages.extract.run import shard_standing

    st = rep.entry.status()
    c = rep.counters
    standing = shard_standing(rep.entry, shard, st) if shard[1] > 1 and st.missing else None
    if rep.complete:
        verdict = "[green]complete[/]"
    elif standing is not None and not standing.missing_here:  # a rerun of this shard would do nothing
        verdict = "[yellow]incomplete[/] (this shard has no clip left: see below what finishes the entry)"
    else:
        verdict = "[yellow]incomplete[/] (rerun to continue)"
    console.print(
        f"[bold]summary[/] entry {rep.entry.key}: {st.done}/{st.total} clips cached, {st.failed} failed, "
        f"{len(st.missing)} missing; this run: {len(rep.done_now)} extracted, "
        + (f"{len(rep.reused_now)} reused from entr{'y' if len(rep.reused_from) == 1 else 'ies'} "
           f"{', '.join(rep.reused_from)} (same videos and settings: not decoded or posed again), "
           if rep.reused_now else "")
        + f"{len(rep.failed_now)} failed, {rep.already} already there; decoded {c.decoded_clips} clips "
        f"({c.decoded_frames} frames), {c.pose_calls} pose calls, {rep.seconds:.1f} s. " + verdict)
    if standing is not None:
        _print_shard_standing(standing, st.total)
    if st.missing:
        _print_claimed(rep.entry, st.missing)
    _print_notes(rep)
    fails = rep.failures
    if fails:
        new = {cid for cid, _ in rep.failed_now}
        console.print(f"[red]{len(fails)} clip(s) failed[/] (see failures/ in the entry; --retry-failed retries):")
        for uid, f in list(fails.items())[:50]:
            tag = " (this run)" if f.get("clip_id") in new else ""
            console.print(f"  {escape(str(f.get('clip_id', uid)))}{tag}: {escape(str(f.get('reason')))}", highlight=False)
        if len(fails) > 50:
            console.print(f"  ... and {len(fails) - 50} more")
