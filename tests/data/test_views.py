"""Views (training crops, test views) keep frames, joints and mask grids consistent under every
augmentation; K candidate frames per segment: their layout, and which one an item takes."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pevl_stage2_testutils import small_demo, small_demo_k3  # noqa: E402,F401  (session fixtures)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from stages.data import CacheClipDataset  # noqa: E402
from stages.data.settings import DataSettings  # noqa: E402
from stages.data.views import ViewSampler, multi_scale_box, random_resized_box  # noqa: E402
from stages.geometry import (View, joint_patch_grid, segment_candidate_indices, segment_middle_indices,  # noqa: E402
                             view_frames_chw, view_grids, view_joints)
from stages.skeletons import get_skeleton  # noqa: E402

FLIP = np.asarray(get_skeleton("coco17").flip_index())
MODES = [dict(train_crop="random_resized"), dict(train_crop="multi_scale"), dict(train_crop="fixed_size"),
         dict(train_crop="random_resized", crop_area=(0.3, 0.6), crop_aspect=(0.5, 2.0))]


def sampler(size=112, cell=16, **over) -> ViewSampler:
    return ViewSampler.from_settings(DataSettings.from_dict(over), size, cell)


# -- the views themselves ----------------------------------------------------------------------------
@pytest.mark.parametrize("over", MODES + [dict(test_views="three_crop"), dict(test_views="resize_three_crop")])
def test_views_lie_inside_the_frame_and_are_reproducible(over):
    vs = sampler(**over)
    for h, w in ((128, 176), (176, 128), (256, 448), (112, 112)):
        for seed in range(30):
            a = vs.train(h, w, np.random.default_rng(seed))
            assert a == vs.train(h, w, np.random.default_rng(seed))
            a.check(h, w)
            assert a.size == 112
            if over.get("train_crop") == "fixed_size":
                assert a.plain_crop and a.top % 16 == 0 and a.left % 16 == 0
        tests = vs.test(h, w)
        assert len(tests) == 3 and not any(v.flip for v in tests)
        for v in tests:
            v.check(h, w)
            if vs.test_views == "resize_three_crop":
                assert v.height == v.width == min(h, w)  # the whole short side, resized to S


def test_box_samplers_follow_mmaction2():
    rng = np.random.default_rng(0)
    sizes = {multi_scale_box(256, 448, (1, 0.875, 0.75, 0.66), rng)[2:] for _ in range(400)}
    base = [int(256 * s) for s in (1, 0.875, 0.75, 0.66)]
    assert sizes == {(base[i], base[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    areas = np.array([np.prod(random_resized_box(256, 448, (0.08, 1.0), (0.75, 4 / 3), rng)[2:]) for _ in range(2000)])
    frac = areas / (256 * 448)
    assert frac.min() >= 0.07 and frac.max() <= 1.0 and 0.3 < np.median(frac) < 0.7
    assert random_resized_box(10, 10, (0.99, 1.0), (3.0, 4.0), rng) == (0, 0, 10, 10)  # nothing fits: centre square


# -- frames, joints and grids under a view ---------------------------------------------------------------
def _marked(h, w, pts):
    """A black frame with a 3 x 3 white square at each point (x, y), and the points kept."""
    f = np.zeros((1, h, w, 3), np.uint8)
    for x, y in pts:
        xi, yi = int(x), int(y)
        f[0, max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2] = 255
    return f


@pytest.mark.parametrize("over", MODES)
@pytest.mark.parametrize("flip", [False, True])
def test_a_joint_lands_where_its_pixels_go_and_in_its_grid_cell(over, flip):
    """For every kind of view (resized or not, mirrored or not): a marker painted at a joint of
    the cached frame ends up, in the view's pixels, at the joint's transformed position, and the
    joint's grid plane marks exactly the cell holding that position."""
    rng = np.random.default_rng(7)
    vs = sampler(**over)
    h, w, cell = 128, 176, 16
    checked = 0
    for trial in range(40):
        v = vs.train(h, w, rng)._replace(flip=flip)
        x = rng.uniform(v.left + 2, v.left + v.width - 2)
        y = rng.uniform(v.top + 2, v.top + v.height - 2)
        joints = np.zeros((1, 17, 3), np.float32)
        joints[0, 9] = (x, y, 0.8)  # the left wrist only
        frame = _marked(h, w, [(x, y)])
        out = view_frames_chw(frame, [0], v)[0].max(axis=0)  # (S, S)
        j = view_joints(joints, v, FLIP)
        k = FLIP[9] if flip else 9  # on a mirrored view the left wrist is the right wrist's slot
        assert j[0, k, 2] == pytest.approx(0.8) and (j[0, 9, 2] == 0 if flip else True)
        jx, jy = j[0, k, :2]
        ys, xs = np.nonzero(out > 64)
        assert len(xs), (v, x, y)
        # the marker's centre (pixel-centre coordinates: +0.5) is the joint's transformed position
        scale = max(v.size / v.width, v.size / v.height)
        tol = 1.5 * max(1.0, scale) + 1.0
        assert abs(xs.mean() + 0.5 - jx) < tol and abs(ys.mean() + 0.5 - jy) < tol, (v, jx, jy, xs.mean(), ys.mean())
        g = view_grids(joints, v, FLIP, cell)
        assert g.shape == (1, 17, 7, 7) and (g[0, k] > 0).sum() == 1
        assert g[0, k, int(jy // cell), int(jx // cell)] == np.float16(0.8)
        checked += 1
    assert checked == 40


@pytest.mark.parametrize("over", MODES + [dict(test_views="three_crop"), dict(test_views="resize_three_crop")])
def test_item_grids_equal_the_grids_rebuilt_from_the_item_joints(small_demo, over):
    """What the model receives is consistent: each item's mask grids are exactly the grids stage
    one's function builds from the item's own (transformed) joints of the video frames."""
    _, entry_dir, _ = small_demo
    mode, split = ("test", "val") if "test_views" in over else ("train", "train")
    ds = CacheClipDataset(entry_dir, split, mode=mode, crop_size=112, num_pose_frames=48, seed=2,
                          views=sampler(flip_prob=0.5, **over))
    marked = 0
    for i in range(0, len(ds), 3):
        it = ds[(i, 1)]
        joints, grids = it["joints"], it["mask_grid"]
        if mode == "test":
            joints, grids = joints.reshape(-1, *joints.shape[2:]), grids.reshape(-1, *grids.shape[2:])
            vpi = it["video_pose_index"].repeat(3) + torch.arange(3).repeat_interleave(16) * joints.shape[0] // 3
        else:
            vpi = it["video_pose_index"]
        j = joints[vpi].numpy()
        rebuilt = joint_patch_grid(j[..., :2] * 112, j[..., 2], (112, 112), 16)
        assert np.array_equal(grids.numpy(), rebuilt)
        marked += int((rebuilt > 0).sum())
    assert marked > 100


@pytest.mark.parametrize("over", MODES)
def test_flip_mirrors_pixels_and_grids_and_swaps_left_and_right_joints(small_demo, over):
    _, entry_dir, _ = small_demo
    kw = dict(mode="train", crop_size=112, num_pose_frames=48, seed=4)
    a = CacheClipDataset(entry_dir, "train", views=sampler(flip_prob=0.0, **over), **kw)[(3, 1)]
    b = CacheClipDataset(entry_dir, "train", views=sampler(flip_prob=1.0, **over), **kw)[(3, 1)]
    assert torch.equal(b["frames"], a["frames"].flip(-1))  # same box and frames, mirrored after the resize
    perm = torch.as_tensor(FLIP)
    assert torch.allclose(b["joints"][..., 0], 1 - a["joints"][:, perm, 0], atol=1e-6)
    assert torch.equal(b["joints"][..., 1:], a["joints"][:, perm, 1:])
    assert torch.equal(b["mask_grid"], a["mask_grid"][:, perm].flip(-1))
    assert FLIP[9] == 10  # left wrist <-> right wrist


def test_plain_crop_grids_are_the_stored_grids_cropped_and_mirrored(small_demo):
    """On the cell lattice at scale 1 a view maps cells onto cells: the grid built from the
    transformed joints is the stored grid cut and mirrored (geometry.crop / hflip)."""
    from stages.geometry import crop, hflip

    _, entry_dir, _ = small_demo
    ds = CacheClipDataset(entry_dir, "train", crop_size=112)
    clip = ds.entry.read_clip(ds.rows[0]["uid"])
    kp = clip.keypoints[clip.frame_indices] * np.array(clip.scale, np.float32)
    joints = np.concatenate([kp, clip.scores[clip.frame_indices][..., None]], -1)
    for top, left in ((0, 0), (16, 32), (16, 64)):
        for flip in (False, True):
            v = View(top, left, 112, 112, 112, flip)
            _, g, _ = crop(None, clip.grids, joints, top, left, 112, 16)
            if flip:
                _, g, _ = hflip(None, g, joints, FLIP, width=112)
            assert np.array_equal(view_grids(joints, v, FLIP, 16), g)


# -- candidate frames ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n,t", [(96, 16), (64, 16), (30, 16), (8, 16), (1, 4), (257, 16)])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_candidates_are_spread_inside_their_segment_with_the_middle_among_them(n, t, k):
    idx = segment_candidate_indices(n, t, k).reshape(t, k)
    mid = segment_middle_indices(n, t)
    assert np.array_equal(idx[:, k // 2], mid)  # the middle, computed as the K = 1 entries computed it
    assert (np.diff(idx.reshape(-1)) >= 0).all() and idx.min() >= 0 and idx.max() < n
    if n >= t * k:  # each candidate inside its own segment, evenly spaced
        lo = np.floor(np.arange(t) * n / t)
        hi = np.ceil((np.arange(t) + 1) * n / t)
        assert ((idx >= lo[:, None]) & (idx < hi[:, None])).all()
        if k > 1:
            gaps = np.diff(idx, axis=1)
            assert gaps.min() >= np.floor(n / t / k) - 1 and gaps.max() <= np.ceil(n / t / k) + 1
    if k == 1:
        assert np.array_equal(idx[:, 0], mid)


def test_k3_entry_stores_the_k1_frames_as_its_middle_candidates(small_demo, small_demo_k3):
    from cache import CacheEntry

    one, three = CacheEntry(small_demo[1]), CacheEntry(small_demo_k3[1])
    assert (one.frames_per_segment, three.frames_per_segment) == (1, 3)
    assert "frames_per_segment" not in one.settings and three.settings["frames_per_segment"] == 3
    for row in one.clips()[:6]:
        a, b = one.read_clip(row["uid"]), three.read_clip(row["uid"])
        assert b.frames.shape[0] == 3 * a.frames.shape[0] == 48 and b.grids.shape[0] == 48
        assert np.array_equal(b.frame_indices[1::3], a.frame_indices)
        assert np.array_equal(np.asarray(b.frames[1::3]), np.asarray(a.frames))
        assert np.array_equal(b.grids[1::3], a.grids)
        n = a.num_frames
        assert np.array_equal(b.frame_indices, segment_candidate_indices(n, 16, 3))


def test_training_takes_other_candidates_each_epoch_and_evaluation_the_middle(small_demo, small_demo_k3):
    kw = dict(crop_size=112, num_pose_frames=48, seed=0)
    train = CacheClipDataset(small_demo_k3[1], "train", mode="train", **kw)
    clip = train.entry.read_clip(train.rows[2]["uid"])
    picks = [tuple(train.stored_frames(clip, np.random.default_rng([0, e, 2]))) for e in range(2)]
    assert picks[0] != picks[1]
    # the item's pose sequence holds the chosen video frames: their frame indices differ between epochs
    a, b = train[(2, 0)], train[(2, 1)]
    fa = {int(round(x)) for x in (a["pose_time"][a["video_pose_index"]] * clip.num_frames).tolist()}
    fb = {int(round(x)) for x in (b["pose_time"][b["video_pose_index"]] * clip.num_frames).tolist()}
    assert fa != fb
    assert not torch.equal(a["frames"], b["frames"])
    middle = CacheClipDataset(small_demo_k3[1], "train", mode="train", candidate_frames="middle", **kw)
    assert all((middle.stored_frames(clip, np.random.default_rng(e)) % 3 == 1).all() for e in range(4))
    # evaluation: the segment middles every time, the very items the K = 1 entry gives
    t3 = CacheClipDataset(small_demo_k3[1], "val", mode="test", **kw)
    t1 = CacheClipDataset(small_demo[1], "val", mode="test", **kw)
    for i in range(len(t1)):
        x, y, z = t3[(i, 0)], t3[(i, 5)], t1[i]
        for key in x:
            assert torch.equal(x[key], y[key]) and torch.equal(x[key], z[key]), key
