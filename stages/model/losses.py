"""Losses: refinement NT-Xent (eq. 3), semantic-guided loss (eqs. 5-6), vanilla contrastive, CE;
each with label smoothing and mixup's soft targets (``train.label_smoothing``, ``train.mixup_alpha``).

Mixup with a text-contrastive loss (the B x B similarity of clip i and the label text of clip j):
X-CLIP mixes clips and scores each against every class text with soft targets (lambda on the
first label, 1 - lambda on the second: timm's SoftTargetCrossEntropy). Over the batch's texts the
same holds: a mixed clip i matches text j with weight ``M_ij = lambda [y_j = y_i] + (1 - lambda)
[y_j = y_perm(i)]`` (:func:`match_weights`). Row i's target (clip to texts) is ``M_i`` normalised
over j, column j's (text to clips) ``M_:j`` normalised over i; without mixup ``M`` is the
same-label mask, the targets the papers' (uniform over the positives). Label smoothing then
moves ``eps`` of each target uniformly over the row's B entries (over the C classes for
cross-entropy). The semantic loss's positives are the pairs with ``M > 0``; its strength
coefficients mix the two labels' text discrepancies with the same lambda.
"""
from __future__ import annotations

from typing import Optional

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


def match_weights(labels: torch.Tensor, mix_index: Optional[torch.Tensor] = None,
                  mix_lam: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``M`` (B, B) float: how much clip i matches the label text of clip j. Without mixup the
    same-label mask; with it ``lam [y_j = y_i] + (1 - lam) [y_j = y_{mix_index[i]}]``."""
    same = positive_mask(labels).float()
    if mix_index is None:
        return same
    lam = mix_lam.float()
    return lam * same + (1 - lam) * (labels[mix_index][:, None] == labels[None, :]).float()


def _targets(match: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Each row of ``match`` as a distribution, then ``smoothing`` of it spread over the row."""
    q = match / match.sum(dim=1, keepdim=True)
    return q if not smoothing else (1 - smoothing) * q + smoothing / q.shape[1]


def strength_coefficients(text_features: torch.Tensor, labels: torch.Tensor,
                          match: Optional[torch.Tensor] = None, mix_index: Optional[torch.Tensor] = None,
                          mix_lam: Optional[torch.Tensor] = None, columns: bool = False) -> torch.Tensor:
    """``s_ij = norm_j(1 - cos(t_j, t_i))`` over the negatives j of row i (Sec. 3.3.2).

    ``text_features`` (B, E): the label-text feature of each clip. Returns (B, B), 0 on positives
    (``match > 0``; default: same label), each row's negatives summing to 1. Detached:
    coefficients weigh the loss, they are not trained. Without mixup the matrix is symmetric
    before normalisation, so row j of it also serves the t2vp direction. With mixup (``match``,
    ``mix_index``, ``mix_lam``) clip i's discrepancy is ``lam`` of its first label text's and
    ``1 - lam`` of its second's; ``columns=True`` gives the t2vp direction's (row j: text j against
    every clip, normalised over the clips).
    """
    t = F.normalize(text_features.detach(), dim=-1)
    d = (1 - t @ t.T).clamp_min(0)
    if mix_index is not None:
        lam = mix_lam.float()
        d = lam * d + (1 - lam) * d[mix_index]
    pos = positive_mask(labels) if match is None else match > 0
    if columns:
        d, pos = d.T, pos.T
    d = d * (~pos)
    return d / d.sum(dim=1, keepdim=True).clamp_min(1e-12)


def uniform_coefficients(labels: torch.Tensor) -> torch.Tensor:
    """``s_ij = 1 / #negatives(i)``: the vanilla switch (Sec. 4.3.3, "strength coefficients with 1")."""
    neg = (~positive_mask(labels)).float()
    return neg / neg.sum(dim=1, keepdim=True).clamp_min(1)


def _kl_rows(logits: torch.Tensor, weights: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(q || p) with ``p_ij ∝ w_ij exp(logit_ij)``."""
    # a zero weight excludes the pair, unless the target puts mass there (label smoothing)
    keep = (weights > 0) | (q > 0)
    log_w = torch.where(keep, weights.clamp_min(1e-30).log(), torch.full_like(weights, float("-inf")))
    log_p = torch.log_softmax(logits + log_w, dim=1)
    kl = torch.where(q > 0, q * (q.clamp_min(1e-30).log() - log_p), torch.zeros_like(q))
    return kl.sum(dim=1).mean()


def semantic_guided_loss(similarity: torch.Tensor, labels: torch.Tensor, coefficients: torch.Tensor,
                         logit_scale: torch.Tensor, match: Optional[torch.Tensor] = None, smoothing: float = 0.0,
                         column_coefficients: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Eqs. (5)-(6): semantic content guided loss.

    ``similarity`` (B, B): ``S((vp)_i, t_j)`` with ``t_j`` the label text of clip j. Each negative
    j of row i is weighted by ``n_neg(i) * s_ij`` (the paper's ``(B-1) s``; with repeated labels the
    count of negatives replaces B-1, and same-label pairs are positives with weight 1). ``p`` is the
    row (vp2t) / column (t2vp) distribution, ``q`` uniform on the positives, and
    ``L_t = (KL(q, p^{vp2t}) + KL(q, p^{t2vp})) / 2``. With uniform coefficients every weight is 1
    and this is exactly :func:`vanilla_contrastive_loss`. Mixup (``match``, and the t2vp
    direction's ``column_coefficients``) and label smoothing: the module docstring.
    """
    match = positive_mask(labels).float() if match is None else match
    cols = coefficients if column_coefficients is None else column_coefficients
    logits = logit_scale * similarity

    def weights(pos: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        n_neg = (~pos).sum(dim=1, keepdim=True).to(similarity.dtype)
        return torch.where(pos, torch.ones_like(similarity), n_neg * coef)

    # without mixup the coefficients are symmetric before normalisation, so row j of them weighs
    # column j (t2vp) too
    return 0.5 * (_kl_rows(logits, weights(match > 0, coefficients), _targets(match, smoothing))
                  + _kl_rows(logits.T, weights(match.T > 0, cols), _targets(match.T, smoothing)))


def vanilla_contrastive_loss(similarity: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor,
                             match: Optional[torch.Tensor] = None, smoothing: float = 0.0) -> torch.Tensor:
    """ActionCLIP's KL contrastive loss: softmax over rows and columns against same-label q
    (``match``: mixup's soft targets; ``smoothing``: label smoothing; the module docstring)."""
    match = positive_mask(labels).float() if match is None else match
    logits = logit_scale * similarity
    rows = F.kl_div(torch.log_softmax(logits, dim=1), _targets(match, smoothing), reduction="sum") / len(match)
    cols = F.kl_div(torch.log_softmax(logits.T, dim=1), _targets(match.T, smoothing), reduction="sum") / len(match)
    return 0.5 * (rows + cols)


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0,
                       mix_index: Optional[torch.Tensor] = None, mix_lam: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy against ``lam`` one-hot(y) + ``1 - lam`` one-hot(y of clip ``mix_index``),
    smoothed by ``smoothing`` over the C classes (timm's SoftTargetCrossEntropy with X-CLIP's
    mixup targets). Without mixup: ``F.cross_entropy(logits, labels, label_smoothing=smoothing)``."""
    if mix_index is None:
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    lam = mix_lam.float()
    logp = torch.log_softmax(logits, dim=-1)
    c = logits.shape[-1]
    target = lam * F.one_hot(labels, c).float() + (1 - lam) * F.one_hot(labels[mix_index], c).float()
    target = (1 - smoothing) * target + smoothing / c
    return -(target * logp).sum(dim=-1).mean()
