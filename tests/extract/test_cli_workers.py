"""`pipeline extract --workers N` works for every dataset (the demo included) and says each thing
once: third-party noise is filtered, the project's own warnings appear once per run."""
import subprocess
import sys

from cache import CacheStore
from pevl_testutils import REPO, make_video, tiny_hrnet_config, write_custom_dataset

NOISE = ("MultiScaleDeformableAttention", "pkg_resources", "metainfo config file")


def _extract(*args, cache_root):
    return subprocess.run([sys.executable, "-m", "pipeline", "extract", "--cache-root", str(cache_root), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def test_demo_extracts_with_two_workers(tmp_path):
    res = _extract("--dataset", "demo", "-o", "clips_per_class=1", "-o", "num_frames=32", "--workers", "2",
                   cache_root=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (entry,) = CacheStore(tmp_path).entries("demo")
    assert entry.status().done == 20 and entry.is_complete


def test_hrnet_workers_print_no_third_party_noise_and_each_warning_once(tmp_path):
    root = tmp_path / "data"
    clips = []
    for i in range(3):
        make_video(root / f"v{i}.mp4", frames=6, size=(64, 48))
        clips.append((f"v{i}.mp4", i % 2, "train"))
    write_custom_dataset(root, clips, ["walk", "run"])
    res = _extract("--dataset", "custom", "--root", str(root), "--coarse-type", "x", "--pose-checkpoint", "none",
                   "--pose-config", tiny_hrnet_config(), "--no-pose-flip-test", "--workers", "2",
                   cache_root=tmp_path / "cache")
    assert res.returncode == 0, res.stderr[-3000:]
    for noise in NOISE:
        assert noise not in res.stderr, res.stderr
    assert res.stderr.count("RANDOM WEIGHTS") == 1, res.stderr
    assert res.stderr.count("WHOLE FRAMES") == 1, res.stderr


def test_cuda_workers_spread_over_the_visible_gpus(monkeypatch):
    """`--workers N --device cuda`: worker w on cuda:(w mod GPUs); an explicit cuda:K is kept."""
    import torch

    from pipeline.engines.local import worker_options
    from stages.extract.plan import ExtractOptions, worker_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [o.device for o in worker_options(ExtractOptions(dataset="demo", device="cuda"), 3)] == \
        ["cuda:0", "cuda:1", "cuda:0"]
    assert [o.device for o in worker_options(ExtractOptions(dataset="demo", device="cuda:1"), 2)] == ["cuda:1"] * 2
    assert [o.device for o in worker_options(ExtractOptions(dataset="demo"), 2)] == ["cpu", "cpu"]
    assert worker_device("cuda", 3, visible=0) == "cuda"  # no GPU: left for the pose source to refuse
