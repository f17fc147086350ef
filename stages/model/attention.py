"""Run a frozen CLIP ``nn.MultiheadAttention`` on any token grouping (space, time, cross)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    n, l, e = x.shape
    return x.view(n, l, h, e // h).transpose(1, 2)


def multihead_attention(
    attn: nn.MultiheadAttention,
    q_x: torch.Tensor,
    kv_x: Optional[torch.Tensor] = None,
    is_causal: bool = False,
    need_weights: bool = False,
):
    """Batch-first multi-head attention with the weights of ``attn``.

    The same frozen module serves S-Attn, T-Attn and the text transformer; we call its weights
    directly so the sequence axis is ours to choose and SDPA (flash/efficient kernels on cuda) is
    used whenever the attention map itself is not needed. Returns ``out`` or ``(out, probs)`` with
    ``probs`` of shape (N, heads, Lq, Lk).
    """
    e, h = attn.embed_dim, attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    if kv_x is None:
        q, k, v = F.linear(q_x, w, b).chunk(3, dim=-1)
    else:
        q = F.linear(q_x, w[:e], None if b is None else b[:e])
        k, v = F.linear(kv_x, w[e:], None if b is None else b[e:]).chunk(2, dim=-1)
    q, k, v = _heads(q, h), _heads(k, h), _heads(v, h)
    if need_weights:
        logits = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        if is_causal:
            lq, lk = logits.shape[-2:]
            causal = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
            logits = logits.masked_fill(~causal, float("-inf"))
        probs = logits.softmax(dim=-1)
        out = probs @ v
    else:
        probs = None
        out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    n, _, lq, dh = out.shape
    out = attn.out_proj(out.transpose(1, 2).reshape(n, lq, h * dh))
    return (out, probs) if need_weights else out
