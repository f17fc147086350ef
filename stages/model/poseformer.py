"""PoseFormer as the pose encoder: PeVL supp. Table 1 and PGVT Table 5 ("Transformer for pose").

PoseFormer (Zheng et al., ICCV 2021, "3D Human Pose Estimation with Spatial and Temporal
Transformers", Sec. 3.2 and Fig. 2), laid out as its reference code builds it
(zczcwh/PoseFormer, ``common/model_poseformer.py``, ``PoseTransformer``):

* **spatial transformer** ("Spatial Transformer Module", eqs. 1-2), per frame: each joint's 2D
  coordinates embedded by one linear layer to ``c`` (32), plus a learnable spatial position
  embedding per joint; ``L`` (4) blocks of width ``c``; LayerNorm;
* **temporal transformer** ("Temporal Transformer Module", eqs. 3-4): a frame is the concatenation
  of its ``J`` joint features (width ``J c``: 544 for 17 joints), plus a learnable temporal position
  embedding per frame; ``L`` (4) blocks of width ``J c``; LayerNorm;
* every block pre-norm: ``x + DropPath(MSA(LN(x)))``, ``x + DropPath(MLP(LN(x)))``, 8 heads, MLP
  ratio 2, GELU, qkv bias, LayerNorm eps 1e-6, stochastic depth rising linearly over the blocks.

The reference's regression head ("Regression Head": a learned weighted mean over the frames, then
a linear layer to the centre frame's 3D joints) is the 3D-pose task, not an encoder, and is not
built: an action model reads the per-frame features, so the encoder stops after the temporal
LayerNorm. Its position embeddings start at zero as in the reference.

:class:`PoseformerEncoder` is what PeVL and PGVT read off a pose encoder (the interface of
:class:`.pose_encoder.PoseEncoder`):

* **tokens** ``(B, T, J, D)`` at the ViT width: each frame's output (width ``J c``) read as its
  ``J`` joint pieces of width ``c``, each mapped by a linear layer of its own ``c -> D`` (together
  exactly one linear layer on the frame's concatenated feature, split by joint). These are the
  per-frame pose tokens PeVL's V2P (eq. 2) refines and PGVT's R-Adapter exchanges with the video.
* **frame feature**: the mean of the frame's tokens after a trainable LayerNorm (the reference has
  no CLS token); ``z_p`` is the mean over frames, as for the CLIP encoder.
* **P2V joint weights** ("a normalised sum of weights of all body joints from the last layer of
  Pose Encoder"): the attention each joint receives in the *last spatial block*, the last layer
  whose tokens are joints (the temporal blocks attend between whole frames), averaged over heads
  and over the joints as queries, normalised over the frame's joints (float32): the reading the
  CLIP encoder uses without a CLS token.
* **adapters** (``adapters=True``; the papers: Poseformer "frozen and added with learnable
  adapters"): AIM's two per block at that block's width, an attention adapter with skip and an
  MLP adapter in parallel scaled by ``mlp_scale``, zero-initialised (a fresh adapter changes
  nothing).

Weights: none can be had offline, so by default Poseformer starts from random init and trains
from scratch with everything else (``frozen=False``). A local checkpoint
(``pose.poseformer.checkpoint``) is read with ``weights_only=True`` and placed strictly
(:func:`load_poseformer_weights`): every parameter of the model must be in it with its shape, and
only the reference's regression head may be left over; ``frozen=True`` then keeps it frozen.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .adapters import BottleneckAdapter
from .pose_embedding import COORD_FRAMES, JOINT_EMBEDDINGS, joint_velocity, normalize_to_person
from .precision import float32_region

log = logging.getLogger(__name__)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a residual branch for a whole sample with probability ``rate`` (scaled
    by ``1 / (1 - rate)`` when kept)."""
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class PoseformerAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (bias) and an output ``proj``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        """``(N, L, d)`` -> (output ``(N, L, d)``, probabilities ``(N, heads, L, L)`` or None)."""
        n, length, d = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        probs = None
        if need_weights:
            probs = ((q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)).softmax(dim=-1)
            out = probs @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, d)), probs


class PoseformerMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class BlockAdapters(nn.Module):
    """AIM's two adapters of one block: ``attn`` after the attention (inner skip), ``mlp`` parallel
    to the MLP (no skip)."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        self.attn = BottleneckAdapter(dim, ratio, skip=True)
        self.mlp = BottleneckAdapter(dim, ratio, skip=False)


class PoseformerBlock(nn.Module):
    """One pre-norm transformer block of PoseFormer (the reference's ``Block``)::

        x = x + DropPath(A_attn(MSA(LN_1(x))))
        x = x + DropPath(MLP(LN_2(x)) + s * A_mlp(LN_2(x)))

    the adapters ``A`` only when given (they are the encoder's, not the block's: the block holds
    exactly the reference's parameters, so a checkpoint places strictly)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = PoseformerAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = PoseformerMLP(dim, int(dim * mlp_ratio))
        self.drop_path = float(drop_path)

    def forward(self, x: torch.Tensor, adapters: Optional[BlockAdapters] = None, mlp_scale: float = 0.5,
                need_weights: bool = False):
        a, probs = self.attn(self.norm1(x), need_weights)
        if adapters is not None:
            a = adapters.attn(a)
        x = x + drop_path(a, self.drop_path, self.training)
        h = self.norm2(x)
        m = self.mlp(h)
        if adapters is not None:
            m = m + mlp_scale * adapters.mlp(h)
        return x + drop_path(m, self.drop_path, self.training), probs


class PerJointLinear(nn.Module):
    """A linear layer of its own for each joint (``pose.embedding='per_joint'``): ``(..., J, in) ->
    (..., J, out)``, each joint initialised as ``nn.Linear`` would be."""

    def __init__(self, num_joints: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = in_dim ** -0.5
        self.weight = nn.Parameter(torch.empty(num_joints, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_joints, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...ji,jio->...jo", x, self.weight) + self.bias


class Poseformer(nn.Module):
    """PoseFormer's spatial and temporal transformers (module docstring), without the 3D head.

    Parameter names map one to one onto the reference's (:data:`REFERENCE_NAMES`); the position
    embeddings keep the reference's shapes ``(1, J, c)`` and ``(1, T, J c)``. ``per_joint``: the
    joint embedding has a linear layer per joint (not the reference's; ``pose.embedding``).
    """

    def __init__(self, num_joints: int, num_frames: int, in_chans: int = 2, embed_dim: int = 32, depth: int = 4,
                 heads: int = 8, mlp_ratio: float = 2.0, drop_path: float = 0.1, per_joint: bool = False):
        super().__init__()
        width = num_joints * embed_dim
        if embed_dim % heads or width % heads:
            raise ValueError(f"pose.poseformer: embed_dim {embed_dim} and joints x embed_dim {width} must be "
                             f"multiples of heads {heads}")
        self.num_joints, self.num_frames, self.embed_dim = num_joints, num_frames, embed_dim
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # the reference's linspace(0, rate)
        self.joint_embed = (PerJointLinear(num_joints, in_chans, embed_dim) if per_joint
                            else nn.Linear(in_chans, embed_dim))
        self.joint_pos = nn.Parameter(torch.zeros(1, num_joints, embed_dim))
        self.spatial_blocks = nn.ModuleList(PoseformerBlock(embed_dim, heads, mlp_ratio, r) for r in rates)
        self.spatial_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.temporal_pos = nn.Parameter(torch.zeros(1, num_frames, width))
        self.temporal_blocks = nn.ModuleList(PoseformerBlock(width, heads, mlp_ratio, r) for r in rates)
        self.temporal_norm = nn.LayerNorm(width, eps=1e-6)


#: the reference's parameter names (zczcwh/PoseFormer ``PoseTransformer``) -> :class:`Poseformer`'s
REFERENCE_NAMES = (("Spatial_patch_to_embedding.", "joint_embed."), ("Spatial_pos_embed", "joint_pos"),
                   ("Spatial_blocks.", "spatial_blocks."), ("Spatial_norm.", "spatial_norm."),
                   ("Temporal_pos_embed", "temporal_pos"), ("blocks.", "temporal_blocks."),
                   ("Temporal_norm.", "temporal_norm."))
#: the reference's 3D-pose regression head: in its checkpoints, not part of an encoder
REFERENCE_HEAD = ("weighted_mean.", "head.")
#: what a shape mismatch of a parameter means
_SHAPE_HINTS = {"joint_pos": "joints per frame (model.num_joints)",
                "temporal_pos": "frames (model.num_pose_frames: the reference's checkpoints are 9, 27 or 81 frames)",
                "joint_embed.weight": "input channels per joint (2: x, y; + 1 with pose.poseformer.score, + 2 with "
                                      "pose.motion; per joint with pose.embedding='per_joint')"}


def load_poseformer_weights(model: Poseformer, path: os.PathLike) -> dict:
    """Place a PoseFormer checkpoint in ``model`` strictly, or refuse it naming what differs.

    Read with ``torch.load(weights_only=True)``: the reference's training checkpoint
    (``{'model_pos': state_dict, ...}``, keys prefixed ``module.`` by DataParallel), a
    ``{'state_dict': ...}`` file, or a bare state dict, under the reference's names or this
    module's. Every parameter of ``model`` must be present with its shape; the only keys left over
    may be the reference's regression head (:data:`REFERENCE_HEAD`), which is dropped and named in
    the log. Returns ``{path, sha256, dropped}``.
    """
    path = os.fspath(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"pose.poseformer.checkpoint: no file {path}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file: say which and why
        raise ValueError(f"pose.poseformer.checkpoint {path}: not a weights file torch.load(weights_only=True) "
                         f"reads ({type(e).__name__}: {e})") from None
    sd: Any = raw
    for key in ("model_pos", "state_dict"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
            break
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"pose.poseformer.checkpoint {path}: expected a state dict of tensors (or the reference's "
                         "{'model_pos': state dict}), got " + (f"keys {sorted(map(str, raw))[:8]}"
                                                               if isinstance(raw, Mapping) else type(raw).__name__))
    if all(str(k).startswith("module.") for k in sd):
        sd = {str(k)[len("module."):]: v for k, v in sd.items()}
    mapped, dropped = {}, []
    for k, v in sd.items():
        k = str(k)
        if k.startswith(REFERENCE_HEAD):
            dropped.append(k)
            continue
        for ref, own in REFERENCE_NAMES:
            if k.startswith(ref):
                k = own + k[len(ref):]
                break
        mapped[k] = v
    own = model.state_dict()
    missing = [k for k in own if k not in mapped]
    unexpected = [k for k in mapped if k not in own]
    shapes = [f"{k} {tuple(mapped[k].shape)} in the file, {tuple(own[k].shape)} in the model"
              + (f" ({_SHAPE_HINTS[k]})" if k in _SHAPE_HINTS else "")
              for k in own if k in mapped and mapped[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = ([f"missing {missing[:6]}" + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")]
                 if missing else []) + ([f"not in the model {unexpected[:6]}"] if unexpected else []) + shapes[:6]
        raise ValueError(f"pose.poseformer.checkpoint {path} does not fit this Poseformer (nothing loaded): "
                         + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=True)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    log.info("Poseformer weights from %s (%d tensors; the 3D regression head dropped: %s)", path, len(mapped),
             ", ".join(dropped) or "none in the file")
    log.warning("Poseformer checkpoint %s: its joint embeddings are per joint in the order it was trained on "
                "(the reference's: Human3.6M's 17 joints); the model feeds the cache entry's skeleton order "
                "(COCO-17 for HRNet entries). Use a checkpoint trained on that order.", path)
    return {"path": path, "sha256": digest.hexdigest(), "dropped": dropped}


class PoseformerEncoder(nn.Module):
    """PoseFormer as PeVL's ``g_p`` and PGVT's pose stream (module docstring): joints
    ``(B, T, J, 3)`` -> tokens ``(B, T, J, D)`` and the P2V joint weights ``(B, T, J)``.

    ``settings``: ``pose.poseformer`` (:class:`.settings.PoseformerSettings` as a dict).
    ``normalize``: ``'crop'`` maps the crop coordinates ``[0, 1]`` to ``[-1, 1]`` (the reference
    normalises screen coordinates so; the crop is square), ``'person'`` feeds them relative to the
    person (:func:`.pose_embedding.normalize_to_person`). Coordinates of unseen joints (score 0)
    are 0; ``score=True`` also feeds the score; ``motion=True`` each joint's velocity in those
    coordinates (:func:`.pose_embedding.joint_velocity`, over ``times``); ``embedding='per_joint'``
    a joint embedding per joint. The last three are not the reference's (its input is x, y); the
    demo uses motion and per-joint embeddings for every pose encoder (docs/demo.md).
    """

    #: what the PeVL / PGVT code reads off a pose encoder
    form = "coords"
    temporal_attn = True
    num_prefix_tokens = 0

    def __init__(self, width: int, num_joints: int, num_frames: int, settings: Mapping[str, Any],
                 adapters: bool = True, ratio: float = 0.25, mlp_scale: float = 0.5, normalize: str = "crop",
                 motion: bool = False, embedding: str = "shared", persons: int = 1):
        super().__init__()
        if num_joints % persons:
            raise ValueError(f"{num_joints} joints are not {persons} people's")
        self.persons = persons  # J = j x n joints, person-major (normalize='person' takes each on its own)
        if normalize not in COORD_FRAMES:
            raise ValueError(f"pose.normalize must be one of {COORD_FRAMES}, got {normalize!r}")
        if embedding not in JOINT_EMBEDDINGS:
            raise ValueError(f"pose.embedding must be one of {JOINT_EMBEDDINGS}, got {embedding!r}")
        s = dict(settings)
        self.num_joints, self.num_frames, self.normalize = num_joints, num_frames, normalize
        self.motion, self.embedding = bool(motion), embedding
        self.use_score, self.mlp_scale = bool(s["score"]), float(mlp_scale)
        in_chans = 2 + int(self.use_score) + 2 * int(self.motion)
        self.poseformer = Poseformer(num_joints, num_frames, in_chans, s["embed_dim"], s["depth"], s["heads"],
                                     s["mlp_ratio"], s["drop_path"], per_joint=embedding == "per_joint")
        c = s["embed_dim"]
        self.spatial_adapters = self.temporal_adapters = None
        if adapters:
            self.spatial_adapters = nn.ModuleList(BlockAdapters(c, ratio) for _ in range(s["depth"]))
            self.temporal_adapters = nn.ModuleList(BlockAdapters(num_joints * c, ratio) for _ in range(s["depth"]))
        bound = c ** -0.5  # nn.Linear(c, D)'s default init, per joint
        self.token_weight = nn.Parameter(torch.empty(num_joints, c, width).uniform_(-bound, bound))
        self.token_bias = nn.Parameter(torch.empty(num_joints, width).uniform_(-bound, bound))
        self.ln_post = nn.LayerNorm(width)
        self.recorder: Optional[dict] = None  # set by PeVL.record() for the explain pictures
        self.weights_source: Optional[dict] = None
        self.frozen = bool(s["frozen"])
        if s["checkpoint"]:
            if any(p.is_meta for p in self.poseformer.parameters()):
                log.info("Poseformer on the meta device (counting): %s not read", s["checkpoint"])
            else:
                self.weights_source = load_poseformer_weights(self.poseformer, s["checkpoint"])
        if self.frozen:
            self.poseformer.requires_grad_(False)
            self.poseformer.eval()

    @property
    def has_adapters(self) -> bool:
        return self.spatial_adapters is not None

    def train(self, mode: bool = True) -> "PoseformerEncoder":
        super().train(mode)
        if self.frozen:  # a frozen Poseformer stays in eval mode (no stochastic depth on frozen branches)
            self.poseformer.eval()
        return self

    def _inputs(self, joints: torch.Tensor, times: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, T, J, 3) -> (B, T, J, C): the coordinates in the reference's frame, 0 where unseen
        [, the score] [, the velocity]."""
        score = joints[..., 2:3]
        xy = normalize_to_person(joints, self.persons)[..., :2] if self.normalize == "person" else joints[..., :2] * 2 - 1
        xy = xy * (score > 0).to(xy.dtype)
        parts = [xy] + ([score] if self.use_score else [])
        if self.motion:
            parts.append(joint_velocity(torch.cat([xy, score], dim=-1), times))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else xy

    def forward(self, joints: torch.Tensor, need_joint_weights: bool = False,
                times: Optional[torch.Tensor] = None):
        """(B, T, J, 3) -> (tokens (B, T, J, D), joint weights (B, T, J) or None). ``times`` (B, T):
        each pose frame's position in its clip, the velocity's time base (``pose.motion``)."""
        b, t, j = joints.shape[:3]
        if t > self.num_frames:
            raise ValueError(f"{t} pose frames but Poseformer's temporal embedding has {self.num_frames}")
        if j != self.num_joints:
            raise ValueError(f"{j} joints per frame but Poseformer was built for {self.num_joints}")
        pf = self.poseformer
        x = (pf.joint_embed(self._inputs(joints, times)) + pf.joint_pos).flatten(0, 1)  # (B*T, J, c)
        probs = None
        n_s = len(pf.spatial_blocks)
        for i, blk in enumerate(pf.spatial_blocks):
            ad = None if self.spatial_adapters is None else self.spatial_adapters[i]
            x, p = blk(x, ad, self.mlp_scale, need_weights=need_joint_weights and i == n_s - 1)
            probs = p if p is not None else probs
        c = x.shape[-1]
        x = pf.spatial_norm(x).reshape(b, t, j * c) + pf.temporal_pos[:, :t]
        n_t = len(pf.temporal_blocks)
        for i, blk in enumerate(pf.temporal_blocks):
            ad = None if self.temporal_adapters is None else self.temporal_adapters[i]
            want = self.recorder is not None and i == n_t - 1
            x, p = blk(x, ad, self.mlp_scale, need_weights=want)
            if p is not None:  # (B, 1, T): the attention each frame receives (explain's Fig. 10 layout)
                self.recorder["pose_temporal_attention"] = p.float().mean(dim=(1, 2))[:, None].detach()
        x = pf.temporal_norm(x).view(b, t, j, c)
        tokens = torch.einsum("btjc,jcd->btjd", x, self.token_weight) + self.token_bias
        weights = None if probs is None else self._joint_weights(probs).view(b, t, j)
        return tokens, weights

    @staticmethod
    def _joint_weights(probs: torch.Tensor) -> torch.Tensor:
        """(B*T, heads, J, J) -> (B*T, J): the attention each joint receives, averaged over heads and
        query joints, summing to 1 over the frame's joints, float32."""
        with float32_region(probs):
            w = probs.float().mean(dim=(1, 2))
            return w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)

    def frame_features(self, tokens: torch.Tensor, background: Optional[torch.Tensor] = None,
                       video_pose_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T, J, D) -> (B, T, D): the mean of the frame's tokens after the LayerNorm. ``background``
        (B, T_v, D) with ``video_pose_index``: V2P's refined background token in the ``'kept'``
        reading, pooled as one more token of its frame (as :class:`.pose_encoder.PoseEncoder` does)."""
        feats = self.ln_post(tokens).mean(dim=2)
        if background is None:
            return feats
        n = tokens.shape[2]
        idx = video_pose_index[..., None].expand(-1, -1, feats.shape[-1])
        held = torch.gather(feats, 1, idx)
        return feats.scatter(1, idx, (held * n + self.ln_post(background)) / (n + 1))
