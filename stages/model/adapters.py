"""Bottleneck adapters (AIM-style), the only trainable parts inside the frozen CLIP blocks."""
from __future__ import annotations

import torch
from torch import nn


class BottleneckAdapter(nn.Module):
    """``x -> [x +] fc2(GELU(fc1(x)))`` with ``fc1: D -> D*ratio`` and ``fc2: D*ratio -> D``.

    PeVL Sec. 3.1 / supp. Sec. 2.1 ("two fully-connected layers and an activation layer, with a
    bottleneck structure", after AIM [59]). ``fc2`` is zero-initialised so a fresh adapter is the
    identity (``skip=True``) or zero (``skip=False``): a fresh PeVL reproduces plain CLIP.
    """

    def __init__(self, dim: int, ratio: float = 0.25, skip: bool = True):
        super().__init__()
        hidden = max(1, int(round(dim * ratio)))
        self.skip = skip
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(self.act(self.fc1(x)))
        return x + y if self.skip else y


def adapter_stack(dim: int, num_blocks: int, ratio: float, skip: bool) -> nn.ModuleList:
    """One :class:`BottleneckAdapter` per frozen block (what each encoder holds per adapter site)."""
    return nn.ModuleList(BottleneckAdapter(dim, ratio, skip=skip) for _ in range(num_blocks))


def adapted_block(blk: nn.Module, x: torch.Tensor, attn_adapter=None, mlp_adapter=None,
                  mlp_scale: float = 0.5, is_causal: bool = False) -> torch.Tensor:
    """One frozen open_clip ``ResidualAttentionBlock`` with AIM's two adapters.

    ``x = x + A_s(Attn(LN1(x)))``; ``x = x + MLP(LN2(x)) + s * A_mlp(LN2(x))`` (AIM eqs.; PGVT eq. 5).
    With zero-initialised adapters this is exactly the frozen block.
    """
    from .attention import multihead_attention

    a = blk.ls_1(multihead_attention(blk.attn, blk.ln_1(x), is_causal=is_causal))
    if attn_adapter is not None:
        a = attn_adapter(a)
    x = x + a
    h = blk.ln_2(x)
    out = x + blk.ls_2(blk.mlp(h))
    if mlp_adapter is not None:
        out = out + mlp_scale * mlp_adapter(h)
    return out
