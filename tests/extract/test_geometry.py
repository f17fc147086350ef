"""Frame sampling, cached sizes, and the alignment of frames, joints and mask grids."""
import numpy as np
import pytest

from stages.geometry import (
    crop,
    crop_offsets,
    hflip,
    joint_patch_grid,
    resized_size,
    segment_middle_indices,
    segment_random_indices,
)
from stages.skeletons import COCO17


def test_segment_middles_hand_computed():
    assert segment_middle_indices(32, 16).tolist() == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31]
    assert segment_middle_indices(10, 4).tolist() == [1, 3, 6, 8]  # floor((i + .5) * 2.5)
    assert segment_middle_indices(1, 16).tolist() == [0] * 16
    assert segment_middle_indices(5, 16).max() == 4


def test_segment_random_stays_in_its_segment():
    rng = np.random.default_rng(1)
    for n in (7, 48, 100, 301):
        for _ in range(20):
            idx = segment_random_indices(n, 16, rng)
            assert idx.min() >= 0 and idx.max() < n
            assert np.all(np.diff(idx) >= 0)
            seg = np.floor(np.arange(16) * n / 16).astype(int)
            if n >= 16:
                assert np.all(idx >= seg)


@pytest.mark.parametrize("hw, short, cell, want", [
    ((480, 640), 256, 16, (256, 336)),   # 341.3 -> 336
    ((720, 1280), 256, 16, (256, 448)),  # 455.1 -> 448
    ((81, 47), 256, 16, (448, 256)),     # portrait: width is the short side
    ((120, 160), 128, 16, (128, 176)),   # 170.7 -> 176
    ((48, 64), 252, 14, (252, 336)),
])
def test_resized_size_multiple_of_cell(hw, short, cell, want):
    h, w = resized_size(*hw, short, cell)
    assert (h, w) == want
    assert h % cell == 0 and w % cell == 0


def test_joint_lands_in_its_cell():
    kp = np.array([[[5.0, 5.0], [17.0, 20.0], [63.9, 31.9], [-1.0, 3.0], [10.0, 10.0]]], np.float32)
    sc = np.array([[0.9, 0.5, 1.0, 1.0, 0.0]], np.float32)
    g = joint_patch_grid(kp, sc, (32, 64), 16)
    assert g.shape == (1, 5, 2, 4)
    assert g[0, 0, 0, 0] == pytest.approx(0.9, abs=1e-3) and g[0, 0].sum() == pytest.approx(0.9, abs=1e-3)
    assert g[0, 1, 1, 1] == pytest.approx(0.5, abs=1e-3)  # x=17 -> col 1, y=20 -> row 1
    assert g[0, 2, 1, 3] == pytest.approx(1.0)
    assert g[0, 3].sum() == 0  # outside the frame
    assert g[0, 4].sum() == 0  # score 0 marks nothing


def _random_clip(rng, t=4, h=64, w=96, v=17, cell=16):
    frames = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    kp = rng.uniform([0.5, 0.5], [w - 0.5, h - 0.5], (t, v, 2)).astype(np.float32)
    # keep joints off cell borders so the floor is unambiguous under a flip
    kp = np.floor(kp / cell) * cell + rng.uniform(1, cell - 1, kp.shape).astype(np.float32)
    sc = rng.uniform(0.2, 1.0, (t, v)).astype(np.float32)
    return frames, kp, sc


def test_crop_and_flip_keep_grid_aligned_with_joints(rng):
    cell = 16
    for _ in range(10):
        frames, kp, sc = _random_clip(rng)
        grid = joint_patch_grid(kp, sc, frames.shape[1:3], cell)
        joints = np.concatenate([kp, sc[..., None]], -1)
        top, left = crop_offsets(64, 96, 48, cell, "random", rng)
        f, g, j = crop(frames, grid, joints, top, left, 48, cell)
        assert f.shape[1:3] == (48, 48) and g.shape[-2:] == (3, 3)
        # the grid of the cropped joints equals the crop of the grid
        np.testing.assert_array_equal(joint_patch_grid(j[..., :2], j[..., 2], (48, 48), cell), g)
        # a flip likewise, and pixels under each joint travel with it
        f2, g2, j2 = hflip(f, g, j, COCO17.flip_index())
        np.testing.assert_array_equal(joint_patch_grid(j2[..., :2], j2[..., 2], (48, 48), cell), g2)
        np.testing.assert_array_equal(f2[:, :, 47 - 5], f[:, :, 5])


def test_flip_swaps_left_and_right_joints():
    t, v = 1, 17
    kp = np.zeros((t, v, 2), np.float32)
    kp[0, 5] = [10, 10]  # left shoulder at the left of the image
    kp[0, 6] = [50, 10]  # right shoulder at the right
    sc = np.ones((t, v), np.float32)
    frames = np.zeros((t, 32, 64, 3), np.uint8)
    grid = joint_patch_grid(kp, sc, (32, 64), 16)
    j = np.concatenate([kp, sc[..., None]], -1)
    _, g2, j2 = hflip(frames, grid, j, COCO17.flip_index())
    # after a mirror the person's left shoulder is the one now on the left of the image: 64-50=14
    assert j2[0, 5, 0] == pytest.approx(14) and j2[0, 6, 0] == pytest.approx(54)
    assert g2[0, 5, 0, 0] == 1 and g2[0, 6, 0, 3] == 1
    assert COCO17.flip_index()[COCO17.joints.index("left_wrist")] == COCO17.joints.index("right_wrist")


def test_three_test_crops_cover_long_side():
    assert crop_offsets(256, 448, 224, 16, "first") == (16, 0)
    assert crop_offsets(256, 448, 224, 16, "last") == (16, 224)
    assert crop_offsets(256, 448, 224, 16, "center") == (16, 112)
    assert crop_offsets(448, 256, 224, 16, "last") == (224, 16)
    with pytest.raises(ValueError, match=r"crop \(3, 0, 32\) is not on the 16-pixel grid"):
        crop(np.zeros((1, 64, 64, 3)), np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3)), 3, 0, 32, 16)


def test_flip_of_a_joint_on_a_cell_border_lands_in_the_mirrored_cell():
    kp = np.array([[[16.0, 0.0], [0.0, 16.0], [32.0, 31.0]]], np.float32)  # exact borders
    sc = np.ones((1, 3), np.float32)
    frames = np.zeros((1, 32, 64, 3), np.uint8)
    grid = joint_patch_grid(kp, sc, (32, 64), 16)
    j = np.concatenate([kp, sc[..., None]], -1)
    _, g2, j2 = hflip(frames, grid, j, [0, 1, 2])
    np.testing.assert_array_equal(joint_patch_grid(j2[..., :2], j2[..., 2], (32, 64), 16), g2)
    assert j2[0, 0, 0] == pytest.approx(48.0)
