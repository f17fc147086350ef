"""Benchmark (not a test): how fast stage two loads clips from the cache, against decoding them.

1. Loader: clips/s of the training dataset read from a cache entry vs. the same clips made on the
   fly from their videos (stage one's own per-clip code: decode, resize, poses, grids; then the
   same crop/flip/pose sampling), through a DataLoader with 0, 1 and 2 workers, in one run on one
   machine, with the ratio. The first clips are checked to give identical frames both ways.

       .venv/bin/python bench/loader.py --dataset demo --clips 96

2. Training feed (``--train``; meant for a GPU machine): training clips/s with the real loader
   vs. with batches already in device memory, and the share of step time spent waiting for data.

       python bench/loader.py --dataset demo --train --device cuda --arch ViT-B-16 --workers 8

Results go to stdout and, with ``--json PATH``, to a JSON file (docs/training.md records them).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from cache import ClipData  # noqa: E402
from stages.data.dataset import CacheClipDataset  # noqa: E402


class DecodingDataset(Dataset):
    """The same items as ``base`` (a CacheClipDataset), but each clip is decoded from its video and
    run through stage one's per-clip extraction instead of read from the cache."""

    def __init__(self, base: CacheClipDataset, plan):
        self.base = base
        self.plan = plan
        self.records = {c.clip_id: c for c in plan.index.clips}
        self._pose = None

    def __len__(self):
        return len(self.base)

    def __getitem__(self, item):
        from stages.extract.plan import ExtractOptions, make_pose_source
        from stages.data.dataset import item_rng
        from stages.extract.clip import extract_clip

        index, epoch = (item if isinstance(item, tuple) else (item, 0))
        row = self.base.rows[index]
        if self._pose is None:  # one pose source per worker process
            self._pose = make_pose_source(self.plan.pose_spec, ExtractOptions(dataset=self.plan.index.name),
                                          self.plan.adapter)
        res = extract_clip(self.records[row["clip_id"]], self.plan.adapter, self._pose, self.plan.settings)
        a = res.arrays
        clip = ClipData(clip_id=row["clip_id"], uid=row["uid"], split=row["split"], label=int(row["label"]),
                        frames=a["frames"], frame_indices=a["frame_indices"], keypoints=a["keypoints"],
                        scores=a["scores"], grids=a["grids"], grid_cell=self.base.cell, attrs=res.attrs)
        rng = item_rng(self.base.seed, epoch, index) if self.base.mode == "train" else None
        return self.base.make_item(clip, index, rng)


def _loader_rate(ds, workers: int, batch: int, n: int) -> float:
    from mmengine.dataset import default_collate

    idx = [(i, 0) for i in range(n)]
    dl = DataLoader(ds, batch_size=batch, sampler=idx, num_workers=workers, collate_fn=default_collate,
                    persistent_workers=False)
    t0 = time.perf_counter()
    seen = 0
    for b in dl:
        seen += b["label"].shape[0]
    return seen / (time.perf_counter() - t0)


def machine() -> dict:
    info = dict(host=platform.node(), cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                python=platform.python_version(), torch=torch.__version__)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def bench_loader(args, cfg, entry) -> dict:
    from stages.extract.plan import plan_entry
    from stages.data.lookup import extract_options

    s = int(args.crop)
    base = CacheClipDataset(entry, cfg.data.train_split, mode="train", crop_size=s,
                            num_pose_frames=int(cfg.model.num_pose_frames), seed=0)
    plan = plan_entry(extract_options(cfg.data.to_dict(), args.cache_root))
    dec = DecodingDataset(base, plan)
    n = min(args.clips, len(base))
    for i in range(min(3, n)):  # the same frames both ways
        a, b = base[(i, 0)], dec[(i, 0)]
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["mask_grid"], b["mask_grid"]), i
    rows = []
    for w in args.workers_list:
        c = _loader_rate(base, w, args.batch, n)
        d = _loader_rate(dec, w, args.batch, n)
        rows.append(dict(workers=w, cache_clips_s=round(c, 1), decode_clips_s=round(d, 1), ratio=round(c / d, 1)))
        print(f"workers={w}: cache {c:7.1f} clips/s   decode {d:7.1f} clips/s   cache/decode = {c / d:5.1f}x",
              flush=True)
    return dict(clips=n, batch=args.batch, crop=s, frames=int(base[0]["frames"].shape[0]),
                pose_frames=int(cfg.model.num_pose_frames), rows=rows)


def bench_train(args, cfg, entry) -> dict:
    """Training clips/s with the real loader vs. batches already on the device."""
    from mmengine.dataset import default_collate

    from stages.data.epoch_sampler import EpochSeedSampler
    from stages.train.model import PeVLRunnerModel
    from stages.train.runner import prepare_model_cfg

    dev = torch.device(args.device)
    mcfg = prepare_model_cfg(cfg, entry)
    if args.arch:
        mcfg["clip"] = dict(arch=args.arch, pretrained=None)
    model = PeVLRunnerModel(mcfg, entry.classes, entry.coarse_type,
                            amp_dtype="bfloat16" if dev.type == "cuda" else None).to(dev)
    s = int(model.pevl.clip.visual.image_size[0])
    ds = CacheClipDataset(entry, cfg.data.train_split, mode="train", crop_size=s,
                          num_pose_frames=int(mcfg["num_pose_frames"]), num_video_frames=int(mcfg["num_video_frames"]))
    opt = torch.optim.AdamW(model.tunable_parameters(), lr=1e-5)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step(batch):
        data = model.data_preprocessor(batch, True)
        with amp:
            loss = model(**data, mode="loss")["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    sampler = EpochSeedSampler(ds, shuffle=True, seed=0)
    dl = DataLoader(ds, batch_size=args.batch, sampler=sampler, num_workers=args.train_workers,
                    collate_fn=default_collate, pin_memory=dev.type == "cuda", persistent_workers=args.train_workers > 0,
                    drop_last=True, prefetch_factor=4 if args.train_workers else None)
    it = iter(dl)
    mem = [next(it) for _ in range(2)]
    for b in mem:  # warm-up
        step(b)
    mem_dev = [{k: v.to(dev) for k, v in b.items()} for b in mem]
    sync()
    n = args.steps
    t0 = time.perf_counter()
    for i in range(n):
        step(mem_dev[i % len(mem_dev)])
    sync()
    t_mem = time.perf_counter() - t0
    got = 0
    t0 = time.perf_counter()
    while got < n:
        try:
            b = next(it)
        except StopIteration:
            sampler.set_epoch(sampler.epoch + 1)
            it = iter(dl)
            continue
        step(b)
        got += 1
    sync()
    t_real = time.perf_counter() - t0
    r_mem, r_real = n * args.batch / t_mem, n * args.batch / t_real
    wait = max(0.0, 1 - t_mem / t_real)
    print(f"train ({args.arch or cfg.model.clip.arch}, batch {args.batch}, {args.train_workers} workers, {dev}): "
          f"in-memory batches {r_mem:.1f} clips/s, real loader {r_real:.1f} clips/s, "
          f"waiting for data {100 * wait:.0f}% of the time", flush=True)
    return dict(arch=args.arch or cfg.model.clip.arch, batch=args.batch, workers=args.train_workers, steps=n,
                device=str(dev), in_memory_clips_s=round(r_mem, 2), real_loader_clips_s=round(r_real, 2),
                data_wait_share=round(wait, 3))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp", default="demo", help="experiment whose data/model config is used (default demo)")
    ap.add_argument("--dataset", default=None, help="as `pipeline train --dataset`")
    ap.add_argument("--cache-root", default=os.environ.get("PEVL_CACHE"))
    ap.add_argument("--entry", default=None, help="cache entry key or path (bypasses the lookup)")
    ap.add_argument("--clips", type=int, default=96, help="clips per measurement")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=112, help="crop size S for the loader comparison")
    ap.add_argument("--workers-list", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-loader", action="store_true", help="skip the cache-vs-decode comparison")
    ap.add_argument("--train", action="store_true", help="also measure training clips/s: real loader vs in-memory")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default=None, help="open_clip arch for --train (random weights), e.g. ViT-B-16")
    ap.add_argument("--train-workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)

    from stages.data.lookup import find_entry
    from stages.train.config import build_run_config, list_variants, load_experiment

    exp_cfg_variant = list_variants(load_experiment(args.exp))[0]
    cfg = build_run_config(args.exp, exp_cfg_variant, dataset=args.dataset)
    entry = find_entry(cfg.data.to_dict(), cache_root=args.cache_root, entry=args.entry)
    out = dict(date=dt.datetime.now().isoformat(timespec="seconds"), machine=machine(), entry=entry.key,
               dataset=entry.dataset, torch_threads=torch.get_num_threads())
    print(f"{out['date']}  {out['machine']}  entry {entry.key} ({entry.dataset})", flush=True)
    if not args.no_loader:
        out["loader"] = bench_loader(args, cfg, entry)
    if args.train:
        out["train"] = bench_train(args, cfg, entry)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
