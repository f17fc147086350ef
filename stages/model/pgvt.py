"""The PGVT model (Pose-Guided Video Transformer, PGVT paper), switchable into every row of its
Table 4 and Table 6, and AIM's baseline. Text-free: a linear classifier and cross-entropy.

One frozen open_clip ViT serves pose and video. Tokens: pose at ``T_h`` frames (``J`` joints +
a per-frame CLS token, :mod:`.pose_embedding`), video at ``T_l`` frames (patches + CLS,
:class:`.aim.VideoEmbedding`). ``blocks='pgvt'``: every frozen block becomes a PGVT block
(:mod:`.pgvt_block`, eqs. 1-5); ``blocks='aim'``: each modality runs its own AIM stream
(:mod:`.aim`), the "baseline architecture" of Table 4 (1) pose only, (2) video only, (3) late
fusion. Joint Prediction (Sec. 3.1): per modality the mean over frames of the frame CLS tokens
after ``ln_post``, pose then video concatenated, dropout, a linear classifier, cross-entropy.
Table 5 (``pose.encoder='poseformer'``): the pose stream is PoseFormer (:mod:`.poseformer`)
instead of the CLIP blocks; its per-frame joint tokens meet the video in every block's R-Adapter.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import nn

from .batch import Batch
from .aim import AIMStream, VideoEmbedding
from .frozen_clip import FrozenCLIPModel
from .heads import LinearHead
from .losses import soft_cross_entropy
from .pgvt_block import PGVTBlock
from .pose_embedding import HeatmapEmbedding, PoseEmbedding
from .poseformer import PoseformerEncoder
from .settings import PGVT_MODALITIES as _MODALITIES
from .settings import PGVTSettings

#: the ``pose`` keys PGVT reads itself; any other goes to :class:`.pose_embedding.PoseEmbedding`
#: (coordinates only: heatmaps have no joint tokens to embed)
_OWN_POSE_KEYS = ("form", "cls_token", "heatmap_size", "heatmap_sigma", "encoder", "poseformer")


class PGVT(FrozenCLIPModel):
    """PGVT (or AIM) on an open_clip CLIP ViT; the model interface of stage two.

    Inputs are the batch contract's tensors (:class:`stages.model.batch.Batch`): ``frames`` (B, T_l, 3, S, S) CLIP-normalised,
    ``joints`` (B, T_h, J, 3), ``label`` (B,). :meth:`loss` -> ``{'loss'}`` (cross-entropy),
    :meth:`predict` -> (B, C) class scores, :meth:`encode` -> features. The CLIP ViT is frozen
    unless ``clip.frozen=False``; everything else is tunable (:meth:`tunable_parameters`).
    """

    use_text = False  # classifies with a linear head, never with class texts
    # every built variant's loss reaches every tunable parameter (tests/model/test_model_pgvt.py),
    # so DDP need not look for unused ones
    leaves_unused_parameters = False

    settings_class = PGVTSettings
    param_group_rules = (
        (r"clip\.", "clip"),
        (r"video_(embed|norm|stream)\.|blocks\.\d+\.video_mlp_adapter\.", "video"),
        (r"pose_(embed|norm|stream)\.|blocks\.\d+\.(t_adapter|pose_mlp_adapter)\.", "pose"),
        (r"blocks\.\d+\.r_adapter\.", "ucmr"),  # PGVT's cross-modal refinement
        (r"head\.", "head"),
    )

    def __init__(self, cfg: Optional[Any] = None):
        super().__init__(cfg)  # checks cfg (PGVTSettings), loads and freezes CLIP
        cfg = self.cfg
        mods = list(cfg["modalities"])
        self.use_pose, self.use_video = "pose" in mods, "video" in mods
        clip = self.clip
        _keep_vision_tower(clip)
        visual = clip.visual
        width = visual.conv1.out_channels
        heads = visual.transformer.resblocks[0].attn.num_heads
        n_blocks = len(visual.transformer.resblocks)
        ad, pc = cfg["adapters"], cfg["pose"]
        t_h, t_l = int(cfg["num_pose_frames"]), int(cfg["num_video_frames"])

        self.pose_embed = self.video_embed = self.pose_norm = self.video_norm = self.pose_encoder = None
        poseformer = self.use_pose and pc["encoder"] == "poseformer"
        if poseformer:  # Table 5: Poseformer as the pose stream's pre-trained model (adapters always on)
            self.pose_encoder = PoseformerEncoder(width, cfg["num_joints"], t_h, pc["poseformer"], True, ad["ratio"],
                                                  ad["s_pose"], pc["normalize"], pc["motion"], pc["embedding"],
                                                  cfg.get("num_persons", 1))
        elif self.use_pose:
            if pc["form"] == "coords":
                # pose.* keys beyond PGVT's own are options of the shared PoseEmbedding (PeVL's too)
                extra = {k: v for k, v in pc.items() if k not in _OWN_POSE_KEYS}
                self.pose_embed = PoseEmbedding(width, cfg["num_joints"], t_h, pc["cls_token"], visual, **extra,
                                                persons=cfg.get("num_persons", 1))
            else:  # heatmap
                self.pose_embed = HeatmapEmbedding(visual, t_h, pc["cls_token"], pc["heatmap_size"],
                                                   pc["heatmap_sigma"])
            self.pose_norm = _trainable_copy(visual.ln_post)
        if self.use_video:
            self.video_embed = VideoEmbedding(visual, t_l)
            self.video_norm = _trainable_copy(visual.ln_post)
        visual.ln_post = nn.Identity()  # replaced by the streams' own copies

        self.blocks = self.pose_stream = self.video_stream = None
        if cfg["blocks"] == "pgvt":
            pg = cfg["pgvt"]
            self.blocks = nn.ModuleList(
                PGVTBlock(width, heads, t_h, t_l, ad["ratio"], pg["temporal"], pg["refine_pose"],
                          pg["refine_video"], pg["bottleneck"], ad["s_pose"], ad["s_video"], pose_clip=not poseformer)
                for _ in range(n_blocks))
        else:
            temporal = bool(cfg["aim"]["temporal"])
            if self.use_pose and not poseformer:  # Poseformer is the whole pose stream
                self.pose_stream = AIMStream(visual, ad["ratio"], ad["s_pose"], temporal)
            if self.use_video:
                self.video_stream = AIMStream(visual, ad["ratio"], ad["s_video"], temporal)
        self.dropout = nn.Dropout(float(cfg["head"]["dropout"]))
        self.head = LinearHead(len(mods) * width, int(cfg["num_classes"]))
        if self.clip_frozen:
            self.clip.eval()
        else:
            self._freeze_clip_parts_never_read()

    def _freeze_clip_parts_never_read(self) -> None:
        """With a trainable tower (``clip.frozen=False``: the demo), keep frozen the CLIP parameters
        no forward of a pose-only model reads, so every tunable parameter gets a gradient (they were
        counted as tunable and handed to the optimiser, and DDP, told no parameter goes unused,
        failed): the CLS token (the pose embedding copies it), the patch embedding and its
        positions for coordinates, and the whole tower when Poseformer is the pose stream."""
        if self.use_video:
            return
        vis = self.clip.visual
        never: list[nn.Parameter] = [vis.class_embedding]
        if self.pose_encoder is not None:  # (Poseformer: no forward reads the vision tower)
            never += list(vis.parameters())
        elif self.cfg["pose"]["form"] == "coords":
            never += [vis.positional_embedding, *vis.conv1.parameters()]
        for p in never:
            if isinstance(p, nn.Parameter):
                p.requires_grad_(False)

    # ------------------------------------------------------------------ forward
    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per modality the frame features ``pose_frames`` (B, T_h, D) / ``video_frames`` (B, T_l, D)
        (CLS after ``ln_post``) and their means over frames, ``pose`` / ``video`` (B, D)."""
        p = z = None
        if self.pose_encoder is not None:
            p = self.pose_encoder(batch["joints"], times=batch.get("pose_time"))[0]
        elif self.use_pose:
            p = self.clip.visual.ln_pre(self.pose_embed(batch["joints"], batch.get("pose_time")))
        if self.use_video:
            z = self.video_embed(batch["frames"])
        if self.blocks is not None:
            for blk, block in zip(self.clip.visual.transformer.resblocks, self.blocks):
                p, z = block(blk, p, z)
        else:
            p = p if p is None or self.pose_stream is None else self.pose_stream(p)
            z = None if z is None else self.video_stream(z)
        out: dict[str, torch.Tensor] = {}
        if p is not None:
            if self.pose_encoder is not None:  # Poseformer: the mean of the frame's tokens after its LayerNorm
                frames = self.pose_encoder.frame_features(p)
            elif self.pose_embed.num_prefix_tokens:
                frames = self.pose_norm(p[:, :, 0])
            else:  # no CLS token: the mean of the frame's joint tokens
                frames = self.pose_norm(p).mean(dim=2)
            out["pose_frames"], out["pose"] = frames, frames.mean(dim=1)
        if z is not None:
            frames = self.video_norm(z[:, :, 0])
            out["video_frames"], out["video"] = frames, frames.mean(dim=1)
        return out

    def logits(self, batch: Batch) -> torch.Tensor:
        """Joint Prediction: (B, C) class logits from the concatenated pose and video features."""
        out = self.encode(batch)
        feats = torch.cat([out[m] for m in _MODALITIES if m in out], dim=-1)
        return self.head(self.dropout(feats))

    def loss(self, batch: Batch, label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
        """Cross-entropy of the joint prediction (soft targets for a mixed batch and label smoothing)."""
        mix = {k: batch[k] for k in ("mix_index", "mix_lam") if batch.get(k) is not None}
        return {"loss": soft_cross_entropy(self.logits(batch), batch["label"].long(), float(label_smoothing), **mix)}

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.loss(batch)

    #: :meth:`predict` gives logits: test views are averaged as probabilities (AIM's ``average_clips='prob'``)
    scores_are_logits = True

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        """(B, C) class scores (logits); argmax is the prediction, the caller averages views."""
        return self.logits(batch)


def _trainable_copy(module: nn.Module) -> nn.Module:
    """A trainable copy of a frozen module (AIM trains ``ln_post``; each stream gets its own)."""
    new = copy.deepcopy(module)
    for p in new.parameters():
        p.requires_grad_(True)
    return new


def _keep_vision_tower(clip: nn.Module) -> None:
    """Drop what PGVT never runs: the text tower and the image projection (it classifies from the
    width-D CLS tokens, as AIM does), so they cost no memory and, with ``clip.frozen=False``, are not
    counted or handed to the optimiser as tunable."""
    for name in ("transformer", "token_embedding", "ln_final"):
        if isinstance(getattr(clip, name, None), nn.Module):
            setattr(clip, name, nn.Identity())
    for name in ("positional_embedding", "text_projection", "logit_scale", "logit_bias"):
        if isinstance(getattr(clip, name, None), nn.Parameter):
            setattr(clip, name, None)
    if isinstance(getattr(clip.visual, "proj", None), nn.Parameter):
        clip.visual.proj = None
