"""Pose encoder g_p: the same frozen CLIP blocks run as T-Attn and S-Attn over joint tokens."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .adapters import adapter_stack
from .attention import multihead_attention

# CLIP's image normalisation; heatmaps are rendered as grey images and go through CLIP's patchifier.
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class JointEmbedding(nn.Module):
    """Trainable MLP from a joint's (x, y, score) to the ViT width (PGVT Sec. 3, "Pose Embedding").

    Coordinates of joints with score 0 (unseen / outside) are zeroed so garbage positions of
    undetected joints carry no signal; the score channel tells the model the joint is missing.
    """

    def __init__(self, width: int, in_dim: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(width, width)

    def forward(self, joints: torch.Tensor) -> torch.Tensor:
        seen = (joints[..., 2:3] > 0).to(joints.dtype)
        x = torch.cat([joints[..., :2] * seen, joints[..., 2:3]], dim=-1)
        return self.fc2(self.act(self.fc1(x)))


def render_heatmaps(joints: torch.Tensor, size: int = 112, sigma: float = 2.0) -> torch.Tensor:
    """PoseC3D-style pseudo-images from cached coordinates (Table 9), never re-extracted.

    (B, T, V, 3) joints in [0, 1] -> (B, T, size, size): per pixel the max over joints of
    ``score * exp(-d^2 / (2 sigma^2))`` (PoseC3D's joint heatmap, all joints in one channel).
    """
    b, t, v, _ = joints.shape
    coords = (torch.arange(size, device=joints.device, dtype=joints.dtype) + 0.5)
    x = joints[..., 0, None] * size  # (B,T,V,1)
    y = joints[..., 1, None] * size
    gx = torch.exp(-((coords - x) ** 2) / (2 * sigma ** 2))  # (B,T,V,size)
    gy = torch.exp(-((coords - y) ** 2) / (2 * sigma ** 2))
    heat = gy[..., :, None] * gx[..., None, :] * joints[..., 2, None, None]
    return heat.amax(dim=2)


class PoseEncoder(nn.Module):
    """Pose encoder (PeVL supp. Sec. 2.1, Fig. 2b; PGVT Sec. 3, eq. 1).

    Tokens: one per joint per frame, ``JointEmbedding(x, y, score) + joint_pos[j] + temporal_pos[t]``,
    then the frozen ``ln_pre``. Per frozen block (weights shared with the video encoder):
    T-Attn over the ``T`` frames of each joint + T-adapter, S-Attn over the joints of each frame +
    S-adapter, then MLP + MLP adapter. A frame feature is the mean over its joint tokens after
    ``ln_post``; ``z_p`` = mean over frames.

    The per-joint weights P2V needs are read off the last block's S-Attn: the attention each joint
    receives, averaged over heads and queries (sums to 1 over the joints of a frame).

    ``form='heatmap'`` (Table 9) replaces joint tokens by the frozen patch embedding of rendered
    112x112 heatmaps (7x7 patches at patch 16), CLIP's spatial position embedding resized to the
    grid, plus the same trainable temporal embedding; no joint weights exist then.
    """

    def __init__(self, visual: nn.Module, num_joints: int = 17, num_frames: int = 48,
                 adapters: bool = True, ratio: float = 0.25, mlp_scale: float = 0.5,
                 temporal_attn: bool = True, form: str = "coords",
                 heatmap_size: int = 112, heatmap_sigma: float = 2.0):
        super().__init__()
        if form not in ("coords", "heatmap"):
            raise ValueError(f"pose.form must be 'coords' or 'heatmap', got {form!r}")
        self._visual = [visual]
        width = visual.conv1.out_channels
        n = len(visual.transformer.resblocks)
        self.form, self.temporal_attn, self.mlp_scale = form, temporal_attn, mlp_scale
        self.num_joints, self.num_frames = num_joints, num_frames
        self.heatmap_size, self.heatmap_sigma = heatmap_size, heatmap_sigma
        scale = width ** -0.5
        if form == "coords":
            self.joint_embed = JointEmbedding(width)
            self.joint_pos = nn.Parameter(scale * torch.randn(num_joints, width))
        self.temporal_pos = nn.Parameter(scale * torch.randn(num_frames, width))
        self.t_adapters = adapter_stack(width, n, ratio, skip=True) if adapters and temporal_attn else None
        self.s_adapters = adapter_stack(width, n, ratio, skip=True) if adapters else None
        self.mlp_adapters = adapter_stack(width, n, ratio, skip=False) if adapters else None

    @property
    def visual(self) -> nn.Module:
        return self._visual[0]

    def _heatmap_tokens(self, joints: torch.Tensor) -> torch.Tensor:
        b, t = joints.shape[:2]
        heat = render_heatmaps(joints, self.heatmap_size, self.heatmap_sigma)
        img = heat[:, :, None].expand(-1, -1, 3, -1, -1).flatten(0, 1)
        mean = torch.tensor(_CLIP_MEAN, device=img.device, dtype=img.dtype)[:, None, None]
        std = torch.tensor(_CLIP_STD, device=img.device, dtype=img.dtype)[:, None, None]
        vis = self.visual
        x = vis.conv1((img - mean) / std)  # (BT, D, g, g)
        g = x.shape[-1]
        x = x.flatten(2).transpose(1, 2)
        pos = vis.positional_embedding[1:]
        g0 = int(math.isqrt(pos.shape[0]))
        if g0 != g:  # resize CLIP's spatial position embedding to the heatmap grid
            pos = F.interpolate(pos.T.reshape(1, -1, g0, g0), size=(g, g), mode="bicubic",
                                align_corners=False).reshape(-1, g * g).T
        x = x + pos
        return x.view(b, t, g * g, -1)

    def forward(self, joints: torch.Tensor, need_joint_weights: bool = False):
        """(B, T, V, 3) -> (tokens (B, T, V, D), joint weights (B, T, V) or None)."""
        b, t = joints.shape[:2]
        if t > self.num_frames:
            raise ValueError(f"{t} pose frames but the temporal embedding has {self.num_frames}")
        if self.form == "coords":
            x = self.joint_embed(joints) + self.joint_pos
        else:
            x = self._heatmap_tokens(joints)
        x = x + self.temporal_pos[:t, None]
        x = self.visual.ln_pre(x)
        v, d = x.shape[2], x.shape[3]
        blocks = self.visual.transformer.resblocks
        weights = None
        for i, blk in enumerate(blocks):
            last = i == len(blocks) - 1
            if self.temporal_attn:  # T-Attn: joints are the batch, frames the sequence
                xt = x.transpose(1, 2).reshape(b * v, t, d)
                a = blk.ls_1(multihead_attention(blk.attn, blk.ln_1(xt)))
                if self.t_adapters is not None:
                    a = self.t_adapters[i](a)
                x = x + a.view(b, v, t, d).transpose(1, 2)
            xs = x.reshape(b * t, v, d)  # S-Attn: frames are the batch, joints the sequence
            want = need_joint_weights and last and self.form == "coords"
            res = multihead_attention(blk.attn, blk.ln_1(xs), need_weights=want)
            a, probs = res if want else (res, None)
            a = blk.ls_1(a)
            if self.s_adapters is not None:
                a = self.s_adapters[i](a)
            x = x + a.view(b, t, v, d)
            h = blk.ln_2(x)
            out = x + blk.ls_2(blk.mlp(h))
            if self.mlp_adapters is not None:
                out = out + self.mlp_scale * self.mlp_adapters[i](h)
            x = out
            if probs is not None:
                weights = probs.mean(dim=(1, 2)).view(b, t, v)  # attention received per joint
        return x, weights

    def frame_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, V, D) -> (B, T, D): mean over the joint tokens after the frozen ``ln_post``."""
        return self.visual.ln_post(tokens).mean(dim=2)
