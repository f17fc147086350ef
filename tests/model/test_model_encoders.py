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
    with pytest.raises(KeyError):
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
