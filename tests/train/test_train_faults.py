"""Faults while training: a run whose loss goes NaN stops at that iteration, before the weights it
made are validated or saved (the last good checkpoint stays, even at max_keep_ckpts=1); a
checkpoint that cannot be written is named and leaves no part-written file; a diverged or damaged
checkpoint is refused when loaded; NaN scores are refused, not measured as chance."""
import resource
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from pevl_stage2_testutils import small_demo  # noqa: E402,F401  (session fixture)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

from stages.registry import HOOKS  # noqa: E402
from stages.train.checkpoints import load_checkpoint_into, read_checkpoint_meta, whole_checkpoint_problem  # noqa: E402
from stages.train.hooks import NonFiniteLossError  # noqa: E402
from stages.train.metrics import classification_metrics  # noqa: E402

OPTS = {"train.max_epochs": 3, "train.warmup_epochs": 1, "train.batch_size": 4, "data.num_workers": 0,
        "train.val_interval": 1, "train.log_interval": 1, "train.max_keep_ckpts": 1,
        "model.num_video_frames": 4, "model.num_pose_frames": 8, "train.seed": 3}


@HOOKS.register_module(force=True)
class _PoisonWeightsHook(Hook):
    """Sets one trainable weight to NaN before epoch 2's second iteration (a diverging step's result)."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.epoch == 1 and batch_idx == 1:
            p = next(p for p in runner.model.parameters() if p.requires_grad)
            with torch.no_grad():
                p.fill_(float("nan"))


@HOOKS.register_module(force=True)
class _FileSizeLimitHook(Hook):
    """Lowers this process' file size limit before epoch 2's checkpoint is written: the write fails
    with EFBIG, as one on a full disk fails with ENOSPC (Python ignores SIGXFSZ)."""

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.epoch == 1:  # (the runner counts the epoch on after the save)
            resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@HOOKS.register_module(force=True)
class _PoisonAfterLastStepHook(Hook):
    """Sets one trainable weight to NaN after epoch 2's last step, whose loss was finite (a step
    whose gradient was not): only the next iteration's loss would show it."""

    priority = "LOWEST"

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.epoch == 1 and batch_idx == len(runner.train_dataloader) - 1:
            p = next(p for p in runner.model.parameters() if p.requires_grad)
            with torch.no_grad():
                p.fill_(float("nan"))


def _model_and_cfg(entry_dir):
    from stages.data.entry_lookup import find_entry
    from stages.train.config import build_run_config

    cfg = build_run_config("demo", "pevl", cfg_options=OPTS)
    return cfg, find_entry(cfg.data.to_dict(), entry=str(entry_dir))


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(small_demo, tmp_path):
    from stages.train.runner import build_wrapped_model, train_variant

    _, entry_dir, _ = small_demo
    cfg, entry = _model_and_cfg(entry_dir)
    work = tmp_path / "w"
    with pytest.raises(NonFiniteLossError) as e:
        train_variant(cfg, str(work), entry, device="cpu", hooks=[dict(type="_PoisonWeightsHook")])
    msg = str(e.value)
    assert "epoch 2, iteration 2" in msg and "loss nan" in msg and "epoch_1.pth" in msg and "train.lr" in msg
    # max_keep_ckpts=1: epoch 1's checkpoint is kept, whole and finite; nothing of epoch 2 was saved
    assert sorted(p.name for p in work.glob("*.pth")) == ["epoch_1.pth"]
    assert (work / "last_checkpoint").read_text().strip().endswith("epoch_1.pth")
    assert not (work / "result.json").exists()
    model = build_wrapped_model(cfg, entry, "cpu")
    load_checkpoint_into(model, work / "epoch_1.pth")  # loads: its weights are finite


def test_diverged_and_damaged_checkpoints_are_refused_by_name(small_demo, tmp_path):
    from stages.train.runner import build_wrapped_model

    _, entry_dir, _ = small_demo
    cfg, entry = _model_and_cfg(entry_dir)
    model = build_wrapped_model(cfg, entry, "cpu")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name].view(-1)[0] = float("inf")
    diverged = tmp_path / "diverged.pth"
    torch.save({"state_dict": state, "meta": {}}, diverged)
    with pytest.raises(ValueError, match=rf"diverged.pth: 1 of its \d+ tensors hold NaN or infinity \({name}\)"):
        load_checkpoint_into(model, diverged)

    # bytes rotted inside a tensor: torch.load would read the file without complaint
    good = {k: v.clone() for k, v in model.state_dict().items()}
    rotten = tmp_path / "rotten.pth"
    torch.save({"state_dict": good, "meta": {"x": 1}}, rotten)
    with zipfile.ZipFile(rotten) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw = bytearray(rotten.read_bytes())
    raw[start + 8: start + 16] = b"\x7f" * 8
    rotten.write_bytes(bytes(raw))
    assert torch.load(str(rotten), weights_only=True)  # the damage passes torch.load
    assert whole_checkpoint_problem(rotten).startswith("damaged: the CRC of member")
    with pytest.raises(ValueError, match=r"rotten.pth cannot be used: damaged: the CRC of member "):
        load_checkpoint_into(model, rotten)
    # the record alone is read from its pickle, checked whole; the tensors are mapped, not read
    assert read_checkpoint_meta(rotten) == {"x": 1}
    record = tmp_path / "rotten_record.pth"
    torch.save({"state_dict": good, "meta": {"x": 1}}, record)
    with zipfile.ZipFile(record) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw = bytearray(record.read_bytes())
    raw[start + info.file_size - 3] ^= 0xFF  # inside the pickle (stored uncompressed)
    record.write_bytes(bytes(raw))
    assert whole_checkpoint_problem(record, record_only=True).startswith("damaged: the CRC of member")
    with pytest.raises(ValueError, match=r"rotten_record.pth cannot be used: damaged: the CRC of member .*data.pkl"):
        read_checkpoint_meta(record)


def test_nan_scores_are_refused_not_measured_as_chance():
    scores = np.ones((4, 3))
    scores[2, 1] = np.nan
    with pytest.raises(ValueError, match="1 of 4 clips have NaN class scores"):
        classification_metrics(scores, np.array([0, 1, 2, 0]))
    assert classification_metrics(np.eye(3), np.array([0, 1, 2]))["top1"] == 100.0


def test_a_checkpoint_that_cannot_be_written_is_named_and_leaves_no_part(small_demo, tmp_path):
    from stages.train.checkpoints import CheckpointWriteError
    from stages.train.runner import train_variant

    _, entry_dir, _ = small_demo
    cfg, entry = _model_and_cfg(entry_dir)
    work = tmp_path / "w"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        with pytest.raises(CheckpointWriteError) as e:
            train_variant(cfg, str(work), entry, device="cpu", hooks=[dict(type="_FileSizeLimitHook")])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    msg = str(e.value)
    assert f"could not write checkpoint {work / 'epoch_2.pth'} (File too large" in msg
    assert "The newest whole checkpoint is epoch_1.pth: `--resume` continues from it" in msg
    assert (work / "epoch_1.pth").stat().st_size > 256 * 1024  # the limit did cut the checkpoint
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []  # no part-written file
    assert whole_checkpoint_problem(work / "epoch_1.pth") is None


def test_a_json_file_that_cannot_be_written_leaves_no_temporary(tmp_path, monkeypatch):
    import os

    from stages.train import report

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left"):
        report.write_json(tmp_path / "results.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_run_stopped_by_a_damaged_clip_says_what_recovers_it():
    from types import SimpleNamespace

    from cache.chunks import ChunkFormatError
    from stages.train.sweep import _recovery_hint

    entry = SimpleNamespace(key="8f2a491a5c787254")
    hint = _recovery_hint(ChunkFormatError("clips/x/frames/c/0/0/0/0: chunk file missing"), entry)
    assert "`pipeline cache repair 8f2a491a5c787254` then `pipeline extract`" in hint and "--resume" in hint
    assert _recovery_hint(ValueError("another fault"), entry) == ""


def test_a_run_stopped_by_a_full_disk_says_where_and_that_resume_keeps_its_checkpoints(tmp_path):
    """A full disk while a finished run wrote confusion.png said only "OSError: [Errno 28] No space
    left on device"; the obvious rerun (no --resume) set the finished checkpoint aside and trained
    the whole run again."""
    import errno
    from types import SimpleNamespace

    from stages.train.sweep import _recovery_hint

    entry = SimpleNamespace(key="8f2a491a5c787254")
    vdir = tmp_path / "demo" / "pevl"
    vdir.mkdir(parents=True)
    full = OSError(errno.ENOSPC, "No space left on device")
    hint = _recovery_hint(full, entry, vdir)
    assert f"while writing {vdir} (filesystem mounted at /" in hint and "free space there" in hint
    assert "--resume" not in hint  # nothing kept to continue from
    for n in (1, 2):
        (vdir / f"epoch_{n}.pth").write_bytes(b"")
    hint = _recovery_hint(OSError(errno.EDQUOT, "Disk quota exceeded", str(vdir / "confusion.png")), entry, vdir)
    assert f"while writing {vdir / 'confusion.png'}" in hint
    assert "`pipeline train ... --resume` continues from epoch_2.pth" in hint and "train again from the start" in hint
    assert _recovery_hint(OSError(errno.EIO, "I/O error"), entry, vdir) == ""


def test_eval_takes_the_trained_model_settings_but_not_the_training_machines_paths(small_demo):
    """A checkpoint records where the training machine kept the CLIP file: evaluating it elsewhere
    gives this machine's with -c (the backbone check compares the weights' sha256, not the path)."""
    import copy

    from stages.train.hooks import run_record
    from stages.train.runner import run_config_of, trained_model_settings

    _, entry_dir, _ = small_demo
    cfg, entry = _model_and_cfg(entry_dir)
    recorded = copy.deepcopy(run_record(run_config_of(cfg, entry), entry)["run_config"])
    assert trained_model_settings(recorded, cfg, entry, {}) == ({}, [])  # the same run: nothing to take
    recorded["model"]["clip"]["pretrained_path"] = "/cluster/alice/ViT-B-16.pt"
    recorded["model"]["pose"]["normalize"] = "crop"
    recorded["model"]["retired_switch"] = True
    given = {"model.clip.pretrained_path": "/home/bob/ViT-B-16.pt"}
    assert trained_model_settings(recorded, cfg, entry, given) == ({"model.pose.normalize": "crop"},
                                                                   ["model.retired_switch"])
    with pytest.raises(ValueError, match="model.pose.normalize: trained 'crop', -c gives 'person'"):
        trained_model_settings(recorded, cfg, entry, {"model.pose.normalize": "person"})
    # the test views the run measured with (eval's metrics disagreed with the run's own, unsaid);
    # a -c that sets them is a choice, not a clash
    recorded["data"]["test_views"] = "three_crop"
    assert trained_model_settings(recorded, cfg, entry, given)[0] == {"model.pose.normalize": "crop",
                                                                      "data.test_views": "three_crop"}
    assert "data.test_views" not in trained_model_settings(recorded, cfg, entry,
                                                           {"data.test_views": "resize_three_crop"})[0]


def test_float16_loss_scaling_gets_a_streak_before_the_run_stops():
    """float16 training's GradScaler skips a step with non-finite gradients (the weights stay as they
    were): a stray overflow must not stop it; a streak of them (nothing trains any more) does."""
    from types import SimpleNamespace

    from stages.train.hooks import FiniteLossHook

    def runner(scaled):
        wrapper = SimpleNamespace(get_lr=lambda: {"lr": [1e-3]}, **({"loss_scaler": object()} if scaled else {}))
        return SimpleNamespace(optim_wrapper=wrapper, epoch=0,
                               message_hub=SimpleNamespace(get_info=lambda k: None))

    nan, ok = {"loss": torch.tensor(float("nan"))}, {"loss": torch.tensor(1.0)}
    hook = FiniteLossHook()
    scaled = runner(True)
    for i in range(FiniteLossHook.SCALED_PATIENCE - 1):
        hook.after_train_iter(scaled, i, outputs=nan)
    hook.after_train_iter(scaled, 60, outputs=ok)  # the scale came down: training goes on, the streak ends
    for i in range(FiniteLossHook.SCALED_PATIENCE - 1):
        hook.after_train_iter(scaled, i, outputs=nan)
    with pytest.raises(NonFiniteLossError, match=r"\(50 iterations in a row, float16 loss scaling skipping each\)"):
        hook.after_train_iter(scaled, 99, outputs=nan)
    with pytest.raises(NonFiniteLossError, match="iteration 1 "):  # fp32 / bf16: at once
        FiniteLossHook().after_train_iter(runner(False), 0, outputs=nan)


def test_weights_gone_nan_with_a_finite_loss_are_not_saved_nor_resumed(small_demo, tmp_path):
    """The epoch's last step made NaN weights with a finite loss: the checkpoint hook saved them and
    deleted the last good checkpoint (max_keep_ckpts=1), and --resume trained on from them."""
    from stages.train.runner import train_variant

    _, entry_dir, _ = small_demo
    cfg, entry = _model_and_cfg(entry_dir)
    work = tmp_path / "w"
    with pytest.raises(NonFiniteLossError, match=r"the weights after epoch 2 hold NaN or infinity \(1 tensors: .*"
                                                 r"though every loss was finite.*the newest checkpoint, .*epoch_1.pth"):
        train_variant(cfg, str(work), entry, device="cpu", hooks=[dict(type="_PoisonAfterLastStepHook")])
    assert sorted(p.name for p in work.glob("*.pth")) == ["epoch_1.pth"]
    # a NaN checkpoint that code before this check saved: --resume refuses it by name
    ckpt = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=False)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name] = torch.full_like(ckpt["state_dict"][name], float("nan"))
    ckpt["meta"]["epoch"] = 2
    torch.save(ckpt, work / "epoch_2.pth")
    with pytest.raises(NonFiniteLossError, match=r"--resume: checkpoint .*epoch_2.pth holds NaN or infinity"):
        train_variant(cfg, str(work), entry, device="cpu", resume=True)


def test_every_save_of_a_one_process_run_refuses_nan_weights_buffers_too():
    """A checkpoint saved by iteration (runner.default_hooks.checkpoint.by_epoch=False) comes between
    the epoch-end checks; in one process every save is checked, buffers included."""
    from types import SimpleNamespace

    from stages.train.hooks import FiniteLossHook

    runner = SimpleNamespace(epoch=0, iter=7)
    FiniteLossHook().before_save_checkpoint(runner, {"state_dict": {"w": torch.ones(3)}})
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, iteration 7 hold NaN or infinity \(1 tensors: "
                                                 r"bn.running_var\): not saved"):
        FiniteLossHook().before_save_checkpoint(runner, {"state_dict": {"w": torch.ones(3),
                                                                        "bn.running_var": torch.tensor([float("inf")])}})


def test_a_figure_that_cannot_be_written_leaves_neither_part_nor_temporary(tmp_path, monkeypatch):
    """confusion.png, curves.png and the predict / explain pictures were written in place: a kill or
    a full disk left half a PNG under the final name."""
    import os

    from stages.train.report import pyplot, save_figure

    fig = pyplot().figure()
    assert save_figure(fig, tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "b.png").write_bytes(b"the old one")

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left"):
        save_figure(pyplot().figure(), tmp_path / "b.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]
    assert (tmp_path / "b.png").read_bytes() == b"the old one"
