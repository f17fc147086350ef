import math

import pytest
import torch

from pevl_model_testutils import make_batch
from stages.model import build_model
from stages.model.clip_loader import load_clip, TINY_ARCH
from stages.model.ucmr import (P2VBlock, V2PAttention, grouping_attention, pose_masked_attention,
                               weighted_pose_mask)


def _heads(x):  # (L, d) -> (N=1, H=1, L, d)
    return x[None, None]


def test_eq1_binary_mask_and_empty_row_hand_computed():
    # 1-d heads: q.k = q*k, scale 1/sqrt(1) = 1
    q = torch.tensor([[1.0], [2.0], [3.0]])
    k = torch.tensor([[1.0], [0.0], [math.log(2.0)]])
    v = torch.tensor([[10.0], [20.0], [30.0]])
    key_w = torch.tensor([[1.0, 0.0, 1.0]])  # keys 0 and 2 hold a joint (0/1 mask)
    query_on = torch.tensor([[True, False, True]])  # token 1 is off the pose: an all-zero row
    out = pose_masked_attention(_heads(q), _heads(k), _heads(v), key_w, query_on)[0, 0]
    w0 = torch.tensor([math.e, 2.0]) / (math.e + 2.0)  # row 0: logits 1*1 and 1*ln2
    assert torch.allclose(out[0], w0[0] * v[0] + w0[1] * v[2])
    assert torch.equal(out[1], torch.zeros(1))  # indicator I: no attention at all, no NaN
    w2 = torch.tensor([math.exp(3.0), math.exp(3 * math.log(2.0))])
    w2 = w2 / w2.sum()
    assert torch.allclose(out[2], w2[0] * v[0] + w2[1] * v[2])
    # a frame without any pose patch: every row empty, finite gradients
    qq = _heads(q).clone().requires_grad_()
    none = pose_masked_attention(qq, _heads(k), _heads(v), torch.zeros(1, 3), query_on)
    assert torch.equal(none, torch.zeros_like(none))
    none.sum().backward()
    assert torch.isfinite(qq.grad).all()


def test_eq1_weighted_mask_scales_logits_and_sdpa_matches_explicit():
    q = torch.tensor([[2.0], [0.5]])
    k = torch.tensor([[1.0], [1.0]])
    v = torch.tensor([[1.0], [0.0]])
    out = pose_masked_attention(_heads(q), _heads(k), _heads(v), torch.tensor([[1.0, 0.5]]),
                                torch.tensor([[True, True]]))[0, 0]
    assert torch.allclose(out[0], torch.tensor([math.exp(2) / (math.exp(2) + math.exp(1))]))
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4) for _ in range(3))
    key_w = torch.rand(2, 6) * (torch.rand(2, 6) > 0.4)
    on = torch.rand(2, 6) > 0.3
    fast = pose_masked_attention(q, k, v, key_w, on)
    slow, alpha = pose_masked_attention(q, k, v, key_w, on, need_weights=True)
    assert torch.allclose(fast, slow, atol=1e-6)
    assert torch.allclose(alpha.sum(-1)[on[:, None].expand(-1, 3, -1) & (key_w > 0).any(-1)[:, None, None]],
                          torch.tensor(1.0))


def test_weighted_pose_mask_sum_normalise_and_fp16_safe():
    w = torch.tensor([[[0.25, 0.75]]])  # (B=1, T=1, V=2)
    grid = torch.zeros(1, 1, 2, 2, 2)
    grid[0, 0, 0, 0, 0] = 1.0   # joint 0 in patch 0 (score 1)
    grid[0, 0, 1, 0, 0] = 1.0   # joint 1 also in patch 0
    grid[0, 0, 1, 1, 1] = 0.5   # ... (and a second joint-plane entry in patch 3)
    m = weighted_pose_mask(w, grid, torch.zeros(1, 1, dtype=torch.long))
    raw = torch.tensor([0.25 + 0.75, 0, 0, 0.375])
    assert m.dtype == torch.float32 and torch.allclose(m[0, 0], raw / raw.max())
    # float16 inputs, a frame whose crop holds no joint and tiny weights: float32 result, finite grads
    wh = torch.full((1, 2, 2), 1e-5, dtype=torch.float16, requires_grad=True)
    gh = torch.cat([grid, torch.zeros_like(grid)], dim=1).half()
    mh = weighted_pose_mask(wh, gh, torch.tensor([[0, 1]]))
    assert mh.dtype == torch.float32 and torch.equal(mh[0, 1], torch.zeros(4)) and mh[0, 0].max() == 1
    mh.sum().backward()
    assert torch.isfinite(wh.grad.float()).all()


@pytest.fixture(scope="module")
def vit_block():
    torch.manual_seed(0)
    return load_clip(TINY_ARCH, pretrained=None).visual.transformer.resblocks[-1]


def _mlp_only(block, x, p2v):
    h = block.ln_2(x)
    return x + block.mlp(h) + p2v.mlp_scale * p2v.mlp_adapter(h)


def test_p2v_block_01_mask_and_all_zero_row(vit_block):
    """A ViT block (``p2v_start='block'``): tokens off the pose get no attention but pass the
    block's MLP; a frame without pose is the MLP alone; the frame's CLS gathers from the pose patches."""
    torch.manual_seed(0)
    p2v = P2VBlock(vit_block, start="block")
    for a in (p2v.attn_adapter, p2v.mlp_adapter):
        torch.nn.init.normal_(a.fc2.weight, std=0.1)
    d = vit_block.attn.embed_dim
    tok = torch.randn(1, 2, 5, d)
    mask = torch.tensor([[[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])  # 0/1; frame 1 all zero
    out = p2v(tok, mask)
    with torch.no_grad():
        assert torch.allclose(out[0, 1], _mlp_only(vit_block, tok[0, 1], p2v), atol=1e-6)
        assert torch.allclose(out[0, 0, [1, 4]], _mlp_only(vit_block, tok[0, 0, [1, 4]], p2v), atol=1e-6)
        for i in (0, 2, 3):  # the CLS and the two pose patches receive attention
            assert not torch.allclose(out[0, 0, i], _mlp_only(vit_block, tok[0, 0, i], p2v), atol=1e-4)
    # its own attention starts as a copy of the ViT block's; the MLP is the block's, shared
    assert torch.equal(p2v.qkv.weight, vit_block.attn.in_proj_weight) and p2v.qkv.weight.requires_grad
    assert not any(n.startswith(("mlp.", "ln_2")) for n, _ in p2v.named_parameters())


def test_v2p_reinserts_only_coinciding_frames():
    torch.manual_seed(0)
    v2p = V2PAttention(8, 2)
    torch.nn.init.normal_(v2p.out.weight)
    pose = torch.randn(1, 6, 3, 8)
    video = torch.randn(1, 2, 5, 8)
    out, bg = v2p(pose, video, torch.tensor([[1, 4]]))
    changed = [bool((out[0, t] - pose[0, t]).abs().sum() > 0) for t in range(6)]
    assert changed == [False, True, False, False, True, False] and bg is None


def test_grouping_normalises_each_patch_over_the_tokens():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    out, assign = grouping_attention(q, k, v)
    assert torch.allclose(assign.sum(dim=-2), torch.ones(2, 3, 7))  # every patch: 1 over the tokens
    alpha = assign / assign.sum(-1, keepdim=True)
    assert torch.allclose(out, alpha @ v, atol=1e-6)


@pytest.mark.parametrize("reading", ["grouping", "kept"])
def test_background_token_changes_the_pose_output(tiny_cfg, reading):
    """The background token must matter: moving it changes the refined pose feature (grouping:
    it takes patches from the joints and the CLS token; kept: its own output joins the frame's)."""
    torch.manual_seed(0)
    m = build_model(dict(tiny_cfg, ucmr=dict(background=reading)))
    v2p = m.ucmr[0].v2p
    assert v2p.background_reading == reading
    torch.nn.init.normal_(v2p.out.weight, std=0.2)
    batch = make_batch()
    with torch.no_grad():
        before = m.encode(batch)
        v2p.background.add_(torch.randn_like(v2p.background))
        after = m.encode(batch)
    assert not torch.allclose(before["pose"], after["pose"], atol=1e-5)
    assert torch.allclose(before["video"], after["video"])  # P2V does not read the pose tokens
    # only the frames that coincide with video frames carry V2P's refinement
    idx = batch["video_pose_index"][0]
    other = [t for t in range(batch["joints"].shape[1]) if t not in idx.tolist()]
    assert torch.allclose(before["frames"][:, other], after["frames"][:, other])
