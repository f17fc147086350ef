"""Video encoder g_v: the frozen CLIP ViT, space-only, with two adapters per block."""
from __future__ import annotations

import torch
from torch import nn

from .adapters import adapted_block, adapter_stack


class VideoEncoder(nn.Module):
    """Space-only video encoder (PeVL supp. Sec. 2.1, Fig. 2a).

    Each of the ``T_v`` frames goes through the frozen ViT on its own (S-Attn only); per block a
    spatial adapter follows attention and an MLP adapter runs parallel to the MLP (scale
    ``mlp_scale``). Tokens are returned before ``ln_post`` so UCMR can refine them; :meth:`pool`
    gives the frame features and ``z_v`` = mean over frames of the frame CLS tokens.

    The frozen ViT is shared with the pose encoder and owned by :class:`PeVL`; it is passed in and
    not registered here so it is counted once.
    """

    def __init__(self, visual: nn.Module, adapters: bool = True, ratio: float = 0.25,
                 mlp_scale: float = 0.5):
        super().__init__()
        self._visual = [visual]  # a list: not a registered submodule
        width = visual.conv1.out_channels
        n = len(visual.transformer.resblocks)
        self.mlp_scale = mlp_scale
        self.attn_adapters = adapter_stack(width, n, ratio, skip=True) if adapters else None
        self.mlp_adapters = adapter_stack(width, n, ratio, skip=False) if adapters else None

    @property
    def visual(self) -> nn.Module:
        return self._visual[0]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T_v, 3, S, S) CLIP-normalised frames -> (B, T_v, 1 + g*g, D) tokens (CLS first)."""
        b, t = frames.shape[:2]
        x = self.visual._embeds(frames.flatten(0, 1))
        for i, blk in enumerate(self.visual.transformer.resblocks):
            x = adapted_block(
                blk, x,
                None if self.attn_adapters is None else self.attn_adapters[i],
                None if self.mlp_adapters is None else self.mlp_adapters[i],
                self.mlp_scale,
            )
        return x.view(b, t, *x.shape[1:])

    def frame_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T_v, N, D) -> (B, T_v, D) frame CLS tokens after the frozen ``ln_post``."""
        return self.visual.ln_post(tokens[:, :, 0])
