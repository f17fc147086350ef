"""Benchmark (not a test): what one training item costs from the cache, against its bytes,
against decoding the same clip on the fly, and against what a lab would use instead (mmaction2's
decord pipeline). One process pinned to one core, one run.

For each cache entry it prints:

* items/s/core: ``CacheClipDataset`` training items (the default views: a random resized box,
  ``--crop`` pixels, and a flip; a random candidate frame per segment; 16 video +
  ``num_pose_frames`` pose frames; grids built from the joints) on one core, page cache warm, made
  as a run on a CUDA device makes them (``data.views_on_device``, the default there: the worker
  names the rows its view spans, the pinning thread reads them into recycled page-locked memory,
  counted in the item here, read into recycled buffers, and the device cuts, resizes and
  flips) and, beside them, as a CPU run makes them (the worker resizes and flips; a JPEG entry also
  with ``data.decode_on_device``: the item ships the JPEG files); in the loader's order, per batch
  of 8: the items made and collated, then the batch's rows read;
* the bytes the item reads (raw frames: only the rows of the 16 frames it takes, recorded as it
  reads them; the clip's metadata and small arrays come from the entry's item index, held in
  memory, ``cache/item_index.py``; without one, and for other codecs, the clip's metadata and the
  chunk files of the arrays it reads) and the time to copy
  exactly those bytes out of the page cache into memory (plain ``preadv``, no decoding): item
  time / copy time is how close the reader is to its I/O;
* bytes stored per clip (all its files; the frames against raw uint8);
* through one DataLoader worker process (raw entries; ``--worker-batches``): ms per item once it
  crosses the process boundary, for the views in the worker, on the device (the rows read by the
  consumer, as the pinning thread reads them), and on the device with the pixels shipped by the
  worker;
* last, rows from a cold page cache (raw entries; ``--cold-rounds``): the batch's rows read after the
  clips' frames chunks are dropped from the page cache (``posix_fadvise``, no root needed), by one
  thread and by the pinning step's reader threads, and again once cached (ms per item, MB/s);
* on-the-fly: clips/s of the same items made from the source videos (stage one's ffmpeg decode
  of the clip, its segment-middle frames resized as extraction does, then the same crop, flip and
  pose sampling; the cached poses), on the same core; the ratio items/s over that. The first
  clip's decoded frames are checked against the cached ones (equal, or within the JPEG loss).

Without ``--entry`` / ``--dataset`` it makes its own: ``--clips`` realistic synthetic 720p clips
of ``--seconds`` (``bench/synthetic_video.py``: texture, camera motion, a moving actor, sensor
noise, H.264), extracted with each frames codec (``--codecs``) and each number of candidate
frames per segment (``--frames-per-segment``, default 1 and 3), and measures each entry, then:

* K candidates against K = 1 (same codec, passes interleaved): the (device-views) item's slowdown;
* mmaction2's way on the same clips (``pip install -e .[bench]`` for decord): per item a
  ``decord.VideoReader`` (DecordInit), 16 frames at random offsets in 16 segments (SampleFrames,
  training), ``get_batch`` (DecordDecode: seek and decode those frames), Resize(-1, 256),
  RandomResizedCrop, Resize(224, 224), Flip, uint8 out, on the clips as they come (720p) and on
  copies pre-resized to short side 256 with ffmpeg (as mmaction2's data tools advise), one
  decoder thread; the cache's items over them. torchcodec is tried too and reported as not
  measured when it does not load.

::

    python bench/loader.py                                # 16 clips x 3 s, 720p: raw and JPEG, K = 1 and 3
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
from cache.frames_codecs import DEFAULT_FRAMES_CODEC  # noqa: E402
from cache.frames_codecs.jpeg import JpegFrames  # noqa: E402
from cache.frames_codecs.yuv420 import Yuv420Frames  # noqa: E402
from stages.data import CacheClipDataset, item_rng  # noqa: E402
from stages.data.dataset import ITEM_ARRAYS  # noqa: E402
from stages.data.device_frames import FrameRows, collate_items  # noqa: E402


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
class RecordingCodec:
    """The entry's frames codec, recording the raw rows items name (file, offsets, bytes): the
    copy baseline then reads exactly the bytes the items of the last pass read."""

    def __init__(self, codec):
        self.codec = codec
        self.reads: list[tuple[str, list[int], int]] = []

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def row_reads(self, clip, indices, top, height):
        reads = self.codec.row_reads(clip, indices, top, height)
        if reads is not None:
            self.reads.append((reads.path, list(reads.offsets), reads.nbytes))
        return reads

    def read_rows(self, clip, indices, top, height):
        self._files(clip.frames, indices)
        return self.codec.read_rows(clip, indices, top, height)

    def encoded(self, frames, indices):
        self._files(frames, indices)
        return self.codec.encoded(frames, indices)

    def _files(self, frames, indices) -> None:
        """JPEG files read one by one from their chunk (each with its length before it)."""
        stored = frames.stored if isinstance(frames, JpegFrames) else None
        if stored is not None:
            self.reads.extend((stored.path, [stored.offsets[int(i)] - 4], stored.lengths[int(i)] + 4)
                              for i in indices)


class PinnedBlocks:
    """Where the bench reads a batch's frame rows: one recycled buffer per place in the batch, as
    the pinning thread reads them into the page-locked blocks torch's caching host allocator hands
    out again once a batch has gone to the device (a fresh buffer per item would add the first
    touch of its pages, which the training path does not pay)."""

    def __init__(self):
        self.bufs: dict[int, np.ndarray] = {}

    def buffer(self, slot: int, n: int) -> np.ndarray:
        """``n`` bytes of place ``slot``'s buffer (grown when too small)."""
        buf = self.bufs.get(slot)
        if buf is None or buf.size < n:
            buf = self.bufs[slot] = np.ones(n, np.uint8)  # its pages touched, as a recycled block's are
        return buf[:n]

    def read(self, rows: FrameRows, slot: int = 0) -> np.ndarray:
        return rows.reads.read(self.buffer(slot, int(np.prod(rows.shape))).reshape(rows.shape))

    def read_batch(self, batch_rows, pool=None) -> None:
        """A collated batch's ``frames_rows`` (those still to be read), each into its place's
        buffer; by ``pool``'s threads at once when given, as ``FrameRowsBatch.pin_memory``."""
        todo = [(slot, rows) for slot, rows in enumerate(batch_rows) if isinstance(rows, FrameRows)]
        if pool is None:
            for slot, rows in todo:
                self.read(rows, slot)
        else:
            list(pool.map(lambda sr: self.read(sr[1], sr[0]), todo))


#: items per batch in the item measurements (and through a worker): made, collated, then read
LOADER_BATCH = 8


def loader_pass(ds: CacheClipDataset, epoch: int, n: int, pinned: PinnedBlocks) -> float:
    """Seconds for the first ``n`` items of ``ds`` (``epoch``) as a training run makes them: per
    batch of :data:`LOADER_BATCH`, the items made and collated (the loader worker's part), then the
    batch's frame rows read (the pinning thread's part, ``FrameRowsBatch.pin_memory``; here on the
    same core, one band after another). Until 2026-12-05 each item's rows were read right after
    the item: an order no training run has, in which every 4 MB read evicts the next item's
    working set from the core's cache."""
    t0 = time.perf_counter()
    for s in range(0, n, LOADER_BATCH):
        pinned.read_batch(collate_items([ds[(i, epoch)] for i in range(s, min(s + LOADER_BATCH, n))])
                          .get("frames_rows", ()))
    return time.perf_counter() - t0


def small_reads(entry: CacheEntry, uid: str, frames_whole: bool) -> list[tuple[str, list[int], int]]:
    """The files an item reads whole: the clip's zarr.json, the chunk files of its small arrays
    (not the stored grids: items build theirs) and, for frames not read by rows, the frames' chunk."""
    from cache.chunks import read_group_meta

    clip_dir = entry.path / "clips" / uid
    _, metas = read_group_meta(clip_dir)
    files = [str(clip_dir / "zarr.json")]
    files += [str(m.chunk_file) for name, m in metas.items() if name in ITEM_ARRAYS and (name != "frames" or frames_whole)]
    return [(f, [0], os.path.getsize(f)) for f in files]


def copy_bytes(reads: list[tuple[str, list[int], int]], blocks: PinnedBlocks) -> None:
    """Read every file's ranges one after another into a buffer of ``blocks``, the k-th file's into
    the buffer of place ``k % LOADER_BATCH`` as an item's rows land in its batch place's buffer
    (plain ``preadv`` from the page cache, one open per file; a short read is an error, never a
    shorter copy counted whole). (Until 2026-12-05 every range was read to the start of one
    buffer: the same 0.25 MB written 16 times stayed in the CPU's cache, a copy ~1.7x faster than
    one into the 4 MB an item's rows fill.)"""
    for k, (path, offsets, n) in enumerate(reads):
        mv = memoryview(blocks.buffer(k % LOADER_BATCH, n * len(offsets)))
        fd = os.open(path, os.O_RDONLY)
        try:
            for j, off in enumerate(offsets):
                if os.preadv(fd, [mv[j * n:(j + 1) * n]], off) != n:
                    raise RuntimeError(f"{path}: short read at {off}")
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
        """The clip's stored frames (K candidates per segment), decoded (every frame: H.264 has to)
        and resized as extraction resizes them (only the kept ones)."""
        from stages.extract.decode import read_frames
        from stages.geometry import segment_candidate_indices

        path = self.videos[row["uid"]]
        k = cached.frames_per_segment
        want = segment_candidate_indices(int(cached.attrs["num_frames"]), len(cached.frame_indices) // k, k)
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
        clip.frames_meta = None  # the decoded frames, not the cached chunk's
        return self.ds.make_item(clip, index, item_rng(self.ds.seed, epoch, index))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def bench_entry(entry: CacheEntry, split: str, args) -> dict:
    """Item rate, its bytes and their copy, storage, and on-the-fly decoding, for one entry.

    Items are made as a training run on a CUDA device makes them (``data.views_on_device``: the
    item ships the rows its view spans, the device cuts, resizes and flips) and as on a CPU run (the
    worker resizes and flips); for a JPEG entry also with ``data.decode_on_device`` (the item ships
    the JPEG files). The machine may be shared: every comparison interleaves its sides (a pass of
    each kind of item, then the copy of the bytes the device-views items read, ...; one on-the-fly
    clip, then a pass of items), so they see the same load and the ratios hold even when the
    absolute figures move."""
    first = entry.read_clip(entry.clips(split)[0]["uid"], arrays=("frames",)).frames
    short = min(first.shape[1:3])
    crop = min(args.crop, short - short % entry.grid_cell)
    if crop != args.crop:
        print(f"  (entry {entry.key} caches {short}-pixel frames: crops of {crop}, not {args.crop})")
    make = dict(mode="train", crop_size=crop, num_pose_frames=args.pose_frames, seed=0)
    kinds = {"worker views": CacheClipDataset(entry, split, **make)}
    if entry.codec.device_decodable:
        kinds["device decode"] = CacheClipDataset(entry, split, decode_on_device=True, **make)
    kinds["device views"] = CacheClipDataset(entry, split, views_on_device=True, **make)  # last: the copy replays it
    ds = kinds["device views"]
    recorder = ds.codec = RecordingCodec(ds.codec)
    n = min(args.clips, len(ds)) if args.clips else len(ds)
    uids = [ds.rows[i]["uid"] for i in range(n)]
    # with the entry's item index (held by the dataset) an item opens no clip file but its frames'
    # JPEG files with their places recorded are read one by one (RecordingCodec), not the whole chunk
    frames_whole = entry.codec.rows_need_frames and not (isinstance(first, JpegFrames) and first.stored is not None)
    whole = [] if ds.item_index is not None else \
        [r for u in uids for r in small_reads(entry, u, frames_whole=frames_whole)]
    if ds.item_index is None:
        print(f"  (items read each clip's metadata and small arrays: entry {entry.key} has no item index)")
    pinned, copied = PinnedBlocks(), PinnedBlocks()
    epoch = [0]

    def item_pass(d) -> float:
        """One pass of items, a batch's frame rows read as the pinning thread reads them."""
        epoch[0] += 1
        recorder.reads.clear()
        return loader_pass(d, epoch[0], n, pinned)

    def copy_pass() -> float:
        t0 = time.perf_counter()
        copy_bytes(whole, copied)
        copy_bytes(recorder.reads, copied)
        return time.perf_counter() - t0

    for d in kinds.values():  # warm the page cache and the code
        item_pass(d)
    copy_pass()
    t_items = dict.fromkeys(kinds, 0.0)
    t_copy = 0.0
    read = 0
    rounds = 0
    while rounds < 3 or t_items["device views"] < args.min_seconds:
        # each kind's timed pass follows an untimed one of its own, as in a training run, which makes
        # one kind of item all along: not one after the other kind's pass, whose buffers (the CPU
        # views' pixels) evict its working set from the core's caches (until 2026-12-05 they were
        # timed right after it)
        for name, d in kinds.items():
            item_pass(d)
            t_items[name] += item_pass(d)
        # the device-views pass ran last: the copy reads exactly the bytes its items read
        read += sum(n_ * len(offs) for _, offs, n_ in whole + recorder.reads)
        copy_pass()
        t_copy += copy_pass()
        rounds += 1
    item_ms = {name: 1e3 * t / (rounds * n) for name, t in t_items.items()}
    copy_ms = 1e3 * t_copy / (rounds * n)
    read /= rounds * n
    sizes = [stored_bytes(entry, u) for u in uids]
    raw = int(np.prod(first.shape))
    total, frames_b = (float(np.mean([s_[k] for s_ in sizes])) for k in (0, 1))
    dev_ms = item_ms["device views"]
    out = dict(entry=entry.key, dataset=entry.dataset, frames_codec=entry.frames_codec,
               jpeg_quality=entry.settings.get("jpeg_quality"), k=entry.frames_per_segment, clips=n,
               frame_shape=list(first.shape), crop=crop, pose_frames=args.pose_frames,
               item_ms=round(dev_ms, 3), items_per_s_core=round(1e3 / dev_ms, 1),
               item_ms_worker_views=round(item_ms["worker views"], 3),
               item_ms_device_decode=round(item_ms["device decode"], 3) if "device decode" in item_ms else None,
               item_index=ds.item_index is not None, bytes_read_per_item=int(read), copy_ms=round(copy_ms, 3),
               item_over_copy=round(dev_ms / copy_ms, 2),
               bytes_stored_per_clip=int(total), frames_bytes_per_clip=int(frames_b), raw_frames_bytes=raw,
               frames_fraction_of_raw=round(frames_b / raw, 4))
    others = ", ".join(f"{name} {ms:.2f} ms" for name, ms in item_ms.items() if name != "device views")
    print(f"  items: {out['items_per_s_core']:8.1f} items/s/core with the views on the device ({dev_ms:.2f} ms; "
          f"{others}; {rounds} passes over {n} clips, {crop} crops, 16 + {args.pose_frames} frames)")
    print(f"  bytes the device-views item reads: {read / 1e6:.2f} MB, copied in {copy_ms:.3f} ms: item = "
          f"{dev_ms / copy_ms:.1f}x the copy")
    print(f"  stored per clip: {total / 1e6:.3f} MB, frames {frames_b / 1e6:.3f} MB = 1/{raw / frames_b:.1f} of raw "
          f"uint8 ({raw / 1e6:.2f} MB)")
    out.update(bench_grids(entry, split, args, crop))
    if args.worker_batches and not entry.codec.rows_need_frames:
        out.update(bench_worker_process(entry, split, args, crop))
    if args.decode_clips:  # both sides make the item's pixels on the CPU
        cpu = kinds["worker views"]
        try:
            fly = OnTheFly(cpu)
        except FileNotFoundError as e:
            print(f"  on-the-fly decoding not measured: {e}")
            return out
        m = min(args.decode_clips, n)
        got, want = fly.item(0, 1), cpu[(0, 1)]
        q = psnr(got["frames"].numpy(), want["frames"].numpy())
        if not isinstance(first, (JpegFrames, Yuv420Frames)) and q != float("inf"):  # lossless: identical
            raise AssertionError(f"on-the-fly frames differ from the cached ones (PSNR {q:.1f} dB)")
        t_fly = t_items = 0.0
        for i in range(m):
            t0 = time.perf_counter()
            fly.item(i, 1)
            t_fly += time.perf_counter() - t0
            t_items += item_pass(cpu)
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
        for k in args.frames_per_segment:
            settings = {"frames_codec": codec, "frames_per_segment": int(k),
                        **({"jpeg_quality": int(quality)} if quality else {})}
            opts = ExtractOptions(dataset="custom", root=str(data), cache_root=str(work / "cache"),
                                  pose_source=f"pkl:{pkl}", settings=settings)
            rep = run_extract(opts)
            if not rep.complete:
                raise SystemExit(f"extraction of the synthetic dataset ({codec}, K={k}) failed: {rep.failures}")
            entries.append(rep.entry)
    return entries


# -- through a loader worker process ------------------------------------------------------------------------
class _PixelsFromTheWorker:
    """The codec, without row ranges to read later: the worker reads the rows and ships them."""

    def __init__(self, codec):
        self.codec = codec

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def row_reads(self, *args):
        return None


def _ms_through_one_worker(ds: CacheClipDataset, batches: int) -> float:
    """ms per item of ``batches`` batches of :data:`LOADER_BATCH` from ``ds`` through a DataLoader
    with one worker (after 3 to warm it), the consumer reading any frame rows; the loader ends with
    the call."""
    from torch.utils.data import DataLoader

    from stages.data.epoch_sampler import EpochSeedSampler

    sampler = EpochSeedSampler(ds, shuffle=True, seed=0)
    size = min(LOADER_BATCH, len(ds))
    dl = DataLoader(ds, batch_size=size, sampler=sampler, num_workers=1, collate_fn=collate_items,
                    persistent_workers=True, prefetch_factor=2)
    it, epoch, pinned = iter(dl), 0, PinnedBlocks()

    def take() -> None:
        nonlocal it, epoch
        while True:
            try:
                b = next(it)
                break
            except StopIteration:
                epoch += 1
                sampler.set_epoch(epoch)
                it = iter(dl)
        pinned.read_batch(b.get("frames_rows", ()))

    for _ in range(3):
        take()
    t0 = time.perf_counter()
    for _ in range(batches):
        take()
    return 1e3 * (time.perf_counter() - t0) / (batches * size)


def _drop_from_page_cache(paths) -> None:
    """Drop the files' pages from the page cache (``posix_fadvise(DONTNEED)``: no root needed; an
    entry's files are never dirty)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def bench_cold_reads(entry: CacheEntry, split: str, args, crop: int) -> dict:
    """ms per item of reading a batch's frame rows from a cold page cache (the measured clips'
    frames chunks dropped from it first: an entry larger than memory), by one thread and by
    :data:`~stages.data.device_frames.ROW_READERS` threads as ``FrameRowsBatch.pin_memory`` reads
    them; the same rows again once cached beside them. The rows' read only (the items are made
    before the clock starts); the two cold passes take turns going first, each with rows of its own
    epoch. Run last: the chunks come back into the page cache as read again, not as written, which
    other measurements would feel."""
    from concurrent.futures import ThreadPoolExecutor

    from stages.data.device_frames import ROW_READERS

    ds = CacheClipDataset(entry, split, mode="train", crop_size=crop, num_pose_frames=args.pose_frames, seed=0,
                          views_on_device=True)
    n = min(args.clips, len(ds)) if args.clips else len(ds)
    chunks = sorted({ds[(i, 0)]["frames_rows"].reads.path for i in range(n)})
    pinned = PinnedBlocks()
    secs = {"cold, 1 thread": 0.0, f"cold, {ROW_READERS} threads": 0.0, "warm, 1 thread": 0.0}
    nbytes = dict.fromkeys(secs, 0)
    whole_clip = ds[(0, 0)]["frames_rows"].reads.file_size  # more than any item's rows
    for slot in range(LOADER_BATCH):  # the buffers' first touch, before any clock
        pinned.buffer(slot, whole_clip)
    with ThreadPoolExecutor(ROW_READERS) as pool:
        for r in range(args.cold_rounds):
            # alternate which cold pass goes first (a disk or host cache below the page cache would
            # favour the second); each pass reads other rows (its own epoch)
            names = list(secs)
            if r % 2:
                names[:2] = names[1::-1]
            for p, name in enumerate(names):
                ep = 700 + 3 * r + (p if name.startswith("cold") else 0)
                batches = [collate_items([ds[(i, ep)] for i in range(s, min(s + LOADER_BATCH, n))])["frames_rows"]
                           for s in range(0, n, LOADER_BATCH)]
                if name.startswith("cold"):
                    _drop_from_page_cache(chunks)
                else:  # the same rows, now in the page cache
                    for b in batches:
                        pinned.read_batch(b)
                t0 = time.perf_counter()
                for b in batches:
                    pinned.read_batch(b, None if name.endswith("1 thread") else pool)
                secs[name] += time.perf_counter() - t0
                nbytes[name] += sum(int(np.prod(rows.shape)) for b in batches for rows in b)
    items = max(1, args.cold_rounds) * n
    ms = {name: round(1e3 * t / items, 3) for name, t in secs.items()}
    mb_s = {name: round(nbytes[name] / t / 1e6, 1) for name, t in secs.items() if t}
    print(f"  entry {entry.key} (K={entry.frames_per_segment}): " +
          ", ".join(f"{name} {ms[name]:.2f} ({mb_s.get(name, 0):.0f})" for name in secs), flush=True)
    return {"rows_read_ms_per_item": ms, "rows_read_mb_per_s": mb_s}


def bench_worker_process(entry: CacheEntry, split: str, args, crop: int) -> dict:
    """ms per item through a real DataLoader: one worker process (on this process' core: the
    worker and the consumer share it), batches of 8 collated as training collates them, the
    consumer reading any frame rows as the pinning thread does. What an item costs once it crosses
    the process boundary (every tensor a worker sends goes through a fresh shared-memory segment):
    the views in the worker (a CPU run), on the device with the rows read by the consumer (the
    default on a CUDA device), and on the device with the worker reading the rows and shipping
    them."""
    out = {}
    for name, how in (("worker views", {}), ("device views", dict(views_on_device=True)),
                      ("device views, pixels shipped by the worker", dict(views_on_device=True))):
        ds = CacheClipDataset(entry, split, mode="train", crop_size=crop, num_pose_frames=args.pose_frames, seed=0,
                              **how)
        if name.endswith("worker"):
            ds.codec = _PixelsFromTheWorker(ds.codec)
        out[name] = round(_ms_through_one_worker(ds, args.worker_batches), 3)
    print("  through one loader worker (one core): " + ", ".join(f"{k} {v:.2f} ms/item" for k, v in out.items()),
          flush=True)
    return {"through_one_worker_ms": out}


# -- mask grids: read from the entry, or built from the joints ---------------------------------------------
def bench_grids(entry: CacheEntry, split: str, args, crop: int) -> dict:
    """What an item's mask grids cost: reading the stored grids (Zstd) and cutting the item's 16
    frames' planes out (a plain crop, mirrored: the cheapest view they serve), against building them
    from the item's joints in its view (what the loader does). Interleaved, per item."""
    from cache.chunks import read_array, read_group_meta
    from stages.geometry import View, crop as crop_grids, hflip, view_grids

    ds = CacheClipDataset(entry, split, mode="train", crop_size=crop, num_pose_frames=args.pose_frames, seed=0)
    n = min(args.clips, len(ds)) if args.clips else len(ds)
    clips, metas = [], []
    for i in range(n):
        c = entry.read_clip(ds.rows[i]["uid"], arrays=("frame_indices", "keypoints", "scores"))
        rng = item_rng(0, 1, i)
        rows = ds.stored_frames(c, rng)
        f = c.frame_indices[rows]
        kp = c.keypoints[f] * np.array(c.scale, np.float32)
        joints = np.concatenate([kp, c.scores[f][..., None]], -1).astype(np.float32)
        clips.append((rows, joints))
        metas.append(read_group_meta(entry.path / "clips" / ds.rows[i]["uid"])[1]["grids"])
    h, w = ds.entry.read_clip(ds.rows[0]["uid"], arrays=("frames",)).frames.shape[1:3]
    cell = entry.grid_cell
    view = View(0, (w - crop) // 2 // cell * cell, crop, crop, crop, True)
    t_read = t_built = 0.0
    for _ in range(max(3, args.rounds)):
        t0 = time.perf_counter()
        for (rows, joints), m in zip(clips, metas):
            g = read_array(m)[rows]
            _, g, _ = crop_grids(None, g, joints, view.top, view.left, crop, cell)
            _, g, _ = hflip(None, g, joints, ds.flip_index, width=crop)
            np.ascontiguousarray(g)
        t_read += time.perf_counter() - t0
        t0 = time.perf_counter()
        for rows, joints in clips:
            view_grids(joints, view, ds.flip_index, cell)
        t_built += time.perf_counter() - t0
    k = n * max(3, args.rounds)
    out = dict(grids_read_us=round(1e6 * t_read / k, 1), grids_built_us=round(1e6 * t_built / k, 1))
    print(f"  mask grids per item: stored ones read and cut {out['grids_read_us']:.0f} us, built from the joints "
          f"{out['grids_built_us']:.0f} us", flush=True)
    return out


# -- K candidates against K = 1 --------------------------------------------------------------------------
def compare_candidates(entries: list[CacheEntry], split: str, args) -> list[dict]:
    """For each codec with a K = 1 entry and K > 1 entries of the same clips: item time of K over
    K = 1, passes interleaved."""
    out = []
    groups: dict[tuple, dict[int, CacheEntry]] = {}
    for e in entries:
        groups.setdefault((e.frames_codec, e.settings.get("jpeg_quality")), {})[e.frames_per_segment] = e
    for (codec, quality), by_k in groups.items():
        if 1 not in by_k:
            continue
        base = _items(by_k[1], split, args)
        for k, e in sorted(by_k.items()):
            if k == 1:
                continue
            other = _items(e, split, args)
            t1 = tk = 0.0
            for r in range(max(3, args.rounds)):
                t1 += base(r)
                tk += other(r)
            ratio = tk / t1
            row = dict(frames_codec=codec, jpeg_quality=quality, k=k, entry=e.key, entry_k1=by_k[1].key,
                       item_ms_k1=round(1e3 * t1 / base.n / max(3, args.rounds), 3),
                       item_ms_k=round(1e3 * tk / other.n / max(3, args.rounds), 3), k_over_k1=round(ratio, 3))
            print(f"  {codec}{'' if quality is None else f' q{quality}'}: K={k} item {row['item_ms_k']:.2f} ms vs "
                  f"K=1 {row['item_ms_k1']:.2f} ms: {ratio:.2f}x", flush=True)
            out.append(row)
    return out


def _items(entry: CacheEntry, split: str, args, crop: Optional[int] = None, **how):
    """A callable doing one pass of training items over the measured clips (epoch = the pass);
    ``.n`` the number of clips, ``.ds`` the dataset. ``how``: how items are made (default: as on a
    CUDA device, the views cut there: ``views_on_device``)."""
    how = how or dict(views_on_device=True)
    ds = CacheClipDataset(entry, split, mode="train", crop_size=crop or args.crop, num_pose_frames=args.pose_frames,
                          seed=0, **how)
    n = min(args.clips, len(ds)) if args.clips else len(ds)

    pinned = PinnedBlocks()

    def run(epoch: int) -> float:
        return loader_pass(ds, epoch, n, pinned)

    run.n, run.ds = n, ds
    run(10_000)  # warm
    return run


# -- what a lab would use instead: mmaction2's decord pipeline, torchcodec ---------------------------------
def resized_copies(videos: list[str], out_dir: Path, short: int = 256) -> list[str]:
    """The videos re-encoded at short side ``short`` (H.264, CRF 23, no audio), as mmaction2's
    ``tools/data/resize_videos.py`` makes them; kept and reused."""
    import subprocess

    from stages.extract.decode import ffmpeg_exe

    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for v in videos:
        dst = out_dir / Path(v).name
        if not dst.is_file():
            tmp = dst.with_suffix(".part.mp4")
            subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", v, "-vf",
                            f"scale=-2:{short}", "-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p", "-an",
                            str(tmp)], check=True)
            os.replace(tmp, dst)
        out.append(str(dst))
    return out


def mmaction_decord_item(path: str, rng: np.random.Generator, num_segments: int = 16, crop: int = 224,
                         short: int = 256) -> np.ndarray:
    """One training item the way mmaction2 1.x makes it from a video file: DecordInit (a reader per
    item, one thread), SampleFrames(clip_len=1, num_clips=16) with its random offsets, DecordDecode
    (``get_batch``: seek and decode those frames), Resize(-1, short), RandomResizedCrop, Resize(crop,
    crop), Flip(0.5) (mmcv's bilinear, OpenCV); (T, 3, crop, crop) uint8 as mmaction2 packs it."""
    import decord

    from stages.data.views import random_resized_box

    vr = decord.VideoReader(path, num_threads=1)
    n = len(vr)
    avg = n // num_segments
    if avg > 0:
        inds = np.arange(num_segments) * avg + rng.integers(0, avg, num_segments)
    else:
        inds = np.sort(rng.integers(0, n, num_segments))
    frames = vr.get_batch(inds.tolist()).asnumpy()  # (T, H, W, 3) RGB
    h, w = frames.shape[1:3]
    if min(h, w) != short:
        nh, nw = (short, int(w * short / h + 0.5)) if h <= w else (int(h * short / w + 0.5), short)
        frames = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_LINEAR) for f in frames])
        h, w = nh, nw
    top, left, bh, bw = random_resized_box(h, w, (0.08, 1.0), (3 / 4, 4 / 3), rng)
    flip = rng.random() < 0.5
    out = np.empty((len(frames), 3, crop, crop), np.uint8)
    for k, f in enumerate(frames):
        img = cv2.resize(f[top:top + bh, left:left + bw], (crop, crop), interpolation=cv2.INTER_LINEAR)
        if flip:
            img = cv2.flip(img, 1)
        cv2.split(img, [out[k, 0], out[k, 1], out[k, 2]])
    return out


def torchcodec_item(path: str, rng: np.random.Generator, num_segments: int = 16, crop: int = 224,
                    short: int = 256) -> np.ndarray:
    """The same item with torchcodec's ``VideoDecoder.get_frames_at`` decoding the frames."""
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(path, num_ffmpeg_threads=1)
    n = dec.metadata.num_frames
    avg = n // num_segments
    inds = np.arange(num_segments) * avg + rng.integers(0, max(avg, 1), num_segments)
    frames = dec.get_frames_at(indices=[int(i) for i in inds]).data.permute(0, 2, 3, 1).numpy()
    return frames


def bench_baselines(entries: list[CacheEntry], split: str, args) -> dict:
    """The cache's items against mmaction2's decord pipeline on the same clips, as they come and
    pre-resized to short side 256, and against torchcodec when it loads; passes interleaved."""
    default = next((e for e in entries if e.frames_codec == DEFAULT_FRAMES_CODEC and e.frames_per_segment == max(
        x.frames_per_segment for x in entries if x.frames_codec == DEFAULT_FRAMES_CODEC)), None)
    if default is None:
        return {"note": "no entry of the default codec measured"}
    root = default.attrs.get("dataset_root")
    rows = default.clips(split)[: args.baseline_clips or None]
    videos = [r["video"] if os.path.isabs(r["video"]) else os.path.join(root, r["video"]) for r in rows]
    if not all(os.path.isfile(v) for v in videos):
        return {"note": "the source videos are not on this machine"}
    out: dict = {"clips": len(videos)}
    small = resized_copies(videos, Path(args.work_dir) / "videos_256p")
    decoders = {}
    try:
        import decord  # noqa: F401

        decoders["decord"] = mmaction_decord_item
    except ImportError as e:
        out["decord"] = f"not measured: {e} (pip install -e .[bench])"
    try:
        import torchcodec.decoders  # noqa: F401

        decoders["torchcodec"] = torchcodec_item
    except Exception as e:  # noqa: BLE001  (an OSError from its libraries as much as an ImportError)
        out["torchcodec"] = f"not measured: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    ours = {(e.key, "device views"): _items(e, split, args) for e in entries
            if e.frames_per_segment == default.frames_per_segment}
    ours[(default.key, "worker views")] = _items(default, split, args, views_on_device=False)
    times = {name: {"original": 0.0, "256p": 0.0} for name in decoders}
    mine = {k: 0.0 for k in ours}
    rng = np.random.default_rng(0)
    reps = max(1, args.baseline_rounds)
    for r in range(reps):
        for i, (big, little) in enumerate(zip(videos, small)):
            for name, fn in decoders.items():
                for label, path in (("original", big), ("256p", little)):
                    t0 = time.perf_counter()
                    fn(path, rng, crop=args.crop)
                    times[name][label] += time.perf_counter() - t0
        for key, run in ours.items():
            mine[key] += run(100 + r) / run.n * len(videos)
    n = reps * len(videos)
    for name, t in times.items():
        out[name] = {label: dict(item_ms=round(1e3 * v / n, 2), items_per_s=round(n / v, 2)) for label, v in t.items()}
    out["cache"] = {}
    for (key, how), t in mine.items():
        e = next(x for x in entries if x.key == key)
        ms = 1e3 * t / n
        row = dict(frames_codec=e.frames_codec, k=e.frames_per_segment, views=how, item_ms=round(ms, 3))
        for name, tt in times.items():
            for label, v in tt.items():
                row[f"over_{name}_{label}"] = round((1e3 * v / n) / ms, 1)
        out["cache"][f"{key} {how}"] = row
        ratios = ", ".join(f"{row[f'over_{name}_{label}']:.1f}x {name} {label}" for name in times for label in times[name])
        print(f"  cache item ({e.frames_codec}, K={e.frames_per_segment}, {how}): {ms:.2f} ms = {ratios}", flush=True)
    for name, t in times.items():
        print(f"  {name} (mmaction2's pipeline): " + ", ".join(f"{label} {1e3 * v / n:.1f} ms/item" for label, v in t.items()),
              flush=True)
    for name in ("decord", "torchcodec"):
        if isinstance(out.get(name), str):
            print(f"  {name}: {out[name]}", flush=True)
    return out


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

    from stages.data.epoch_sampler import EpochSeedSampler
    from stages.data.settings import DataSettings
    from stages.train.runner import pixels_on_device, prepare_model_cfg
    from stages.train.runner_model import RunnerModel

    from stages.model.clip_loader import open_clip_module

    dev = torch.device(args.device)
    mcfg = cfg.model.to_dict()
    if args.arch:
        # frozen, as the papers' recipe trains (the demo overlay trains its tiny towers): the step the
        # loader must keep fed is the real one, not a heavier full fine-tune
        mcfg["clip"] = dict(mcfg.get("clip") or {}, arch=args.arch, pretrained=None, pretrained_path=None, frozen=True)
    cfg.model = mcfg
    crop = int(open_clip_module().get_model_config(mcfg["clip"]["arch"])["vision_cfg"]["image_size"])
    entry = train_entry(args, cfg, crop)
    mcfg = prepare_model_cfg(cfg, entry)
    model = RunnerModel(mcfg, entry.classes, entry.coarse_type,
                            amp_dtype="bfloat16" if dev.type == "cuda" else None).to(dev)
    logging.getLogger("stages.train.runner").setLevel(logging.WARNING)  # its one-line fallback notice
    on_device = pixels_on_device(DataSettings.from_dict(dict(decode_on_device=args.decode_on_device,
                                                             views_on_device=not args.views_on_cpu)), entry, dev.type)
    ds = CacheClipDataset(entry, cfg.data.train_split, mode="train", crop_size=crop,
                          num_pose_frames=int(mcfg["num_pose_frames"]), num_video_frames=int(mcfg["num_video_frames"]),
                          **on_device)
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
    if on_device["decode_on_device"]:
        frames = "JPEG frames decoded on the device"
    elif entry.frames_codec == "jpeg":
        frames = "JPEG frames decoded by the loader workers"
    frames += ", views on the " + ("device" if on_device["views_on_device"] or on_device["decode_on_device"]
                                   else "loader workers")
    print(f"train ({arch}, batch {args.batch}, {args.workers} workers, {dev}, entry {entry.key}, {frames}): "
          f"in-memory batches {r_mem:.2f} clips/s, real loader {r_real:.2f} clips/s: the {dev.type.upper()} waits "
          f"for data {100 * wait:.1f}% of the step time", flush=True)
    return dict(arch=arch, batch=args.batch, workers=args.workers, steps=n, device=str(dev), entry=entry.key,
                frames_codec=entry.frames_codec, **on_device, in_memory_clips_s=round(r_mem, 2),
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
    ap.add_argument("--codecs", nargs="+", default=["none", "yuv420", "jpeg"],
                    help="frames codecs of the synthetic entries (jpeg:Q for JPEG quality Q)")
    ap.add_argument("--frames-per-segment", nargs="+", type=int, default=[1, 3],
                    help="candidate frames per segment of the synthetic entries (K)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved passes of the K comparison")
    ap.add_argument("--baseline-clips", type=int, default=16,
                    help="clips of the mmaction2 / decord comparison (0: all, no comparison with --no-baselines)")
    ap.add_argument("--baseline-rounds", type=int, default=2, help="passes of the mmaction2 / decord comparison")
    ap.add_argument("--no-baselines", action="store_true", help="skip the mmaction2 / decord comparison")
    ap.add_argument("--work-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "pevl-bench-loader"),
                    help="where the synthetic dataset and its cache live (kept and reused)")
    ap.add_argument("--crop", type=int, default=224, help="crop size S of the items (ViT-B/16: 224)")
    ap.add_argument("--pose-frames", type=int, default=48)
    ap.add_argument("--decode-clips", type=int, default=16, help="clips decoded on the fly; 0 skips it")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="shortest item measurement")
    ap.add_argument("--worker-batches", type=int, default=30,
                    help="batches of 8 through one DataLoader worker, raw entries (0: skip)")
    ap.add_argument("--cold-rounds", type=int, default=2,
                    help="passes of rows read from a cold page cache, raw entries (0: skip)")
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
    ap.add_argument("--views-on-cpu", action="store_true",
                    help="--train: the views' resize and flip in the loader workers (data.views_on_device=False)")
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
            split = args.split or cfg.data.get("train_split", "train")
            for e in entries:
                q = f" quality {e.settings['jpeg_quality']}" if e.frames_codec == "jpeg" else ""
                print(f"entry {e.key} ({e.dataset}, frames codec {e.frames_codec}{q}, K={e.frames_per_segment}), "
                      f"split {split}, core {core}:", flush=True)
                out["entries"].append(bench_entry(e, split, args))
            if len({e.frames_per_segment for e in entries}) > 1:
                print("K candidate frames per segment against K = 1:", flush=True)
                out["candidates"] = compare_candidates(entries, split, args)
            if not args.no_baselines:
                print("against mmaction2's pipeline (decord) on the same clips:", flush=True)
                out["baselines"] = bench_baselines(entries, split, args)
            raw = [e for e in entries if not e.codec.rows_need_frames]
            if args.cold_rounds and raw:  # last: it leaves the page cache otherwise than it found it
                print("rows read from a cold page cache (ms per item, MB/s):", flush=True)
                out["cold_reads"] = {e.key: bench_cold_reads(e, split, args, out["entries"][entries.index(e)]["crop"])
                                     for e in raw}
    if args.train:
        out["train"] = bench_train(args, cfg)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
