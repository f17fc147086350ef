"""Experiment trackers through mmengine's backends, offline: MLflow with a local file store,
Weights & Biases in offline mode, TensorBoard; `--tracker` names checked."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from pevl_stage2_testutils import small_demo  # noqa: E402,F401  (session fixture)

import importlib.util

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

TINY = {"train.max_epochs": 2, "train.warmup_epochs": 0, "train.batch_size": 4, "data.num_workers": 0,
        "train.val_interval": 1, "train.log_interval": 1, "model.num_video_frames": 4, "model.num_pose_frames": 8}
HAVE_WANDB = importlib.util.find_spec("wandb") is not None


def test_parse_trackers():
    from stages.train.trackers import parse_trackers

    assert parse_trackers(None) == ("tensorboard",)
    assert parse_trackers(["mlflow,tensorboard", "mlflow"]) == ("mlflow", "tensorboard")
    assert parse_trackers(["none"]) == ()
    with pytest.raises(ValueError, match="unknown tracker 'wandbb'; did you mean 'wandb'"):
        parse_trackers(["wandbb"])


def test_one_tiny_training_tracked_offline(small_demo, tmp_path, monkeypatch):
    """MLflow (local file store: no server), W&B (WANDB_MODE=offline) and TensorBoard, one training."""
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for k in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(k, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    cache, entry_dir, _ = small_demo
    trackers = "mlflow,tensorboard" + (",wandb" if HAVE_WANDB else "")
    args = ["train", "--exp", "demo", "--entry", str(entry_dir), "--cache-root", str(cache), "--device", "cpu",
            "--work-dir", str(tmp_path / "w"), "--tracker", trackers]
    for k, v in TINY.items():
        args += ["-c", f"{k}={v}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "wandb:" not in res.output  # W&B's banner only at -v
    vdir = tmp_path / "w" / "demo" / "pevl"

    from mlflow.tracking import MlflowClient

    store = tmp_path / "w" / "demo" / "mlruns"  # one store for the experiment's variants
    client = MlflowClient(store.as_uri())
    exp = client.get_experiment_by_name("demo")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_name for r in runs] == ["pevl"] and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.tags["dataset"] == "demo" and run.data.tags["entry"] == entry_dir.name
    assert run.data.params["model.num_classes"] == "10" and run.data.params["train.max_epochs"] == "2"
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in loss] == list(range(1, 11))  # 5 iterations x 2 epochs, every one logged
    top1 = client.get_metric_history(run.info.run_id, "top1")
    assert [m.step for m in top1] == [1, 2]  # a validation per epoch
    import json

    row = json.loads((vdir / "result.json").read_text())
    assert top1[-1].value == pytest.approx(row["top1"])
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert any(p.endswith(".log") for p in arts) and "config.py" in arts
    assert list(vdir.glob("*/vis_data/events.out.tfevents*"))  # TensorBoard
    if HAVE_WANDB:
        offline = list(vdir.glob("*/vis_data/wandb/offline-run-*"))
        assert len(offline) == 1 and list(offline[0].glob("run-*.wandb")), offline
