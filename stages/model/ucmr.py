"""UCMR block (Sec. 3.2): P2V as a block inserted into the ViT (eq. 1) and V2P with its background
token (eq. 2). The refinement supervision (eq. 3) is :func:`stages.model.losses.nt_xent`.

Precision: the weighted pose mask is computed in float32 with autocast off (a float16 maximum of
small weights underflows); the attention itself runs in the autocast dtype through
``scaled_dot_product_attention`` on 4-D tensors (batch dims flattened), which is what lets the
fused kernels be selected on a GPU.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .adapters import BottleneckAdapter
from .precision import float32_region

#: V2P readings of the background token (docs/model.md, "V2P's background token").
BACKGROUND_READINGS = ("grouping", "kept")
#: how P2V starts: as the identity (gated residual branches) or as block 12 applied once more
P2V_STARTS = ("identity", "block")


def weighted_pose_mask(joint_weights: torch.Tensor, mask_grid: torch.Tensor,
                       video_pose_index: torch.Tensor) -> torch.Tensor:
    """The Weighted Mask Module (Fig. 3a): one weight per patch of each video frame, float32.

    ``joint_weights`` (B, T, V) from the pose encoder's last layer, ``mask_grid`` (B, T_v, V, g, g)
    joint-to-patch incidence weighted by detection score, ``video_pose_index`` (B, T_v).
    ``m[p] = sum_j w_j * grid[j, p]``, normalised per frame by its maximum (so the strongest patch
    keeps its logits and patches without joints are exactly 0). Returns (B, T_v, g*g) float32,
    computed with autocast off: in float16 a frame's maximum can underflow and the division would
    give NaN gradients even where the result is masked.
    """
    with float32_region(mask_grid):
        b, tv, v = mask_grid.shape[:3]
        w = torch.gather(joint_weights.float(), 1, video_pose_index[..., None].expand(b, tv, v))
        m = torch.einsum("btv,btvp->btp", w, mask_grid.float().flatten(3))
        peak = m.amax(dim=-1, keepdim=True)
        has = peak > 0
        # a safe denominator: the branch not taken must not produce inf/NaN gradients either
        return torch.where(has, m / torch.where(has, peak, torch.ones_like(peak)), torch.zeros_like(m))


def pose_masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_weight: torch.Tensor,
                          query_on: torch.Tensor, need_weights: bool = False):
    """Eq. (1): ``alpha = exp(QK^T * M) / (sum_j exp(QK^T * M) + I)``, then ``alpha @ V``.

    ``q``, ``k``, ``v`` (N, H, L, d); ``key_weight`` (N, L) the pose weight ``m_j >= 0`` of each
    token as a key; ``query_on`` (N, L) bool, the tokens that take part as queries. ``M_ij = g_i m_j``
    with ``g_i`` = ``query_on``; the logits (scaled by 1/sqrt(d) as in any ViT attention) are
    multiplied by ``M``, which is the same as scaling each key by its ``m_j`` (done here, so SDPA
    runs). Pairs with ``M = 0`` take no part; a row with no pair (a token off the pose, or a frame
    without any pose patch) gets all-zero weights (the indicator ``I``: no division by zero) and
    receives nothing. Returns ``out`` (N, H, L, d), rows without a pair exactly 0, and with
    ``need_weights`` also ``alpha`` (N, H, L, L) computed explicitly (for pictures, not training).
    """
    kw = key_weight.to(k.dtype)
    valid = key_weight > 0
    has_key = valid.any(dim=-1, keepdim=True)  # (N, 1)
    # a frame without any pose patch: let SDPA see every key (no fully masked row, so no NaN) and
    # zero its output below
    allowed = (valid | ~has_key)[:, None, None, :]
    ks = k * kw[:, None, :, None]
    row_on = (query_on & has_key)[:, None, :, None]
    if need_weights:
        logits = (q @ ks.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        alpha = logits.masked_fill(~allowed, float("-inf")).softmax(dim=-1) * row_on
        return alpha @ v, alpha
    out = F.scaled_dot_product_attention(q, ks, v, attn_mask=allowed)
    return out * row_on.to(out.dtype)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    n, length, e = x.shape
    return x.view(n, length, heads, e // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    n, h, length, d = x.shape
    return x.transpose(1, 2).reshape(n, length, h * d)


class P2VBlock(nn.Module):
    """P2V (Sec. 3.2.1) as "a plug-in module that can be inserted into the ViT architecture": a ViT
    block whose attention is the weighted-mask attention of eq. (1), after the video encoder's
    blocks, returning refined video tokens ``z_v^R``.

    Pre-norm residuals with the adapters the video encoder's blocks have (AIM's layout, PGVT eq. 5)::

        x = x + A_s(Attn_eq1(LN_1(x)))          # pose-masked attention, rows without pose: 0
        x = x + MLP(LN_2(x)) + s * A_mlp(LN_2(x))

    ``LN_1`` and the attention's projections (``Q_v``, ``K_v``, ``V_v`` and the output) are this
    block's own trainable layers, initialised as a copy of the last ViT block's (so the masked
    attention starts as CLIP's attention restricted to the pose patches); ``LN_2`` and the MLP are
    the last ViT block's frozen ones, shared; the two adapters are new (zero-initialised ``fc2``).
    Queries are the frame's CLS token and its patches that hold a joint; keys are those patches,
    weighted by the pose mask. Every token goes through the MLP.

    ``start='identity'`` puts each residual branch behind a learnable ``tanh`` gate initialised to
    0 (Flamingo's gated cross-attention): at step 0 the block returns its input, so the refined
    video feature starts as CLIP's (V2P starts as an identity too, through its zero output
    projection); the gates get gradients at once and open as training needs. ``start='block'``:
    no gates, the block applies the copied attention and the frozen MLP from step 0.
    """

    def __init__(self, vit_block: nn.Module, ratio: float = 0.25, mlp_scale: float = 0.5, start: str = "identity"):
        super().__init__()
        if start not in P2V_STARTS:
            raise ValueError(f"ucmr.p2v_start must be one of {P2V_STARTS}, got {start!r}")
        attn = vit_block.attn
        width, self.heads = attn.embed_dim, attn.num_heads
        self._vit_block = [vit_block]  # frozen, owned by the CLIP model: not registered here
        self.mlp_scale = mlp_scale
        self.norm = copy.deepcopy(vit_block.ln_1)
        self.qkv = nn.Linear(width, 3 * width, bias=attn.in_proj_bias is not None)
        self.out = nn.Linear(width, width, bias=attn.out_proj.bias is not None)
        with torch.no_grad():
            self.qkv.weight.copy_(attn.in_proj_weight)
            self.out.weight.copy_(attn.out_proj.weight)
            if attn.in_proj_bias is not None:
                self.qkv.bias.copy_(attn.in_proj_bias)
            if attn.out_proj.bias is not None:
                self.out.bias.copy_(attn.out_proj.bias)
        for p in self.parameters():
            p.requires_grad_(True)
        self.attn_adapter = BottleneckAdapter(width, ratio, skip=True)
        self.mlp_adapter = BottleneckAdapter(width, ratio, skip=False)
        self.start = start
        if start == "identity":
            self.attn_gate = nn.Parameter(torch.zeros(()))
            self.mlp_gate = nn.Parameter(torch.zeros(()))
        else:
            self.attn_gate = self.mlp_gate = None
        self.recorder: Optional[dict] = None  # set by PeVL.record() for the explain pictures

    def forward(self, tokens: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, T_v, 1 + N, D) with the CLS first, patch_mask (B, T_v, N) -> refined tokens."""
        b, tv, n, d = tokens.shape
        blk = self._vit_block[0]
        x = tokens.reshape(b * tv, n, d)
        pm = patch_mask.reshape(b * tv, n - 1)
        key_w = torch.cat([torch.zeros_like(pm[:, :1]), pm], dim=1)  # the CLS token is no key
        query_on = torch.cat([torch.ones_like(pm[:, :1], dtype=torch.bool), pm > 0], dim=1)
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(self.norm(x)).chunk(3, dim=-1))
        if self.recorder is not None:
            o, alpha = pose_masked_attention(q, k, v, key_w, query_on, need_weights=True)
            self.recorder["p2v_attention"] = alpha.mean(1)[:, 0, 1:].reshape(b, tv, n - 1).detach()
        else:
            o = pose_masked_attention(q, k, v, key_w, query_on)
        row_on = (query_on & (key_w > 0).any(dim=1, keepdim=True))[..., None].to(x.dtype)
        a = blk.ls_1(self.attn_adapter(self.out(_merge_heads(o))) * row_on)  # tokens off the pose get nothing
        x = x + (a if self.attn_gate is None else torch.tanh(self.attn_gate).to(a.dtype) * a)
        h = blk.ln_2(x)
        m = blk.ls_2(blk.mlp(h)) + self.mlp_scale * self.mlp_adapter(h)
        x = x + (m if self.mlp_gate is None else torch.tanh(self.mlp_gate).to(m.dtype) * m)
        return x.view(b, tv, n, d)


def grouping_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """V2P's grouping reading of eq. (2) (GroupViT [55], supp. Fig. 9): every patch distributes its
    attention over the grouping tokens (softmax over the queries: the pose tokens and the
    background token compete for it), then each token's weights are normalised over the patches
    (eq. 2's denominator) and pool their values.

    ``q`` (N, H, Lq, d), ``k``/``v`` (N, H, Lk, d) -> (out (N, H, Lq, d), assignment (N, H, Lq, Lk)),
    computed in float32 with autocast off (small: Lq is a frame's pose tokens plus one).
    """
    with float32_region(q):
        logits = (q.float() @ k.float().transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        assign = logits.softmax(dim=-2)  # over grouping tokens, per patch
        alpha = assign / assign.sum(dim=-1, keepdim=True)  # over patches, per token (> 0: softmax)
        return alpha @ v.float(), assign


class V2PAttention(nn.Module):
    """V2P (Sec. 3.2.2), eq. (2): the pose tokens of each frame that coincides with a video frame
    (its CLS token and joints), plus one learnable background token, attend (cross attention) to
    that frame's video patch tokens; the refined tokens replace their originals in the T-frame pose
    sequence (``z_p^R``). Residual, zero-initialised output projection (a fresh V2P changes nothing).

    ``background`` chooses the reading of the background token (docs/model.md):

    * ``'grouping'`` (default): "we group all pixels that belong to the corresponding pose tokens,
      including body joint tokens and a background token" -- each patch's attention is normalised
      over the ``N_p + 1`` grouping tokens (GroupViT, which Sec. 3.2.2 cites; supp. Fig. 9 assigns
      every patch to the token that attends to it most), then over the patches as in eq. (2). The
      background token takes the patches no joint claims, so it changes what every joint receives.
    * ``'kept'``: eq. (2) literally (softmax over the patches, SDPA); each query is independent, so
      the background token's own refined output is kept in the pose representation: it is
      returned and the frame's pose feature pools it with the frame's summary tokens.
    """

    def __init__(self, width: int, heads: int, background: str = "grouping"):
        super().__init__()
        if background not in BACKGROUND_READINGS:
            raise ValueError(f"ucmr.background must be one of {BACKGROUND_READINGS}, got {background!r}")
        self.heads, self.background_reading = heads, background
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.background = nn.Parameter(width ** -0.5 * torch.randn(width))
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.recorder: Optional[dict] = None

    def forward(self, pose_tokens: torch.Tensor, video_tokens: torch.Tensor,
                video_pose_index: torch.Tensor):
        """pose (B, T, N, D), video (B, T_v, 1 + N_v, D), index (B, T_v) -> (pose tokens with the T_v
        frames refined, the refined background token (B, T_v, D) in the ``'kept'`` reading else None)."""
        b, t, n, d = pose_tokens.shape
        tv, nv = video_tokens.shape[1], video_tokens.shape[2] - 1
        idx = video_pose_index[:, :, None, None].expand(b, tv, n, d)
        sel = torch.gather(pose_tokens, 1, idx)  # (B, Tv, N, D)
        bg = self.background.to(sel.dtype).expand(b, tv, 1, d)
        q_in = torch.cat([sel, bg], dim=2).reshape(b * tv, n + 1, d)
        q = _split_heads(self.q(self.norm_q(q_in)), self.heads)
        kv = self.kv(self.norm_kv(video_tokens[:, :, 1:].reshape(b * tv, nv, d)))  # patches only
        k, v = (_split_heads(x, self.heads) for x in kv.chunk(2, dim=-1))
        if self.background_reading == "grouping":
            o, weights = grouping_attention(q, k, v)
            o = o.to(q.dtype)
        elif self.recorder is not None:
            weights = ((q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)).softmax(dim=-1)
            o = weights @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v)
        if self.recorder is not None:  # (B, T_v, N + 1, N_v): what each token takes from each patch
            self.recorder["v2p_attention"] = weights.float().mean(1).reshape(b, tv, n + 1, nv).detach()
        o = self.out(_merge_heads(o)).view(b, tv, n + 1, d)
        refined = sel + o[:, :, :n]
        background = (bg[:, :, 0] + o[:, :, n]) if self.background_reading == "kept" else None
        return pose_tokens.scatter(1, idx, refined), background


class UCMRBlock(nn.Module):
    """One Unsymmetric Cross-Modality Refinement block: P2V on video and V2P on pose, in parallel
    (each reads the block's inputs), either switchable for Table 5."""

    def __init__(self, vit_block: nn.Module, p2v: bool = True, v2p: bool = True, background: str = "grouping",
                 ratio: float = 0.25, mlp_scale: float = 0.5, p2v_start: str = "identity"):
        super().__init__()
        width, heads = vit_block.attn.embed_dim, vit_block.attn.num_heads
        self.p2v = P2VBlock(vit_block, ratio, mlp_scale, p2v_start) if p2v else None
        self.v2p = V2PAttention(width, heads, background) if v2p else None

    def forward(self, video_tokens, pose_tokens, patch_mask, video_pose_index):
        """-> (video tokens, pose tokens, kept background token or None)."""
        new_v = video_tokens if self.p2v is None else self.p2v(video_tokens, patch_mask)
        if self.v2p is None:
            return new_v, pose_tokens, None
        new_p, background = self.v2p(pose_tokens, video_tokens, video_pose_index)
        return new_v, new_p, background
