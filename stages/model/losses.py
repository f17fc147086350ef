"""Losses: refinement NT-Xent (eq. 3), semantic-guided loss (eqs. 5-6), vanilla contrastive, CE."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z: torch.Tensor, z_refined: torch.Tensor, logit_scale: torch.Tensor,
            reduction: str = "sum") -> torch.Tensor:
    """Eq. (3): NT-Xent between features before and after refinement, ``sim`` = cosine, learnable
    temperature ``tau = 1 / logit_scale``, made symmetric (both directions averaged, "we establish
    symmetric similarities"). ``reduction``: 'sum' over the batch as eq. 3 writes it (what
    lambda_R weighs), or 'mean' (1/B of it, a scale that does not grow with B).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    a, b = F.normalize(z, dim=-1), F.normalize(z_refined, dim=-1)
    logits = logit_scale * a @ b.T
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target, reduction=reduction)
                  + F.cross_entropy(logits.T, target, reduction=reduction))


def positive_mask(labels: torch.Tensor) -> torch.Tensor:
    """q's support: every pair with the same label is positive (several clips of a class per batch)."""
    return labels[:, None] == labels[None, :]


def strength_coefficients(text_features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``s_ij = norm_j(1 - cos(t_j, t_i))`` over the negatives j of row i (Sec. 3.3.2).

    ``text_features`` (B, E): the label-text feature of each clip. Returns (B, B), 0 on positives,
    each row's negatives summing to 1. Detached: coefficients weigh the loss, they are not trained.
    The matrix is symmetric before normalisation, so row j of it also serves the t2vp direction.
    """
    t = F.normalize(text_features.detach(), dim=-1)
    d = (1 - t @ t.T).clamp_min(0) * (~positive_mask(labels))
    return d / d.sum(dim=1, keepdim=True).clamp_min(1e-12)


def uniform_coefficients(labels: torch.Tensor) -> torch.Tensor:
    """``s_ij = 1 / #negatives(i)``: the vanilla switch (Sec. 4.3.3, "strength coefficients with 1")."""
    neg = (~positive_mask(labels)).float()
    return neg / neg.sum(dim=1, keepdim=True).clamp_min(1)


def _kl_rows(logits: torch.Tensor, weights: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(q || p) with ``p_ij ∝ w_ij exp(logit_ij)`` and q uniform on positives."""
    log_w = torch.where(weights > 0, weights.clamp_min(1e-30).log(), torch.full_like(weights, float("-inf")))
    log_p = torch.log_softmax(logits + log_w, dim=1)
    q = pos.float() / pos.float().sum(dim=1, keepdim=True)
    kl = torch.where(pos, q * (q.clamp_min(1e-30).log() - log_p), torch.zeros_like(q))
    return kl.sum(dim=1).mean()


def semantic_guided_loss(similarity: torch.Tensor, labels: torch.Tensor, coefficients: torch.Tensor,
                         logit_scale: torch.Tensor) -> torch.Tensor:
    """Eqs. (5)-(6): semantic content guided loss.

    ``similarity`` (B, B): ``S((vp)_i, t_j)`` with ``t_j`` the label text of clip j. Each negative
    j of row i is weighted by ``n_neg(i) * s_ij`` (the paper's ``(B-1) s``; with repeated labels the
    count of negatives replaces B-1, and same-label pairs are positives with weight 1). ``p`` is the
    row (vp2t) / column (t2vp) distribution, ``q`` uniform on the positives, and
    ``L_t = (KL(q, p^{vp2t}) + KL(q, p^{t2vp})) / 2``. With uniform coefficients every weight is 1
    and this is exactly :func:`vanilla_contrastive_loss`.
    """
    pos = positive_mask(labels)
    n_neg = (~pos).sum(dim=1, keepdim=True).to(similarity.dtype)
    w = torch.where(pos, torch.ones_like(similarity), n_neg * coefficients)
    logits = logit_scale * similarity
    # coefficients are row-normalised and pos symmetric, so row j of w weighs column j (t2vp)
    return 0.5 * (_kl_rows(logits, w, pos) + _kl_rows(logits.T, w, pos))


def vanilla_contrastive_loss(similarity: torch.Tensor, labels: torch.Tensor,
                             logit_scale: torch.Tensor) -> torch.Tensor:
    """ActionCLIP's KL contrastive loss: softmax over rows and columns against same-label q."""
    pos = positive_mask(labels)
    q = pos.float() / pos.float().sum(dim=1, keepdim=True)
    logits = logit_scale * similarity
    rows = F.kl_div(torch.log_softmax(logits, dim=1), q, reduction="sum") / len(q)
    cols = F.kl_div(torch.log_softmax(logits.T, dim=1), q, reduction="sum") / len(q)
    return 0.5 * (rows + cols)
