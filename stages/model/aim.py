"""AIM (Yang et al., ICLR 2023, "Adapting Image Models for Efficient Video Action Recognition"):
the frozen-ViT baseline of PGVT Table 4 (1)-(3), on video or on pose tokens.

As AIM's ``ViT_CLIP`` builds it (taoyang1122/adapt-image-models): a trainable temporal position
embedding (zero-initialised) is added to the frame tokens before the frozen ``ln_pre``; each frozen
block runs

    x = x + T_Adapter(T-Attn(LN1(x)))            temporal adaptation (= PGVT eq. 1)
    x = x + S_Adapter(S-Attn(LN1(x)))            spatial adaptation (adapter with inner skip)
    x = x + MLP(LN2(x)) + s * MLP_Adapter(LN2(x))   joint adaptation (= PGVT eq. 5)

reusing the frozen attention over frames for T-Attn; adapters are bottlenecks of ratio 0.25 whose
last layer starts at zero (T and MLP adapters without inner skip), ``s`` = 0.5 (AIM's Diving48
setting). The clip feature is the mean over frames of the frame CLS tokens after a trainable
``ln_post`` (AIM's I3D head averages them); the classifier lives in :class:`.pgvt.PGVT`.
"""
from __future__ import annotations

import torch
from torch import nn

from .adapters import BottleneckAdapter
from .pgvt_block import block_output, spatial_attention, temporal_module


class VideoEmbedding(nn.Module):
    """``(B, T, 3, S, S)`` frames -> ``(B, T, 1 + g*g, D)`` tokens: the frozen patch embedding, CLIP's
    ``[class]`` token and position embedding, a trainable temporal embedding per frame (zeros at
    start, so a fresh model sees CLIP's tokens), then the frozen ``ln_pre``. The ViT is borrowed."""

    def __init__(self, visual: nn.Module, num_frames: int):
        super().__init__()
        self._visual = [visual]  # a list: not a registered submodule (the model owns the ViT)
        self.num_frames = int(num_frames)
        self.temporal_pos = nn.Parameter(torch.zeros(num_frames, visual.conv1.out_channels))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        if t > self.num_frames:
            raise ValueError(f"{t} video frames but the temporal embedding has {self.num_frames}")
        vis = self._visual[0]
        x = vis.conv1(frames.flatten(0, 1)).flatten(2).transpose(1, 2)  # (BT, g*g, D)
        cls = vis.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + vis.positional_embedding.to(x.dtype)
        x = x.view(b, t, *x.shape[1:]) + self.temporal_pos[:t, None].to(x.dtype)
        return vis.ln_pre(x)


class AIMAdapters(nn.Module):
    """AIM's three adapters of one block: ``t`` (after T-Attn; None without temporal adaptation),
    ``s`` (after S-Attn, inner skip), ``mlp`` (parallel to the MLP)."""

    def __init__(self, width: int, ratio: float = 0.25, temporal: bool = True):
        super().__init__()
        self.t = BottleneckAdapter(width, ratio, skip=False) if temporal else None
        self.s = BottleneckAdapter(width, ratio, skip=True)
        self.mlp = BottleneckAdapter(width, ratio, skip=False)


def aim_block(blk: nn.Module, x: torch.Tensor, adapters: AIMAdapters, scale: float) -> torch.Tensor:
    """One frozen ViT block with AIM's temporal, spatial and joint adaptation; ``x`` is ``(B, T, N, D)``."""
    if adapters.t is not None:
        x = temporal_module(blk, x, adapters.t)
    x = x + adapters.s(spatial_attention(blk, x))
    return block_output(blk, x, adapters.mlp, scale)


class AIMStream(nn.Module):
    """AIM's backbone over one modality's tokens: every frozen block of the ViT with its
    :class:`AIMAdapters`. ``(B, T, N, D) -> (B, T, N, D)`` (before ``ln_post``)."""

    def __init__(self, visual: nn.Module, ratio: float = 0.25, scale: float = 0.5, temporal: bool = True):
        super().__init__()
        self._visual = [visual]
        width = visual.conv1.out_channels
        self.scale = float(scale)
        self.layers = nn.ModuleList(AIMAdapters(width, ratio, temporal)
                                    for _ in range(len(visual.transformer.resblocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk, adapters in zip(self._visual[0].transformer.resblocks, self.layers):
            x = aim_block(blk, x, adapters, self.scale)
        return x
