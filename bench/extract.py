"""Stage-one throughput on this machine (not a test): decode, pose, end to end.

    .venv/bin/python bench/extract.py [--clips 6] [--frames 60] [--size 640x360] [--device cpu]

Prints clips/s for: decode only (ffmpeg -> RGB frames -> short side 256, as extraction does);
pose only on already-decoded frames, HRNet batched across frames (this project) vs. one frame
per forward pass through ``mmpose.apis.inference_topdown`` (what mmaction2's extraction does);
and end to end (``run_extract`` into a fresh cache entry). HRNet runs with random weights:
speed does not depend on the values. Ratios are the point; machines are noisy.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=60, help="frames per clip (30 fps)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--pose-frames", type=int, default=48, help="frames for the pose-only comparison")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--flip-test", action="store_true", help="HRNet flip test on (the official eval setting)")
    args = ap.parse_args()

    import warnings

    warnings.filterwarnings("ignore")
    import cv2
    import torch

    from pevl_testutils import make_video, write_custom_dataset
    from pipeline.engines.local import run_extract
from stages.extract.plan import ExtractOptions
    from stages.datasets.base import ClipRecord
    from stages.extract.decode import probe, read_frames
    from stages.extract.pose.hrnet import HRNetPoseSource
    from stages.geometry import resized_size

    w, h = (int(x) for x in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="pevl-bench-"))
    root = tmp / "data"
    clips = []
    for i in range(args.clips):
        make_video(root / f"v{i}.mp4", frames=args.frames, size=(w, h), fps=30)
        clips.append((f"v{i}.mp4", i % 2, "train"))
    write_custom_dataset(root, clips, ["a", "b"])
    print(f"# {time.strftime('%Y-%m-%d')} {platform.node()} {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, device {args.device}; {args.clips} clips x {args.frames} frames {w}x{h}")

    # decode only
    t = time.perf_counter()
    for i in range(args.clips):
        p = str(root / f"v{i}.mp4")
        info = probe(p)
        oh, ow = resized_size(info.height, info.width, 256, 16)
        for f in read_frames(p, info):
            cv2.resize(f, (ow, oh), interpolation=cv2.INTER_AREA)
    dec = args.clips / (time.perf_counter() - t)
    print(f"decode only:              {dec:8.2f} clips/s")

    # pose only
    src = HRNetPoseSource(checkpoint="none", device=args.device, batch_size=args.batch_size,
                          flip_test=args.flip_test)
    frames = [f.copy() for f in read_frames(str(root / "v0.mp4"), probe(str(root / "v0.mp4")))]
    frames = (frames * (args.pose_frames // len(frames) + 1))[: args.pose_frames]
    src.estimate(ClipRecord("w", "train", 0, None), iter(frames[:4]), None, None)  # warm-up
    t = time.perf_counter()
    src.estimate(ClipRecord("b", "train", 0, None), iter(frames), None, None)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    batched = args.pose_frames / (time.perf_counter() - t)
    from mmpose.apis import inference_topdown

    box = np.array([[0, 0, w, h]], np.float32)
    t = time.perf_counter()
    for f in frames:
        inference_topdown(src.model, np.ascontiguousarray(f[..., ::-1]), box)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    single = args.pose_frames / (time.perf_counter() - t)
    per_clip = args.frames
    print(f"pose only, batched {args.batch_size:3d}:   {batched:8.2f} frames/s = {batched / per_clip:6.3f} clips/s")
    print(f"pose only, one frame/pass: {single:8.2f} frames/s = {single / per_clip:6.3f} clips/s")
    print(f"  batched / one-at-a-time: {batched / single:6.2f}x")

    # end to end, HRNet and (for scale) dataset-free decode-only cost inside extraction
    opts = ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp / "cache"), pose_checkpoint="none",
                          device=args.device, pose_batch_size=args.batch_size, pose_flip_test=args.flip_test)
    t = time.perf_counter()
    rep = run_extract(opts)
    e2e = len(rep.done_now) / (time.perf_counter() - t)
    print(f"end to end (HRNet):       {e2e:8.3f} clips/s  ({rep.counters.decoded_frames} frames posed)")
    print(f"  pose share of end-to-end time: {min(1.0, e2e * per_clip / batched):.0%}")
    print(f"ratios: decode/e2e {dec / e2e:.1f}x; batched pose/one-at-a-time {batched / single:.2f}x")


if __name__ == "__main__":
    main()
