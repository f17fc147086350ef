import numpy as np
import pytest
import torch

from stages.model import build_model
from stages.model.adapters import BottleneckAdapter
from stages.model.pose_embedding import render_heatmaps
from stages.model.text_encoder import build_prompt


def test_adapter_zero_init():
    a = BottleneckAdapter(16, 0.25, skip=True)
    x = torch.randn(2, 3, 16)
    assert torch.equal(a(x), x)
    assert torch.equal(BottleneckAdapter(16, 0.25, skip=False)(x), torch.zeros_like(x))


def test_fresh_model_video_and_text_features_equal_plain_clip(tiny_cfg, batch):
    torch.manual_seed(0)
    m = build_model(tiny_cfg).eval()
    clip = m.clip
    frames = batch["frames"]
    with torch.no_grad():
        tok = m.video_encoder(frames)
        ours = m.video_encoder.frame_features(tok) @ m.video_proj
        ref = clip.encode_image(frames.flatten(0, 1)).view(*frames.shape[:2], -1)
        assert torch.allclose(ours, ref, atol=1e-5)
        m.set_class_texts(["back dive", "forward dive pike"], "diving")
        sent, words, mask = m.encode_texts(torch.arange(2))
        assert torch.allclose(sent, clip.encode_text(m.class_tokens), atol=1e-5)
        assert mask.sum(1).tolist() == (m.class_tokens != 0).sum(1).tolist()


def test_prompt_forms():
    assert build_prompt("back dive", "diving") == "back dive, a video of diving action"
    assert build_prompt("back dive", "diving", "label_prompt") == "back dive, a video of action"
    assert build_prompt("back dive", "diving", "label") == "back dive"
    assert build_prompt("back dive", "", "label") == "back dive"
    with pytest.raises(ValueError, match="needs a coarse action type .* model.text.coarse_type"):
        build_prompt("back dive", " ")  # (it gave label_prompt's text, reported as label_prompt_type)
    with pytest.raises(KeyError, match="unknown prompt form 'nope'"):
        build_prompt("x", "y", "nope")


def test_heatmap_rendering_peaks_at_joint():
    j = torch.tensor([[[[0.5, 0.25, 1.0], [0.1, 0.1, 0.0]]]])  # second joint unseen
    h = render_heatmaps(j, size=112, sigma=2.0)
    assert h.shape == (1, 1, 112, 112)
    y, x = divmod(int(h[0, 0].argmax()), 112)
    assert (y, x) in {(27, 55), (27, 56), (28, 55), (28, 56)} and float(h.max()) > 0.9
    assert float(h[0, 0, 11, 11]) < 1e-6


def test_pose_joint_weights_sum_to_one(tiny_cfg, batch):
    m = build_model(tiny_cfg)
    with torch.no_grad():
        tok, w = m.pose_encoder(batch["joints"], need_joint_weights=True)
    b, t, v = batch["joints"].shape[:3]
    assert tok.shape[:3] == (b, t, v + 1)  # the CLS token, then the joints
    assert w.shape == (b, t, v)
    assert torch.allclose(w.sum(-1), torch.ones(w.shape[:2]), atol=1e-5)


def test_pose_cls_token_is_the_frame_feature_and_switchable(tiny_cfg, batch):
    """PGVT Sec. 3.2: a CLS token per frame; its output is the frame's pose feature. With
    pose.cls_token=False the tokens are the joints alone and the feature is their mean."""
    torch.manual_seed(0)
    m = build_model(tiny_cfg)
    assert m.pose_encoder.num_prefix_tokens == 1
    with torch.no_grad():
        tok, _ = m.pose_encoder(batch["joints"])
        feats = m.pose_encoder.frame_features(tok)
        assert torch.allclose(feats, m.clip.visual.ln_post(tok[:, :, 0]))
        # the CLS feature depends on the joints (it attends to them) ...
        moved = batch["joints"].clone()
        moved[..., 0] = 1 - moved[..., 0]
        assert not torch.allclose(m.pose_encoder.frame_features(m.pose_encoder(moved)[0]), feats)
    cfg = dict(tiny_cfg, pose=dict(cls_token=False))
    m2 = build_model(cfg)
    assert m2.pose_encoder.num_prefix_tokens == 0
    with torch.no_grad():
        tok2, _ = m2.pose_encoder(batch["joints"])
        assert tok2.shape[2] == batch["joints"].shape[2]
        assert torch.allclose(m2.pose_encoder.frame_features(tok2), m2.clip.visual.ln_post(tok2).mean(2))


def test_joint_weights_read_the_cls_row_or_the_mean_over_joint_queries(tiny_cfg):
    """P2V's joint weights: with the CLS token, the attention the frame's CLS pays to each joint
    (its own column dropped); without it, the attention each joint receives from the joints."""
    probs = torch.zeros(1, 2, 3, 3)  # (B*T, heads, queries, keys): CLS, joint 0, joint 1
    probs[0, :, 0] = torch.tensor([0.5, 0.1, 0.4])  # the CLS row
    probs[0, :, 1:] = torch.tensor([0.0, 0.9, 0.1])  # the joints look at joint 0
    with_cls = build_model(tiny_cfg).pose_encoder
    assert torch.allclose(with_cls._joint_weights(probs), torch.tensor([[0.2, 0.8]]))
    no_cls = build_model(dict(tiny_cfg, pose=dict(cls_token=False))).pose_encoder
    probs2 = torch.tensor([[[[0.9, 0.1], [0.7, 0.3]]]])  # joints only
    assert torch.allclose(no_cls._joint_weights(probs2), torch.tensor([[0.8, 0.2]]))


def test_person_normalised_coordinates_ignore_where_and_how_big_the_person_is():
    from stages.model.pose_embedding import normalize_to_person

    torch.manual_seed(0)
    j = torch.rand(2, 5, 17, 3) * 0.5 + 0.1
    j[..., 2] = (torch.rand(2, 5, 17) > 0.2).float()
    moved = j.clone()
    moved[..., :2] = j[..., :2] * 1.7 + torch.tensor([0.3, -0.2])  # another crop / person size
    a, b = normalize_to_person(j), normalize_to_person(moved)
    seen = j[..., 2] > 0
    assert torch.allclose(a[seen], b[seen], atol=1e-5) and torch.equal(a[..., 2], j[..., 2])
    xy = a[0, ..., :2][seen[0]]  # clip 0's seen joints over all frames
    assert torch.allclose(xy.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(xy.pow(2).sum(-1).mean(), torch.tensor(1.0), atol=1e-4)  # unit RMS radius
    empty = torch.zeros(1, 2, 17, 3)
    assert torch.equal(normalize_to_person(empty), empty)  # nobody seen: unchanged, no NaN


def test_joint_velocity_is_over_the_real_time_between_pose_frames():
    """48 pose frames from 64 decoded frames lie 1 or 2 frames apart, random training offsets 0 to
    2 segments: the velocity divides by that gap, so a steady motion gives one steady velocity."""
    from stages.data.sampling import sample_pose_frames
    from stages.geometry import segment_middle_indices
    from stages.model.pose_embedding import joint_velocity

    n = 64
    vf = segment_middle_indices(n, 16)
    for rng in (None, np.random.default_rng(3)):
        idx, _ = sample_pose_frames(n, 48, vf, rng)
        times = torch.from_numpy(idx / n).float()[None]  # what the dataset gives as pose_time
        joints = torch.ones(1, 48, 2, 3)
        joints[..., 0, 0] = 0.2 + 0.5 * times  # joint 0 moves right at 0.5 crop widths per clip
        joints[..., 1, 2] = 0.0  # joint 1 unseen: no velocity
        v = joint_velocity(joints, times)[0]
        gaps = np.diff(idx)
        moving = torch.from_numpy(np.concatenate([[False], gaps > 0]))
        assert torch.allclose(v[moving, 0, 0], torch.tensor(0.5), atol=1e-4)
        assert v[~moving].abs().sum() == 0 and v[:, 1].abs().sum() == 0 and v[:, 0, 1].abs().sum() == 0
        assert len(set(gaps.tolist())) > 1  # the spacing really is uneven here
        # the bare displacement times T (the no-times fallback) is off by the uneven gaps
        assert not torch.allclose(joint_velocity(joints)[0, moving, 0, 0], torch.tensor(0.5), atol=0.05)
    even = torch.arange(6.0)[None] / 6
    j = torch.rand(2, 6, 3, 3)
    j[..., 2] = 1.0
    assert torch.allclose(joint_velocity(j), joint_velocity(j, even.expand(2, 6)), atol=1e-5)


def test_joint_embedding_motion_and_per_joint_layers():
    from stages.model.pose_embedding import JointEmbedding, PoseEmbedding

    torch.manual_seed(0)
    still = torch.rand(1, 1, 4, 3).expand(1, 6, 4, 3).clone()  # nobody moves
    still[..., 2] = 1.0
    moving = still.clone()
    moving[:, 3:, 1, 1] += 0.1  # joint 1 moves at frame 3
    emb = JointEmbedding(16, motion=True)
    zero_motion = emb.fc2(emb.act(emb.fc1(torch.cat([still, torch.zeros_like(still[..., :2])], -1))))
    assert torch.allclose(emb(still), zero_motion, atol=1e-6)  # no motion: the velocity channel is 0
    diff = (emb(moving) - emb(still)).abs().sum(-1)[0]  # (T, J)
    assert diff[3, 1] > diff[4, 1] > 0 and diff[:3].sum() == 0 and diff[:, [0, 2, 3]].sum() == 0
    # velocity is per clip: the same motion sampled at 2x the frames gives the same velocity
    v6 = emb(moving)[0, 3, 1]
    twice = torch.repeat_interleave(moving, 2, dim=1)
    twice[:, 6, 1, 1] = moving[0, 2, 1, 1] + 0.05  # halfway, so the step is half
    assert torch.allclose(emb(twice)[0, 7, 1], v6, atol=1e-5)
    # per joint: the same coordinates embed differently for different joints (before positions)
    per = JointEmbedding(16, num_joints=4)
    same = torch.full((1, 1, 4, 3), 0.5)
    out = per(same)[0, 0]
    assert per.per_joint and not torch.allclose(out[0], out[1])
    pe = PoseEmbedding(16, 4, 6, cls_token=True, embedding="per_joint", motion=True)
    assert pe(moving).shape == (1, 6, 5, 16) and pe.num_prefix_tokens == 1
    with pytest.raises(ValueError, match="pose.embedding"):
        PoseEmbedding(16, 4, 6, embedding="nope")
