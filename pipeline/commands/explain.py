"""``pipeline explain``: pictures of what a trained PeVL does on one clip (supp. Figs. 8-11)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pipeline.commands.common import CacheRootOpt, checked_device, console, folder_option
from pipeline.commands.train import CFG_HELP, checkpoint_run, options_with_root, setup_run


def explain(
    exp: str = typer.Option(..., "--exp", "-e", help="Experiment name or path (as for train)."),
    variant: Optional[str] = typer.Option(None, "--variant", "-V", help="The variant the checkpoint belongs to (default: the one it records, else the experiment's first)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by `pipeline train` (W/NAME/VARIANT/epoch_N.pth)."),
    clip: str = typer.Option(..., "--clip", help="Clip id of the cache entry, e.g. demo_kick_right3_val_004 (a run's predictions.json lists the test clips)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", callback=folder_option, help="Folder for the PNGs. Default: explain_<clip>/ beside the checkpoint."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="As for train (demo also switches to the tiny model)."),
    cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options", "-c", help=CFG_HELP),
    entry: Optional[str] = typer.Option(None, "--entry", help="Cache entry key, prefix or path of the clip. Default: the entry the checkpoint was trained on (its run record), else the run config's lookup."),
    cache_root: Optional[Path] = CacheRootOpt,
    root: Optional[Path] = typer.Option(None, "--root", help="The raw dataset's root (data.root): only for the extract command a missing entry names; the entry lookup does not use it."),
    device: Optional[str] = typer.Option("cpu", "--device", callback=checked_device, help="cpu or cuda (one clip: cpu is enough)."),
):
    """Draw, for one clip, the joints weighted by the pose encoder with P2V's attention (supp. Fig. 8),
    every patch coloured by the V2P grouping token it belongs to (Fig. 9), attention over frames
    (Fig. 10) and the label phrases' attention over frames in S_FW (Fig. 11)."""
    setup_run(device)
    from stages.train.explain import default_out_dir, explain_clip
    from stages.train.runner import resolve_device

    opts = options_with_root(cfg_options, root)
    cfg, e = checkpoint_run(exp, variant, checkpoint, dataset, opts, cache_root, entry)
    od = out or default_out_dir(checkpoint, clip)
    written, notes = explain_clip(cfg, checkpoint, e, clip, od, device=resolve_device(device))
    for p in written:
        console.print(f"wrote {p}", highlight=False)
    for n in notes:
        console.print(f"[yellow]{n}[/]", highlight=False)
    if not written:  # (every picture skipped: a success said nothing had been drawn)
        console.print("[red]no picture drawn[/]: this model has none of the parts the pictures show", highlight=False)
        raise typer.Exit(1)
