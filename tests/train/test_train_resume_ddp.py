"""A run killed mid-epoch and resumed equals an uninterrupted run; two-process torchrun (gloo)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from pevl_stage2_testutils import small_demo  # noqa: E402,F401  (session fixture)

import json
import os
import socket
import subprocess

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json, os, signal, sys
sys.path.insert(0, {repo!r})
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from stages.data.entry_lookup import find_entry
from stages.train.config import build_run_config
from stages.train.runner import train_variant

@HOOKS.register_module()
class KillAtIterHook(Hook):
    """SIGKILL this process before global iteration ``at`` (no cleanup, like a lost node)."""
    def __init__(self, at):
        self.at = at
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            os.kill(os.getpid(), signal.SIGKILL)

work_dir, kill_at, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
opts = json.loads({opts!r})
cfg = build_run_config("demo", "pevl", cfg_options=opts)
entry = find_entry(cfg.data.to_dict(), entry={entry!r})
hooks = [dict(type="KillAtIterHook", at=kill_at)] if kill_at >= 0 else None
row = train_variant(cfg, work_dir, entry, resume=resume, hooks=hooks, device="cpu")
print("RESULT", json.dumps(row))
'''

OPTS = {"train.max_epochs": 2, "train.warmup_epochs": 1, "train.batch_size": 4, "data.num_workers": 1,
        "train.val_interval": 0, "train.log_interval": 1, "train.lr": 3e-3, "train.max_keep_ckpts": 3,
        "model.num_video_frames": 4, "model.num_pose_frames": 8, "train.seed": 11}


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONWARNINGS="ignore")
    return env


def _start(script: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _wait(proc: subprocess.Popen, check=True) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(out[-3000:] + err[-3000:])
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _result(p) -> dict:
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(small_demo, tmp_path):
    """With a model that draws from torch's random generator while it trains (PoseFormer's stochastic
    depth): a resume that only seeded it again drew other masks, and every weight differed."""
    _, entry_dir, _ = small_demo
    script = tmp_path / "run.py"
    opts = {**OPTS, "model.pose.encoder": "poseformer", "model.pose.cls_token": False, "model.pose.form": "coords",
            "model.pose.poseformer.depth": 2,
            "model.pose.poseformer.drop_path": 0.5}
    script.write_text(SCRIPT.format(repo=str(REPO), opts=json.dumps(opts), entry=str(entry_dir)))
    # 20 train clips / batch 4 = 5 iterations per epoch; kill before global iteration 7 (epoch 2)
    # the uninterrupted run and the one to kill are independent (one thread each): side by side
    full, killed = _start(script, tmp_path / "full", -1, 0), _start(script, tmp_path / "cut", 7, 0)
    full, killed = _result(_wait(full)), _wait(killed, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "cut" / "epoch_1.pth").is_file() and not (tmp_path / "cut" / "epoch_2.pth").exists()
    resumed = _result(_wait(_start(script, tmp_path / "cut", -1, 1)))
    assert resumed["epochs"] == full["epochs"] == 2
    for k in ("top1", "top5", "mean_class_acc"):
        assert resumed[k] == full[k], k
    a = torch.load(tmp_path / "full" / "epoch_2.pth", map_location="cpu", weights_only=False)
    b = torch.load(tmp_path / "cut" / "epoch_2.pth", map_location="cpu", weights_only=False)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-6), k
    assert set(a["meta"]["rng_state"]) == {"torch", "numpy", "python"}
    # the resumed run really resumed (its log says so) rather than starting over
    logs = sorted((tmp_path / "cut").glob("*/*.log"))
    assert any("resumed epoch: 1" in p.read_text() for p in logs)
    # its training time adds up the segments: the first one's (up to its last checkpoint) and the second's
    first = torch.load(tmp_path / "cut" / "epoch_1.pth", map_location="cpu", weights_only=False)["meta"]
    assert first["train_segments"] == 1 and first["train_seconds"] > 0
    assert full["train_segments"] == 1 and resumed["train_segments"] == 2
    assert resumed["train_seconds"] > first["train_seconds"]
    assert b["meta"]["train_seconds"] == pytest.approx(resumed["train_seconds"], abs=1.0)


def test_loader_workers_and_validations_leave_the_models_random_stream_alone(small_demo, tmp_path):
    """``data.num_workers`` and ``train.val_interval`` may differ on resume (NOT_THE_RUN): each loader
    draws from a generator of its own, so with stochastic depth the weights are the same."""
    _, entry_dir, _ = small_demo
    base = {**OPTS, "model.pose.encoder": "poseformer", "model.pose.cls_token": False, "model.pose.form": "coords",
            "model.pose.poseformer.depth": 2, "model.pose.poseformer.drop_path": 0.5}
    runs = {"a": {**base, "data.num_workers": 0, "train.val_interval": 1},
            "b": {**base, "data.num_workers": 1, "train.val_interval": 0}}
    procs = {}
    for name, opts in runs.items():
        script = tmp_path / f"{name}.py"
        script.write_text(SCRIPT.format(repo=str(REPO), opts=json.dumps(opts), entry=str(entry_dir)))
        procs[name] = _start(script, tmp_path / name, -1, 0)
    for p in procs.values():
        _wait(p)
    a = torch.load(tmp_path / "a" / "epoch_2.pth", map_location="cpu", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "epoch_2.pth", map_location="cpu", weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_torchrun_gloo_training(small_demo, tmp_path):
    _, entry_dir, _ = small_demo
    opts = {**OPTS, "train.max_epochs": 1, "data.num_workers": 0, "train.val_interval": 1}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "pipeline", "train", "--exp", "demo", "--launcher", "pytorch",
           "--device", "cpu", "--entry", str(entry_dir), "--work-dir", str(tmp_path / "w")]
    for k, v in opts.items():
        cmd += ["--cfg-options", f"{k}={v}"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, cwd=str(REPO))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-4000:]
    row = json.loads((tmp_path / "w" / "demo" / "pevl" / "result.json").read_text())
    assert row["world_size"] == 2 and row["epochs"] == 1 and row["num_test_clips"] == 10
    rows = json.loads((tmp_path / "w" / "demo" / "results.json").read_text())
    assert [r["variant"] for r in rows] == ["pevl"]
    # 20 clips / (2 processes x batch 4): 2 full iterations per epoch (the rest dropped)
    log = next((tmp_path / "w" / "demo" / "pevl").glob("*/*.log")).read_text()
    assert "Epoch(train) [1][2/2]" in log


ONE_RANK_FAILS = r'''
import json, os, sys, time
sys.path.insert(0, {repo!r})
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from stages.train.sweep import run_sweep

@HOOKS.register_module()
class FailOnRank1Hook(Hook):
    """What one process alone meets: a damaged clip only its sampler reads, a full disk."""
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if int(os.environ["RANK"]) == 1:
            raise RuntimeError("process 1 alone failed")

run_sweep("demo", work_dir=sys.argv[1], entry={entry!r}, cfg_options=json.loads({opts!r}), launcher="pytorch",
          device="cpu", hooks=[dict(type="FailOnRank1Hook")], say=lambda m: print(m, flush=True))
print("RETURNED", flush=True)
'''


def test_a_variant_failing_in_one_process_stops_the_torchrun_run(small_demo, tmp_path):
    """Each process caught its own failure and went on: the others waited in the failed variant's
    all-reduce (or paired its collectives with the next variant's) until gloo's 30-minute timeout,
    and a failure on a process other than 0 was never said. It is said by that process, which
    stops the run; torchrun ends the others."""
    import time

    _, entry_dir, _ = small_demo
    opts = {**OPTS, "train.max_epochs": 1, "data.num_workers": 0}
    script = tmp_path / "fails.py"
    script.write_text(ONE_RANK_FAILS.format(repo=str(REPO), entry=str(entry_dir), opts=json.dumps(opts)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(script), str(tmp_path / "w")]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=240, cwd=str(tmp_path))
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "RETURNED" not in p.stdout, out[-3000:]
    assert "[fail] demo/pevl (process 1 of 2): RuntimeError: process 1 alone failed" in p.stdout, out[-3000:]
    assert time.time() - t0 < 200


def test_train_time_adds_up_the_segments(monkeypatch):
    """TrainTimeHook: a resumed segment starts from the seconds its checkpoint holds."""
    import stages.train.hooks as hooks

    now = [1000.0]
    monkeypatch.setattr(hooks.time, "monotonic", lambda: now[0])
    first = hooks.TrainTimeHook()
    first.before_train(None)
    now[0] += 30.0
    ckpt: dict = {}
    first.before_save_checkpoint(None, ckpt)  # epoch 1 saved after 30 s; then the process dies
    assert ckpt["meta"] == {"train_seconds": 30.0, "train_segments": 1}
    second = hooks.TrainTimeHook()
    second.after_load_checkpoint(None, ckpt)  # --resume
    second.before_train(None)
    now[0] += 12.5
    assert second.total() == 42.5 and second.segments == 2
    fresh = hooks.TrainTimeHook()
    fresh.after_load_checkpoint(None, {"meta": {}})  # a checkpoint of an older run: nothing to add
    fresh.before_train(None)
    assert fresh.total() == 0.0 and fresh.segments == 1


def test_random_state_hook_restores_states_mapped_to_another_device():
    """mmengine's resume maps a checkpoint to the run's device: on a CUDA machine the saved states
    came back as CUDA tensors, which torch.set_rng_state refuses. They are taken back to the CPU."""
    import random

    import numpy as np

    from stages.train.hooks import RandomStateHook

    class OnDevice:  # what a tensor mapped to a device offers: .cpu() gives the bytes back
        def __init__(self, t):
            self.t = t

        def cpu(self):
            return self.t

    hook = RandomStateHook()
    ckpt: dict = {}
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    hook.before_save_checkpoint(None, ckpt)
    expect = (torch.rand(3), np.random.rand(3), random.random())
    state = ckpt["meta"]["rng_state"]
    state["torch"] = OnDevice(state["torch"])
    state["numpy"][1] = OnDevice(state["numpy"][1])
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    hook.after_load_checkpoint(None, ckpt)
    hook.before_train(None)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expect[0]) and np.array_equal(got[1], expect[1]) and got[2] == expect[2]
