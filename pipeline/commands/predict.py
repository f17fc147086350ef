"""``pipeline predict VIDEO_OR_FOLDER... --checkpoint CKPT``: a trained model on new videos.

Stage one runs on the fly with the settings of the entry the model was trained on (read from the
checkpoint), then the model's test protocol; the top labels come out as a table, ``--json`` or
``--csv``; ``--out DIR`` adds pictures and each video's result file, from which a killed run
continues (:mod:`stages.predict.saved`); ``--window S`` gives a long video's timeline. The library
part is :mod:`stages.predict`.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import List, Optional

import typer

from pipeline.commands.common import (CacheRootOpt, checked_device, console, folder_option, parse_kv, path_str,
                                      progress_bar)
from pipeline.commands.train import CFG_HELP, options_with_root, setup_run
from pipeline.output import info, print_json, print_table

CSV_COLUMNS = ("video", "window", "start_s", "end_s", "rank", "class_id", "label", "score", "error")


def predict(
    videos: List[Path] = typer.Argument(..., help="Video files and folders (a folder's videos are found recursively, by extension: .mp4, .mov, .avi, .mkv, .webm, ...)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by `pipeline train` (W/NAME/VARIANT/epoch_N.pth). It records its run config and the cache entry it was trained on; older ones need --exp/--variant (and --entry)."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Labels shown per video (or window)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (every class's score too) instead of a table."),
    as_csv: bool = typer.Option(False, "--csv", help="Print the results as CSV: one row per video (or window) and rank; a video that failed is one row with its error."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", callback=folder_option, help="Write, per video, <name>.png: its frames with the poses drawn and its top labels (with --window: <name>_timeline.png and <name>_windows.csv), and <name>.result.json: its result, from which the same command run again (after a kill) takes it instead of predicting the video again."),
    video: bool = typer.Option(False, "--video", help="With --out: also <name>.mp4 (the frames with poses and labels; with --window, each window's middle frame)."),
    window: Optional[float] = typer.Option(None, "--window", help="Seconds: slide a window of this length over each (long, untrimmed) video and label every window: a timeline."),
    stride: Optional[float] = typer.Option(None, "--stride", help="Seconds between window starts (default: the window, no overlap)."),
    exp: Optional[str] = typer.Option(None, "--exp", "-e", help="Run config of this experiment instead of the one the checkpoint records (needed for checkpoints written before runs were recorded)."),
    variant: Optional[str] = typer.Option(None, "--variant", "-V", help="With --exp: the variant the checkpoint belongs to (default: the recorded one, else the experiment's first)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="With --exp: as for train (demo also switches to the tiny model)."),
    cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options", "-c", help=CFG_HELP + " Applied to the recorded run config too (e.g. model.clip.pretrained_path=/w/ViT-B-16.pt on another machine)."),
    entry: Optional[str] = typer.Option(None, "--entry", help="Take the stage-one settings, pose source and class texts from this cache entry (key, unique prefix or path) instead of the checkpoint's record."),
    pose_source: Optional[str] = typer.Option(None, "--pose-source", help="Estimate poses with this source instead of the training entry's (hrnet, pkl:PATH): the model then sees poses from another source than it was trained on (said in the results)."),
    pose_option: Optional[List[str]] = typer.Option(None, "--pose-option", "-P", help="Pose-source option KEY=VALUE, repeatable (e.g. checkpoint=/w/hrnet_w32.pth where the training entry's HRNet file lies elsewhere here; batch_size=64)."),
    reuse: bool = typer.Option(True, "--reuse/--no-reuse", help="Reuse the poses of a video already in a cache entry made with the same pose source (found by the file's sha256; entries made since 2026-12)."),
    cache_root: Optional[Path] = CacheRootOpt,
    device: Optional[str] = typer.Option(None, "--device", callback=checked_device, help="cuda or cpu (default: cuda when available): the pose model and the recognizer."),
    decode_workers: Optional[int] = typer.Option(None, "--decode-workers", min=0, help="Processes decoding videos ahead of the models (default: 2 with a CUDA device, 0 on a CPU). Not used with --window (a long video streams through once)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Clips (3 views each) per forward pass of the recognizer."),
    fps: float = typer.Option(4.0, "--fps", min=0.1, help="Frame rate of the --video MP4."),
):
    """Label videos with a trained model: stage one on the fly with the settings of the entry the model
    was trained on (frames, short side, grid, pose source and weights), then its test protocol (3 crops x 1
    clip; equation 7 for PeVL, softmax probabilities for PGVT / AIM). A video that cannot be read is reported
    and the others go on (exit status 1 when any failed)."""
    setup_run(device)
    if as_json and as_csv:
        raise typer.BadParameter("--json or --csv, not both")
    if video and out_dir is None:
        raise typer.BadParameter("--video writes into --out DIR: give --out")
    if stride is not None and window is None:
        raise typer.BadParameter("--stride needs --window")
    if window is not None and window <= 0:
        raise typer.BadParameter(f"{window}: a window is a positive number of seconds", param_hint="--window")
    if stride is not None and stride <= 0:
        raise typer.BadParameter(f"{stride}: a stride is a positive number of seconds", param_hint="--stride")
    from stages.predict import PredictOptions, Predictor, find_videos, resolve_run
    from stages.predict.draw import output_stems
    from stages.predict.saved import load_result, result_owner, result_path, run_identity, save_result
    from stages.train.distributed import resolve_device

    opts = options_with_root(cfg_options, None)
    found, notes = find_videos(videos)
    for n in notes:
        console.print(f"[yellow]{n}[/]", highlight=False)
    if not found:
        raise ValueError("no videos to predict")
    run = resolve_run(checkpoint, exp=exp, variant=variant, dataset=dataset, cfg_options=opts, entry=entry,
                      cache_root=path_str(cache_root))
    dev = resolve_device(device)
    predictor = Predictor(run, PredictOptions(
        top_k=top_k, batch_size=batch_size, device=dev, decode_workers=decode_workers, pose_source=pose_source,
        pose_options=parse_kv(pose_option), reuse_poses=reuse, cache_root=path_str(cache_root), window=window,
        stride=stride, keep_clips=out_dir is not None))
    now = "" if predictor.pose_spec == run.record.pose_spec else f"; poses now from {predictor.pose_spec}"
    info(f"[bold]{run.experiment}/{run.variant}[/] from {checkpoint} (run config: {run.sources.get('run config')}; "
         f"stage one as {run.sources.get('entry')}: {_settings_line(run.record)}{now}); {len(found)} video(s)")
    for n in predictor.notes:
        console.print(f"[yellow]note:[/] {n}", highlight=False)
    done: dict = {}  # video path -> its result, written by an earlier run into --out
    identity = None
    # two videos never share their outputs' names, in one run or across runs into one --out
    stems = output_stems(found, (lambda stem: result_owner(out_dir, stem)) if out_dir is not None else None)
    if out_dir is not None:
        # (--top-k is not part of it: every class's score is saved, the ranks are made again from them)
        identity = run_identity(run, predictor, window, stride, {"video": video, "fps": fps if video else None})
        from stages.predict.draw import write_windows_csv

        for v in found:
            r = load_result(out_dir, stems[v.path], identity, v, predictor.classes, top_k)
            if r is not None:
                done[v.path] = r
                if r.windows is not None:  # the one output that holds top_k ranks: written again, cheaply
                    try:
                        write_windows_csv(out_dir / f"{stems[v.path]}_windows.csv", r, top_k)
                    except Exception as e:  # noqa: BLE001  (this video's, not the run's)
                        r.error = f"its windows' CSV could not be written into {out_dir} ({type(e).__name__}: {e})"
        if done:
            info(f"{len(done)} of {len(found)} video(s) predicted before into {out_dir} with this checkpoint and these "
                 "options: their results are read from its .result.json files (delete one to predict it again)",
                 markup=False)
    todo = [v for v in found if v.path not in done]
    new: dict = {}
    prog = progress_bar()
    try:
        with prog:
            task = prog.add_task("predicting", total=len(todo)) if len(todo) > 1 else None
            frames_task: dict = {}

            def on_frames(name: str, done: int, expected: Optional[int]) -> None:
                if name not in frames_task:
                    frames_task[name] = prog.add_task(f"frames of {name}", total=expected)
                prog.update(frames_task[name], completed=done)

            by_path = {v.path: v for v in todo}
            for res in predictor.predict(todo, progress=(lambda d, t: prog.update(task, completed=d)) if task is not None
                                         else None, on_frames=on_frames if window else None):
                if res.ok and out_dir is not None:
                    try:
                        _write_pictures(res, out_dir, stems[res.video], predictor, video, fps, top_k, run)
                        # last, after the pictures: a result file says the video's outputs are all there
                        # (not for windows kept from a video whose decoding stopped early: tried again)
                        if res.whole:
                            save_result(out_dir, stems[res.video], identity, by_path[res.video], res)
                    except Exception as e:  # noqa: BLE001  (a full disk, a name taken by a folder): this video's
                        res.error = (f"predicted, but its outputs could not be written into {out_dir} "
                                     f"({type(e).__name__}: {e}); a rerun predicts it again")
                    res.clip = None  # drawn: free the frames
                if not res.ok:
                    console.print(f"[red]failed[/] {res.name}: {res.error}", highlight=False)
                    if out_dir is not None and result_owner(out_dir, stems[res.video]) == res.video:
                        # (an earlier result of this path no longer describes the file: a script reading
                        # the .result.json files would take it as this run's)
                        result_path(out_dir, stems[res.video]).unlink(missing_ok=True)
                elif not res.whole:  # windows before a damaged or cut-off tail: kept, and said
                    console.print(f"[yellow]incomplete[/] {res.name}: {res.notes[-1]}", highlight=False)
                new[res.video] = res
    except KeyboardInterrupt:
        raise typer.Exit(130)
    finally:
        predictor.close()
    results = [done.get(v.path) or new[v.path] for v in found]
    if as_json:
        print_json(_json(results, run, top_k, predictor))
    elif as_csv:
        _csv(results, top_k, sys.stdout)
    else:
        _table(results, top_k)
    failed = [r for r in results if not r.ok]
    incomplete = [r for r in results if r.ok and not r.whole]
    if failed or incomplete:
        console.print(f"[red]{len(failed)} of {len(results)} video(s) failed[/]"
                      + (f", {len(incomplete)} predicted in part (decoding stopped early)" if incomplete else ""),
                      highlight=False)
        raise typer.Exit(1)


def _settings_line(record) -> str:
    s = record.settings
    k = record.frames_per_segment
    frames = f"{s.get('num_frames')} segments x {k} candidate frames" if k > 1 else f"{s.get('num_frames')} frames"
    return (f"{frames}, short side {s.get('short_side')}, grid {s.get('grid_cell')}, "
            f"codec {'raw' if s.get('frames_codec') == 'none' else s.get('frames_codec')}, "
            f"pose source {record.pose_spec}")


def _write_pictures(res, out_dir: Path, stem: str, predictor, video: bool, fps: float, top_k: int, run) -> None:
    from stages.predict.draw import (write_prediction_mp4, write_prediction_png, write_timeline_png,
                                     write_windows_csv, write_windows_mp4)

    written = []
    skeleton = predictor.items.skeleton
    if res.windows is not None:
        written.append(write_windows_csv(out_dir / f"{stem}_windows.csv", res, top_k))
        written.append(write_timeline_png(out_dir / f"{stem}_timeline.png", res,
                                          title=f"{res.name}: {run.experiment}/{run.variant}"))
        if video:
            stride = predictor.o.stride or predictor.o.window
            written.append(write_windows_mp4(out_dir / f"{stem}.mp4", res, fps=min(fps, 1.0 / stride)))
    else:
        written.append(write_prediction_png(out_dir / f"{stem}.png", res, skeleton))
        if video:
            written.append(write_prediction_mp4(out_dir / f"{stem}.mp4", res, skeleton, fps=fps))
    for p in written:
        info(f"wrote {p}", markup=False)


def _json(results, run, k: int, predictor) -> dict:
    from stages.predict.saved import result_dict

    # the run's own notes (poses from another source than training's, ...) beside each video's
    return dict(checkpoint=str(run.checkpoint), experiment=run.experiment, variant=run.variant, entry=run.record.key,
                classes=list(run.record.classes), pose_source=predictor.pose_spec,
                trained_pose_source=run.record.pose_spec, notes=list(predictor.notes),
                videos=[result_dict(r, k) for r in results])


def _csv(results, k: int, stream) -> None:
    from stages.predict.inputs import name_text
    from stages.predict.saved import labels

    w = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in results:
        if not r.ok:
            w.writerow(dict(video=name_text(r.name), error=name_text(r.error)))
            continue
        spans = r.windows if r.windows is not None else [None]
        for i, win in enumerate(spans):
            top = win.top if win is not None else r.top
            for t in labels(top, k):
                row = dict(video=name_text(r.name), **{**t, "score": f"{t['score']:.6g}"})
                if win is not None:
                    row.update(window=i, start_s=_sec(win.start_s), end_s=_sec(win.end_s))
                w.writerow(row)


def _sec(x) -> str:
    return "" if x is None else f"{x:.3f}"


def _table(results, k: int) -> None:
    from rich.table import Table

    from stages.predict.inputs import name_text

    ok = [r for r in results if r.ok]
    if not ok:
        return
    windows = any(r.windows is not None for r in ok)
    t = Table(title=f"{len(ok)} video(s)" + (", windows" if windows else ""))
    t.add_column("video", no_wrap=True)
    if windows:
        t.add_column("window (s)", no_wrap=True)
    for col in ("#", "class", "label", "score"):
        t.add_column(col, justify="right" if col in ("#", "class", "score") else "left")
    for r in ok:
        spans = r.windows if r.windows is not None else [None]
        for i, win in enumerate(spans):
            top = win.top if win is not None else r.top
            shown = top[:1] if windows else top[:k]
            for rank, lab in enumerate(shown):
                first = rank == 0 and (i == 0)
                cells = [name_text(r.name) if first else ""]
                if windows:
                    cells.append(f"{_sec(win.start_s)}-{_sec(win.end_s)}" if rank == 0 else "")
                cells += [str(rank + 1), str(lab.class_id), lab.label, f"{lab.score:.4f}"]
                t.add_row(*cells)
        if not windows:
            t.add_section()
    print_table(t)
