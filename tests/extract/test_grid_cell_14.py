"""Stage one on a 14-pixel grid (ViT-L/14's patch) and stage two's refusal of an entry on another
grid, naming the command that makes the right one."""
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config

from pevl_testutils import tiny_hrnet_config
from stages.geometry import resized_size


@pytest.mark.parametrize("h,w,short,cell,want", [
    (360, 640, 256, 14, (252, 448)),  # 16:9: 18 x 32 cells
    (480, 640, 256, 14, (252, 336)),  # 4:3
    (640, 360, 256, 14, (448, 252)),  # portrait
    (360, 640, 256, 16, (256, 448)),
    (1080, 1920, 224, 14, (224, 392)),
])
def test_short_side_rounds_to_whole_14_pixel_cells(h, w, short, cell, want):
    got = resized_size(h, w, short, cell)
    assert got == want and got[0] % cell == 0 and got[1] % cell == 0
    assert min(got) >= 224  # ViT-L/14's crop fits (16 x 14 px)


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    """The same tiny clip extracted on a 16- and a 14-pixel grid (HRNet, random weights)."""
    from pevl_testutils import make_video, write_custom_dataset
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    tmp = tmp_path_factory.mktemp("grid14")
    root = tmp / "data"
    make_video(root / "v0.mp4", frames=3, size=(64, 48))
    write_custom_dataset(root, [("v0.mp4", 0, "train")], ["a", "b"])
    out = {}
    for cell in (16, 14):
        rep = run_extract(ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp / "cache"),
                                         pose_options={"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": False, "batch_size": 4},
                                         settings={"num_frames": 3, "short_side": 112, "grid_cell": cell}))
        assert rep.complete
        out[cell] = rep.entry
    return root, out


def test_a_14_pixel_grid_entry_has_whole_cells(entries):
    _, e = entries
    assert e[14].grid_cell == 14 and e[16].grid_cell == 16 and e[14].key != e[16].key
    clip = e[14].read_clip(next(iter(e[14].done_uids())))
    t, h, w, _ = np.asarray(clip.frames).shape
    assert (h, w) == (112, 154) == resized_size(48, 64, 112, 14)
    assert clip.grids.shape == (t, 17, 8, 11)


@pytest.fixture(scope="module")
def tiny_patch14(tmp_path_factory):
    """A tiny open_clip config with 14-pixel patches (112 px = 8 cells), registered for this test."""
    from stages.model.clip_loader import _TINY_JSON, open_clip_module

    oc = open_clip_module()
    cfg = json.loads(_TINY_JSON.read_text())
    cfg["vision_cfg"]["patch_size"] = 14
    path = tmp_path_factory.mktemp("cfg") / "PeVL-tiny-p14.json"
    path.write_text(json.dumps(cfg))
    if "PeVL-tiny-p14" not in oc.list_models():
        oc.add_model_config(path)
    torch.manual_seed(0)
    return oc.create_model("PeVL-tiny-p14", pretrained=None)


def _runner_model(clip):
    from types import SimpleNamespace

    return SimpleNamespace(recognizer=SimpleNamespace(clip=clip))


def test_a_patch_14_model_refuses_a_16_pixel_entry_with_the_command(entries, tiny_patch14):
    from stages.train.runner import check_entry_fits

    root, e = entries
    cfg = Config(dict(model=dict(clip=dict(arch="PeVL-tiny-p14")),
                      data=dict(dataset="custom", root=str(root), extract=dict(short_side=112))))
    assert check_entry_fits(cfg, e[14], _runner_model(tiny_patch14)) == dict(crop_size=112, patch=14)
    with pytest.raises(ValueError) as err:
        check_entry_fits(cfg, e[16], _runner_model(tiny_patch14))
    msg = str(err.value)
    assert "16-pixel mask cells, but PeVL-tiny-p14 reads 14-pixel patches" in msg
    cmd = msg.splitlines()[1].strip()
    assert cmd.startswith(f"pipeline extract --dataset custom --root {root}")
    assert "--num-frames 3" in cmd and "--short-side 112" in cmd and "--grid-cell 14" in cmd
    assert "data.extract.grid_cell=14" in msg
    # the command is the one that makes the 14-pixel entry: its key is the fitting entry's
    from stages.data.entry_lookup import extract_options
    from stages.extract.plan import plan_entry

    data = dict(dataset="custom", root=str(root), extract=dict(num_frames=3, short_side=112, grid_cell=14))
    opts = extract_options(data, str(e[14].path.parent.parent))
    opts.pose_options = {"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": False}
    assert plan_entry(opts).key == e[14].key


def test_a_crop_larger_than_the_entry_names_the_short_side(entries):
    """ViT-B/16's 224 crop on a 112-px entry: the command with --short-side 256."""
    from stages.model.clip_loader import open_clip_module
    from stages.train.runner import check_entry_fits

    root, e = entries
    with torch.device("meta"):
        vit = open_clip_module().create_model("ViT-B-16", pretrained=None, device="meta")
    cfg = Config(dict(model=dict(clip=dict(arch="ViT-B-16")), data=dict(dataset="custom", root=str(root))))
    with pytest.raises(ValueError, match=r"short side of 112 px, smaller than the 224-pixel crop of ViT-B-16(.|\n)*"
                                         r"pipeline extract --dataset custom .*--short-side 256"):
        check_entry_fits(cfg, e[16], _runner_model(vit))
