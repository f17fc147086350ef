"""The stage-two dataset: pose sampling, crops and flips aligned across frames/grids/joints,
determinism, incomplete and missing entries. Everything is read from a real (small) cache entry."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pevl_stage2_testutils import small_demo  # noqa: E402,F401  (session fixture)

import shutil

import numpy as np
import pytest
import torch

from cache import CacheEntry, EntryIncompleteError, EntryNotFoundError
from stages.data import CacheClipDataset, sample_pose_frames
from stages.data.entry_lookup import extract_command, find_entry
from stages.data.settings import DataSettings
from stages.data.views import ViewSampler
from stages.skeletons import get_skeleton


def views(size=112, cell=16, **over):
    """The data settings' views with ``over`` changed."""
    return ViewSampler.from_settings(DataSettings.from_dict(over), size, cell)


# -- pose sampling --------------------------------------------------------------------------------
@pytest.mark.parametrize("num_frames,t,tv", [(96, 48, 16), (64, 48, 16), (32, 48, 16), (20, 8, 4), (16, 16, 16)])
def test_pose_frames_contain_the_video_frames(num_frames, t, tv):
    from stages.geometry import segment_middle_indices

    vf = segment_middle_indices(num_frames, tv)
    for rng in (None, np.random.default_rng(0), np.random.default_rng(1)):
        idx, vpi = sample_pose_frames(num_frames, t, vf, rng)
        assert idx.shape == (t,) and vpi.shape == (tv,)
        assert (np.diff(idx) >= 0).all() and idx.min() >= 0 and idx.max() < num_frames
        assert (idx[vpi] == vf).all()
        assert len(set(vpi.tolist())) == tv  # each video frame has its own pose slot
        assert (np.diff(vpi) > 0).all()


def test_test_sampling_is_fixed_and_training_sampling_varies():
    vf = np.arange(3, 96, 6)
    a = sample_pose_frames(96, 48, vf, None)
    b = sample_pose_frames(96, 48, vf, None)
    assert all((x == y).all() for x, y in zip(a, b))
    draws = {tuple(sample_pose_frames(96, 48, vf, np.random.default_rng(s))[0]) for s in range(5)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="16 video frames cannot all be among 8 pose frames"):
        sample_pose_frames(96, 8, vf, None)  # 16 video frames cannot fit in 8 pose frames


# -- items ----------------------------------------------------------------------------------------
def _cells_ok(item, g, tol=1e-4):
    """Every visible joint of a video frame that lies inside the crop marks its own grid cell."""
    joints, vpi, grid = item["joints"].numpy(), item["video_pose_index"].numpy(), item["mask_grid"].float().numpy()
    checked = 0
    for k, p in enumerate(vpi):
        for v in range(joints.shape[1]):
            x, y, s = joints[p, v]
            if s <= 0 or not (tol < x < 1 - tol and tol < y < 1 - tol):
                continue
            fx, fy = x * g, y * g
            # a joint exactly on a cell border may belong to either neighbour
            cols = {int(np.floor(fx - tol)), int(np.floor(fx + tol))}
            rows = {int(np.floor(fy - tol)), int(np.floor(fy + tol))}
            vals = [grid[k, v, r, c] for r in rows for c in cols if 0 <= r < g and 0 <= c < g]
            assert max(vals) == pytest.approx(s, rel=1e-2), (k, v, x, y, s)
            # and the plane marks nothing else
            assert (grid[k, v] > 0).sum() == 1
            checked += 1
    return checked


def test_train_crops_and_flips_keep_joints_in_their_mask_cells(small_demo):
    _, entry_dir, _ = small_demo
    ds = CacheClipDataset(entry_dir, "train", mode="train", crop_size=112, num_pose_frames=48, seed=3)
    g = 112 // ds.cell
    checked = 0
    for epoch in range(3):
        for i in range(0, len(ds), 3):
            it = ds[(i, epoch)]
            assert it["frames"].dtype == torch.uint8 and it["frames"].shape == (16, 3, 112, 112)
            assert it["mask_grid"].shape == (16, 17, g, g) and it["joints"].shape == (48, 17, 3)
            checked += _cells_ok(it, g)
    assert checked > 500


def test_test_views_are_three_crops_with_aligned_joints(small_demo):
    _, entry_dir, _ = small_demo
    ds = CacheClipDataset(entry_dir, "val", mode="test", crop_size=112, num_pose_frames=48,
                          views=views(test_views="three_crop"))
    it = ds[0]
    assert it["frames"].shape == (3, 16, 3, 112, 112) and it["joints"].shape == (3, 48, 17, 3)
    assert it["mask_grid"].shape == (3, 16, 17, 7, 7)
    # the frames are exactly the cached pixels at the three crop positions (176 wide: left 0, 32, 64)
    clip = ds.entry.read_clip(ds.rows[0]["uid"])
    for view, left in enumerate((0, 32, 64)):
        top = 0  # short side 128 -> (128 - 112) // 16 // 2 cells = 0
        ref = clip.frames[:, top:top + 112, left:left + 112].transpose(0, 3, 1, 2)
        assert np.array_equal(it["frames"][view].numpy(), ref)
        one = {k: (v[view] if k in ("frames", "joints", "mask_grid") else v) for k, v in it.items()}
        _cells_ok(one, 7)
    assert np.array_equal(ds[0]["joints"].numpy(), it["joints"].numpy())  # fixed at test


def test_aim_test_views_resize_the_short_side_then_take_three_crops(small_demo):
    """resize_three_crop (the default, AIM's): the whole 128-pixel short side of each of three
    boxes along the long side, resized to 112: equal (up to the box border) to resizing the frame
    to short side 112 and cutting ThreeCrop's crops (resized width 154: left 0, 21, 42)."""
    import cv2

    _, entry_dir, _ = small_demo
    ds = CacheClipDataset(entry_dir, "val", mode="test", crop_size=112, num_pose_frames=48)
    assert ds.views.test_views == "resize_three_crop"
    it = ds[0]
    assert it["frames"].shape == (3, 16, 3, 112, 112) and it["mask_grid"].shape == (3, 16, 17, 7, 7)
    clip = ds.entry.read_clip(ds.rows[0]["uid"])
    f = np.asarray(clip.frames[5])  # 128 x 176
    small = cv2.resize(f, (154, 112), interpolation=cv2.INTER_LINEAR)
    for view, left in enumerate((0, 21, 42)):
        ref = small[:, left:left + 112].transpose(2, 0, 1).astype(int)
        got = it["frames"][view, 5].numpy().astype(int)
        inner = np.abs(got - ref)[:, 2:-2, 2:-2]  # the box's own border is interpolated without outside pixels
        assert np.median(inner) <= 1 and np.percentile(inner, 99) <= 8, (view, inner.max())
        one = {k: (v[view] if k in ("frames", "joints", "mask_grid") else v) for k, v in it.items()}
        assert _cells_ok(one, 7) > 0


def test_flip_mirrors_pixels_and_swaps_left_and_right_joints(small_demo):
    _, entry_dir, _ = small_demo
    kw = dict(mode="train", crop_size=112, num_pose_frames=48, seed=5)
    plain = CacheClipDataset(entry_dir, "train", views=views(flip_prob=0.0), **kw)
    flipped = CacheClipDataset(entry_dir, "train", views=views(flip_prob=1.0), **kw)
    a, b = plain[(4, 2)], flipped[(4, 2)]  # same rng: same crop and pose frames, only the flip differs
    assert torch.equal(b["frames"], a["frames"].flip(-1))
    perm = get_skeleton("coco17").flip_index()
    assert torch.allclose(b["joints"][..., 0], 1 - a["joints"][:, perm, 0])
    assert torch.allclose(b["joints"][..., 1:], a["joints"][:, perm, 1:])
    assert torch.equal(b["mask_grid"], a["mask_grid"][:, perm].flip(-1))
    assert perm[9] == 10  # left wrist <-> right wrist


def test_augmentation_is_a_function_of_seed_epoch_index(small_demo):
    _, entry_dir, _ = small_demo
    ds = CacheClipDataset(entry_dir, "train", crop_size=112, seed=0)
    same = [ds[(2, 1)], ds[(2, 1)]]
    assert all(torch.equal(same[0][k], same[1][k]) for k in same[0])
    ds.set_epoch(1)
    assert torch.equal(ds[2]["joints"], same[0]["joints"])
    others = [ds[(2, e)]["joints"] for e in range(2, 6)]
    assert any(not torch.equal(o, same[0]["joints"]) for o in others)
    other_seed = CacheClipDataset(entry_dir, "train", crop_size=112, seed=1)
    assert any(not torch.equal(other_seed[(2, e)]["joints"], ds[(2, e)]["joints"]) for e in range(4))


def test_loader_workers_do_not_change_the_batches(small_demo):
    from mmengine.dataset import default_collate
    from torch.utils.data import DataLoader

    from stages.data.epoch_sampler import EpochSeedSampler

    _, entry_dir, _ = small_demo
    ds = CacheClipDataset(entry_dir, "train", crop_size=112, num_pose_frames=16, num_video_frames=8, seed=0)
    out = []
    for workers in (0, 2):
        sampler = EpochSeedSampler(ds, shuffle=True, seed=7)
        sampler.set_epoch(3)
        dl = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers, collate_fn=default_collate)
        out.append([b["joints"] for b in dl])
    assert len(out[0]) == len(out[1]) == -(-len(ds) // 4)  # every batch, from both
    assert all(torch.equal(x, y) for x, y in zip(*out))


# -- entries --------------------------------------------------------------------------------------
def test_incomplete_entry_is_refused_with_the_missing_clips(small_demo, tmp_path):
    _, entry_dir, _ = small_demo
    copy = tmp_path / "entry"
    shutil.copytree(entry_dir, copy, ignore=shutil.ignore_patterns("index"))
    gone = sorted(p.name for p in (copy / "clips").iterdir() if p.is_dir())[:2]
    for uid in gone:
        shutil.rmtree(copy / "clips" / uid)
    with pytest.raises(EntryIncompleteError) as ei:
        CacheClipDataset(copy, "train", crop_size=112)
    assert set(gone) <= set(ei.value.missing)
    assert "--allow-partial" in str(ei.value) and gone[0] in str(ei.value)
    full = CacheClipDataset(entry_dir, "train", crop_size=112)
    ds = CacheClipDataset(copy, "train", crop_size=112, allow_partial=True)
    assert len(ds) == len(full) - sum(1 for c in CacheEntry(entry_dir).clips("train") if c["uid"] in gone)


def test_entry_lookup_recomputes_the_key_and_names_the_extract_command(small_demo, tmp_path):
    cache, entry_dir, data_cfg = small_demo
    assert find_entry(data_cfg, cache_root=str(cache)).path == entry_dir
    assert find_entry(data_cfg, cache_root=str(cache), entry=entry_dir.name[:8]).path == entry_dir
    other = dict(data_cfg, extract=dict(data_cfg["extract"], short_side=160))
    with pytest.raises(EntryNotFoundError) as ei:
        find_entry(other, cache_root=str(cache))
    msg = str(ei.value)
    assert extract_command(other, str(cache)) in msg
    assert "pipeline extract --dataset demo" in msg and "--short-side 160" in msg
    with pytest.raises(EntryNotFoundError):
        find_entry(data_cfg, cache_root=str(tmp_path / "empty"))


def test_training_pose_frames_at_segment_middles_without_random_offsets(small_demo):
    """``random_pose_offsets=False``: training reads the pose frames a test
    view reads, every epoch; only the crop (a translation of the joints) stays random."""
    _, entry_dir, _ = small_demo
    kw = dict(mode="train", crop_size=112, num_pose_frames=48, seed=0,
              views=views(flip_prob=0.0, train_crop="fixed_size"))
    even = CacheClipDataset(entry_dir, "train", random_pose_offsets=False, **kw)
    jittered = CacheClipDataset(entry_dir, "train", **kw)
    test = CacheClipDataset(entry_dir, "train", mode="test", crop_size=112, num_pose_frames=48,
                            views=views(test_views="three_crop"))

    def shape(joints):  # crop-invariant: each frame's joints relative to the first frame's nose
        return joints[..., :2] - joints[:1, :1, :2]

    ref = test[3]
    for epoch in range(3):
        it = even[(3, epoch)]
        assert torch.equal(it["video_pose_index"], ref["video_pose_index"])
        assert torch.allclose(shape(it["joints"]), shape(ref["joints"][0]), atol=1e-5)
    assert any(not torch.allclose(shape(jittered[(3, e)]["joints"]), shape(ref["joints"][0]), atol=1e-5)
               for e in range(3))
