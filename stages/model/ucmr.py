"""UCMR block (Sec. 3.2): P2V (eq. 1), V2P (eq. 2) and the refinement supervision (eq. 3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def weighted_mask_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            mask: torch.Tensor) -> torch.Tensor:
    """Eq. (1): ``alpha = exp(QK^T * M) / (sum_j exp(QK^T * M) + I)``, then ``alpha @ V``.

    ``q`` (..., Nq, d), ``k``/``v`` (..., Nk, d), ``mask`` (..., Nq, Nk) non-negative, broadcastable.
    The logits (scaled by 1/sqrt(d) as in any ViT attention) are multiplied by ``M``; pairs with
    ``M = 0`` take no part. ``I = 1`` on a row whose mask is all zero: that row's weights are then
    all 0 (no division by zero) and the token receives nothing.
    """
    valid = mask > 0
    logits = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5) * mask
    logits = logits.masked_fill(~valid, float("-inf"))
    row_max = logits.amax(dim=-1, keepdim=True)
    empty = ~valid.any(dim=-1, keepdim=True)  # the indicator I
    row_max = torch.where(empty, torch.zeros_like(row_max), row_max).detach()
    e = torch.exp(logits - row_max) * valid
    # shifting numerator and denominator by exp(-row_max) keeps eq. (1) exact: I only hits empty
    # rows, where row_max is 0.
    alpha = e / (e.sum(dim=-1, keepdim=True) + empty.to(e.dtype))
    return alpha @ v


def weighted_pose_mask(joint_weights: torch.Tensor, mask_grid: torch.Tensor,
                       video_pose_index: torch.Tensor) -> torch.Tensor:
    """The Weighted Mask Module (Fig. 3a): one weight per patch of each video frame.

    ``joint_weights`` (B, T, V) from the pose encoder's last layer, ``mask_grid`` (B, T_v, V, g, g)
    joint-to-patch incidence weighted by detection score, ``video_pose_index`` (B, T_v).
    ``m[p] = sum_j w_j * grid[j, p]``, normalised per frame by its maximum (so the strongest patch
    keeps its logits and patches without joints are exactly 0). Returns (B, T_v, g*g).
    """
    b, tv, v = mask_grid.shape[:3]
    w = torch.gather(joint_weights, 1, video_pose_index[..., None].expand(b, tv, v))  # (B,Tv,V)
    m = torch.einsum("btv,btvp->btp", w, mask_grid.flatten(3))
    peak = m.amax(dim=-1, keepdim=True)
    return torch.where(peak > 0, m / peak.clamp_min(1e-12), torch.zeros_like(m))


class _Projections(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        # zero output: a fresh UCMR returns its inputs, so refinement starts from the encoders
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        *lead, n, e = x.shape
        return x.view(*lead, n, self.heads, e // self.heads).transpose(-3, -2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        *lead, h, n, d = x.shape
        return self.out(x.transpose(-3, -2).reshape(*lead, n, h * d))


class PoseGuidedVisualAttention(nn.Module):
    """P2V (Sec. 3.2.1): weighted-mask self-attention among the tokens of one video frame.

    Keys are the patches that hold a joint, weighted by the pose mask ``m``; queries are those
    patches and the frame's CLS token (so the pooled frame feature is refined too). Patches without
    a joint neither give nor receive (their row is empty: eq. 1's indicator) and pass unchanged.
    Residual with a zero-initialised output projection.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.proj = _Projections(width, heads)

    def forward(self, tokens: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, T_v, 1 + N, D), patch_mask (B, T_v, N) -> refined tokens."""
        ones = torch.ones_like(patch_mask[..., :1])
        key_w = torch.cat([torch.zeros_like(ones), patch_mask], dim=-1)  # CLS is no key
        query_on = torch.cat([ones, (patch_mask > 0).to(patch_mask.dtype)], dim=-1)
        m = (query_on[..., :, None] * key_w[..., None, :])[..., None, :, :]  # (B,Tv,1,N+1,N+1)
        x = self.norm(tokens)
        p = self.proj
        out = weighted_mask_attention(p.split(p.q(x)), p.split(p.k(x)), p.split(p.v(x)), m)
        return tokens + p.merge(out)


class VisualEnrichedPoseAttention(nn.Module):
    """V2P (Sec. 3.2.2), eq. (2): pose tokens of the frames that coincide with video frames, plus a
    learnable background token, attend to that frame's video patch tokens (softmax over the N_v
    patches). The refined joint tokens replace their originals in the T-frame pose sequence.

    Note: with eq. (2)'s softmax over video tokens, the background query does not change the joint
    queries' outputs within one block; it is kept as the paper describes (supp. Fig. 9 uses it for
    the patch grouping visualisation) and its output is discarded.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.background = nn.Parameter(width ** -0.5 * torch.randn(width))
        self.proj = _Projections(width, heads)

    def forward(self, pose_tokens: torch.Tensor, video_tokens: torch.Tensor,
                video_pose_index: torch.Tensor) -> torch.Tensor:
        b, t, v, d = pose_tokens.shape
        tv = video_tokens.shape[1]
        idx = video_pose_index[:, :, None, None].expand(b, tv, v, d)
        sel = torch.gather(pose_tokens, 1, idx)  # (B, Tv, V, D)
        q_in = torch.cat([sel, self.background.expand(b, tv, 1, d)], dim=2)
        p = self.proj
        q = p.split(p.q(self.norm_q(q_in)))
        kv = self.norm_kv(video_tokens[:, :, 1:])  # patches only: "group all pixels"
        out = F.scaled_dot_product_attention(q, p.split(p.k(kv)), p.split(p.v(kv)))
        refined = sel + p.merge(out)[:, :, :v]
        return pose_tokens.scatter(1, idx, refined)


class UCMRBlock(nn.Module):
    """One Unsymmetric Cross-Modality Refinement block: P2V on video, V2P on pose, in parallel
    (each reads the block's inputs), either switchable for Table 5."""

    def __init__(self, width: int, heads: int, p2v: bool = True, v2p: bool = True):
        super().__init__()
        self.p2v = PoseGuidedVisualAttention(width, heads) if p2v else None
        self.v2p = VisualEnrichedPoseAttention(width, heads) if v2p else None

    def forward(self, video_tokens, pose_tokens, patch_mask, video_pose_index):
        new_v = video_tokens if self.p2v is None else self.p2v(video_tokens, patch_mask)
        new_p = pose_tokens if self.v2p is None else self.v2p(pose_tokens, video_tokens, video_pose_index)
        return new_v, new_p
