#!/usr/bin/env bash
# The one prepared GPU check (issue 12, item 7): every GPU figure of docs/benchmarks.md in one go,
# well inside 10 minutes on one H100/H200. It prints each figure and writes them under $OUT (or
# ./gpu_check_out) as JSON and logs.
#
#   here, once (needs the package registry; writes .whl/, git-ignored):
#       bash bench/gpu_check.sh --prepare
#   on the GPU machine (carry .whl; its python3 holds a CUDA torch), e.g. the device tool with
#   timeout 600: bash bench/gpu_check.sh   (about 5 minutes expected; every step has its own limit)
#   the same steps at toy sizes on a CPU, to catch a broken script before GPU time is spent:
#       bash bench/gpu_check.sh --cpu-smoke
#
# Steps (targets from the issue; the script reports, it does not judge):
#   1. bench/extract.py --device cuda: HRNet-w32 crops/s batched on the device vs mmpose's
#      inference_topdown one frame at a time, same model, same run (>= 1000 crops/s, >= 5x)
#   2. bench/model.py --device cuda --batch 32: PeVL ViT-B/16 16 + 48 frames, bf16 + SDPA:
#      clips/s and MFU of the FLOPs the step really executes (>= 45%)
#   3. bench/loader.py --dataset demo --train --arch ViT-B-16 --workers 8: the share of step time
#      the GPU waits for the real loader (< 5%), the views cut on the GPU (data.views_on_device,
#      the default); then the same with JPEG frames decoded on the GPU
#   4. one `pipeline train` epoch under torchrun (NCCL, 1 GPU), ViT-B/16 at 224 on the demo, frozen, bf16
# (run in the order 4, 2, 3, 1: the only NCCL check early, the longest step last)
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
MODE=${1:-gpu}
OUT=${OUT:-$REPO/gpu_check_out}
mkdir -p "$OUT"
WORK=${GPU_CHECK_WORK:-/tmp/pevl-gpu-check}

if [ "$MODE" = "--prepare" ]; then
  # Wheels the GPU image lacks (its torch, torchvision, numpy, opencv, typer, rich, h5py stay).
  # imageio-ffmpeg 0.5.1: its ffmpeg is a 27 MB wheel where 0.8's is 68 MB, over what may travel.
  # mmpose goes in without its dependencies as scripts/install.sh does (chumpy is never imported).
  rm -rf .whl && mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  plat=""
  for n in 28 27 17; do plat="$plat --platform manylinux_2_${n}_x86_64"; done
  plat="$plat --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform any"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    $plat -d .whl \
    open_clip_torch==3.3.0 ftfy wcwidth mmengine==0.10.7 addict yapf platformdirs termcolor \
    mmcv-lite==2.1.0 mmdet==3.3.0 mmpose==1.3.2 json_tricks munkres shapely terminaltables \
    zarr==3.1.5 numcodecs donfig crc32c google-crc32c simplejpeg ffmpeg-python future imageio-ffmpeg==0.5.1 \
    || { echo "gpu_check --prepare: pip download failed" >&2; exit 1; }
  # xtcocotools (mmpose imports it) has no Python 3.12 wheel: its source, built there with the
  # image's numpy and cython
  .venv/bin/python -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d .whl xtcocotools==1.14.3 \
    || { echo "gpu_check --prepare: xtcocotools source download failed (run scripts/install.sh first)" >&2; exit 1; }
  du -sh .whl
  echo "carry .whl to the GPU machine: bash bench/gpu_check.sh"
  exit 0
fi

if [ "$MODE" = "--cpu-smoke" ]; then
  PY=${PY:-$REPO/.venv/bin/python}
  DEV=cpu
  EXTRACT_ARGS="--clips 1 --frames 8 --size 320x180 --pose-frames 8 --batch-size 8 --repeats 1 --decode-workers 1"
  MODEL_ARGS="--arch PeVL-tiny --batch 2 --iters 1"
  LOADER_ARGS="--exp demo --no-loader --decode-clips 0 --steps 2 --batch 2 --workers 1 --arch PeVL-tiny --crop 112"
  TRAIN_ARCH="PeVL-tiny"; TRAIN_SHORT=128
  DEMO_LIMIT=300; TRAIN_LIMIT=300; MODEL_LIMIT=120; LOADER_LIMIT=200; EXTRACT_LIMIT=400  # a 2-core CPU is slow
else
  PY=${PY:-python3}
  DEV=cuda
  if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "gpu_check: installing .whl failed" >&2; exit 1; }
    # xtcocotools is built from source there (no Python 3.12 wheel); where it cannot be (no compiler or
    # Python headers) mmpose runs without it: stages/compat.py stands in for it (top-down inference
    # never uses it)
    timeout -k 10 120 $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade \
      --target /tmp/site .whl/xtcocotools-*.tar.gz || echo "gpu_check: building xtcocotools failed; going on without it" >&2
    export PYTHONPATH=/tmp/site
  fi
  EXTRACT_ARGS="--clips 4 --frames 60 --size 1280x720 --pose-frames 512 --batch-size 64 --repeats 2"
  MODEL_ARGS="--arch ViT-B-16 --batch 32 --iters 10 --warmup 3"
  LOADER_ARGS="--exp demo --no-loader --decode-clips 0 --steps 30 --batch 32 --workers 8 --arch ViT-B-16"
  TRAIN_ARCH="ViT-B-16"; TRAIN_SHORT=256
  # the steps' limits add up to 500 s: with the install and the environment check the script ends
  # inside one 600 s call
  DEMO_LIMIT=70; TRAIN_LIMIT=110; MODEL_LIMIT=50; LOADER_LIMIT=75; EXTRACT_LIMIT=120
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PEVL_CACHE="$WORK/cache" PEVL_DATA="$WORK/data"
mkdir -p "$WORK"
status=0
# Everything goes to one log, $OUT/gpu_check.log (each step between "=== NAME" lines), and the
# loader steps' JSON to $OUT/loader*.json: three files (the device tool brings 8 back at most).
LOG="$OUT/gpu_check.log"
: > "$LOG"
step() {  # step NAME SECONDS CMD...: run with a time limit, log it, never stop the script
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout -k 15 "$limit" "$@" 2>&1 | tee -a "$LOG"  # -k: torchrun waits for its workers on SIGTERM
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
  [ "$rc" = 0 ] || status=1
}

echo "gpu_check $MODE on $(hostname), $(date -u +%FT%TZ)" | tee -a "$LOG"
df -h /dev/shm 2>&1 | tee -a "$LOG"  # 8 loader workers pass their items through /dev/shm
timeout -k 10 120 $PY - <<'EOF' 2>&1 | tee -a "$LOG"
import torch, sys
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory // 2**30, "GiB")
from stages.compat import ensure_mmpose, ensure_torchvision  # the project's import guards first
ensure_torchvision(); ensure_mmpose()
# fail here, not halfway, when a package is missing
import open_clip, mmpose, mmengine, zarr, simplejpeg, imageio_ffmpeg, mmpose.apis  # noqa: F401
print("open_clip", open_clip.__version__, "mmpose", mmpose.__version__, "zarr", zarr.__version__,
      "ffmpeg", imageio_ffmpeg.get_ffmpeg_exe())
if torch.cuda.is_available():
    # 16 frames as the cache writes them (OpenCV, 4:2:0, quality 95) through the project's device
    # decoding, against the CPU's decode, while the caller's stream still reads memory freed just
    # before (pytorch/vision#9606: a decode on that stream overwrites it)
    import numpy as np
    from cache.frames_codecs.jpeg import encode_jpeg_frames
    from stages.data.device_frames import nvjpeg_decode
    y, x = np.mgrid[0:256, 0:448].astype(np.float32)  # smooth pictures: decoders agree within a few levels
    frames = np.stack([np.stack([128 + 100 * np.sin(x / 40 + t), 128 + 100 * np.cos(y / 30 - t),
                                 128 + 60 * np.sin((x + y) / 50 + 2 * t)], -1) for t in range(16)]).astype(np.uint8)
    files = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in encode_jpeg_frames(frames, 95)]
    dev = torch.device("cuda")
    victims = [torch.ones(3 * 256 * 448 // 4, device=dev) for _ in range(16)]  # the outputs' size, float32
    torch.cuda._sleep(2_000_000_000)  # the stream busy for ~1 s: the sums below run after the decode
    sums = [v.sum() for v in victims]
    del victims  # freed on the caller's stream while its sums are still queued
    got = nvjpeg_decode(files, dev)
    bad = sum(int(s.item() != 3 * 256 * 448 // 4) for s in sums)
    cpu = [simplejpeg.decode_jpeg(f.numpy().tobytes(), colorspace="RGB") for f in files]
    d = [(g.permute(1, 2, 0).cpu().int() - torch.from_numpy(c).int()).abs().float() for g, c in zip(got, cpu)]
    mean, top = max(x.mean().item() for x in d), max(x.max().item() for x in d)
    print(f"nvjpeg decode of 16 cached-style frames: |GPU - CPU| mean {mean:.2f}, max {top:.0f} levels; "
          f"queued reads corrupted: {bad} of 16")
    assert bad == 0, "the device decode wrote over memory the caller's stream still read"
    assert all(g.shape == (3, 256, 448) for g in got) and mean < 2, "nvjpeg decoding differs from the CPU's"
EOF
[ "${PIPESTATUS[0]}" = 0 ] || { echo "gpu_check: the environment is incomplete (see above)" | tee -a "$LOG"; exit 1; }

# the demo entry the loader and training steps read (ViT-B/16's 224 crops need 256-pixel frames)
step extract_demo $DEMO_LIMIT $PY -m pipeline extract --dataset demo --short-side $TRAIN_SHORT
# one epoch of the demo's pevl variant through the real CLI under torchrun (NCCL on a GPU, gloo on a
# CPU), second because it is the only check of NCCL and of mmengine's bf16 autocast; the GPU recipe's
# frozen CLIP (random weights: none can be had offline) at the xclip recipe's new-module rate, not the
# demo overlay's fp32, unfrozen towers at 2e-3
step train_torchrun $TRAIN_LIMIT $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m pipeline train \
  --exp demo --variant pevl --launcher pytorch --device $DEV --work-dir "$WORK/train" --force \
  -c "model.clip.arch=$TRAIN_ARCH" -c model.clip.frozen=true -c train.amp=bfloat16 -c train.lr=8e-5 \
  -c train.max_epochs=1 -c train.warmup_epochs=0 -c train.batch_size=8 \
  -c data.extract.short_side=$TRAIN_SHORT -c data.num_workers=4
step model $MODEL_LIMIT $PY bench/model.py --device $DEV $MODEL_ARGS --json
step loader $LOADER_LIMIT $PY bench/loader.py --dataset demo --train --device $DEV $LOADER_ARGS --json "$OUT/loader.json"
step loader_jpeg $LOADER_LIMIT $PY bench/loader.py --dataset demo --train --device $DEV $LOADER_ARGS --frames-codec jpeg \
  --decode-on-device --json "$OUT/loader_jpeg.json"
# last: the longest step (each path's figure is printed as soon as it is measured)
step extract $EXTRACT_LIMIT $PY bench/extract.py --device $DEV $EXTRACT_ARGS
echo "gpu_check: done, exit $status; logs in $OUT"
exit $status
