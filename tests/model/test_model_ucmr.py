import math

import torch

from stages.model.ucmr import (PoseGuidedVisualAttention, VisualEnrichedPoseAttention,
                               weighted_mask_attention, weighted_pose_mask)


def test_p2v_binary_mask_and_empty_row_hand_computed():
    # 1-d heads: q.k = q*k, scale 1/sqrt(1) = 1
    q = torch.tensor([[1.0], [2.0], [3.0]])
    k = torch.tensor([[1.0], [0.0], [math.log(2.0)]])
    v = torch.tensor([[10.0], [20.0], [30.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0],   # keys 0 and 2 only
                         [0.0, 0.0, 0.0],   # empty row: indicator I = 1, no attention at all
                         [0.0, 1.0, 0.0]])  # a single key
    out = weighted_mask_attention(q, k, v, mask)
    # row 0: logits 1*1=1 and 1*ln2 -> weights e^1 : 2
    w0 = torch.tensor([math.e, 2.0]) / (math.e + 2.0)
    assert torch.allclose(out[0], w0[0] * v[0] + w0[1] * v[2])
    assert torch.equal(out[1], torch.zeros(1))
    assert torch.allclose(out[2], v[1])


def test_p2v_weighted_mask_scales_logits():
    q = torch.tensor([[2.0]])
    k = torch.tensor([[1.0], [1.0]])
    v = torch.tensor([[1.0], [0.0]])
    out = weighted_mask_attention(q, k, v, torch.tensor([[1.0, 0.5]]))
    assert torch.allclose(out, torch.tensor([[math.exp(2) / (math.exp(2) + math.exp(1))]]))


def test_weighted_pose_mask_sum_and_normalise():
    w = torch.tensor([[[0.25, 0.75]]])  # (B=1, T=1, V=2)
    grid = torch.zeros(1, 1, 2, 2, 2)
    grid[0, 0, 0, 0, 0] = 1.0   # joint 0 in patch 0 (score 1)
    grid[0, 0, 1, 0, 0] = 1.0   # joint 1 also in patch 0
    grid[0, 0, 1, 1, 1] = 0.5   # ... (and a second joint-plane entry in patch 3)
    m = weighted_pose_mask(w, grid, torch.zeros(1, 1, dtype=torch.long))
    raw = torch.tensor([0.25 + 0.75, 0, 0, 0.375])
    assert torch.allclose(m[0, 0], raw / raw.max())
    empty = weighted_pose_mask(w, torch.zeros_like(grid), torch.zeros(1, 1, dtype=torch.long))
    assert torch.equal(empty, torch.zeros_like(empty))


def test_p2v_fresh_is_identity_and_no_pose_frame_untouched():
    torch.manual_seed(0)
    p2v = PoseGuidedVisualAttention(8, 2)
    tok = torch.randn(1, 2, 5, 8)
    mask = torch.tensor([[[0.0, 1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    assert torch.equal(p2v(tok, mask), tok)  # zero-initialised output projection
    torch.nn.init.normal_(p2v.proj.out.weight)
    out = p2v(tok, mask)
    assert torch.equal(out[0, 1], tok[0, 1])  # frame without pose: every row empty
    assert torch.equal(out[0, 0, [1, 4]], tok[0, 0, [1, 4]])  # patches without joints pass unchanged
    assert not torch.allclose(out[0, 0, 0], tok[0, 0, 0])  # CLS gathers from pose patches


def test_v2p_reinserts_only_coinciding_frames():
    torch.manual_seed(0)
    v2p = VisualEnrichedPoseAttention(8, 2)
    torch.nn.init.normal_(v2p.proj.out.weight)
    pose = torch.randn(1, 6, 3, 8)
    video = torch.randn(1, 2, 5, 8)
    idx = torch.tensor([[1, 4]])
    out = v2p(pose, video, idx)
    changed = [(out[0, t] - pose[0, t]).abs().sum() > 0 for t in range(6)]
    assert changed == [False, True, False, False, True, False]
