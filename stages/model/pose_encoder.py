"""Pose encoder g_p: the same frozen CLIP blocks run as T-Attn and S-Attn over pose tokens."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .adapters import adapter_stack
from .attention import multihead_attention
from .pose_embedding import HeatmapEmbedding, PoseEmbedding
from .precision import float32_region


class PoseEncoder(nn.Module):
    """Pose encoder (PeVL supp. Sec. 2.1, Fig. 2b; PGVT Sec. 3.2 and eq. 1).

    Tokens (:mod:`.pose_embedding`): per frame the CLS token (``cls_token=True``, PGVT's
    ``N_P = J + 1``) and one token per joint, then the frozen ``ln_pre``. Per frozen block (weights
    shared with the video encoder): T-Attn over the ``T`` frames of each token + T-adapter, S-Attn
    over the tokens of each frame + S-adapter, then MLP + MLP adapter. A frame's feature is its
    CLS token after ``ln_post`` (PGVT's joint prediction averages the CLS tokens over frames);
    with ``cls_token=False`` it is the mean over the frame's joint tokens. ``z_p`` = mean over frames.

    The per-joint weights P2V needs are read off the last block's S-Attn, averaged over heads and
    normalised over the joints of a frame (float32): with the CLS token, the attention the frame's
    CLS token pays to each joint (the CLS token is what the frame's feature is, so this is how much
    each joint counts in it; supp. Fig. 8's "weighted body joints"); without it, the attention each
    joint receives, averaged over the joints as queries.

    ``form='heatmap'`` (Table 9) replaces joint tokens by the frozen patch embedding of rendered
    heatmaps (:class:`.pose_embedding.HeatmapEmbedding`); no joint weights exist then.
    """

    def __init__(self, visual: nn.Module, num_joints: int = 17, num_frames: int = 48,
                 adapters: bool = True, ratio: float = 0.25, mlp_scale: float = 0.5,
                 temporal_attn: bool = True, form: str = "coords",
                 heatmap_size: int = 112, heatmap_sigma: float = 2.0, cls_token: bool = True,
                 normalize: str = "crop", motion: bool = False, embedding: str = "shared", persons: int = 1,
                 score: bool = True):
        super().__init__()
        if form not in ("coords", "heatmap"):
            raise ValueError(f"pose.form must be 'coords' or 'heatmap', got {form!r}")
        self._visual = [visual]
        width = visual.conv1.out_channels
        n = len(visual.transformer.resblocks)
        self.form, self.temporal_attn, self.mlp_scale = form, temporal_attn, mlp_scale
        self.num_joints, self.num_frames = num_joints, num_frames
        if form == "coords":
            self.embed = PoseEmbedding(width, num_joints, num_frames, cls_token, visual, normalize, motion, embedding,
                                       persons, score)
        else:
            self.embed = HeatmapEmbedding(visual, num_frames, cls_token, heatmap_size, heatmap_sigma)
        self.t_adapters = adapter_stack(width, n, ratio, skip=True) if adapters and temporal_attn else None
        self.recorder: Optional[dict] = None  # set by PeVL.record() for the explain pictures
        self.s_adapters = adapter_stack(width, n, ratio, skip=True) if adapters else None
        self.mlp_adapters = adapter_stack(width, n, ratio, skip=False) if adapters else None

    @property
    def visual(self) -> nn.Module:
        return self._visual[0]

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the joints in each frame: 1 with the CLS token, else 0."""
        return self.embed.num_prefix_tokens

    def forward(self, joints: torch.Tensor, need_joint_weights: bool = False,
                times: Optional[torch.Tensor] = None):
        """(B, T, V, 3) -> (tokens (B, T, [1 +] V, D), joint weights (B, T, V) or None).
        ``times`` (B, T): each pose frame's position in its clip, the velocity's time base
        (``pose.motion``; :class:`.pose_embedding.JointEmbedding`)."""
        b, t = joints.shape[:2]
        x = self.visual.ln_pre(self.embed(joints, times))
        n, d = x.shape[2], x.shape[3]
        blocks = self.visual.transformer.resblocks
        weights = None
        for i, blk in enumerate(blocks):
            last = i == len(blocks) - 1
            if self.temporal_attn:  # T-Attn: tokens are the batch, frames the sequence
                xt = x.transpose(1, 2).reshape(b * n, t, d)
                if last and self.recorder is not None:  # attention each frame receives, per token
                    a, tp = multihead_attention(blk.attn, blk.ln_1(xt), need_weights=True)
                    self.recorder["pose_temporal_attention"] = tp.float().mean(dim=(1, 2)).view(b, n, t).detach()
                else:
                    a = multihead_attention(blk.attn, blk.ln_1(xt))
                a = blk.ls_1(a)
                if self.t_adapters is not None:
                    a = self.t_adapters[i](a)
                x = x + a.view(b, n, t, d).transpose(1, 2)
            xs = x.reshape(b * t, n, d)  # S-Attn: frames are the batch, a frame's tokens the sequence
            want = need_joint_weights and last and self.form == "coords"
            res = multihead_attention(blk.attn, blk.ln_1(xs), need_weights=want)
            a, probs = res if want else (res, None)
            a = blk.ls_1(a)
            if self.s_adapters is not None:
                a = self.s_adapters[i](a)
            x = x + a.view(b, t, n, d)
            h = blk.ln_2(x)
            out = x + blk.ls_2(blk.mlp(h))
            if self.mlp_adapters is not None:
                out = out + self.mlp_scale * self.mlp_adapters[i](h)
            x = out
            if probs is not None:
                weights = self._joint_weights(probs).view(b, t, -1)
        return x, weights

    def _joint_weights(self, probs: torch.Tensor) -> torch.Tensor:
        """(B*T, heads, N, N) S-Attn probabilities -> (B*T, J) joint weights summing to 1, float32."""
        k = self.num_prefix_tokens
        with float32_region(probs):
            p = probs.float().mean(dim=1)  # over heads
            w = p[:, 0, k:] if k else p.mean(dim=1)  # the CLS row, or the mean over joint queries
            return w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)

    def frame_features(self, tokens: torch.Tensor, background: Optional[torch.Tensor] = None,
                       video_pose_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T, N, D) -> (B, T, D): the frame's CLS token after the frozen ``ln_post``, or the mean
        over its joint tokens without a CLS token.

        ``background`` (B, T_v, D) with ``video_pose_index`` (B, T_v): V2P's refined background
        tokens in the ``'kept'`` reading; a frame that has one pools it as one more of its
        summary tokens (mean of its CLS token and background token, or of its joints and it).
        """
        summary = tokens[:, :, :self.num_prefix_tokens] if self.num_prefix_tokens else tokens
        feats = self.visual.ln_post(summary).mean(dim=2)
        if background is None:
            return feats
        n = summary.shape[2]
        idx = video_pose_index[..., None].expand(-1, -1, feats.shape[-1])
        held = torch.gather(feats, 1, idx)
        return feats.scatter(1, idx, (held * n + self.visual.ln_post(background)) / (n + 1))
