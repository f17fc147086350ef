import math

import torch

from stages.model.losses import (nt_xent, semantic_guided_loss, strength_coefficients,
                                 uniform_coefficients, vanilla_contrastive_loss)


def test_semantic_guided_equals_vanilla_under_uniform_coefficients():
    torch.manual_seed(0)
    for labels in (torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 2, 1, 0])):
        sim = torch.rand(len(labels), len(labels)) * 2 - 1
        scale = torch.tensor(20.0)
        a = semantic_guided_loss(sim, labels, uniform_coefficients(labels), scale)
        b = vanilla_contrastive_loss(sim, labels, scale)
        assert torch.allclose(a, b, atol=1e-6), (a, b)


def test_kl_ground_truth_with_repeated_labels_hand_computed():
    labels = torch.tensor([0, 0, 1])
    sim = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    scale = torch.tensor(1.0)

    def kl_rows(m):  # q uniform over same-label entries, p = softmax(row)
        total = 0.0
        for i in range(3):
            pos = [j for j in range(3) if labels[j] == labels[i]]
            z = sum(math.exp(m[i][j]) for j in range(3))
            total += sum((1 / len(pos)) * (math.log(1 / len(pos)) - (m[i][j] - math.log(z))) for j in pos)
        return total / 3

    rows = sim.tolist()
    cols = sim.T.tolist()
    expected = 0.5 * (kl_rows(rows) + kl_rows(cols))
    got = vanilla_contrastive_loss(sim, labels, scale)
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    got_sg = semantic_guided_loss(sim, labels, uniform_coefficients(labels), scale)
    assert math.isclose(float(got_sg), expected, rel_tol=1e-6)


def test_strength_coefficients_rows_sum_to_one_over_negatives():
    labels = torch.tensor([0, 1, 0, 2])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    s = strength_coefficients(t, labels)
    assert torch.allclose(s.sum(1), torch.ones(4))
    assert s[0, 0] == 0 and s[0, 2] == 0  # positives get no coefficient
    # row 0: negatives 1 (1 - cos = 1) and 3 (1 - cos = 2) -> 1/3, 2/3
    assert torch.allclose(s[0], torch.tensor([0.0, 1 / 3, 0.0, 2 / 3]))


def test_semantic_weights_push_dissimilar_texts_harder():
    labels = torch.tensor([0, 1, 2])
    sim = torch.zeros(3, 3)
    coeff = torch.tensor([[0.0, 0.9, 0.1], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
    sim_hi1 = sim.clone(); sim_hi1[0, 1] = 1.0
    sim_hi2 = sim.clone(); sim_hi2[0, 2] = 1.0
    scale = torch.tensor(1.0)
    assert semantic_guided_loss(sim_hi1, labels, coeff, scale) > semantic_guided_loss(sim_hi2, labels, coeff, scale)


def test_nt_xent_prefers_matching_pairs():
    torch.manual_seed(0)
    z = torch.randn(4, 8)
    good = nt_xent(z, z, torch.tensor(10.0))
    bad = nt_xent(z, z.roll(1, 0), torch.tensor(10.0))
    assert good < bad
