"""Benchmark (not a test): PeVL forward+backward seconds per clip and peak memory.

CPU:  .venv/bin/python bench/model.py --device cpu --batch 8
GPU:  python bench/model.py --device cuda --batch 8 --iters 20   (bf16 autocast + SDPA, clips/s, MFU)

Random weights (pretrained=None), ViT-B/16, 16 video + 48 pose frames by default. MFU is the
work one training step really does (forward + backward FLOPs as torch's FlopCounterMode counts
them on one step: the frozen towers get activation gradients but no weight gradients, so this is
about 2x the forward, not the usual 3x) over the step time and the device's dense bf16 peak
(--peak-tflops). ``mfu_3x_convention`` is the usual 3x-forward figure, for comparison only.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from stages.model import build_model  # noqa: E402
from stages.model.batch import dummy_batch  # noqa: E402
from stages.model.flops import model_stats  # noqa: E402

#: dense bf16 peaks (NVIDIA's data sheets, no sparsity), looked up by the device's name, most
#: specific first: the H100's PCIe and NVL cards run at lower clocks than the SXM one (H100 80GB HBM3)
_PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "A100": 312.0,
                     "V100": 125.0}


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KiB


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="ViT-B-16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--video-frames", type=int, default=16)
    ap.add_argument("--pose-frames", type=int, default=48)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--num-classes", type=int, default=48)
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak for MFU (GPU)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"

    cfg = dict(clip=dict(arch=a.arch, pretrained=None), num_classes=a.num_classes,
               num_video_frames=a.video_frames, num_pose_frames=a.pose_frames)
    flops_fwd = model_stats(cfg, arch=a.arch, num_video_frames=a.video_frames,
                            num_pose_frames=a.pose_frames)["gflops"] * 2e9  # FLOPs = 2 x MACs
    torch.manual_seed(0)
    model = build_model(cfg).to(dev)
    model.set_class_texts([f"class {i}" for i in range(a.num_classes)], "diving")
    model.train()
    opt = torch.optim.AdamW(model.tunable_parameters(), lr=1e-5)
    batch = {k: v.to(dev) for k, v in dummy_batch(model, a.batch, a.video_frames, a.pose_frames).items()}
    batch["label"] = torch.randint(0, a.num_classes, (a.batch,), device=dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model.loss(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(a.warmup):
        step()
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    flops_step = counter.get_total_flops()  # what this step executed (FLOPs = 2 x MACs)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        step()
    if cuda:
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / a.iters
    res = dict(
        date=dt.datetime.now().isoformat(timespec="seconds"), device=str(dev),
        machine=(torch.cuda.get_device_name(dev) if cuda else f"{platform.processor() or platform.machine()}, "
                 f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus"),
        torch=torch.__version__, arch=a.arch, batch=a.batch, video_frames=a.video_frames,
        pose_frames=a.pose_frames, sec_per_step=round(sec, 3), sec_per_clip=round(sec / a.batch, 3),
        clips_per_s=round(a.batch / sec, 2), gflops_fwd_per_clip=round(flops_fwd / 2e9, 1),
        measured_tflops_per_step=round(flops_step / 1e12, 3),
        measured_over_forward=round(flops_step / (flops_fwd * a.batch), 2),
        precision="bf16-autocast" if cuda else "fp32",
    )
    if cuda:
        res["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(dev) / 1024 ** 3, 2)
        peak = a.peak_tflops or next((v for k, v in _PEAK_BF16_TFLOPS.items() if k in res["machine"]), None)
        if peak:
            res["mfu"] = round(flops_step / sec / (peak * 1e12), 4)
            res["mfu_3x_convention"] = round(3 * flops_fwd * a.batch / sec / (peak * 1e12), 4)
            res["peak_tflops"] = peak
    else:
        res["peak_rss_gb"] = round(_peak_rss_gb(), 2)
    print(json.dumps(res, indent=None if a.json else 2))
    return res


if __name__ == "__main__":
    main()
