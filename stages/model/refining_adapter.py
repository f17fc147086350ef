"""PGVT's Refining Adapter (R-Adapter, PGVT Sec. 3.3, eqs. 2-3): pose and video refine each other.

Inputs are the outputs of the frozen S-Attn, ``x_P = S-Attn(P^T)`` (``(B, T_h, N_P, D)``) and
``x_Z = S-Attn(Z)`` (``(B, T_l, N_Z, D)``). Two streams, each switchable (Table 4 (6i), (6ii)):

* left, "refined pose": ``FC_down`` brings the pose sequence to the video's ``T_l`` frames, the
  pose tokens of a frame attend to that frame's video tokens, ``W_P^O``, then ``FC_up`` back to
  ``T_h`` frames;
* right, "refined video": the video tokens of a frame attend to that frame's (``FC_down``-projected)
  pose tokens, then ``W_Z^O``.

Every token takes part, the per-frame CLS tokens of both modalities included (the R-Adapter
outputs ``T_h N_P`` pose and ``T_l N_Z`` video tokens). Beside the cross attention each modality
has a bottleneck adapter in parallel with its skip connection (``bottleneck=True``), so with both
streams off the R-Adapter is exactly Table 4 (5)'s "two parallel Adapters"; docs/model.md derives
this from the paper's parameter counts (75M = 18M + two streams of four D x D matrices per block).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .adapters import BottleneckAdapter
from .attention import multihead_attention


class TemporalProjection(nn.Module):
    """``FC_down`` (``T_h -> T_l``) and ``FC_up`` (``T_l -> T_h``): one linear layer over the frame
    axis, shared by every token and channel, weight ``(t_out, t_in)``, no bias (a bias would add the
    same constant to every channel of a frame).

    Initialised as the temporal resampling it replaces: going down (``t_out <= t_in``) output frame
    ``o`` is the mean of the input frames ``i`` with ``floor(i * t_out / t_in) == o`` (its segment:
    3 pose frames per video frame at 48 -> 16); going up, output frame ``o`` copies input frame
    ``floor(o * t_in / t_out)``.
    """

    def __init__(self, t_in: int, t_out: int):
        super().__init__()
        if t_in < 1 or t_out < 1:
            raise ValueError(f"frame counts must be positive, got {t_in} -> {t_out}")
        self.t_in, self.t_out = int(t_in), int(t_out)
        w = torch.zeros(t_out, t_in)
        if t_out <= t_in:  # down: segment means
            seg = torch.arange(t_in) * t_out // t_in
            w[seg, torch.arange(t_in)] = 1.0
            w = w / w.sum(dim=1, keepdim=True)
        else:  # up: copy the segment's frame
            seg = torch.arange(t_out) * t_in // t_out
            w[torch.arange(t_out), seg] = 1.0
        self.weight = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, t_in, N, D) -> (B, t_out, N, D)``."""
        if x.shape[1] != self.t_in:
            raise ValueError(f"expected {self.t_in} frames on axis 1, got {x.shape[1]} (shape {tuple(x.shape)})")
        return torch.einsum("ot,btnd->bond", self.weight.to(x.dtype), x)


class CrossModalAttention(nn.Module):
    """``W^O softmax(Q K^T / sqrt(d_k)) V`` with queries from one modality and keys and values from
    the other, frame by frame (the S module is spatial; the two sequences share their frames).

    The projections are a trainable ``nn.MultiheadAttention`` (``in_proj`` rows ``[0, D)``,
    ``[D, 2D)``, ``[2D, 3D)`` = ``W^Q, W^K, W^V``; ``out_proj`` = ``W^O``) run by
    :func:`.attention.multihead_attention` (SDPA). For the left stream they are the paper's
    ``W_P^Q, W_Z^K, W_Z^V, W_P^O``, for the right stream ``W_Z^Q, W_P^K, W_P^V, W_Z^O`` (eq. 2 names
    them per modality; each is used by one stream only). ``heads`` heads of ``d_k = D / heads``.
    ``W^O`` starts at zero, so a fresh R-Adapter adds nothing and a fresh PGVT's video stream is
    plain CLIP.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``queries (B, T, Nq, D)``, ``context (B, T, Nk, D)`` -> ``(B, T, Nq, D)``."""
        b, t, nq, d = queries.shape
        if context.shape[:2] != (b, t) or context.shape[-1] != d:
            raise ValueError(f"queries {tuple(queries.shape)} and context {tuple(context.shape)} must share "
                             "batch, frames and width")
        out = multihead_attention(self.attn, queries.reshape(b * t, nq, d), context.flatten(0, 1))
        return out.view(b, t, nq, d)


class RefiningAdapter(nn.Module):
    """Eq. 3 (with eq. 2's projections inside :class:`CrossModalAttention`)::

        P^R = x_P [+ A_P(x_P)] + FC_up(W_P^O softmax(Q_P K_Z^T / sqrt(d_k)) V_Z)    (refine_pose)
        Z^R = x_Z [+ A_Z(x_Z)] + W_Z^O softmax(Q_Z K_P^T / sqrt(d_k)) V_P           (refine_video)

    with ``Q_P, K_P, V_P`` from ``FC_down(x_P)`` and ``Q_Z, K_Z, V_Z`` from ``x_Z``; ``A_P, A_Z`` the
    bottleneck adapters (ratio ``ratio``, zero-initialised last layer) when ``bottleneck``.
    ``refine_pose=False`` is Table 4 (6i) "w/o refined pose", ``refine_video=False`` (6ii); both
    off is (5) "R-Adapter -> 2 Adapters". Parts a switch turns off are not built (no parameters,
    no FLOPs).
    """

    def __init__(self, width: int, heads: int, pose_frames: int, video_frames: int, ratio: float = 0.25,
                 refine_pose: bool = True, refine_video: bool = True, bottleneck: bool = True):
        super().__init__()
        self.pose_frames, self.video_frames = int(pose_frames), int(video_frames)
        self.pose_adapter = BottleneckAdapter(width, ratio, skip=False) if bottleneck else None
        self.video_adapter = BottleneckAdapter(width, ratio, skip=False) if bottleneck else None
        cross = refine_pose or refine_video
        self.fc_down = TemporalProjection(pose_frames, video_frames) if cross else None
        self.pose_from_video = CrossModalAttention(width, heads) if refine_pose else None
        self.fc_up = TemporalProjection(video_frames, pose_frames) if refine_pose else None
        self.video_from_pose = CrossModalAttention(width, heads) if refine_video else None

    def forward(self, x_p: torch.Tensor, x_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_p (B, T_h, N_P, D)``, ``x_z (B, T_l, N_Z, D)`` -> ``(P^R, Z^R)``, same shapes."""
        p = x_p if self.pose_adapter is None else x_p + self.pose_adapter(x_p)
        z = x_z if self.video_adapter is None else x_z + self.video_adapter(x_z)
        pose_low: Optional[torch.Tensor] = self.fc_down(x_p) if self.fc_down is not None else None
        if self.pose_from_video is not None:
            p = p + self.fc_up(self.pose_from_video(pose_low, x_z))
        if self.video_from_pose is not None:
            z = z + self.video_from_pose(x_z, pose_low)
        return p, z
