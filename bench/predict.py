"""Benchmark (not a test): what ``pipeline predict`` costs per clip on the demo, and where.

A trained demo checkpoint (``pipeline train --exp demo``) labels the demo's val videos through
:class:`stages.predict.Predictor`, as the command does, in two ways:

* ``reused``: the videos are in the demo's cache entry, so their poses are reused (found by the
  files' sha256) and stage one decodes, resizes and grids; the recognizer scores 3 views;
* ``hrnet``: the same videos with poses estimated by HRNet-w32 on the fly (``--pose-source
  hrnet``; random weights unless ``--pose-checkpoint`` names the file: the same arithmetic).

For each it prints seconds per clip end to end (after one warm-up video), and the recognizer's
share measured alone (the same items scored again, batch ``--batch``). Results go to stdout and,
with ``--json PATH``, to a file (docs/benchmarks.md records them)::

    python bench/predict.py --checkpoint work_dirs/demo/pevl/epoch_40.pth
    python bench/predict.py --checkpoint ... --device cuda --decode-workers 2 --clips 80 --hrnet-clips 80
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a demo checkpoint written by `pipeline train --exp demo`")
    ap.add_argument("--cache-root", default=None, help="the cache holding the demo entry (default: $PEVL_CACHE)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clips", type=int, default=40, help="val videos predicted with reused poses")
    ap.add_argument("--hrnet-clips", type=int, default=8, help="val videos predicted with HRNet (0: skip)")
    ap.add_argument("--pose-checkpoint", default="none", help="HRNet weights ('none': random, the same cost)")
    ap.add_argument("--decode-workers", type=int, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    import torch

    from cache import default_root
    from stages.predict import PredictOptions, Predictor, find_videos, resolve_run

    cache_root = a.cache_root or str(default_root())
    run = resolve_run(a.checkpoint, cache_root=cache_root)
    data = glob.glob(os.path.join(cache_root, "datasets", "demo-v*", "videos"))
    if not data:
        sys.exit(f"no demo videos under {cache_root}/datasets: run `pipeline extract --dataset demo` first")
    videos, _ = find_videos([data[0]])
    val = [v for v in videos if "_val_" in v.name]
    out = dict(date=time.strftime("%Y-%m-%d"), host=platform.node(), cores=os.cpu_count(), device=a.device,
               torch=torch.__version__, threads=torch.get_num_threads(), load=os.getloadavg()[0],
               experiment=run.experiment, variant=run.variant, entry=run.record.key,
               settings={k: run.record.settings.get(k) for k in ("num_frames", "short_side", "grid_cell")},
               batch=a.batch, decode_workers=a.decode_workers, rows=[])
    if a.device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
    cases = [("reused", a.clips, {})]
    if a.hrnet_clips:
        cases.append(("hrnet", a.hrnet_clips, dict(pose_source="hrnet", reuse_poses=False,
                                                    pose_options={"checkpoint": a.pose_checkpoint})))
    for name, n, kw in cases:
        p = Predictor(run, PredictOptions(device=a.device, batch_size=a.batch, decode_workers=a.decode_workers,
                                          cache_root=cache_root, keep_clips=True, **kw))
        chosen = val[1: n + 1]
        list(p.predict(val[:1]))  # warm-up: model on the device, pose model built, workers started
        t0 = time.perf_counter()
        results = list(p.predict(chosen))
        total = time.perf_counter() - t0
        bad = [r.error for r in results if not r.ok]
        if bad:
            sys.exit(f"{name}: {len(bad)} video(s) failed: {bad[:3]}")
        items = [p.items.make_item(r.clip, i, None) for i, r in enumerate(results)]
        t0 = time.perf_counter()
        for i in range(0, len(items), a.batch):
            p.score(items[i: i + a.batch])
        if a.device == "cuda":
            torch.cuda.synchronize()
        model = time.perf_counter() - t0
        row = dict(case=name, clips=len(chosen), s_per_clip=round(total / len(chosen), 4),
                   model_s_per_clip=round(model / len(chosen), 4), poses=results[0].poses,
                   frames_per_clip=sum(r.num_frames for r in results) / len(results))
        out["rows"].append(row)
        print(f"{name:7s} {row['clips']:3d} clips: {row['s_per_clip'] * 1000:8.1f} ms/clip end to end, recognizer "
              f"{row['model_s_per_clip'] * 1000:7.1f} ms/clip ({row['frames_per_clip']:.0f} frames/clip; {row['poses']})")
        p.close()
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
