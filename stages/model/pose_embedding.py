"""Pose tokens: joint coordinates -> ViT-width tokens, plus a per-frame CLS token (PGVT Sec. 3.2).

Shared by PeVL's pose encoder and PGVT's pose stream ("Pose Embedding" of PGVT Fig. 1): a
trainable MLP lifts each joint's (x, y, score) to the ViT width, a learnable position embedding
per joint says which joint a token is, a learnable temporal embedding says which frame, and a
classification token is appended to every frame, ``N_P = J + 1`` tokens a frame. The CLS token
starts as the frozen CLIP ViT's own ``[class]`` token (its class and position embedding, copied
and trainable), so its first pass through the frozen blocks looks like an image CLS to them.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .clip_loader import image_normalization


def joint_velocity(joints: torch.Tensor, times: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Each joint's velocity in coordinate units per clip: ``(xy_t - xy_{t-1}) / (time_t -
    time_{t-1})``, 0 in the first frame, where either frame does not see the joint (score 0) and
    where the two pose frames are the same decoded frame (a clip shorter than T, or two random
    offsets on one frame). ``times`` (B, T): each pose frame's position in its clip, frame index /
    decoded frames (the dataset's ``pose_time``); None: evenly spaced, ``1 / T`` apart.

    ``(B, T, J, 3)`` -> ``(B, T, J, 2)``.
    """
    seen = (joints[..., 2:3] > 0).to(joints.dtype)
    xy = joints[..., :2] * seen
    both = seen[:, 1:] * seen[:, :-1]
    if times is None:
        rate = torch.full_like(joints[:, 1:, :1, :1], float(joints.shape[1]))
    else:
        gap = (times[:, 1:] - times[:, :-1]).to(joints.dtype)[..., None, None]  # (B, T-1, 1, 1)
        rate = torch.where(gap > 0, 1.0 / gap.clamp_min(1e-6), torch.zeros_like(gap))
    step = (xy[:, 1:] - xy[:, :-1]) * both * rate
    return torch.cat([torch.zeros_like(step[:, :1]), step], dim=1)


class JointEmbedding(nn.Module):
    """Trainable MLP from a joint's (x, y, score) to the ViT width (PGVT Sec. 3.2, "Pose Embedding").

    Coordinates of joints with score 0 (unseen / outside) are zeroed so garbage positions of
    undetected joints carry no signal; the score channel tells the model the joint is missing.
    ``motion=True`` also feeds each joint's velocity (:func:`joint_velocity`: over the real time
    between pose frames, which are rarely evenly spaced: 48 of 64 frames lie 1 or 2 frames apart,
    random training offsets 0 to 2 segments, so a bare displacement would be the speed times a
    varying gap), the "joint motion" input of skeleton action models: the speed of a joint is
    then a property of one token instead of something attention must first learn to compute
    between frames, and at this scale the GELU already turns it into a speed (|v|) rather than a
    signed displacement that averages away.
    ``num_joints`` given: the first layer has its own weights for each joint (``fc1`` of shape
    (J, in, D)), so what a joint does and which joint does it combine already in the embedding
    (with one shared first layer, a raised right ankle and a raised left ankle embed alike and
    differ only by the additive joint position embedding).
    """

    def __init__(self, width: int, in_dim: int = 3, motion: bool = False, num_joints: Optional[int] = None):
        super().__init__()
        if in_dim not in (2, 3):
            raise ValueError(f"a joint is (x, y) or (x, y, score): in_dim 2 or 3, got {in_dim}")
        self.motion = motion
        self.score = in_dim == 3
        d_in = in_dim + (2 if motion else 0)
        if num_joints:
            bound = d_in ** -0.5  # nn.Linear's default init, per joint
            self.fc1_weight = nn.Parameter(torch.empty(num_joints, d_in, width).uniform_(-bound, bound))
            self.fc1_bias = nn.Parameter(torch.empty(num_joints, width).uniform_(-bound, bound))
            self.fc1 = None
        else:
            self.fc1 = nn.Linear(d_in, width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(width, width)

    @property
    def per_joint(self) -> bool:
        return self.fc1 is None

    def forward(self, joints: torch.Tensor, times: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T, J, 3) joints and (B, T) ``times`` (needed only with ``motion``) -> (B, T, J, D)."""
        seen = (joints[..., 2:3] > 0).to(joints.dtype)
        xy = joints[..., :2] * seen
        parts = [xy, joints[..., 2:3]] if self.score else [xy]
        if self.motion:
            parts.append(joint_velocity(joints, times))
        x = torch.cat(parts, dim=-1)
        if self.fc1 is None:
            h = torch.einsum("...ji,jiw->...jw", x, self.fc1_weight) + self.fc1_bias
        else:
            h = self.fc1(x)
        return self.fc2(self.act(h))


#: How joint coordinates enter the embedding (``pose.normalize``).
COORD_FRAMES = ("crop", "person")
#: The first layer of the joint embedding (``pose.embedding``).
JOINT_EMBEDDINGS = ("shared", "per_joint")


def normalize_to_person(joints: torch.Tensor, persons: int = 1) -> torch.Tensor:
    """Joint coordinates relative to the person, as skeleton action models feed them: per clip,
    ``(xy - centre) / scale`` with ``centre`` the score-weighted mean position of the seen joints
    over all frames and ``scale`` their score-weighted RMS distance from it (one isotropic scale, so
    shapes keep their aspect; the clip's own motion, e.g. a jump or a step, is kept). Skeleton
    independent (no joint names needed). Joints with score 0 keep their coordinates (the embedding
    zeroes them); a clip without any seen joint is returned unchanged.

    ``(B, T, J, 3)`` -> ``(B, T, J, 3)``; the score channel is untouched. ``persons`` n > 1: the
    J = j x n joints are n people, person-major; each is normalised to itself.
    """
    if persons > 1:
        b, t, j, c = joints.shape
        per = joints.reshape(b, t, persons, j // persons, c).transpose(1, 2).reshape(b * persons, t, j // persons, c)
        per = normalize_to_person(per)
        return per.reshape(b, persons, t, j // persons, c).transpose(1, 2).reshape(b, t, j, c)
    xy, score = joints[..., :2], joints[..., 2:3]
    w = (score > 0).to(joints.dtype) * score
    total = w.sum(dim=(1, 2), keepdim=True)  # (B, 1, 1, 1)
    seen = total > 0
    denom = torch.where(seen, total, torch.ones_like(total))
    centre = (w * xy).sum(dim=(1, 2), keepdim=True) / denom
    spread = (w * (xy - centre).pow(2).sum(-1, keepdim=True)).sum(dim=(1, 2), keepdim=True) / denom
    scale = spread.clamp_min(1e-8).sqrt()
    out = torch.where(seen, (xy - centre) / scale, xy)
    return torch.cat([out, score], dim=-1)


class FrameCLSToken(nn.Module):
    """One learnable CLS token per frame (PGVT Sec. 3.2: "appending a classification token").

    The same vector for every frame, with its own (spatial) position embedding; the temporal
    embedding of the frame is added by the caller like for the joints. Initialised from the
    frozen ViT's ``class_embedding`` and ``positional_embedding[0]`` when given.
    """

    def __init__(self, width: int, visual: Optional[nn.Module] = None):
        super().__init__()
        scale = width ** -0.5
        if visual is not None and hasattr(visual, "class_embedding"):
            self.token = nn.Parameter(visual.class_embedding.detach().clone())
            self.pos = nn.Parameter(visual.positional_embedding[0].detach().clone())
        else:
            self.token = nn.Parameter(scale * torch.randn(width))
            self.pos = nn.Parameter(scale * torch.randn(width))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, N, D) -> (B, T, 1 + N, D): the CLS token prepended to every frame."""
        b, t, _, d = tokens.shape
        cls = (self.token + self.pos).to(tokens.dtype).expand(b, t, 1, d)
        return torch.cat([cls, tokens], dim=2)


class PoseEmbedding(nn.Module):
    """Joint tokens ``JointEmbedding(x, y[, score]) + joint_pos[j]``, the per-frame CLS token
    (``cls_token=True``) in front, ``+ temporal_pos[t]`` on every token of frame t.

    ``(B, T, J, 3)`` joints (x, y in the crop's [0, 1], score) -> ``(B, T, [1 +] J, D)``.
    ``normalize``: ``'crop'`` embeds the crop coordinates as given (the papers' input);
    ``'person'`` first makes them relative to the person (:func:`normalize_to_person`).
    ``motion``: also embed each joint's displacement since the previous frame; ``embedding``:
    ``'shared'`` (one MLP for every joint, the papers' reading) or ``'per_joint'`` (a first layer
    of its own per joint) (:class:`JointEmbedding`).
    """

    def __init__(self, width: int, num_joints: int, num_frames: int, cls_token: bool = True,
                 visual: Optional[nn.Module] = None, normalize: str = "crop", motion: bool = False,
                 embedding: str = "shared", persons: int = 1, score: bool = True):
        super().__init__()
        if num_joints % persons:
            raise ValueError(f"{num_joints} joints are not {persons} people's")
        self.persons = persons  # J = j x n joints, person-major; one embedding per joint index
        if normalize not in COORD_FRAMES:
            raise ValueError(f"pose.normalize must be one of {COORD_FRAMES}, got {normalize!r}")
        scale = width ** -0.5
        self.num_frames = num_frames
        self.normalize = normalize
        if embedding not in JOINT_EMBEDDINGS:
            raise ValueError(f"pose.embedding must be one of {JOINT_EMBEDDINGS}, got {embedding!r}")
        self.joint_embed = JointEmbedding(width, 3 if score else 2, motion=motion,
                                          num_joints=num_joints if embedding == "per_joint" else None)
        self.joint_pos = nn.Parameter(scale * torch.randn(num_joints, width))
        self.temporal_pos = nn.Parameter(scale * torch.randn(num_frames, width))
        self.cls = FrameCLSToken(width, visual) if cls_token else None

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the joints in each frame: 1 with the CLS token, else 0."""
        return 0 if self.cls is None else 1

    def forward(self, joints: torch.Tensor, times: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``times`` (B, T): each pose frame's position in its clip (the velocity's time base, see
        :class:`JointEmbedding`); None: evenly spaced."""
        t = joints.shape[1]
        if t > self.num_frames:
            raise ValueError(f"{t} pose frames but the temporal embedding has {self.num_frames}")
        if joints.shape[2] != self.joint_pos.shape[0]:
            raise ValueError(f"{joints.shape[2]} joints per frame but the pose embedding has {self.joint_pos.shape[0]} "
                             f"({self.persons} people's; model.num_joints, model.num_persons come from the entry)")
        if self.normalize == "person":
            joints = normalize_to_person(joints, self.persons)
        x = self.joint_embed(joints, times) + self.joint_pos
        if self.cls is not None:
            x = self.cls(x)
        return x + self.temporal_pos[:t, None]


def render_heatmaps(joints: torch.Tensor, size: int = 112, sigma: float = 2.0) -> torch.Tensor:
    """PoseC3D-style pseudo-images from cached coordinates (PeVL Table 9, PGVT Table 6), never
    re-extracted.

    (B, T, V, 3) joints in [0, 1] -> (B, T, size, size): per pixel the max over joints of
    ``score * exp(-d^2 / (2 sigma^2))`` (PoseC3D's joint heatmap, all joints in one channel).
    """
    coords = (torch.arange(size, device=joints.device, dtype=joints.dtype) + 0.5)
    x = joints[..., 0, None] * size  # (B,T,V,1)
    y = joints[..., 1, None] * size
    gx = torch.exp(-((coords - x) ** 2) / (2 * sigma ** 2))  # (B,T,V,size)
    gy = torch.exp(-((coords - y) ** 2) / (2 * sigma ** 2))
    heat = gy[..., :, None] * gx[..., None, :] * joints[..., 2, None, None]
    return heat.amax(dim=2)


class HeatmapEmbedding(nn.Module):
    """Pose as heatmap patch tokens (PeVL Table 9 / PGVT Table 6 "Heatmaps"): each frame's
    rendered ``size x size`` heatmap as a grey image through the frozen ViT's patch embedding
    (7x7 patches at 112 px, patch 16), CLIP's spatial position embedding resized bicubically to
    that grid, the per-frame CLS token in front (``cls_token=True``), and a trainable temporal
    embedding. ``(B, T, J, 3)`` -> ``(B, T, [1 +] g*g, D)``. The frozen ViT is borrowed, not owned.
    """

    def __init__(self, visual: nn.Module, num_frames: int, cls_token: bool = True, size: int = 112,
                 sigma: float = 2.0):
        super().__init__()
        self._visual = [visual]  # a list: not a registered submodule (the model owns the ViT)
        width = visual.conv1.out_channels
        self.num_frames, self.size, self.sigma = num_frames, size, sigma
        self.temporal_pos = nn.Parameter(width ** -0.5 * torch.randn(num_frames, width))
        self.cls = FrameCLSToken(width, visual) if cls_token else None

    @property
    def num_prefix_tokens(self) -> int:
        return 0 if self.cls is None else 1

    def forward(self, joints: torch.Tensor, times: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``times`` is accepted for the same call as :class:`PoseEmbedding` and unused."""
        b, t = joints.shape[:2]
        if t > self.num_frames:
            raise ValueError(f"{t} pose frames but the temporal embedding has {self.num_frames}")
        heat = render_heatmaps(joints, self.size, self.sigma)
        img = heat[:, :, None].expand(-1, -1, 3, -1, -1).flatten(0, 1)
        vis = self._visual[0]
        mean, std = (torch.tensor(v, device=img.device, dtype=img.dtype)[:, None, None]
                     for v in image_normalization(vis))
        x = vis.conv1((img - mean) / std)  # (BT, D, g, g)
        g = x.shape[-1]
        x = x.flatten(2).transpose(1, 2)
        pos = vis.positional_embedding[1:]
        g0 = int(math.isqrt(pos.shape[0]))
        if g0 != g:  # resize CLIP's spatial position embedding to the heatmap grid
            pos = F.interpolate(pos.T.reshape(1, -1, g0, g0), size=(g, g), mode="bicubic",
                                align_corners=False).reshape(-1, g * g).T
        x = (x + pos).view(b, t, g * g, -1)
        if self.cls is not None:
            x = self.cls(x)
        return x + self.temporal_pos[:t, None]
