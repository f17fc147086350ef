"""The training readings as switches, hand cases: eq. 3 summed or averaged, a text temperature
that can move, P2V starting as the identity or as block 12 once more."""
import math

import pytest
import torch
import torch.nn.functional as F

from pevl_model_testutils import make_batch
from stages.model import build_model
from stages.model.clip_loader import TINY_ARCH, load_clip
from stages.model.losses import nt_xent
from stages.model.ucmr import P2VBlock

TEXTS = ["back dive", "forward dive pike", "inward dive", "reverse dive tuck"]


def pevl(cfg):
    m = build_model(cfg)
    m.set_class_texts(TEXTS, "diving")
    return m


# -- eq. 3: sum or mean -----------------------------------------------------------------------------
def test_refinement_loss_sum_is_eq3_and_mean_is_its_batch_average():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    zr = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # cos: row 0 -> (1/sqrt2, 0), row 1 -> (1/sqrt2, 1)
    s = 10.0
    c = 1 / math.sqrt(2)
    # eq. 3 by hand, both directions (rows: z_i against every z^R_j; columns: z^R_j against every z_i)
    rows = -(math.log(math.exp(s * c) / (math.exp(s * c) + math.exp(0)))
             + math.log(math.exp(s) / (math.exp(s * c) + math.exp(s))))
    cols = -(math.log(math.exp(s * c) / (math.exp(s * c) + math.exp(s * c)))
             + math.log(math.exp(s) / (math.exp(0) + math.exp(s))))
    got_sum = nt_xent(z, zr, torch.tensor(s), reduction="sum")
    got_mean = nt_xent(z, zr, torch.tensor(s), reduction="mean")
    assert got_sum.item() == pytest.approx(0.5 * (rows + cols), rel=1e-5)
    assert got_mean.item() == pytest.approx(0.5 * (rows + cols) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean', got 'max'"):
        nt_xent(z, zr, torch.tensor(s), reduction="max")


def test_the_model_weighs_the_summed_refinement_loss(tiny_cfg):
    batch = make_batch(b=4, labels=[0, 1, 2, 3])
    losses = {}
    for red in ("sum", "mean"):
        torch.manual_seed(0)
        m = pevl({**tiny_cfg, "ucmr": {"refine_reduction": red}})
        m.train()
        losses[red] = m.loss(batch)
    assert losses["sum"]["loss_r"].item() == pytest.approx(4 * losses["mean"]["loss_r"].item(), rel=1e-5)
    assert torch.allclose(losses["sum"]["loss_t"], losses["mean"]["loss_t"])


# -- the text temperature ------------------------------------------------------------------------------
@pytest.mark.parametrize("clamp", ["projected", "forward"])
def test_a_temperature_at_clips_clamp_moves_only_when_projected(tiny_cfg, clamp):
    """OpenAI's weights hold logit_scale = ln(100.0000x), just above CLIP's clamp: clamped in the
    graph its gradient is exactly 0 (it never moves); projected back to ln(100) before use, the
    scale is used unclamped and its gradient is not 0."""
    torch.manual_seed(0)
    m = pevl({**tiny_cfg, "temperature": {"clamp": clamp}})
    m.train()
    with torch.no_grad():
        m.logit_scale.fill_(4.6052)  # OpenAI's value: exp() = 100.0002
    out = m.loss(make_batch(b=4, labels=[0, 1, 0, 1]))
    out["loss_t"].backward()
    g = m.logit_scale.grad
    if clamp == "forward":
        assert g is not None and g.item() == 0.0  # in the graph, with a gradient of exactly 0
    else:
        assert g is not None and g.item() != 0.0
        assert m.logit_scale.item() == pytest.approx(math.log(100.0), abs=1e-6)  # projected onto the bound


def test_text_temperature_start_is_a_setting(tiny_cfg):
    m = build_model({**tiny_cfg, "temperature": {"text_init": 50.0}})
    assert m.logit_scale.exp().item() == pytest.approx(50.0, rel=1e-5)
    clip = load_clip(TINY_ARCH, pretrained=None)
    assert build_model(tiny_cfg).logit_scale.item() == pytest.approx(clip.logit_scale.item())  # CLIP's own
    m = build_model({**tiny_cfg, "temperature": {"max_scale": 20.0}})
    with torch.no_grad():
        m.logit_scale.fill_(math.log(30.0))
    assert m.temperature_scale(m.logit_scale).item() == pytest.approx(20.0, rel=1e-5)


# -- P2V at step 0 -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vit_block():
    torch.manual_seed(0)
    return load_clip(TINY_ARCH, pretrained=None).visual.transformer.resblocks[-1]


def _tokens_and_mask():
    torch.manual_seed(1)
    tok = torch.randn(2, 3, 5, 64)
    mask = (torch.rand(2, 3, 4) > 0.4).float()
    return tok, mask


def test_p2v_starts_as_the_identity_and_its_gates_learn(vit_block):
    tok, mask = _tokens_and_mask()
    p2v = P2VBlock(vit_block, start="identity")
    assert p2v.attn_gate.item() == 0.0 and p2v.mlp_gate.item() == 0.0
    out = p2v(tok, mask)
    assert torch.equal(out, tok)  # the refined video tokens start as the video encoder's
    out.pow(2).sum().backward()
    assert p2v.attn_gate.grad.abs().item() > 0 and p2v.mlp_gate.grad.abs().item() > 0


def test_p2v_block_start_reapplies_block_12_and_open_gates_equal_it(vit_block):
    tok, mask = _tokens_and_mask()
    torch.manual_seed(2)
    block = P2VBlock(vit_block, start="block")
    gated = P2VBlock(vit_block, start="identity")
    gated.load_state_dict({**block.state_dict(), "attn_gate": torch.tensor(20.0), "mlp_gate": torch.tensor(20.0)})
    ref = block(tok, mask)
    assert not torch.allclose(ref, tok, atol=1e-3)  # block 12 once more: not the identity
    assert torch.allclose(gated(tok, mask), ref, atol=1e-6)  # tanh(20) == 1: the same block
    with pytest.raises(ValueError, match="p2v_start"):
        P2VBlock(vit_block, start="zero")


def test_pevl_video_feature_starts_as_clips_with_the_identity_start(tiny_cfg):
    """With P2V as the identity the refined video feature is the encoder's at step 0; with the
    block reading it is not (the issue's cos 0.98 on the tiny model)."""
    batch = make_batch(b=2)
    for start, same in (("identity", True), ("block", False)):
        torch.manual_seed(0)
        m = pevl({**tiny_cfg, "ucmr": {"p2v_start": start}})
        m.eval()
        with torch.no_grad():
            out = m.encode(batch)
        cos = F.cosine_similarity(out["video"], out["z_v"], dim=-1)
        assert bool(torch.allclose(out["video"], out["z_v"], atol=1e-6)) == same, (start, cos)


# -- the joints' score channel: (x, y, score) or the papers' (x, y) ------------------------------------
def test_the_joint_score_channel_is_a_switch_and_false_is_the_papers_two_coordinates(tiny_cfg):
    """PeVL Sec. 3.2.1 / PGVT Sec. 3.2 write the joints as T x N_p x 2; the default embeds the score too."""
    import copy

    from stages.model.pose_embedding import JointEmbedding
    from stages.model.settings import PoseTokenSettings
    from stages.settings import SettingsError

    joints = torch.tensor([[[[0.5, 0.5, 0.9], [0.5, 0.5, 0.3], [0.0, 0.0, 0.0]]]])  # (1, 1, 3, 3)
    torch.manual_seed(0)
    with_score = JointEmbedding(8)
    a = with_score(joints)
    assert not torch.allclose(a[..., 0, :], a[..., 1, :])  # the same place, other scores
    torch.manual_seed(0)
    xy = JointEmbedding(8, in_dim=2)
    assert xy.fc1.in_features == 2
    b = xy(joints)
    # the papers' reading: the score is not seen, and a joint not seen embeds as one at (0, 0)
    assert torch.allclose(b[..., 0, :], b[..., 1, :]) and torch.allclose(b[..., 2, :], xy(torch.zeros(1, 1, 1, 3))[..., 0, :])
    cfg = copy.deepcopy(tiny_cfg)
    cfg.setdefault("pose", {})["score"] = False
    m = pevl(cfg)
    assert m.pose_encoder.embed.joint_embed.fc1.in_features == 2
    assert pevl(tiny_cfg).pose_encoder.embed.joint_embed.fc1.in_features == 3
    with pytest.raises(SettingsError, match="pose.score=False is the CLIP pose encoder's .* PoseFormer's is "
                                            "pose.poseformer.score"):
        PoseTokenSettings.from_dict({"score": False, "encoder": "poseformer", "cls_token": False}, where="pose")
    with pytest.raises(SettingsError, match="heatmaps draw each joint weighted by its score"):
        PoseTokenSettings.from_dict({"score": False, "form": "heatmap"}, where="pose")
