"""Benchmark (not a test): what one training item costs from the cache, against its bytes and
against decoding the same clip on the fly. One process pinned to one core, one run.

For each cache entry it prints:

* items/s/core: ``CacheClipDataset`` training items (random crop and flip, ``--crop`` pixels,
  16 video + ``num_pose_frames`` pose frames) on one core, page cache warm;
* the bytes the item reads (the clip's metadata and chunk files; raw frames only over the rows
  the crop spans) and the time to copy exactly those bytes out of the page cache into memory
  (plain file reads, no decoding): item time / copy time is how close the reader is to its I/O;
* bytes stored per clip (all its files; the frames against raw uint8);
* on-the-fly: clips/s of the same items made from the source videos (stage one's ffmpeg decode
  of the clip, its segment-middle frames resized as extraction does, then the same crop, flip and
  pose sampling; the cached poses), on the same core; the ratio items/s over that. The first
  clip's decoded frames are checked against the cached ones (equal, or within the JPEG loss).

Without ``--entry`` / ``--dataset`` it makes its own: ``--clips`` realistic synthetic 720p clips
of ``--seconds`` (``bench/synthetic_video.py``: texture, camera motion, a moving actor, sensor
noise, H.264), extracted twice (``--frames-codec none`` and ``jpeg``), and measures both::

    python bench/loader.py                                # 16 clips x 3 s, 720p: both codecs
    python bench/loader.py --entry 59ba0a7b               # any entry (custom datasets too)
    python bench/loader.py --dataset demo --crop 112

``--train`` (meant for a GPU machine) then measures training clips/s with the real loader
against batches already in device memory: the share of step time the GPU waits for data::

    python bench/loader.py --dataset demo --train --arch ViT-B-16 --workers 8
    python bench/loader.py --dataset demo --train --arch ViT-B-16 --workers 8 --frames-codec jpeg --decode-on-device

The demo caches 128-pixel frames, too small for ViT-B-16's 224 crops: ``--train`` then uses (and
on first use extracts) the demo entry with ``--short-side 256``; for other datasets it stops and
names the ``pipeline extract ... --short-side`` command. Results go to stdout and, with ``--json
PATH``, to a JSON file (docs/benchmarks.md records them).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from cache import CacheEntry, ClipData  # noqa: E402
from cache.frames_codecs.jpeg import JpegFrames  # noqa: E402
from stages.data import CacheClipDataset, item_rng  # noqa: E402


@contextlib.contextmanager
def one_core():
    """Run this process (and the ffmpeg it starts) on one core, single-threaded; restore after."""
    from numcodecs import blosc

    cores, threads, cv_threads = os.sched_getaffinity(0), torch.get_num_threads(), cv2.getNumThreads()
    core = min(cores)
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    blosc_threads = blosc.set_nthreads(1)
    try:
        yield core
    finally:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
        blosc.set_nthreads(blosc_threads)


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


# -- what an item reads, and copying just that ------------------------------------------------------
def read_plan(entry: CacheEntry, uid: str, crop: int) -> list[tuple[str, int, int, int]]:
    """(file, offset, length, count) ranges the item of clip ``uid`` reads: the clip's zarr.json,
    every chunk file, and for raw frames only the rows a ``crop``-high crop spans in each frame."""
    from cache.chunks import read_group_meta

    clip_dir = entry.path / "clips" / uid
    _, metas = read_group_meta(clip_dir)
    plan = [(str(clip_dir / "zarr.json"), 0, os.path.getsize(clip_dir / "zarr.json"), 1)]
    for name, m in metas.items():
        f = str(m.chunk_file)
        if name == "frames" and m.compressor == "":
            t, h, w, c = m.shape
            plan.append((f, 0, crop * w * c, t))  # one band of crop rows per frame
        else:
            plan.append((f, 0, os.path.getsize(f), 1))
    return plan


def copy_bytes(plans: list[list[tuple[str, int, int, int]]], buf: np.ndarray) -> None:
    """Read every range of every plan into ``buf`` (plain reads from the page cache)."""
    mv = memoryview(buf)
    for plan in plans:
        for path, off, n, count in plan:
            fd = os.open(path, os.O_RDONLY)
            try:
                for k in range(count):
                    os.preadv(fd, [mv[:n]], off + k * n)
            finally:
                os.close(fd)


def stored_bytes(entry: CacheEntry, uid: str) -> tuple[int, int]:
    """(all files of the clip, its frames array's files)."""
    d = entry.path / "clips" / uid
    total = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    frames = sum(p.stat().st_size for p in (d / "frames").rglob("*") if p.is_file() and p.name != "zarr.json")
    return total, frames


# -- on the fly -----------------------------------------------------------------------------------------
class OnTheFly:
    """The same items as ``ds``, with the frames decoded from the clip's video by stage one's code."""

    def __init__(self, ds: CacheClipDataset):
        from stages.extract.decode import probe

        self.ds = ds
        root = ds.entry.attrs.get("dataset_root")
        self.videos = {}
        for r in ds.rows:
            v = r.get("video")
            path = v if (v and os.path.isabs(v)) else (os.path.join(root, v) if (root and v) else None)
            self.videos[r["uid"]] = path
        missing = [p for p in self.videos.values() if not p or not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} source videos are not on this machine (e.g. {missing[0]})")
        self.probe = probe

    def frames(self, row: dict, cached: ClipData) -> np.ndarray:
        """The clip's segment-middle frames, decoded (every frame: H.264 has to) and resized as
        extraction resizes them (only the kept ones)."""
        from stages.extract.decode import read_frames
        from stages.geometry import segment_middle_indices

        path = self.videos[row["uid"]]
        want = segment_middle_indices(int(cached.attrs["num_frames"]), len(cached.frame_indices))
        wanted = set(want.tolist())
        h, w = cached.frames.shape[1:3]
        keep = {}
        for i, f in enumerate(read_frames(path, self.probe(path), **(row.get("cut") or {}))):
            if i in wanted and i not in keep:
                keep[i] = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
        return np.stack([keep[int(i)] for i in want])

    def item(self, index: int, epoch: int) -> dict:
        row = self.ds.rows[index]
        clip = self.ds.entry.read_clip(row["uid"])  # poses and grids from the cache (not what is measured)
        clip.frames = self.frames(row, clip)
        return self.ds.make_item(clip, index, item_rng(self.ds.seed, epoch, index))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def bench_entry(entry: CacheEntry, split: str, args) -> dict:
    """Item rate, its bytes and their copy, storage, and on-the-fly decoding, for one entry.

    The machine may be shared: every comparison interleaves its two sides (a pass of items, then
    the copy of their bytes, then items again, ...; one on-the-fly clip, then a pass of items), so
    both see the same load and the ratios hold even when the absolute figures move."""
    first = entry.read_clip(entry.clips(split)[0]["uid"], arrays=("frames",)).frames
    short = min(first.shape[1:3])
    crop = min(args.crop, short - short % entry.grid_cell)
    if crop != args.crop:
        print(f"  (entry {entry.key} caches {short}-pixel frames: crops of {crop}, not {args.crop})")
    ds = CacheClipDataset(entry, split, mode="train", crop_size=crop, num_pose_frames=args.pose_frames, seed=0)
    n = min(args.clips, len(ds)) if args.clips else len(ds)
    uids = [ds.rows[i]["uid"] for i in range(n)]
    plans = [read_plan(entry, u, crop) for u in uids]
    read = sum(n_ * c for p in plans for _, _, n_, c in p) / n
    buf = np.empty(max(n_ for p in plans for _, _, n_, _ in p), np.uint8)
    epoch = [0]

    def item_pass() -> float:
        epoch[0] += 1
        t0 = time.perf_counter()
        for i in range(n):
            ds[(i, epoch[0])]
        return time.perf_counter() - t0

    def copy_pass() -> float:
        t0 = time.perf_counter()
        copy_bytes(plans, buf)
        return time.perf_counter() - t0

    item_pass(), copy_pass()  # warm the page cache and the code
    t_items = t_copy = 0.0
    rounds = 0
    while rounds < 3 or t_items < args.min_seconds:
        t_items += item_pass()
        t_copy += copy_pass()
        rounds += 1
    item_ms, copy_ms = 1e3 * t_items / (rounds * n), 1e3 * t_copy / (rounds * n)
    sizes = [stored_bytes(entry, u) for u in uids]
    raw = int(np.prod(first.shape))
    total, frames_b = (float(np.mean([s[k] for s in sizes])) for k in (0, 1))
    out = dict(entry=entry.key, dataset=entry.dataset, frames_codec=entry.frames_codec,
               jpeg_quality=entry.settings.get("jpeg_quality"), clips=n, frame_shape=list(first.shape), crop=crop,
               pose_frames=args.pose_frames, item_ms=round(item_ms, 3), items_per_s_core=round(1e3 / item_ms, 1),
               bytes_read_per_item=int(read), copy_ms=round(copy_ms, 3), item_over_copy=round(item_ms / copy_ms, 2),
               bytes_stored_per_clip=int(total), frames_bytes_per_clip=int(frames_b), raw_frames_bytes=raw,
               frames_fraction_of_raw=round(frames_b / raw, 4))
    print(f"  items: {out['items_per_s_core']:8.1f} items/s/core ({item_ms:.2f} ms; {rounds} passes over {n} clips, "
          f"{crop} crops, {ds[(0, 0)]['frames'].shape[0]} + {args.pose_frames} frames)")
    print(f"  bytes the item reads: {read / 1e6:.2f} MB, copied in {copy_ms:.3f} ms: item = {item_ms / copy_ms:.1f}x "
          "the copy")
    print(f"  stored per clip: {total / 1e6:.3f} MB, frames {frames_b / 1e6:.3f} MB = 1/{raw / frames_b:.1f} of raw "
          f"uint8 ({raw / 1e6:.2f} MB)")
    if args.decode_clips:
        try:
            fly = OnTheFly(ds)
        except FileNotFoundError as e:
            print(f"  on-the-fly decoding not measured: {e}")
            return out
        m = min(args.decode_clips, n)
        got, want = fly.item(0, 1), ds[(0, 1)]
        q = psnr(got["frames"].numpy(), want["frames"].numpy())
        if not isinstance(first, JpegFrames) and q != float("inf"):
            raise AssertionError(f"on-the-fly frames differ from the cached ones (PSNR {q:.1f} dB)")
        t_fly = t_items = 0.0
        for i in range(m):
            t0 = time.perf_counter()
            fly.item(i, 1)
            t_fly += time.perf_counter() - t0
            t_items += item_pass()
        fly_rate, item_rate = m / t_fly, m * n / t_items
        out.update(decode_clips=m, on_the_fly_clips_per_s=round(fly_rate, 3),
                   items_per_s_core_beside_decoding=round(item_rate, 1),
                   cache_over_on_the_fly=round(item_rate / fly_rate, 1),
                   cached_vs_decoded_psnr_db=None if q == float("inf") else round(q, 1))
        same = "identical frames" if q == float("inf") else f"frames within PSNR {q:.1f} dB"
        print(f"  on the fly: {fly_rate:.3f} clips/s ({m} clips; {same}), cache {item_rate:.1f} items/s in the same "
              f"stretch: cache / on the fly = {out['cache_over_on_the_fly']:.1f}x")
    return out


def synthetic_entries(args) -> list[CacheEntry]:
    """The synthetic 720p dataset, extracted with the raw and the JPEG frames codec."""
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions
    from synthetic_video import make_dataset

    work = Path(args.work_dir)
    data = work / "data"
    t0 = time.perf_counter()
    width, height = (int(x) for x in args.size.split("x"))
    pkl = make_dataset(data, clips=args.clips, seconds=args.seconds, width=width, height=height)
    print(f"synthetic dataset: {args.clips} clips x {args.seconds} s at {width}x{height} in {data} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    entries = []
    for spec in args.codecs:
        codec, _, quality = spec.partition(":")
        settings = {"frames_codec": codec, **({"jpeg_quality": int(quality)} if quality else {})}
        opts = ExtractOptions(dataset="custom", root=str(data), cache_root=str(work / "cache"),
                              pose_source=f"pkl:{pkl}", settings=settings)
        rep = run_extract(opts)
        if not rep.complete:
            raise SystemExit(f"extraction of the synthetic dataset ({codec}) failed: {rep.failures}")
        entries.append(rep.entry)
    return entries


# -- training feed -------------------------------------------------------------------------------------
def train_entry(args, cfg, crop: int) -> CacheEntry:
    """The entry ``--train`` reads: the configured one if its frames fit ``crop``; for a generated
    dataset (the demo) the same entry extracted at short side 256; otherwise a clear stop."""
    from stages.data.entry_lookup import extract_command, find_entry
    from stages.datasets import adapter_class

    data = cfg.data.to_dict()
    if args.frames_codec:
        data["extract"] = dict(data.get("extract") or {}, frames_codec=args.frames_codec)
    entry = find_entry(data, cache_root=args.cache_root, entry=args.entry) if args.entry else None
    short = int((entry.settings if entry else data.get("extract", {})).get("short_side") or 256)
    if short >= crop:
        return entry or _find_or_extract(data, args, generated=False)
    if args.entry or adapter_class(data["dataset"]).needs_root:
        fixed = dict(data, extract=dict(data.get("extract") or {}, short_side=max(256, crop)))
        raise SystemExit(f"--train: the entry caches {short}-pixel frames, smaller than the model's {crop}-pixel "
                         f"crops. Extract one that fits:\n    {extract_command(fixed, args.cache_root)}\nthen pass "
                         "--entry KEY (or --cfg-options for the dataset config)")
    print(f"--train: {data['dataset']} caches {short}-pixel frames, smaller than the {crop}-pixel crops: using its "
          f"entry with --short-side {max(256, crop)} (extracted on first use)", flush=True)
    data["extract"] = dict(data.get("extract") or {}, short_side=max(256, crop))
    return _find_or_extract(data, args, generated=True)


def _find_or_extract(data: dict, args, generated: bool) -> CacheEntry:
    from cache import EntryNotFoundError
    from stages.data.entry_lookup import extract_options, find_entry

    try:
        return find_entry(data, cache_root=args.cache_root)
    except EntryNotFoundError:
        if not generated and not args.frames_codec:
            raise
    from pipeline.engines.local import run_extract

    opts = extract_options(data, args.cache_root)
    opts.workers = max(1, min(8, len(os.sched_getaffinity(0))))
    rep = run_extract(opts)
    if not rep.complete:
        raise SystemExit(f"extraction failed: {rep.failures}")
    return rep.entry


def bench_train(args, cfg) -> dict:
    """Training clips/s with the real loader vs. batches already on the device."""
    from torch.utils.data import DataLoader

    from stages.data.device_frames import collate_items
    from stages.data.epoch_sampler import EpochSeedSampler
    from stages.train.runner import decode_on_device, prepare_model_cfg
    from stages.train.runner_model import RunnerModel

    from stages.model.clip_loader import open_clip_module

    dev = torch.device(args.device)
    mcfg = cfg.model.to_dict()
    if args.arch:
        mcfg["clip"] = dict(mcfg.get("clip") or {}, arch=args.arch, pretrained=None, pretrained_path=None)
    cfg.model = mcfg
    crop = int(open_clip_module().get_model_config(mcfg["clip"]["arch"])["vision_cfg"]["image_size"])
    entry = train_entry(args, cfg, crop)
    mcfg = prepare_model_cfg(cfg, entry)
    model = RunnerModel(mcfg, entry.classes, entry.coarse_type,
                            amp_dtype="bfloat16" if dev.type == "cuda" else None).to(dev)
    logging.getLogger("stages.train.runner").setLevel(logging.WARNING)  # its one-line fallback notice
    on_device = decode_on_device({"decode_on_device": args.decode_on_device}, entry, dev.type)
    ds = CacheClipDataset(entry, cfg.data.train_split, mode="train", crop_size=crop,
                          num_pose_frames=int(mcfg["num_pose_frames"]), num_video_frames=int(mcfg["num_video_frames"]),
                          decode_on_device=on_device)
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
    dl = DataLoader(ds, batch_size=args.batch, sampler=sampler, num_workers=args.workers, collate_fn=collate_items,
                    pin_memory=dev.type == "cuda", persistent_workers=args.workers > 0, drop_last=True,
                    prefetch_factor=4 if args.workers else None)
    it = iter(dl)
    mem = [next(it) for _ in range(2)]
    for b in mem:  # warm-up
        step(b)
    mem_dev = [model.data_preprocessor(b, True) for b in mem]  # decoded, on the device
    sync()
    n = args.steps
    t0 = time.perf_counter()
    for i in range(n):
        data = mem_dev[i % len(mem_dev)]
        with amp:
            loss = model(**data, mode="loss")["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
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
    arch = mcfg["clip"].get("arch")
    frames = f"{entry.frames_codec} frames"
    if entry.frames_codec == "jpeg":
        frames = "JPEG frames decoded on the device" if on_device else "JPEG frames decoded by the loader workers"
    print(f"train ({arch}, batch {args.batch}, {args.workers} workers, {dev}, entry {entry.key}, {frames}): "
          f"in-memory batches {r_mem:.2f} clips/s, real loader {r_real:.2f} clips/s: the {dev.type.upper()} waits "
          f"for data {100 * wait:.1f}% of the step time", flush=True)
    return dict(arch=arch, batch=args.batch, workers=args.workers, steps=n, device=str(dev), entry=entry.key,
                frames_codec=entry.frames_codec, decode_on_device=on_device, in_memory_clips_s=round(r_mem, 2),
                real_loader_clips_s=round(r_real, 2), data_wait_share=round(wait, 4))


def main(argv: Optional[list[str]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--exp", default="demo", help="experiment whose data/model config is used (default demo)")
    ap.add_argument("--dataset", default=None, help="as `pipeline train --dataset`: measure that dataset's entry")
    ap.add_argument("--cache-root", default=os.environ.get("PEVL_CACHE"))
    ap.add_argument("--entry", default=None, help="cache entry key, unique key prefix or path")
    ap.add_argument("--split", default=None, help="split whose clips are read (default: the config's train split)")
    ap.add_argument("--clips", type=int, default=16,
                    help="clips measured (and made, without --entry/--dataset); 0: all of the split")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each synthetic clip")
    ap.add_argument("--size", default="1280x720", help="WxH of the synthetic clips")
    ap.add_argument("--codecs", nargs="+", default=["none", "jpeg"],
                    help="frames codecs of the synthetic entries (jpeg:Q for JPEG quality Q)")
    ap.add_argument("--work-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "pevl-bench-loader"),
                    help="where the synthetic dataset and its cache live (kept and reused)")
    ap.add_argument("--crop", type=int, default=224, help="crop size S of the items (ViT-B/16: 224)")
    ap.add_argument("--pose-frames", type=int, default=48)
    ap.add_argument("--decode-clips", type=int, default=16, help="clips decoded on the fly; 0 skips it")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="shortest item measurement")
    ap.add_argument("--no-loader", action="store_true", help="skip the item measurements")
    ap.add_argument("--train", action="store_true", help="measure the training feed: real loader vs in-memory batches")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default=None, help="open_clip arch for --train (random weights), e.g. ViT-B-16")
    ap.add_argument("--workers", type=int, default=8, help="DataLoader worker processes for --train")
    ap.add_argument("--batch", type=int, default=32, help="batch size for --train")
    ap.add_argument("--steps", type=int, default=20, help="training steps per --train measurement")
    ap.add_argument("--frames-codec", default=None, help="--train: the entry extracted with this frames codec")
    ap.add_argument("--decode-on-device", action="store_true",
                    help="--train: decode JPEG frames on the GPU (data.decode_on_device)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)

    from stages.train.config import build_run_config, list_variants, load_experiment

    cfg = build_run_config(args.exp, list_variants(load_experiment(args.exp))[0], dataset=args.dataset)
    out = dict(date=dt.datetime.now().isoformat(timespec="seconds"), machine=machine())
    print(f"{out['date']}  {out['machine']}", flush=True)
    if not args.no_loader:
        from stages.data.entry_lookup import find_entry

        if args.entry or args.dataset:
            entries = [find_entry(cfg.data.to_dict(), cache_root=args.cache_root, entry=args.entry)]
        else:
            entries = synthetic_entries(args)
        out["entries"] = []
        with one_core() as core:  # after extraction, which may use every core
            out["core"] = core
            for e in entries:
                split = args.split or cfg.data.get("train_split", "train")
                q = f" quality {e.settings['jpeg_quality']}" if e.frames_codec == "jpeg" else ""
                print(f"entry {e.key} ({e.dataset}, frames codec {e.frames_codec}{q}), split {split}, core {core}:",
                      flush=True)
                out["entries"].append(bench_entry(e, split, args))
    if args.train:
        out["train"] = bench_train(args, cfg)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
