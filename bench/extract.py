"""Stage-one throughput on this machine (not a test): decode, HRNet crops/s three ways, end to end.

    .venv/bin/python bench/extract.py [--device cuda] [--clips 6] [--frames 60] [--size 640x360]
                                      [--pose-frames 128] [--batch-size 32] [--no-flip-test] [--repeats 2]

Prints, all in one run:

- decode only: ffmpeg -> RGB frames -> short side 256, as extraction does;
- HRNet-w32 crops/s (one person box per frame, same model, same frames; best of ``--repeats``):
  * batched: this project's path (``HRNetPoseSource.estimate_images``: crops, normalisation, flip
    test and heatmap decoding batched on the device, autocast at ``--precision``; on CUDA also in
    fp32 for the like-for-like ratio),
  * mmpose pipeline, batched: mmpose's own per-crop pipeline on the CPU, then ``test_step`` on the
    batch (the project's path before the device crops),
  * ``mmpose.apis.inference_topdown``, one frame per call (what mmaction2's extraction does);
- end to end (``run_extract`` into a fresh entry): decoding in the pose process
  (``--decode-workers 0``) vs in ``--decode-workers`` worker processes pipelined with the model.

HRNet runs with random weights (speed does not depend on the values). Targets on a GPU
(issue 12): batched >= 1000 crops/s and >= 5x ``inference_topdown``. Machines are noisy: compare
figures of one run.
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


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _crops_per_s(run, frames: list, batch: int, device: str) -> tuple[float, float]:
    """crops/s of ``run(frames[i:i + batch])`` over all frames, and this process's CPU ms per crop
    (all its threads: less sensitive than wall time to other jobs on a shared machine)."""
    t, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(frames), batch):
        run(frames[i:i + batch])
    _sync(device)
    return len(frames) / (time.perf_counter() - t), (time.process_time() - cpu) * 1e3 / len(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=60, help="frames per clip (30 fps)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--pose-frames", type=int, default=128, help="frames (= crops) for the pose comparison")
    ap.add_argument("--batch-size", type=int, default=32, help="crops per batch (--pose-batch-size)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", help="--pose-precision of the batched path")
    ap.add_argument("--no-flip-test", dest="flip_test", action="store_false",
                    help="HRNet flip test off (on by default, as in extraction and the official evaluation)")
    ap.add_argument("--decode-workers", type=int, default=2, help="decode processes of the pipelined run")
    ap.add_argument("--repeats", type=int, default=2, help="pose timings: best of this many passes")
    ap.add_argument("--skip-end-to-end", action="store_true")
    args = ap.parse_args()

    import warnings

    warnings.filterwarnings("ignore")
    import cv2
    import torch

    from pevl_testutils import make_video, write_custom_dataset
    from pipeline.engines.local import run_extract
    from stages.extract.decode import probe, read_frames
    from stages.extract.plan import ExtractOptions
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
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "no GPU"
    print(f"# {time.strftime('%Y-%m-%d')} {platform.node()} {os.cpu_count()} cores, torch {torch.__version__} "
          f"threads {torch.get_num_threads()}, device {args.device} ({gpu}); {args.clips} clips x {args.frames} "
          f"frames {w}x{h}; flip test {'on' if args.flip_test else 'off'}")

    # decode only
    t = time.perf_counter()
    for i in range(args.clips):
        p = str(root / f"v{i}.mp4")
        info = probe(p)
        oh, ow = resized_size(info.height, info.width, 256, 16)
        for f in read_frames(p, info):
            cv2.resize(f, (ow, oh), interpolation=cv2.INTER_AREA)
    dec = args.clips / (time.perf_counter() - t)
    print(f"decode only:                          {dec:9.2f} clips/s ({dec * args.frames:.0f} frames/s)")

    # pose only: one model, the same frames, three paths
    src = HRNetPoseSource(checkpoint="none", device=args.device, batch_size=args.batch_size,
                          flip_test=args.flip_test, precision=args.precision)
    model = src.model
    frames = [f.copy() for f in read_frames(str(root / "v0.mp4"), probe(str(root / "v0.mp4")))]
    frames = (frames * (args.pose_frames // len(frames) + 1))[: args.pose_frames]
    box = np.array([0, 0, w, h], np.float32)

    def batched(imgs):
        src.estimate_images(imgs, [box] * len(imgs))

    from mmengine.dataset import Compose, pseudo_collate
    from mmpose.apis import inference_topdown

    pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)

    def mmpose_batched(imgs):
        data = [pipeline(dict(img=np.ascontiguousarray(f[..., ::-1]), bbox=box[None], bbox_score=np.ones(1, np.float32),
                              **model.dataset_meta)) for f in imgs]
        with torch.no_grad():
            model.test_step(pseudo_collate(data))

    def one_at_a_time(imgs):
        for f in imgs:
            inference_topdown(model, np.ascontiguousarray(f[..., ::-1]), box[None])

    # (name, run, batch, cuDNN TF32 for fp32 convolutions): the project's fp32 turns TF32 off,
    # mmpose's paths run with torch's default (on), as they would without this project.
    paths = [(f"batched ({src.precision})", batched, args.batch_size, src.precision != "fp32")]
    if src.precision != "fp32":
        src32 = HRNetPoseSource(checkpoint="none", device=args.device, batch_size=args.batch_size,
                                flip_test=args.flip_test, precision="fp32")
        assert all(torch.equal(a, b) for a, b in zip(src32.model.state_dict().values(), model.state_dict().values()))

        def batched_fp32(imgs):
            src32.estimate_images(imgs, [box] * len(imgs))

        paths.append(("batched (fp32)", batched_fp32, args.batch_size, False))
    paths += [("mmpose pipeline, batched (fp32)", mmpose_batched, args.batch_size, True),
              ("inference_topdown, 1 frame/call (fp32)", one_at_a_time, 1, True)]
    rates, cpu_ms = {}, {}
    for name, run, bs, tf32 in paths:  # warm-up: cudnn.benchmark tunes per shape, lazy inits
        torch.backends.cudnn.allow_tf32 = tf32
        run(frames[:bs])
        if bs > 1 and len(frames) % bs:
            run(frames[:len(frames) % bs])
    _sync(args.device)
    for r in range(args.repeats):  # interleaved, so load changes hit every path alike
        for name, run, bs, tf32 in paths:
            torch.backends.cudnn.allow_tf32 = tf32
            rate, cpu = _crops_per_s(run, frames, bs, args.device)
            rates[name] = max(rates.get(name, 0.0), rate)
            cpu_ms[name] = min(cpu_ms.get(name, float("inf")), cpu)
            # each figure as soon as it is measured: a run stopped at its time limit keeps them
            print(f"  (pass {r + 1}) {name}: {rate:.2f} crops/s", flush=True)
    torch.backends.cudnn.allow_tf32 = True
    topdown = rates[paths[-1][0]]
    print(f"HRNet-w32 crops/s, {args.pose_frames} crops, batch {args.batch_size}, best of {args.repeats}:")
    for name, *_ in paths:
        print(f"  {name:38s} {rates[name]:9.2f} crops/s  {rates[name] / topdown:6.2f}x inference_topdown"
              f"  (host CPU {cpu_ms[name]:8.1f} ms/crop)")
    # crop preparation alone (no network): the device path vs mmpose's pipeline + data preprocessor
    from stages.extract.pose import topdown as T

    def device_crops(imgs):
        with torch.inference_mode():
            fr, fi = T.frames_on_device(imgs, args.device)
            c, s = T.boxes_to_center_scale(np.stack([box] * len(imgs)), src.spec)
            x = T.normalize_crops(T.warp_crops(fr, fi, T.warp_tables(c, s, src.spec)), src.spec)
            return torch.cat([x, x.flip(-1)]) if args.flip_test else x

    def mmpose_crops(imgs):
        data = [pipeline(dict(img=np.ascontiguousarray(f[..., ::-1]), bbox=box[None], bbox_score=np.ones(1, np.float32),
                              **model.dataset_meta)) for f in imgs]
        x = model.data_preprocessor(pseudo_collate(data), False)["inputs"]
        return torch.cat([x, x.flip(-1)]) if args.flip_test else x

    prep = {}
    for name, run in (("device", device_crops), ("mmpose", mmpose_crops)):
        run(frames[:args.batch_size])
        prep[name] = min(_crops_per_s(run, frames, args.batch_size, args.device) for _ in range(args.repeats))
    print(f"  crop preparation alone (wall / host CPU ms per crop): device path {1e3 / prep['device'][0]:.2f} / "
          f"{prep['device'][1]:.2f}, mmpose pipeline + preprocessor {1e3 / prep['mmpose'][0]:.2f} / "
          f"{prep['mmpose'][1]:.2f}")
    new, old = rates[paths[0][0]], rates["mmpose pipeline, batched (fp32)"]
    print(f"  batched / mmpose pipeline batched:     {new / old:6.2f}x crops/s, "
          f"{cpu_ms['mmpose pipeline, batched (fp32)'] / cpu_ms[paths[0][0]]:.2f}x less host CPU per crop")
    if args.device.startswith("cuda"):
        ok = new >= 1000 and new >= 5 * topdown
        print(f"  GPU target (>= 1000 crops/s and >= 5x inference_topdown): {'met' if ok else 'NOT met'}")

    if args.skip_end_to_end:
        return
    # end to end: decoding in the pose process vs in worker processes
    e2e = {}
    for workers in (0, args.decode_workers):
        opts = ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp / f"cache{workers}"),
                              pose_options=dict(checkpoint="none", batch_size=args.batch_size, flip_test=args.flip_test,
                                                precision=args.precision),
                              device=args.device, decode_workers=workers)
        t = time.perf_counter()
        rep = run_extract(opts)
        e2e[workers] = len(rep.done_now) / (time.perf_counter() - t)
        label = "in the pose process" if workers == 0 else f"{workers} decode workers"
        print(f"end to end, decoding {label + ':':24s} {e2e[workers]:8.3f} clips/s "
              f"({e2e[workers] * args.frames:.1f} frames/s, {len(rep.failed_now)} failed)")
    print(f"  pipelined / sequential: {e2e[args.decode_workers] / e2e[0]:.2f}x; "
          f"pose share of the sequential run: {min(1.0, e2e[0] * args.frames / new):.0%}")


if __name__ == "__main__":
    main()
