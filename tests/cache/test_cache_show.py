"""`pipeline cache show`: a picture of what was cached (poses, mask grid, person boxes), read back
only through CacheEntry.read_clip."""
from dataclasses import replace

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pevl_testutils import make_video, tiny_hrnet_config, write_custom_dataset
from pipeline.cli import app
from stages.show import BOX_COLOUR, GRID_COLOUR, confidence_colour, frame_overlay
from stages.skeletons import COCO17

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # random HRNet weights


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    """Two clips, HRNet with random weights; clip v0 has dataset boxes, v1 ran on whole frames."""
    from pipeline.engines.local import run_extract
    from stages.datasets.custom import CustomDataset
    from stages.extract.plan import ExtractOptions

    tmp = tmp_path_factory.mktemp("show")
    root = tmp / "data"
    make_video(root / "v0.mp4", frames=2, size=(96, 64))
    make_video(root / "v1.mp4", frames=2, size=(64, 96))  # portrait, for the gallery
    write_custom_dataset(root, [("v0.mp4", 0, "train"), ("v1.mp4", 1, "val")], ["jump", "spin"])
    mp = pytest.MonkeyPatch()
    mp.setattr(CustomDataset, "person_boxes",
               lambda self, c: np.array([[10, 8, 60, 56]] * 2, np.float32) if c.clip_id == "v0" else None)
    try:
        rep = run_extract(ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp / "cache"),
                                         pose_options={"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": False, "batch_size": 4},
                                         settings={"num_frames": 4, "short_side": 64}))
    finally:
        mp.undo()
    assert rep.complete
    return tmp / "cache", rep.entry


def test_overlay_draws_pose_grid_and_box(entry):
    _, e = entry
    clip = e.read_clip("v0")
    sx, sy = clip.scale
    f = int(clip.frame_indices[1])
    kp = clip.keypoints.copy()
    kp[f] = np.array([[20 / sx + 4 * v / sx, 30 / sy] for v in range(17)], np.float32)  # a row of joints, all inside
    sc = np.zeros_like(clip.scores)
    sc[f, 0], sc[f, 16] = 1.0, 0.2
    grids = np.zeros_like(clip.grids)
    grids[1, 0, 0, 0] = 1.0  # joint 0 fully confident in the top-left cell
    fake = replace(clip, keypoints=kp, scores=sc, grids=grids)
    img = frame_overlay(fake, 1, COCO17).astype(int)
    raw = clip.frames[1].astype(int)
    x0, y0 = 20, 30
    assert np.abs(img[y0, x0] - confidence_colour(1.0)).max() <= 2  # joint 0: green
    x16 = 20 + 4 * 16
    assert x16 < img.shape[1] - 2  # inside the 96-pixel-wide frame, its whole disc too
    assert np.abs(img[y0, x16] - confidence_colour(0.2)).max() <= 2  # joint 16: red-orange
    assert np.array_equal(img[y0, x0 + 3 * 4], raw[y0, x0 + 3 * 4])  # joint 3 has score 0: not drawn
    # the mask grid tints its cell toward the grid colour, and only that cell
    cell = clip.grid_cell
    tinted = img[cell // 2, cell // 2] - raw[cell // 2, cell // 2]
    assert np.sign(tinted).tolist() == np.sign(np.array(GRID_COLOUR) - raw[cell // 2, cell // 2]).tolist()
    assert tinted.any()
    y1, x1 = cell + cell // 2, cell + cell // 2  # the next cell on the diagonal: no joint, box or tint
    assert np.array_equal(img[y1, x1], raw[y1, x1])
    # the person box, mapped into the cached frame, is drawn in its colour
    bx1, by1, bx2, by2 = (np.array([10, 8, 60, 56]) * [sx, sy, sx, sy]).round().astype(int)
    mid = img[by1, (bx1 + bx2) // 2]
    assert np.abs(mid - BOX_COLOUR).max() < 80
    assert clip.person_boxes is not None and e.read_clip("v1").person_boxes is None


def test_cache_show_png_and_video(entry, tmp_path):
    cache, e = entry
    runner = CliRunner()
    out = tmp_path / "v0.png"
    res = runner.invoke(app, ["cache", "show", e.key, "v0", "--out", str(out), "--video", "--cache-root", str(cache)])
    assert res.exit_code == 0, res.output
    png = cv2.imread(str(out))
    clip = e.read_clip("v0")
    h, w = clip.frames.shape[1:3]
    assert png.shape[0] > 2 * h and png.shape[1] >= 2 * w  # 4 frames on a 2 x 2 sheet plus a title
    from stages.extract.decode import decode_clip

    info, frames = decode_clip(str(out.with_suffix(".mp4")))
    # every stored frame: 4 segments x the entry's K candidates, in time order
    assert len(frames) == 4 * e.frames_per_segment == len(clip.frames) and (info.height, info.width) == (h, w)


def test_cache_show_gallery_and_errors(entry, tmp_path):
    cache, e = entry
    runner = CliRunner()
    out = tmp_path / "g.png"
    res = runner.invoke(app, ["cache", "show", e.key, "--gallery", "5", "--out", str(out), "--cache-root", str(cache)])
    assert res.exit_code == 0, res.output
    assert "2 clips of 2" in res.output.replace("\n", " ").replace("  ", " ") and cv2.imread(str(out)) is not None
    res = runner.invoke(app, ["cache", "show", e.key, "nope", "--cache-root", str(cache)])
    assert res.exit_code == 2 and "not in this entry" in res.output
    res = runner.invoke(app, ["cache", "show", e.key, "--cache-root", str(cache)])
    assert res.exit_code == 2 and "--gallery" in res.output
