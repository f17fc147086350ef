"""Label smoothing and mixup in the losses: cross-entropy (PGVT, text-free PeVL) and PeVL's
text-contrastive losses over the batch's texts; the batch mixing itself."""
import math

import pytest
import torch
import torch.nn.functional as F

from pevl_model_testutils import make_batch
from stages.model import build_model
from stages.model.losses import (match_weights, semantic_guided_loss, soft_cross_entropy, strength_coefficients,
                                 vanilla_contrastive_loss)
from stages.train.mixup import mix_batch


def test_soft_cross_entropy_is_torchs_without_mixup_and_linear_in_lambda_with_it():
    torch.manual_seed(0)
    logits, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 1])
    for eps in (0.0, 0.1):
        assert torch.allclose(soft_cross_entropy(logits, y, eps), F.cross_entropy(logits, y, label_smoothing=eps))
    perm, lam = torch.tensor([1, 0, 3, 4, 2]), torch.tensor(0.3)
    want = 0.3 * F.cross_entropy(logits, y) + 0.7 * F.cross_entropy(logits, y[perm])
    assert torch.allclose(soft_cross_entropy(logits, y, 0.0, perm, lam), want)
    # smoothing on top: (1 - eps) of the mixed target + eps / C everywhere
    eps = 0.1
    want = 0.9 * want + eps * (-torch.log_softmax(logits, -1).mean(-1)).mean()
    assert torch.allclose(soft_cross_entropy(logits, y, eps, perm, lam), want, atol=1e-6)


def test_match_weights_by_hand():
    y = torch.tensor([0, 1, 0])
    assert torch.equal(match_weights(y), torch.tensor([[1., 0, 1], [0, 1, 0], [1, 0, 1]]))
    m = match_weights(y, torch.tensor([1, 2, 0]), torch.tensor(0.75))
    # clip 0 = 0.75 clip0 (label 0) + 0.25 clip1 (label 1): text of clip j matches by its label
    assert torch.allclose(m, torch.tensor([[0.75, 0.25, 0.75], [0.25, 0.75, 0.25], [1.0, 0.0, 1.0]]))


def test_contrastive_losses_reduce_to_the_unmixed_ones_and_smooth_their_targets():
    torch.manual_seed(1)
    sim, y, scale = torch.randn(4, 4), torch.tensor([0, 1, 1, 2]), torch.tensor(10.0)
    text = torch.randn(4, 8)
    base_v = vanilla_contrastive_loss(sim, y, scale)
    base_s = semantic_guided_loss(sim, y, strength_coefficients(text, y), scale)
    ident = (torch.tensor([2, 3, 0, 1]), torch.tensor(1.0))  # lambda = 1: the first clip whole
    m = match_weights(y, *ident)
    assert torch.allclose(vanilla_contrastive_loss(sim, y, scale, m), base_v)
    coef = strength_coefficients(text, y, m, *ident)
    cols = strength_coefficients(text, y, m, *ident, columns=True)
    assert torch.allclose(semantic_guided_loss(sim, y, coef, scale, m, 0.0, cols), base_s, atol=1e-6)
    # label smoothing: rows' targets (1 - eps) q + eps / B, by hand for the vanilla loss
    eps = 0.2
    pos = (y[:, None] == y[None, :]).float()
    q = 0.8 * pos / pos.sum(1, keepdim=True) + eps / 4
    logits = scale * sim
    want = 0.5 * (F.kl_div(torch.log_softmax(logits, 1), q, reduction="sum") / 4
                  + F.kl_div(torch.log_softmax(logits.T, 1), q.T / q.T.sum(1, keepdim=True), reduction="sum") / 4)
    assert torch.allclose(vanilla_contrastive_loss(sim, y, scale, None, eps), want, atol=1e-6)
    assert math.isfinite(semantic_guided_loss(sim, y, strength_coefficients(text, y), scale, None, eps).item())


def test_mixed_targets_follow_lambda():
    """A mixed clip's row target puts lambda on its first label's texts and 1 - lambda on its second's."""
    sim = torch.zeros(3, 3)
    y = torch.tensor([0, 1, 2])
    perm, lam = torch.tensor([1, 2, 0]), torch.tensor(0.6)
    m = match_weights(y, perm, lam)
    # with all similarities equal, p is uniform: the loss is the KL of the targets to uniform
    q_rows = m / m.sum(1, keepdim=True)
    q_cols = m.T / m.T.sum(1, keepdim=True)
    kl = lambda q: (q * (q.clamp_min(1e-30).log() + math.log(3))).sum(1).mean()  # noqa: E731
    want = 0.5 * (kl(q_rows) + kl(q_cols))
    assert torch.allclose(vanilla_contrastive_loss(sim, y, torch.tensor(1.0), m), want, atol=1e-6)
    assert torch.allclose(q_rows[0], torch.tensor([0.6, 0.4, 0.0]))


def test_mix_batch_mixes_the_inputs_alike_and_is_reproducible():
    b = make_batch(b=4, labels=[0, 1, 2, 3])
    b["index"] = torch.tensor([7, 3, 9, 1])
    a1, a2 = mix_batch(b, 0.8, seed=5), mix_batch(b, 0.8, seed=5)
    perm, lam = a1["mix_index"], a1["mix_lam"]
    assert torch.equal(perm, a2["mix_index"]) and torch.equal(lam, a2["mix_lam"])
    assert sorted(perm.tolist()) == [0, 1, 2, 3] and 0 < lam.item() < 1
    for k in ("frames", "joints", "mask_grid"):
        assert torch.allclose(a1[k], lam * b[k] + (1 - lam) * b[k][perm], atol=1e-6)
    for k in ("label", "video_pose_index", "index"):
        assert torch.equal(a1[k], b[k])
    other = mix_batch(dict(b, index=torch.tensor([0, 1, 2, 3])), 0.8, seed=5)
    assert other["mix_lam"].item() != lam.item()
    assert mix_batch(b, 0.0, seed=5) is b


@pytest.mark.parametrize("cfg", [{}, {"sgmc": {"loss": "vanilla"}}, {"type": "LinearHeadPeVL", "modalities": ["video", "pose"]},
                                 {"type": "PGVT"}])
def test_models_train_on_a_mixed_batch_with_label_smoothing(tiny_cfg, cfg):
    torch.manual_seed(0)
    m = build_model({**tiny_cfg, **cfg})
    if getattr(m, "use_text", False):
        m.set_class_texts(["back dive", "forward dive", "inward dive"], "diving")
    m.train()
    batch = make_batch(b=4, labels=[0, 1, 2, 1])
    batch["index"] = torch.arange(4)
    plain = m.loss(batch)["loss"]
    mixed = m.loss(mix_batch(batch, 0.8, seed=0), label_smoothing=0.1)["loss"]
    assert torch.isfinite(mixed) and not torch.allclose(mixed, plain)
    mixed.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters() if p.requires_grad)
