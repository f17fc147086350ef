"""The PeVL model: encoders + UCMR + SGMC, switchable into every ablation of the paper."""
from __future__ import annotations

import logging
import math
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from stages.nested_config import deep_merge

from .clip_loader import freeze, load_clip, tokenizer_for
from .heads import ConcatFusion, LinearHead
from .losses import nt_xent, semantic_guided_loss, strength_coefficients, vanilla_contrastive_loss
from .pose_encoder import PoseEncoder
from .sgmc import action_similarity, combined_similarity
from .text_encoder import TextEncoder, build_prompt
from .ucmr import UCMRBlock, weighted_pose_mask
from .video_encoder import VideoEncoder

log = logging.getLogger(__name__)

#: Every key a model config may set, with PeVL's defaults (ViT-B/16, Diving48, Sec. 4.1).
DEFAULT_MODEL_CFG: dict[str, Any] = dict(
    type="PeVL",
    # frozen=False trains the towers too (the demo's random tiny CLIP); the papers keep them frozen
    clip=dict(arch="ViT-B-16", pretrained="openai", pretrained_path=None, cache_dir=None, frozen=True),
    modalities=["video", "pose", "text"],  # Table 7
    num_classes=48,
    num_joints=17,
    num_pose_frames=48,
    num_video_frames=16,
    # Table 8; ratio = bottleneck width / D. text_ratio: see docs/model.md (Table 7's +6M per text).
    adapters=dict(video=True, pose=True, text=True, ratio=0.25, text_ratio=0.5, mlp_scale=0.5),
    # Table 9, supp. Table 3; cls_token: PGVT Sec. 3.2's per-frame CLS (False: mean over joint tokens)
    pose=dict(form="coords", temporal_attn=True, heatmap_size=112, heatmap_sigma=2.0, cls_token=True),
    text=dict(prompt="label_prompt_type", coarse_type=""),  # supp. Table 4
    ucmr=dict(num_blocks=1, p2v=True, v2p=True, refine_loss=True),  # Table 5, supp. Fig. 7
    fusion="sgmc",  # 'sgmc' (eq. 4) or 'concat' (Tables 4, 7)
    sgmc=dict(sims=["vs", "ps", "fw"], loss="semantic", fw_temperature=0.01),  # Table 6
    lambda_r=0.1,  # Sec. 3.4
    train_proj=True,  # Table 4 baseline: "frozen CLIP with a trainable projection layer"
)

_MODALITIES = ("video", "pose", "text")


class PeVL(nn.Module):
    """Pose-enhanced Vision-Language model (CVPR 2024) on an open_clip CLIP.

    Inputs are the batch tensors of the data contract (``frames``, ``joints``, ``video_pose_index``,
    ``mask_grid``, ``label``); class texts are held by the model (:meth:`set_class_texts`).
    :meth:`loss` returns ``L = L_t + lambda_R * L_R`` and its parts, :meth:`predict` the (B, C)
    scores of eq. (7). The CLIP towers are frozen; adapters, embeddings, projections, UCMR, heads
    and temperatures are tunable (:meth:`tunable_parameters`).
    """

    def __init__(self, cfg: Optional[dict] = None):
        super().__init__()
        cfg = deep_merge(DEFAULT_MODEL_CFG, cfg)
        self.cfg = cfg
        mods = [m for m in cfg["modalities"]]
        bad = set(mods) - set(_MODALITIES)
        if bad or not mods:
            raise ValueError(f"modalities must be a non-empty subset of {_MODALITIES}, got {mods}")
        self.use_video, self.use_pose, self.use_text = (m in mods for m in _MODALITIES)
        if not (self.use_video or self.use_pose):
            raise ValueError("at least one of 'video', 'pose' is needed")
        c = cfg["clip"]
        self.clip_arch = c["arch"]
        clip = load_clip(c["arch"], c.get("pretrained"), c.get("pretrained_path"), c.get("cache_dir"))
        self.clip_frozen = bool(c.get("frozen", True))
        freeze(clip, self.clip_frozen)
        if not self.use_text:  # the text tower would only cost memory
            for name in ("transformer", "token_embedding", "ln_final"):
                setattr(clip, name, nn.Identity())
        self.clip = clip
        visual = clip.visual
        width = visual.conv1.out_channels
        heads = visual.transformer.resblocks[0].attn.num_heads
        self.embed_dim = visual.proj.shape[1]
        ad, pc, uc, sg = cfg["adapters"], cfg["pose"], cfg["ucmr"], cfg["sgmc"]
        train_proj = bool(cfg["train_proj"])

        self.video_encoder = self.pose_encoder = self.text_encoder = None
        if self.use_video:
            self.video_encoder = VideoEncoder(visual, ad["video"], ad["ratio"], ad["mlp_scale"])
            self.video_proj = nn.Parameter(visual.proj.detach().clone(), requires_grad=train_proj)
        if self.use_pose:
            self.pose_encoder = PoseEncoder(
                visual, cfg["num_joints"], cfg["num_pose_frames"], ad["pose"], ad["ratio"], ad["mlp_scale"],
                pc["temporal_attn"], pc["form"], pc["heatmap_size"], pc["heatmap_sigma"], pc["cls_token"])
            self.pose_proj = nn.Parameter(visual.proj.detach().clone(), requires_grad=train_proj)
        if self.use_text:
            self.text_encoder = TextEncoder(clip, ad["text"], ad.get("text_ratio", ad["ratio"]),
                                            ad["mlp_scale"], train_proj)
        n_ucmr = int(uc["num_blocks"]) if (self.use_video and self.use_pose) else 0
        if n_ucmr and pc["form"] != "coords":
            log.warning("heatmap pose has no joint tokens; P2V uses uniform joint weights, V2P is off")
        self.ucmr = nn.ModuleList(
            UCMRBlock(width, heads, uc["p2v"], uc["v2p"] and pc["form"] == "coords") for _ in range(n_ucmr))
        self.fusion_mode = cfg["fusion"]
        if self.fusion_mode not in ("sgmc", "concat"):
            raise ValueError(f"fusion must be 'sgmc' or 'concat', got {self.fusion_mode!r}")
        n_vis = int(self.use_video) + int(self.use_pose)
        self.fusion = ConcatFusion(self.embed_dim, n_vis) if (
            self.use_text and self.fusion_mode == "concat" and n_vis == 2) else None
        self.head = None if self.use_text else LinearHead(n_vis * self.embed_dim, cfg["num_classes"])
        if self.use_text and self.fusion_mode == "sgmc":
            need = {"vs": self.use_video, "ps": self.use_pose, "fw": self.use_pose}
            missing = [s for s in sg["sims"] if not need.get(s, True)]
            if missing:
                raise ValueError(f"sgmc.sims {missing} need a modality this model lacks ({mods})")
        # text-matching temperature, from CLIP's (learnable, as ActionCLIP)
        self.logit_scale = nn.Parameter(clip.logit_scale.detach().clone().reshape(()))
        # eq. (3)'s learnable tau, CLIP's initial 0.07
        self.refine_logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self._tokenizer = None
        self.class_texts: list[str] = []
        self.duplicate_text_groups: list[list[int]] = []
        self.register_buffer("class_tokens", torch.zeros(0, 77, dtype=torch.long), persistent=False)
        self.register_buffer("class_text_id", torch.zeros(0, dtype=torch.long), persistent=False)
        self._text_cache = None
        if self.clip_frozen:
            self.clip.eval()

    # ------------------------------------------------------------------ parameters / modes
    def named_tunable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def tunable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser should see (everything outside the frozen CLIP towers)."""
        return [p for _, p in self.named_tunable_parameters()]

    def train(self, mode: bool = True) -> "PeVL":
        super().train(mode)
        if self.clip_frozen:
            self.clip.eval()  # frozen towers stay in eval mode; requires_grad never changes here
        self._text_cache = None
        return self

    # ------------------------------------------------------------------ text
    def set_class_texts(self, texts: list[str], coarse_type: str = "") -> None:
        """Build the prompts of every class and tokenize them (offline, open_clip's BPE).

        Classes whose prompts are identical (Gym99 classes 58 and 70 share one text) are one text
        target: they share a text id, count as positives of each other in the loss (the model
        cannot separate them by text), and get identical scores in :meth:`predict`, where argmax
        picks the lower class index. The groups are logged and kept in ``duplicate_text_groups``.
        """
        form = self.cfg["text"]["prompt"]
        coarse = coarse_type or self.cfg["text"].get("coarse_type", "")
        prompts = [build_prompt(t, coarse, form) for t in texts]
        first: dict[str, int] = {}
        ids = [first.setdefault(p, i) for i, p in enumerate(prompts)]
        groups: dict[int, list[int]] = {}
        for i, j in enumerate(ids):
            groups.setdefault(j, []).append(i)
        self.duplicate_text_groups = [g for g in groups.values() if len(g) > 1]
        if self.duplicate_text_groups:
            log.warning("classes with identical prompts (scored as ties): %s", self.duplicate_text_groups)
        self.class_texts = prompts
        if self._tokenizer is None:
            self._tokenizer = tokenizer_for(self.clip_arch)
        dev = self.logit_scale.device
        self.class_tokens = self._tokenizer(prompts).to(dev)
        self.class_text_id = torch.tensor(ids, dtype=torch.long, device=dev)
        self._text_cache = None

    def encode_texts(self, text_ids: torch.Tensor):
        """Encode the prompts of the given class ids -> S (n, E), W (n, L, E), word mask (n, L)."""
        if self.class_tokens.shape[0] == 0:
            raise RuntimeError("call model.set_class_texts(texts, coarse_type) before using text")
        return self.text_encoder(self.class_tokens[text_ids])

    # ------------------------------------------------------------------ vision / pose
    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encoders and UCMR. Returns pooled features before (``z_v``, ``z_p``) and after
        refinement (``video``, ``pose``: (B, E)), pose frame features ``frames`` (B, T, E), and
        the P2V mask ``patch_mask`` when UCMR runs."""
        out: dict[str, torch.Tensor] = {}
        v_tok = p_tok = joint_w = None
        if self.use_video:
            v_tok = self.video_encoder(batch["frames"])
            out["z_v"] = (self.video_encoder.frame_features(v_tok) @ self.video_proj).mean(1)
        if self.use_pose:
            p_tok, joint_w = self.pose_encoder(batch["joints"], need_joint_weights=len(self.ucmr) > 0)
            frames = self.pose_encoder.frame_features(p_tok) @ self.pose_proj
            out["z_p"], out["frames"] = frames.mean(1), frames
        if len(self.ucmr):
            idx = batch["video_pose_index"].long()
            grid = batch["mask_grid"]
            if joint_w is None:  # heatmap pose: no joint tokens, every joint weighs the same
                joint_w = torch.ones(grid.shape[0], batch["joints"].shape[1], grid.shape[2],
                                     device=grid.device, dtype=grid.dtype) / grid.shape[2]
            patch_mask = weighted_pose_mask(joint_w, grid, idx)
            out["patch_mask"] = patch_mask
            for blk in self.ucmr:
                v_tok, p_tok = blk(v_tok, p_tok, patch_mask, idx)
            out["video"] = (self.video_encoder.frame_features(v_tok) @ self.video_proj).mean(1)
            frames = self.pose_encoder.frame_features(p_tok) @ self.pose_proj
            out["pose"], out["frames"] = frames.mean(1), frames
        else:
            if self.use_video:
                out["video"] = out["z_v"]
            if self.use_pose:
                out["pose"] = out["z_p"]
        return out

    def _visual_parts(self, out) -> list[torch.Tensor]:
        return [out[k] for k, on in (("video", self.use_video), ("pose", self.use_pose)) if on]

    def similarity(self, out: dict[str, torch.Tensor], sentence, words, word_mask) -> torch.Tensor:
        """(B, C) clip-text similarity: eq. (4) for SGMC, cosine of the fused feature for concat."""
        if self.fusion_mode == "sgmc":
            sg = self.cfg["sgmc"]
            return combined_similarity(sg["sims"], out.get("video"), out.get("pose"), out.get("frames"),
                                       sentence, words, word_mask, sg["fw_temperature"])
        parts = self._visual_parts(out)
        x = self.fusion(parts) if self.fusion is not None else parts[0]
        return action_similarity(x, sentence)

    # ------------------------------------------------------------------ objectives
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``L = L_t + lambda_R L_R`` (Sec. 3.4) with its parts ``loss_t``, ``loss_r``."""
        out = self.encode(batch)
        labels = batch["label"].long()
        if self.use_text:
            tid = self.class_text_id[labels]  # same text = same target (see set_class_texts)
            uniq, inv = torch.unique(tid, return_inverse=True)
            sent, words, wmask = self.encode_texts(uniq)
            sim = self.similarity(out, sent, words, wmask)[:, inv]  # (B, B): clip i vs text of clip j
            scale = self.logit_scale.exp().clamp(max=100)
            if self.fusion_mode == "sgmc" and self.cfg["sgmc"]["loss"] == "semantic":
                coeff = strength_coefficients(sent[inv], tid)
                loss_t = semantic_guided_loss(sim, tid, coeff, scale)
            elif self.cfg["sgmc"]["loss"] in ("vanilla", "semantic"):
                loss_t = vanilla_contrastive_loss(sim, tid, scale)
            else:
                raise ValueError(f"sgmc.loss must be 'semantic' or 'vanilla', got {self.cfg['sgmc']['loss']!r}")
        else:
            loss_t = F.cross_entropy(self.head(torch.cat(self._visual_parts(out), dim=-1)), labels)
        loss_r = loss_t.new_zeros(())
        uc = self.cfg["ucmr"]
        if len(self.ucmr) and uc["refine_loss"]:
            scale_r = self.refine_logit_scale.exp().clamp(max=100)
            if uc["p2v"]:
                loss_r = loss_r + nt_xent(out["z_v"], out["video"], scale_r)
            if self.ucmr[0].v2p is not None:
                loss_r = loss_r + nt_xent(out["z_p"], out["pose"], scale_r)
        lam = float(self.cfg["lambda_r"])
        return {"loss": loss_t + lam * loss_r, "loss_t": loss_t, "loss_r": loss_r}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.loss(batch)

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. (7): (B, C) scores of each clip against every class; argmax is the prediction.

        Text models return the similarity ``S`` of eq. (4) (or of the fused feature) to every class
        prompt, encoded once and cached while in eval mode; text-free variants return the linear
        head's logits. The caller averages over views.
        """
        out = self.encode(batch)
        if not self.use_text:
            return self.head(torch.cat(self._visual_parts(out), dim=-1))
        if self._text_cache is None or self.training:
            uniq = torch.unique(self.class_text_id)
            sent, words, wmask = self.encode_texts(uniq)
            pos = torch.searchsorted(uniq, self.class_text_id)  # expand unique texts to classes
            cache = (sent[pos], words[pos], wmask[pos])
            if not self.training:
                self._text_cache = cache
        else:
            cache = self._text_cache
        return self.similarity(out, *cache)
