"""A kill during a checkpoint save loses nothing: checkpoints appear whole or not at all, the old one
goes only after the new one is in place, and --resume starts from the newest whole checkpoint
whatever last_checkpoint says."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from pevl_stage2_testutils import small_demo  # noqa: E402,F401  (session fixture)

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402

import torch  # noqa: E402

from stages.train.checkpoints import (remove_stale_temporaries, resume_checkpoint, temporary_name,  # noqa: E402
                                      whole_checkpoint_problem)

REPO = Path(__file__).resolve().parents[2]

# Training as test_train_resume_ddp.py drives it, in a process of its own whose write of epoch_2's
# file (whatever its name: the final one or a temporary) stops half-way with a SIGKILL, as a lost
# node's would.
SCRIPT = r'''
import json, os, signal, sys
sys.path.insert(0, {repo!r})
from mmengine.fileio.backends import local_backend
from stages.data.entry_lookup import find_entry
from stages.train.config import build_run_config
from stages.train.runner import train_variant

_put = local_backend.LocalBackend.put
def put(self, obj, filepath):
    if "epoch_2" in os.path.basename(str(filepath)):
        with open(filepath, "wb") as f:
            f.write(obj[: len(obj) // 2])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return _put(self, obj, filepath)
local_backend.LocalBackend.put = put

opts = json.loads({opts!r})
cfg = build_run_config("demo", "pevl", cfg_options=opts)
entry = find_entry(cfg.data.to_dict(), entry={entry!r})
train_variant(cfg, sys.argv[1], entry, device="cpu")
'''

OPTS = {"train.max_epochs": 2, "train.warmup_epochs": 1, "train.batch_size": 4, "data.num_workers": 0,
        "train.val_interval": 0, "train.log_interval": 1, "train.lr": 3e-3, "train.max_keep_ckpts": 1,
        "model.num_video_frames": 4, "model.num_pose_frames": 8, "train.seed": 11}


def _killed_run(script: Path, work_dir: Path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, str(script), str(work_dir)], capture_output=True, text=True, env=env,
                          timeout=300)


def _train_here(entry_dir: Path, work_dir: Path) -> dict:
    """The same training as SCRIPT's, resumed, in this process."""
    from stages.data.entry_lookup import find_entry
    from stages.train.config import build_run_config
    from stages.train.runner import train_variant

    cfg = build_run_config("demo", "pevl", cfg_options=OPTS)
    entry = find_entry(cfg.data.to_dict(), entry=str(entry_dir))
    return train_variant(cfg, str(work_dir), entry, resume=True, device="cpu")


def test_killed_during_a_checkpoint_save_resumes_from_the_last_whole_one(small_demo, tmp_path):
    _, entry_dir, _ = small_demo
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(repo=str(REPO), opts=json.dumps(OPTS), entry=str(entry_dir)))
    cut = tmp_path / "cut"
    killed = _killed_run(script, cut)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # max_keep_ckpts=1: epoch 1's checkpoint is still there, whole; epoch 2's half-written file is
    # not under its final name; last_checkpoint still names epoch 1
    assert whole_checkpoint_problem(cut / "epoch_1.pth") is None
    assert not (cut / "epoch_2.pth").exists()
    (partial,) = [p for p in cut.iterdir() if p.name.startswith(".epoch_2.pth.")]
    assert whole_checkpoint_problem(partial) is not None
    assert Path((cut / "last_checkpoint").read_text()).name == "epoch_1.pth"

    # (test_train_resume_ddp.py shows a resumed run equals an uninterrupted one)
    resumed = _train_here(entry_dir, cut)  # the resume in this process: only the kill needs its own
    assert resumed["epochs"] == 2 and whole_checkpoint_problem(cut / "epoch_2.pth") is None
    assert torch.load(cut / "epoch_2.pth", map_location="cpu", weights_only=False)["meta"]["epoch"] == 2
    logs = sorted(cut.glob("*/*.log"))
    assert any("resumed epoch: 1" in p.read_text() for p in logs)
    # the killed writer's temporary is gone, the old checkpoint went after the new one was whole
    assert sorted(p.name for p in cut.glob("*.pth")) == ["epoch_2.pth"] and not partial.exists()
    assert not [p for p in cut.iterdir() if p.name.endswith(".tmp")]
    assert Path((cut / "last_checkpoint").read_text()).name == "epoch_2.pth"


def _save(path: Path, step: int) -> Path:
    torch.save({"meta": {"epoch": step}, "state_dict": {"w": torch.full((64,), float(step))}}, path)
    return path


def test_resume_picks_the_newest_whole_checkpoint_whatever_last_checkpoint_says(tmp_path, caplog):
    _save(tmp_path / "epoch_1.pth", 1)
    (tmp_path / "epoch_2.pth").write_bytes(b"")  # what mmengine's own hook left after a kill
    data = _save(tmp_path / "x", 3).read_bytes()
    (tmp_path / "epoch_3.pth").write_bytes(data[: len(data) // 2])  # cut short
    at = data.index(b"\x00\x00\x40\x40" * 4)  # inside the tensor's bytes (3.0 as float32)
    (tmp_path / "epoch_10.pth").write_bytes(data[:at] + b"\x00\x00\x40\x41" + data[at + 4:])  # one flipped bit
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_4.pth"))  # deleted meanwhile
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(tmp_path) == tmp_path / "epoch_1.pth"
    text = caplog.text
    assert "epoch_4.pth (missing); resuming from epoch_1.pth" in text
    assert "epoch_10.pth (damaged: the CRC of member" in text and "epoch_3.pth (truncated" in text and "epoch_2.pth (empty (0 bytes))" in text
    # a whole newer one wins even if last_checkpoint names an older one
    _save(tmp_path / "epoch_5.pth", 5)
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_1.pth"))
    assert resume_checkpoint(tmp_path) == tmp_path / "epoch_5.pth"
    assert resume_checkpoint(tmp_path / "nothing") is None


def test_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = tmp_path / temporary_name("epoch_3.pth")
    theirs = tmp_path / temporary_name("epoch_2.pth").replace(f".{os.getpid()}.", f".{dead.pid}.")
    # another boot or container of this host name, and older code's names: judged by age (a node that
    # crashed mid-save left multi-GB files nothing removed)
    import time

    from cache.claims import HOST

    other_old = tmp_path / f".epoch_4.pth.{HOST.replace('.', '_')}~1~deadbeef.{dead.pid}.tmp"
    legacy_old = tmp_path / f".epoch_5.pth.{HOST.replace('.', '_')}.{dead.pid}.tmp"
    other_new = tmp_path / f".epoch_6.pth.node17.{dead.pid}.tmp"
    for p in (mine, theirs, other_old, legacy_old, other_new):
        p.write_bytes(b"partial")
    for p in (other_old, legacy_old):
        os.utime(p, (time.time() - 700,) * 2)
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([theirs, other_old, legacy_old])
    assert mine.exists() and other_new.exists()  # a live writer's, and one another node may still be writing


def test_a_checkpoint_left_by_a_kill_between_a_save_and_its_deletion_goes_with_the_next_save(tmp_path):
    """Killed after epoch 2's checkpoint was in place and before epoch 1's deletion: the resumed
    run's kept list names epoch 2 only, so mmengine's deletion never reached epoch 1 and it stayed
    for good beside max_keep_ckpts=1. The next save removes every unkept older one of its kind."""
    import collections

    from stages.train.checkpoints import AtomicCheckpointHook

    for n in (1, 2, 3):
        _save(tmp_path / f"epoch_{n}.pth", n)
    _save(tmp_path / "iter_5.pth", 5)  # another kind: not this hook's to remove
    hook = AtomicCheckpointHook(interval=1, max_keep_ckpts=1)
    hook.out_dir, hook.keep_ckpt_ids = str(tmp_path), collections.deque([3])
    hook._remove_unkept(3)
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["epoch_3.pth", "iter_5.pth"]
