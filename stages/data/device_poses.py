"""The joints and mask grids of the views, on the training device (``data.views_on_device``).

When the views' pixel work happens on the device (:mod:`stages.data.device_frames`), so does the
geometry that follows the views: the worker ships the item's pose frames' joints as the cache
holds them, in cached-frame pixels (``pose_joints``, float32 ``(T, V, 3)``: x, y, score), the
skeleton's ``joint_flip`` index and the entry's ``grid_cell``; the data preprocessor maps them
into each view and builds the view's mask grids from the joints of its video frames. That is the
arithmetic of :func:`stages.geometry.view_joints` and :func:`stages.geometry.joint_patch_grid`
in the same float32 operations, element by element (subtract, multiply, the mirror one ulp to the
left, floor division by the cell), so the results equal the loader's bit for bit
(``tests/data/test_data_path.py``), and the worker neither builds nor ships the grids
(``(T_v, V, S/cell, S/cell)`` float16: 107 kB an item for ViT-B/16, against 10 kB of joints).
"""
from __future__ import annotations

import torch


def joints_and_grids(pose_joints: torch.Tensor, crops: torch.Tensor, joint_flip: torch.Tensor,
                     grid_cell: torch.Tensor, video_pose_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's joints in its views and the views' mask grids.

    ``pose_joints`` (B, T, V, 3) float32 in cached-frame pixels; ``crops`` (B, 6) or (B, W, 6)
    views of the cached frames (top, left, height, width, size, flip); ``joint_flip`` (B, V) the
    skeleton's flip index; ``grid_cell`` (B,); ``video_pose_index`` (B, T_v). Returns ``joints``
    (B, [W,] T, V, 3) divided by the view's size, and ``mask_grid`` (B, [W,] T_v, V, g, g) float32
    holding float16-rounded scores, as the loader's items hold them.
    """
    one_view = crops.dim() == 2
    views = crops[:, None] if one_view else crops
    sizes, cells = views[..., 4].cpu().unique(), grid_cell.cpu().unique()  # on the host: no device sync
    if len(sizes) != 1 or len(cells) != 1:
        raise ValueError(f"one batch holds views of sizes {sizes.tolist()} on grid cells {cells.tolist()}")
    side, cell = int(sizes[0]), int(cells[0])
    g = side // cell
    dev = pose_joints.device
    views = views.to(dev, non_blocking=True)
    b, w_, _ = views.shape
    _, t, v, _ = pose_joints.shape
    top, left, height, width, size, flip = views.unbind(-1)  # (B, W) each
    flip = flip.bool()
    # left and right joints swap on a mirrored view (flip_index), as view_joints does
    same = torch.arange(v, device=dev).expand(b, w_, v)
    order = torch.where(flip[..., None], joint_flip.to(dev, non_blocking=True)[:, None, :], same)
    j = torch.gather(pose_joints[:, None].expand(b, w_, t, v, 3), 3,
                     order[:, :, None, :, None].expand(b, w_, t, v, 3))
    # view_points: x' = (x - left) * (size / width) in float32 (the scale rounded from float64 once)
    scale_x = (size.double() / width.double()).float()[..., None, None]
    scale_y = (size.double() / height.double()).float()[..., None, None]
    x = (j[..., 0] - left.float()[..., None, None]) * scale_x
    y = (j[..., 1] - top.float()[..., None, None]) * scale_y
    s = size.float()[..., None, None]
    mirrored = torch.nextafter(s - x, torch.tensor(float("-inf"), device=x.device))
    x = torch.where(flip[..., None, None], mirrored, x)
    # the grids of the video frames (joint_patch_grid on the view: S x S, cells of grid_cell)
    vpi = video_pose_index.to(dev, non_blocking=True)[:, None, :, None].expand(b, w_, -1, v)
    gx, gy, score = (torch.gather(a, 2, vpi) for a in (x, y, j[..., 2]))  # (B, W, T_v, V)
    ok = (score > 0) & (gx >= 0) & (gx < side) & (gy >= 0) & (gy < side) & torch.isfinite(gx) & torch.isfinite(gy)
    # cells of the joints that mark one (x < side: col < g); the rest write 0 into cell 0 of their own plane
    col = torch.where(ok, torch.div(gx, cell, rounding_mode="floor"), 0).long()
    row = torch.where(ok, torch.div(gy, cell, rounding_mode="floor"), 0).long()
    grid = torch.zeros(b, w_, gx.shape[2], v, g * g, device=dev)
    grid.scatter_(-1, (row * g + col)[..., None], torch.where(ok, score.half().float(), 0.0)[..., None])
    grid = grid.view(b, w_, gx.shape[2], v, g, g)
    joints = torch.stack([x / s, y / s, j[..., 2]], dim=-1)
    return (joints[:, 0], grid[:, 0]) if one_view else (joints, grid)
