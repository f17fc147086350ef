"""A run whose views are cut on the device trains and evaluates end to end: the items a loader
worker makes name their frame rows (FrameRows) and ship the pose frames' joints; the data
preprocessor reads the rows, cuts, resizes and flips them, and builds joints and grids. No CUDA
here: the run is told it has one for the items (what `pixels_on_device` decides on a GPU machine),
the preprocessor works on the CPU."""
import numpy as np
from typer.testing import CliRunner

from pipeline.cli import app

DEMO_OPTIONS = {"clips_per_class": "1,1", "num_frames": "32"}
ONE_EPOCH = {"train.max_epochs": 1, "train.warmup_epochs": 0, "train.batch_size": 4, "data.num_workers": 1,
             "train.val_interval": 1, "train.log_interval": 1, "model.num_video_frames": 4,
             "model.num_pose_frames": 8, "data.dataset_options": DEMO_OPTIONS}


def test_a_run_with_the_views_on_the_device_trains(tmp_path, monkeypatch):
    import stages.train.runner as runner
    from stages.data.device_frames import FrameRows
    from stages.train.sweep import run_sweep

    cache = tmp_path / "cache"
    res = CliRunner().invoke(app, ["extract", "--dataset", "demo", "--cache-root", str(cache), "--workers", "1"]
                             + [a for k, v in DEMO_OPTIONS.items() for a in ("-o", f"{k}={v}")])
    assert res.exit_code == 0, res.output
    decided, read = [], []
    real_decision, real_read = runner.pixels_on_device, FrameRows.tensor

    def as_on_a_gpu(settings, entry, device):
        decided.append(real_decision(settings, entry, "cuda"))
        return decided[-1]

    def counted(self):
        read.append(self.shape)
        return real_read(self)

    monkeypatch.setattr(runner, "pixels_on_device", as_on_a_gpu)
    monkeypatch.setattr(FrameRows, "tensor", counted)
    rep = run_sweep("demo", variants=["pevl"], cache_root=str(cache), work_dir=tmp_path / "w",
                    cfg_options=dict(ONE_EPOCH), say=lambda m: None)
    assert [o.status for o in rep.outcomes] == ["trained"], [o.error for o in rep.outcomes]
    assert decided and all(d == {"decode_on_device": False, "views_on_device": True} for d in decided)
    # every training and evaluation batch's rows came through the worker as names, read here
    assert len(read) >= 2 * 4 and all(s[0] == 4 for s in read)
    row = rep.rows[0]
    assert row["epochs"] == 1 and np.isfinite(row["top1"])
