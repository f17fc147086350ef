"""stages/data/device_poses.py: the views' joints and grids built on the device equal the loader's
(stages/geometry.py), bit for bit, on the cases where float arithmetic could part them."""
import numpy as np
import pytest
import torch

from stages.data.device_poses import joints_and_grids
from stages.geometry import View, joint_patch_grid, view_joints
from stages.skeletons import get_skeleton

SIZE = 224


def loader_joints_and_grids(joints: np.ndarray, views: list[View], flip_index, vpi, cell: int):
    """What CacheClipDataset.make_item computes on the CPU for one item."""
    js, gs = [], []
    for v in views:
        j = view_joints(joints, v, flip_index)
        gs.append(torch.from_numpy(joint_patch_grid(j[vpi, :, :2], j[vpi, :, 2], (SIZE, SIZE), cell)).float())
        j[..., :2] /= SIZE
        js.append(torch.from_numpy(np.ascontiguousarray(j, dtype=np.float32)))
    return torch.stack(js), torch.stack(gs)


def hard_joints(t: int, v: int, rng: np.random.Generator) -> np.ndarray:
    """Joints in cached-frame pixels (256 x 448) with the awkward cases: on cell borders after the
    view's shift, on the view's edges, outside it, NaN, score 0, and fractional positions."""
    j = np.empty((t, v, 3), np.float32)
    j[..., 0] = rng.uniform(-30, 480, (t, v))
    j[..., 1] = rng.uniform(-30, 290, (t, v))
    j[..., 2] = rng.uniform(0, 1, (t, v))
    j[0, :, 0] = np.arange(v) * 16 + 32.0  # on cell borders of a view whose left is 32
    j[0, :, 1] = 48.0
    j[1, 0, :2] = np.nan
    j[1, 1, 2] = 0.0
    j[2, 2, 0] = 32.0 + 224.0  # the right edge of a 224 view at left 32 (outside: half-open)
    j[2, 3, 0] = 32.0  # its left edge (inside)
    j[2, 4, :2] = np.inf
    return j


@pytest.mark.parametrize("views", [
    [View(48, 32, 224, 224, SIZE, False)],  # a plain crop
    [View(48, 32, 224, 224, SIZE, True)],  # mirrored: left and right joints swap, the mirror one ulp left
    [View(10, 5, 200, 333, SIZE, True)],  # a resized box (scales that are not powers of two)
    [View(0, 0, 256, 256, SIZE, False), View(0, 96, 256, 256, SIZE, False), View(0, 192, 256, 256, SIZE, False)],
])
@pytest.mark.parametrize("cell", [16, 14])  # ViT-B/16's grid and ViT-L/14's (a cell that is not a power of two)
def test_device_joints_and_grids_equal_the_loaders(views, cell):
    rng = np.random.default_rng(3)
    skel = get_skeleton("coco17")
    flip = np.asarray(skel.flip_index())
    t, v = 24, skel.num_joints
    vpi = np.sort(rng.choice(t, 8, replace=False))
    vpi[:3] = [0, 1, 2]  # the hand cases are video frames
    batch = [hard_joints(t, v, rng) for _ in range(2)]
    want = [loader_joints_and_grids(j, views, flip, vpi, cell) for j in batch]
    crops = torch.tensor([[list(x) for x in views]] * 2, dtype=torch.int64)
    if len(views) == 1:
        crops = crops[:, 0]
    joints, grids = joints_and_grids(torch.from_numpy(np.stack(batch)), crops,
                                     torch.from_numpy(np.stack([flip, flip])), torch.tensor([cell, cell]),
                                     torch.from_numpy(np.stack([vpi, vpi])))
    for b, (wj, wg) in enumerate(want):
        gj, gg = (joints[b], grids[b]) if len(views) > 1 else (joints[b][None], grids[b][None])
        assert torch.equal(torch.nan_to_num(gj, nan=-7.0), torch.nan_to_num(wj, nan=-7.0))
        assert torch.equal(gg, wg)
    assert grids.sum() > 0  # the cases mark cells


def test_one_batch_one_size():
    crops = torch.tensor([[0, 0, 224, 224, 224, 0], [0, 0, 112, 112, 112, 0]])
    with pytest.raises(ValueError, match="sizes"):
        joints_and_grids(torch.zeros(2, 4, 17, 3), crops, torch.arange(17).expand(2, 17), torch.tensor([16, 16]),
                         torch.zeros(2, 2, dtype=torch.long))
