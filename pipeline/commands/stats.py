"""``pipeline stats --exp NAME [--json]``: tunable parameters and GFLOPs per clip of each variant."""
from __future__ import annotations

import json
from typing import Optional

import typer


def stats(
    exp: str = typer.Option(..., "--exp", "-e", help="Experiment: a name under configs/experiments/ (e.g. table7_modalities) or a path."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list of {variant, tunable_params_m, gflops, ...}."),
    arch: Optional[str] = typer.Option(None, "--arch", help="open_clip architecture to count at (random weights, never downloaded). Default: each variant's own (model.clip.arch)."),
    video_frames: Optional[int] = typer.Option(None, "--video-frames", min=1, help="Video frames per clip (T_v). Default: each variant's own (model.num_video_frames)."),
    pose_frames: Optional[int] = typer.Option(None, "--pose-frames", min=1, help="Pose frames per clip (T). Default: each variant's own (model.num_pose_frames)."),
    texts_per_clip: int = typer.Option(1, "--texts-per-clip", min=1, help="Prompts encoded per clip (1: the clip's own label text; the class count: equation 7 without caching)."),
) -> list[dict]:
    """Tunable parameters (M) and GFLOPs per clip (fvcore convention: 1 multiply-add = 1 FLOP)."""
    from stages.model.flops import model_stats
    from stages.train.config import list_variants, load_experiment, variant_config

    cfg = load_experiment(exp)
    rows = []
    for name in list_variants(cfg):
        vc = variant_config(cfg, name)
        tv = video_frames if video_frames is not None else vc.model.num_video_frames  # as the variant builds
        tp = pose_frames if pose_frames is not None else vc.model.num_pose_frames
        va = arch or vc.model.clip.arch
        r = model_stats(vc.model, arch=va, num_video_frames=tv, num_pose_frames=tp, texts_per_clip=texts_per_clip)
        row = {"variant": name, "tunable_params_m": round(r["tunable_params_m"], 3), "gflops": round(r["gflops"], 2),
               "frames": "+".join(str(n) if m in vc.model.modalities else "-"  # (a stream the row lacks reads none)
                                  for m, n in (("pose", tp), ("video", tv))), "arch": va}
        row.update({k: round(v, 2) for k, v in r.items() if k.startswith("gflops_")})
        for k in ("paper_gflops", "paper_params_m", "paper_top1"):
            if vc.get(k) is not None:
                row[k] = vc.get(k)
        rows.append(row)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return rows
    from rich.table import Table

    from pipeline.output import print_table

    shown = arch or "each variant's own architecture"
    t = Table(title=f"{exp}: {shown}, pose + video frames per row, {texts_per_clip} text(s)/clip")
    cols = {"variant": "variant", "arch": "arch", "frames": "frames", "tunable_params_m": "params M", "paper_params_m": "paper M",
            "gflops": "GFLOPs", "paper_gflops": "paper", "gflops_video": "video", "gflops_pose": "pose",
            "gflops_text": "text", "gflops_ucmr": "ucmr", "paper_top1": "paper top1"}
    # per-part columns only where some row has that part (PGVT's rows have none of PeVL's)
    cols = {c: label for c, label in cols.items() if not c.startswith("gflops_") or any(r.get(c) for r in rows)}
    for c, label in cols.items():
        t.add_column(label, justify="left" if c == "variant" else "right")
    for row in rows:
        t.add_row(*("" if row.get(c) is None else str(row[c]) for c in cols))
    print_table(t)
    return rows
