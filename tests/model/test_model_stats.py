import json

import pytest
import typer
from typer.testing import CliRunner

from pipeline.commands.stats import stats
from stages.model.flops import model_stats


def test_vit_b16_image_is_fvcore_size():
    # one 224px frame of the frozen ViT-B/16, no adapters: ~17.58 GMACs (fvcore: 17.5-17.6)
    r = model_stats(dict(type="LinearHeadPeVL", modalities=["video"], adapters=dict(video=False),
                         ucmr=dict(num_blocks=0)), num_video_frames=1)
    assert 17.4 < r["gflops"] < 17.7


def test_stats_json_cli_tiny():
    app = typer.Typer()
    app.command()(stats)
    res = CliRunner().invoke(app, ["--exp", "table9_pose_form", "--json", "--arch", "PeVL-tiny"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output[res.output.index("["):])
    assert [r["variant"] for r in rows] == ["heatmaps", "coordinates"]
    assert all({"variant", "tunable_params_m", "gflops"} <= set(r) for r in rows)
