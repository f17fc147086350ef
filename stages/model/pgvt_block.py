"""The PGVT block (PGVT Sec. 3.3, Fig. 1): T module (eq. 1), S module (eqs. 2-4), output (eq. 5).

Tokens are ``(B, T, N, D)``: pose ``P`` with ``T_h`` frames of ``N_P = J + 1`` tokens, video ``Z``
with ``T_l`` frames of ``N_Z = g*g + 1``. The frozen open_clip ``ResidualAttentionBlock`` is
borrowed, never owned: T-Attn and S-Attn are its attention (``ln_1`` + multi-head attention)
run over frames or over a frame's tokens, and eq. 5's MLP is its ``ln_2`` + MLP. AIM's block
(:mod:`.aim`) is made of the same functions.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .adapters import BottleneckAdapter
from .attention import multihead_attention
from .refining_adapter import RefiningAdapter


def temporal_attention(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """T-Attn: each token position attends over the ``T`` frames (``(B, T, N, D) -> same``)."""
    b, t, n, d = x.shape
    xt = x.transpose(1, 2).reshape(b * n, t, d)
    a = blk.ls_1(multihead_attention(blk.attn, blk.ln_1(xt)))
    return a.view(b, n, t, d).transpose(1, 2)


def spatial_attention(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """S-Attn: the tokens of each frame attend to each other (``(B, T, N, D) -> same``)."""
    b, t, n, d = x.shape
    a = blk.ls_1(multihead_attention(blk.attn, blk.ln_1(x.reshape(b * t, n, d))))
    return a.view(b, t, n, d)


def temporal_module(blk: nn.Module, p: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """Eq. 1, the T module (AIM's temporal adaptation): ``P^T = P + Adapter(T-Attn(P))``."""
    return p + adapter(temporal_attention(blk, p))


def block_output(blk: nn.Module, x: torch.Tensor, adapter: Optional[nn.Module], scale: float) -> torch.Tensor:
    """Eq. 5: ``x + MLP(LN(x)) + s * Adapter(LN(x))`` (the frozen MLP, a parallel scaled adapter)."""
    h = blk.ln_2(x)
    out = x + blk.ls_2(blk.mlp(h))
    if adapter is not None:
        out = out + scale * adapter(h)
    return out


class PGVTBlock(nn.Module):
    """The tunable parts of one PGVT block; :meth:`forward` runs them around a frozen ViT block.

    * T module (eq. 1, ``temporal=True``; Table 4 (4) removes it): T-Attn over the pose frames,
      T-adapter (AIM's: no inner skip, so a fresh block passes ``P`` through unchanged);
    * S module (eq. 4): ``P^S = P^T + P^R``, ``Z^S = Z + Z^R`` with ``(P^R, Z^R)`` the
      :class:`.refining_adapter.RefiningAdapter` of ``S-Attn(P^T)`` and ``S-Attn(Z)``;
    * output (eq. 5): frozen MLP plus an MLP adapter scaled by ``s_pose`` / ``s_video``.

    ``pose_clip=False`` (Table 5, Poseformer as the pose stream's pre-trained model,
    :mod:`.poseformer`): the CLIP block no longer runs on pose (no T module, no S-Attn, no MLP on
    ``P``: Poseformer has done the pose's spatial and temporal modelling); the R-Adapter takes the
    pose tokens themselves as ``x_P``, and since ``P^R`` already holds the skip ``x_P``,
    ``P^S = P^R = P [+ A_P(P)] + FC_up(...)``; the video side is unchanged.
    """

    def __init__(self, width: int, heads: int, pose_frames: int, video_frames: int, ratio: float = 0.25,
                 temporal: bool = True, refine_pose: bool = True, refine_video: bool = True,
                 bottleneck: bool = True, s_pose: float = 0.5, s_video: float = 0.5, pose_clip: bool = True):
        super().__init__()
        self.s_pose, self.s_video = float(s_pose), float(s_video)
        self.pose_clip = bool(pose_clip)
        self.t_adapter = BottleneckAdapter(width, ratio, skip=False) if temporal and pose_clip else None
        self.r_adapter = RefiningAdapter(width, heads, pose_frames, video_frames, ratio,
                                         refine_pose, refine_video, bottleneck)
        self.pose_mlp_adapter = BottleneckAdapter(width, ratio, skip=False) if pose_clip else None
        self.video_mlp_adapter = BottleneckAdapter(width, ratio, skip=False)

    def forward(self, blk: nn.Module, p: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.pose_clip:  # Poseformer's tokens: only the R-Adapter touches them
            p_r, z_r = self.r_adapter(p, spatial_attention(blk, z))
            return p_r, block_output(blk, z + z_r, self.video_mlp_adapter, self.s_video)
        if self.t_adapter is not None:
            p = temporal_module(blk, p, self.t_adapter)                           # eq. 1
        p_r, z_r = self.r_adapter(spatial_attention(blk, p), spatial_attention(blk, z))  # eqs. 2-3
        p, z = p + p_r, z + z_r                                                    # eq. 4
        return (block_output(blk, p, self.pose_mlp_adapter, self.s_pose),          # eq. 5
                block_output(blk, z, self.video_mlp_adapter, self.s_video))
