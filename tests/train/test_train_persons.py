"""The demo with two people per frame trains: `pipeline extract --persons 2` on the demo with a
bystander in some clips, then `demo`'s PeVL (UCMR, person-relative coordinates, per-joint
embedding) on J = 17 x 2 joints, the count coming from the entry."""
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from pipeline.cli import app

DEMO_OPTIONS = {"clips_per_class": "1,1", "num_frames": "32", "bystanders": "0.5"}
ONE_EPOCH = {"train.max_epochs": 1, "train.warmup_epochs": 0, "train.batch_size": 4, "data.num_workers": 0,
             "train.val_interval": 1, "train.log_interval": 1, "model.num_video_frames": 4,
             "model.num_pose_frames": 8, "data.dataset_options": DEMO_OPTIONS, "data.extract.persons": 2}


def test_the_demo_with_two_people_per_frame_trains(tmp_path):
    from cache import CacheStore
    from stages.train.sweep import run_sweep

    cache = tmp_path / "cache"
    res = CliRunner().invoke(app, ["extract", "--dataset", "demo", "--cache-root", str(cache), "--persons", "2",
                                   "--workers", "1"] + [a for k, v in DEMO_OPTIONS.items() for a in ("-o", f"{k}={v}")])
    assert res.exit_code == 0, res.output
    (entry,) = CacheStore(cache).entries()
    assert entry.persons == 2 and entry.settings["persons"] == 2
    ls = CliRunner().invoke(app, ["cache", "ls", "--cache-root", str(cache), "--json"])
    assert ls.exit_code == 0 and [r["persons"] for r in json.loads(ls.stdout)] == [2]
    seconds = []
    for row in entry.clips():
        c = entry.read_clip(row["uid"])
        assert c.keypoints.shape[1] == 34 and c.grids.shape[1] == 34
        second = bool(c.scores[:, 17:].any())
        seconds.append(second)
        assert second == (c.attrs["pose_info"]["num_persons"] == 2)  # a zero-score person where none stood
    assert any(seconds)
    rep = run_sweep("demo", cache_root=str(cache), work_dir=tmp_path / "w", cfg_options=dict(ONE_EPOCH),
                    say=lambda m: None)
    assert [o.status for o in rep.outcomes] == ["trained"], [o.error for o in rep.outcomes]
    row = rep.rows[0]
    assert row["entry"] == entry.key and row["epochs"] == 1 and np.isfinite(row["top1"])
    dumped = [p for p in Path(tmp_path / "w").rglob("*.py")]
    text = "\n".join(p.read_text() for p in dumped)
    assert "num_joints=34" in text.replace(" ", "") and "num_persons=2" in text.replace(" ", ""), dumped
