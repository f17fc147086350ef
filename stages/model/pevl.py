"""The PeVL model: encoders + UCMR + SGMC, switchable into every ablation of the paper."""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Optional

import torch
from torch import nn

from .batch import Batch
from .clip_loader import tokenizer_for
from .frozen_clip import FrozenCLIPModel
from .heads import ConcatFusion, LinearHead
from .losses import (match_weights, nt_xent, semantic_guided_loss, soft_cross_entropy, strength_coefficients,
                     vanilla_contrastive_loss)
from .pose_encoder import PoseEncoder
from .poseformer import PoseformerEncoder
from .precision import float32_region
from .settings import PEVL_MODALITIES as _MODALITIES
from .settings import PeVLSettings
from .sgmc import SIMILARITY_TERMS, action_similarity, combined_similarity
from .text_encoder import TextEncoder, build_prompt
from .ucmr import UCMRBlock, weighted_pose_mask
from .video_encoder import VideoEncoder

log = logging.getLogger(__name__)



class PeVL(FrozenCLIPModel):
    """Pose-enhanced Vision-Language model (CVPR 2024) on an open_clip CLIP.

    Inputs are the batch contract's tensors (:class:`stages.model.batch.Batch`: ``frames``,
    ``joints``, ``pose_time``, ``video_pose_index``, ``mask_grid``, ``label``); class texts are held by the model
    (:meth:`set_class_texts`).
    :meth:`loss` returns ``L = L_t + lambda_R * L_R`` and its parts, :meth:`predict` the (B, C)
    scores of eq. (7). The CLIP towers are frozen; adapters, embeddings, projections, UCMR, heads
    and temperatures are tunable (:meth:`tunable_parameters`). A parameter exists only where the
    variant uses it; :attr:`leaves_unused_parameters` says whether a training step can still leave a
    tunable parameter without gradient (what DDP's ``find_unused_parameters`` needs), and
    :meth:`structure` describes what was built.
    """

    settings_class = PeVLSettings
    param_group_rules = (
        (r"clip\.", "clip"),
        (r"video_encoder\.|video_proj$", "video"),
        (r"pose_encoder\.|pose_proj$", "pose"),
        (r"ucmr\.|refine_logit_scale$", "ucmr"),
        (r"logit_scale$", "sgmc"),
        (r"text_encoder\.", "text"),
        (r"head\.|fusion\.", "head"),
    )

    def __init__(self, cfg: Optional[Any] = None):
        super().__init__(cfg)  # checks cfg (PeVLSettings), loads and freezes CLIP
        cfg = self.cfg
        mods = list(cfg["modalities"])
        self.use_video, self.use_pose, self.use_text = (m in mods for m in _MODALITIES)
        if not (self.use_video or self.use_pose):
            raise ValueError("at least one of 'video', 'pose' is needed")
        self.clip_arch = cfg["clip"]["arch"]
        clip = self.clip
        if not self.use_text:  # the text tower would only cost memory
            for name in ("transformer", "token_embedding", "ln_final"):
                setattr(clip, name, nn.Identity())
        visual = clip.visual
        self.embed_dim = visual.proj.shape[1]
        ad, pc, uc, sg = cfg["adapters"], cfg["pose"], cfg["ucmr"], cfg["sgmc"]
        train_proj = bool(cfg["train_proj"])
        self.prompt_form = cfg["text"]["prompt"]

        self.video_encoder = self.pose_encoder = self.text_encoder = None
        if self.use_video:
            self.video_encoder = VideoEncoder(visual, ad["video"], ad["ratio"], ad["mlp_scale"])
            self.video_proj = nn.Parameter(visual.proj.detach().clone(), requires_grad=train_proj)
        if self.use_pose and pc["encoder"] == "poseformer":  # supp. Table 1: Poseformer instead of CLIP
            self.pose_encoder = PoseformerEncoder(
                visual.conv1.out_channels, cfg["num_joints"], cfg["num_pose_frames"], pc["poseformer"], ad["pose"],
                ad["ratio"], ad["mlp_scale"], pc["normalize"], pc["motion"], pc["embedding"], cfg.get("num_persons", 1))
        elif self.use_pose:
            self.pose_encoder = PoseEncoder(
                visual, cfg["num_joints"], cfg["num_pose_frames"], ad["pose"], ad["ratio"], ad["mlp_scale"],
                pc["temporal_attn"], pc["form"], pc["heatmap_size"], pc["heatmap_sigma"], pc["cls_token"],
                pc.get("normalize", "crop"), pc.get("motion", False), pc.get("embedding", "shared"),
                cfg.get("num_persons", 1), pc.get("score", True))
        if self.use_pose:
            self.pose_proj = nn.Parameter(visual.proj.detach().clone(), requires_grad=train_proj)
        if self.use_text:
            self.text_encoder = TextEncoder(clip, ad["text"], ad["text_ratio"],
                                            ad["mlp_scale"], train_proj)
        n_ucmr = int(uc["num_blocks"]) if (self.use_video and self.use_pose) else 0
        if n_ucmr and pc["form"] != "coords":
            log.warning("heatmap pose has no joint tokens; P2V uses uniform joint weights, V2P is off")
        last_block = visual.transformer.resblocks[-1]  # P2V is inserted after it and shares its MLP
        self.ucmr = nn.ModuleList(
            UCMRBlock(last_block, uc["p2v"], uc["v2p"] and pc["form"] == "coords", uc.get("background", "grouping"),
                      ad["ratio"], ad["mlp_scale"], uc["p2v_start"])
            for _ in range(n_ucmr))
        self.fusion_mode = cfg["fusion"]
        n_vis = int(self.use_video) + int(self.use_pose)
        self.fusion = ConcatFusion(self.embed_dim, n_vis) if (
            self.use_text and self.fusion_mode == "concat" and n_vis == 2) else None
        self.head = None if self.use_text else LinearHead(n_vis * self.embed_dim, cfg["num_classes"])
        # what the objective reads, resolved once: loss() and predict() follow these, structure() reports them
        self.sims: tuple[str, ...] = ()
        if self.use_text and self.fusion_mode == "sgmc":
            unknown = [t for t in sg["sims"] if t not in SIMILARITY_TERMS]
            if unknown or not sg["sims"]:
                raise ValueError(f"sgmc.sims must be a non-empty subset of {SIMILARITY_TERMS}, got {sg['sims']}")
            need = {"vs": self.use_video, "ps": self.use_pose, "fw": self.use_pose}
            missing = [t for t in sg["sims"] if not need[t]]
            if missing:
                raise ValueError(f"sgmc.sims {missing} need a modality this model lacks ({mods})")
            self.sims = tuple(t for t in SIMILARITY_TERMS if t in sg["sims"])  # eq. 4 averages: order-free
        if not self.use_text:
            self.text_loss = "cross_entropy"
        else:
            self.text_loss = "semantic" if (self.fusion_mode == "sgmc" and sg["loss"] == "semantic") else "vanilla"
        refine = bool(len(self.ucmr)) and bool(uc["refine_loss"])
        self.refine_terms: tuple[str, ...] = tuple(
            t for t, on in (("video", refine and self.ucmr[0].p2v is not None),
                            ("pose", refine and self.ucmr[0].v2p is not None)) if on)
        # text-matching temperature, from CLIP's (learnable, as ActionCLIP) or model.temperature.text_init;
        # only with text
        tc = cfg["temperature"]
        text_init = (clip.logit_scale.detach().clone().reshape(()) if tc["text_init"] is None
                     else torch.tensor(math.log(float(tc["text_init"]))))
        self.logit_scale = nn.Parameter(text_init) if self.use_text else None
        # eq. (3)'s learnable tau, CLIP's initial 0.07; only when a refinement term is trained
        self.refine_logit_scale = (nn.Parameter(torch.tensor(math.log(1 / 0.07)))
                                   if self.refine_terms else None)
        if not self.clip_frozen:
            self._freeze_clip_parts_never_read()
        self.leaves_unused_parameters = self._leaves_unused_parameters()
        self._tokenizer = None
        self._recording = False
        self.class_texts: list[str] = []
        self.duplicate_text_groups: list[list[int]] = []
        self.register_buffer("class_tokens", torch.zeros(0, 77, dtype=torch.long), persistent=False)
        self.register_buffer("class_text_id", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("text_unique_ids", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("class_text_pos", torch.zeros(0, dtype=torch.long), persistent=False)
        self._text_cache = None
        if self.clip_frozen:
            self.clip.eval()

    # ------------------------------------------------------------------ parameters / modes
    def _freeze_clip_parts_never_read(self) -> None:
        """With trainable towers (``clip.frozen=False``), keep frozen the CLIP parameters no forward
        reads, so every tunable parameter gets a gradient: CLIP's own projections and temperature
        (PeVL trains copies of them), the text tower's position embedding without text, and the
        image embedding of a model without video (coordinates never pass the patch embedding; the
        CLS token is copied)."""
        clip, vis = self.clip, self.clip.visual
        never: list[nn.Parameter] = [vis.proj, clip.logit_scale]
        tp = getattr(clip, "text_projection", None)
        never += list(tp.parameters()) if isinstance(tp, nn.Module) else [tp] if tp is not None else []
        if not self.use_text:
            never.append(clip.positional_embedding)
        if not self.use_video:
            never.append(vis.class_embedding)
            if self.cfg["pose"]["form"] == "coords":
                never += [vis.positional_embedding, *vis.conv1.parameters()]
            if isinstance(self.pose_encoder, PoseformerEncoder):  # no forward reads the vision tower then
                never += list(vis.parameters())
        for p in never:
            if isinstance(p, nn.Parameter):
                p.requires_grad_(False)

    def _leaves_unused_parameters(self) -> bool:
        """Whether a training step can leave a tunable parameter without gradient: a visual branch
        whose features reach no loss term (e.g. video without S_VS, concatenation, head or P2V's
        refinement term). Every built variant is checked against a real backward pass in
        ``tests/model/test_model_variants.py``."""
        no_text = not self.use_text
        video_read = no_text or self.fusion_mode == "concat" or "vs" in self.sims or "video" in self.refine_terms
        pose_read = (no_text or self.fusion_mode == "concat" or "ps" in self.sims or "fw" in self.sims
                     or "pose" in self.refine_terms)
        return (self.use_video and not video_read) or (self.use_pose and not pose_read)

    def structure(self) -> dict[str, Any]:
        """What was built, read off the modules (the ablation tests compare it with each table row):
        encoders, adapters per encoder, pose encoder (CLIP or Poseformer) / form / T-Attn / CLS token,
        UCMR blocks with P2V, V2P and its background reading, refinement terms, fusion or head,
        similarity terms, loss, prompt, trainable projections and towers."""
        pe, ve, te = self.pose_encoder, self.video_encoder, self.text_encoder
        pf = isinstance(pe, PoseformerEncoder)
        blocks = list(self.ucmr)
        v2p = [b.v2p for b in blocks if b.v2p is not None]
        return dict(
            encoders=tuple(n for n, e in (("video", ve), ("pose", pe), ("text", te)) if e is not None),
            adapters=dict(video=None if ve is None else ve.attn_adapters is not None,
                          pose=None if pe is None else (pe.has_adapters if pf else pe.s_adapters is not None),
                          text=None if te is None else te.attn_adapters is not None),
            pose_encoder=None if pe is None else "poseformer" if pf else "clip",
            pose_form=None if pe is None else pe.form,
            temporal_attn=None if pe is None else pe.temporal_attn,
            pose_cls_token=None if pe is None else pe.num_prefix_tokens == 1,
            pose_normalize=(pe.normalize if pf else getattr(pe.embed, "normalize", None)) if pe is not None else None,
            pose_motion=(pe.motion if pf else getattr(getattr(pe.embed, "joint_embed", None), "motion", None))
            if pe is not None else None,
            pose_embedding=(pe.embedding if pf else ("per_joint" if pe.embed.joint_embed.per_joint else "shared")
                            if hasattr(pe.embed, "joint_embed") else None) if pe is not None else None,
            ucmr_blocks=len(blocks),
            p2v=any(b.p2v is not None for b in blocks),
            v2p=bool(v2p),
            background=v2p[0].background_reading if v2p else None,
            refine_terms=self.refine_terms,
            head="linear" if self.head is not None else "concat" if self.fusion is not None else
                 "sgmc" if self.sims else "cosine",
            sims=self.sims,
            loss=self.text_loss,
            prompt=self.prompt_form if te is not None else None,
            trainable_projections=any(p.requires_grad for n, p in self.named_parameters() if n.endswith("proj")),
            clip_frozen=self.clip_frozen,
        )

    def train(self, mode: bool = True) -> "PeVL":
        super().train(mode)  # frozen towers stay in eval mode
        self._text_cache = None
        return self

    @contextlib.contextmanager
    def record(self):
        """``with model.record() as maps: model.encode(batch)``: the forward also keeps what the
        explain pictures draw (supp. Figs. 8-10): ``joint_weights`` (in the output), the P2V block's
        attention of each frame's CLS token over the patches (``p2v_attention``), V2P's attention
        of every pose / background token over the patches (``v2p_attention``) and the attention
        each pose frame receives in the last T-Attn (``pose_temporal_attention``)."""
        maps: dict[str, torch.Tensor] = {}
        holders = [m for m in self.modules() if hasattr(m, "recorder")]
        for m in holders:
            m.recorder = maps
        self._recording = True
        try:
            yield maps
        finally:
            self._recording = False
            for m in holders:
                m.recorder = None

    # ------------------------------------------------------------------ text
    def set_class_texts(self, texts: list[str], coarse_type: str = "") -> None:
        """Build the prompts of every class and tokenize them (offline, open_clip's BPE).

        Classes whose prompts are identical as CLIP reads them (Gym99 classes 58 and 70 share one
        text; texts that differ only past the 77-token context) are one text target: they share a text id, count as positives of each other in the loss (the model
        cannot separate them by text), and get identical scores in :meth:`predict`, where argmax
        picks the lower class index. The groups are logged and kept in ``duplicate_text_groups``.
        """
        coarse = self.cfg["text"].get("coarse_type") or coarse_type  # the setting, where set, over the entry's
        prompts = [build_prompt(t, coarse, self.prompt_form) for t in texts]
        tokens = self.tokenizer(prompts)
        # CLIP reads at most 77 tokens, the rest cut: prompts equal as read are one text target
        # (two long texts differing only at their end were trained as two targets of one text)
        encode = getattr(self.tokenizer, "encode", None)  # (a row that fills the context may fit exactly)
        full = [i for i, row in enumerate(tokens.tolist())
                if row[-1] != 0 and (encode is None or len(encode(prompts[i])) + 2 > tokens.shape[1])]
        if full:
            log.warning("%d class prompt(s) fill CLIP's %d-token context and are cut there (what follows, the "
                        "coarse type included, is not read), e.g. class %d: %r", len(full), tokens.shape[1],
                        full[0], prompts[full[0]])
        first: dict[tuple, int] = {}
        ids = [first.setdefault(tuple(row), i) for i, row in enumerate(tokens.tolist())]
        groups: dict[int, list[int]] = {}
        for i, j in enumerate(ids):
            groups.setdefault(j, []).append(i)
        self.duplicate_text_groups = [g for g in groups.values() if len(g) > 1]
        if self.duplicate_text_groups:
            cut = [g for g in self.duplicate_text_groups if len({prompts[i] for i in g}) > 1]
            log.warning("classes with identical prompts (scored as ties): %s", self.duplicate_text_groups)
            if cut:
                log.warning("of them, %s differ only past CLIP's %d-token cut: shorten their texts to tell them "
                            "apart by text", cut, tokens.shape[1])
        self.class_texts = prompts
        dev = self.class_text_id.device
        uniq = sorted(set(ids))
        self.class_tokens = tokens.to(dev)
        self.class_text_id = torch.tensor(ids, dtype=torch.long, device=dev)
        # predict() encodes each distinct text once and expands it to the classes; indices made here,
        # on the host, once (no torch.unique in the step)
        self.text_unique_ids = torch.tensor(uniq, dtype=torch.long, device=dev)
        self.class_text_pos = torch.tensor([uniq.index(i) for i in ids], dtype=torch.long, device=dev)
        self._text_cache = None

    @property
    def tokenizer(self):
        """open_clip's tokenizer of the CLIP architecture (made on first use, offline)."""
        if self._tokenizer is None:
            self._tokenizer = tokenizer_for(self.clip_arch)
        return self._tokenizer

    def encode_texts(self, text_ids: torch.Tensor):
        """Encode the prompts of the given class ids -> S (n, E), W (n, L, E), word mask (n, L)."""
        if self.class_tokens.shape[0] == 0:
            raise RuntimeError("call model.set_class_texts(texts, coarse_type) before using text")
        return self.text_encoder(self.class_tokens[text_ids])

    # ------------------------------------------------------------------ vision / pose
    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Encoders and UCMR. Returns pooled features before (``z_v``, ``z_p``) and after
        refinement (``video``, ``pose``: (B, E)), pose frame features ``frames`` (B, T, E), the
        pose encoder's ``joint_weights`` (B, T, J) when computed, and the P2V mask ``patch_mask``
        when UCMR runs."""
        out: dict[str, torch.Tensor] = {}
        v_tok = p_tok = joint_w = None
        if self.use_video:
            v_tok = self.video_encoder(batch["frames"])
            out["z_v"] = (self.video_encoder.frame_features(v_tok) @ self.video_proj).mean(1)
        if self.use_pose:
            need_w = len(self.ucmr) > 0 or self._recording
            p_tok, joint_w = self.pose_encoder(batch["joints"], need_joint_weights=need_w,
                                               times=batch.get("pose_time"))
            frames = self.pose_encoder.frame_features(p_tok) @ self.pose_proj
            out["z_p"], out["frames"] = frames.mean(1), frames
            if joint_w is not None:
                out["joint_weights"] = joint_w
        if len(self.ucmr):
            idx = batch["video_pose_index"].long()
            grid = batch["mask_grid"]
            if joint_w is None:  # heatmap pose: no joint tokens, every joint weighs the same
                joint_w = torch.full((grid.shape[0], batch["joints"].shape[1], grid.shape[2]), 1.0 / grid.shape[2],
                                     device=grid.device)
            patch_mask = weighted_pose_mask(joint_w, grid, idx)
            out["patch_mask"] = patch_mask
            background = None
            for blk in self.ucmr:
                v_tok, p_tok, bg = blk(v_tok, p_tok, patch_mask, idx)
                background = bg if bg is not None else background
            out["video"] = (self.video_encoder.frame_features(v_tok) @ self.video_proj).mean(1)
            frames = self.pose_encoder.frame_features(p_tok, background, idx) @ self.pose_proj
            out["pose"], out["frames"] = frames.mean(1), frames
        else:
            if self.use_video:
                out["video"] = out["z_v"]
            if self.use_pose:
                out["pose"] = out["z_p"]
        return out

    def _visual_parts(self, out) -> list[torch.Tensor]:
        return [out[k].float() for k, on in (("video", self.use_video), ("pose", self.use_pose)) if on]

    def similarity(self, out: dict[str, torch.Tensor], sentence, words, word_mask) -> torch.Tensor:
        """(B, C) clip-text similarity, float32 with autocast off: eq. (4) for SGMC, cosine of the
        fused feature for concat."""
        with float32_region(sentence):
            sentence, words = sentence.float(), words.float()
            if self.sims:
                f = {k: None if out.get(k) is None else out[k].float() for k in ("video", "pose", "frames")}
                return combined_similarity(self.sims, f["video"], f["pose"], f["frames"], sentence, words,
                                           word_mask, self.cfg["sgmc"]["fw_temperature"])
            parts = self._visual_parts(out)
            x = self.fusion(parts) if self.fusion is not None else parts[0]
            return action_similarity(x, sentence)

    def head_logits(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Text-free variants: the linear head's (B, C) logits, float32 with autocast off."""
        parts = self._visual_parts(out)
        with float32_region(parts[0]):
            return self.head(torch.cat(parts, dim=-1))

    # ------------------------------------------------------------------ objectives
    def temperature_scale(self, log_scale: nn.Parameter) -> torch.Tensor:
        """``1 / tau = exp(log_scale)`` at most ``temperature.max_scale`` (float32). ``clamp='projected'``:
        a parameter above the bound is set back to it first (CLIP's own training clamps the
        parameter after each step), so the scale's gradient is never cut; ``'forward'``: clamped in
        the graph, with zero gradient at or above the bound."""
        tc = self.cfg["temperature"]
        top = float(tc["max_scale"])
        if tc["clamp"] == "forward":
            return log_scale.float().exp().clamp(max=top)
        with torch.no_grad():
            log_scale.clamp_(max=math.log(top))
        return log_scale.float().exp()

    def loss(self, batch: Batch, label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
        """``L = L_t + lambda_R L_R`` (Sec. 3.4) with its parts ``loss_t``, ``loss_r``. The
        similarities, strength coefficients and losses are float32 with autocast off. A mixed batch
        (``mix_index``, ``mix_lam``) and ``label_smoothing`` give soft targets (:mod:`.losses`)."""
        out = self.encode(batch)
        labels = batch["label"].long()
        mix = {k: batch[k] for k in ("mix_index", "mix_lam") if batch.get(k) is not None}
        eps = float(label_smoothing)
        if self.use_text:
            tid = self.class_text_id[labels]  # same text = same target (see set_class_texts)
            # the text of every clip, repeats included: (B, B) without a host sync (no torch.unique)
            sent, words, wmask = self.encode_texts(tid)
            sim = self.similarity(out, sent, words, wmask)  # clip i vs the label text of clip j
            with float32_region(sim):
                scale = self.temperature_scale(self.logit_scale)
                match = match_weights(tid, **mix) if mix else None
                if self.text_loss == "semantic":
                    coef = strength_coefficients(sent.float(), tid, match, **mix)
                    cols = strength_coefficients(sent.float(), tid, match, **mix, columns=True) if mix else None
                    loss_t = semantic_guided_loss(sim, tid, coef, scale, match, eps, cols)
                else:
                    loss_t = vanilla_contrastive_loss(sim, tid, scale, match, eps)
        else:
            logits = self.head_logits(out)
            with float32_region(logits):
                loss_t = soft_cross_entropy(logits, labels, eps, **mix)
        with float32_region(loss_t):
            loss_r = loss_t.new_zeros(())
            if self.refine_terms:
                scale_r = self.temperature_scale(self.refine_logit_scale)
                for term, before, after in (("video", "z_v", "video"), ("pose", "z_p", "pose")):
                    if term in self.refine_terms:
                        loss_r = loss_r + nt_xent(out[before].float(), out[after].float(), scale_r,
                                                  reduction=self.cfg["ucmr"]["refine_reduction"])
            lam = float(self.cfg["lambda_r"])
            return {"loss": loss_t + lam * loss_r, "loss_t": loss_t, "loss_r": loss_r}

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.loss(batch)

    @property
    def scores_are_logits(self) -> bool:
        """Whether :meth:`predict` gives a classifier's logits (text-free variants), which test views
        average as probabilities (AIM's ``average_clips='prob'``), rather than eq. (7)'s similarities,
        averaged as they are."""
        return not self.use_text

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        """Eq. (7): (B, C) float32 scores of each clip against every class; argmax is the prediction.

        Text models return the similarity ``S`` of eq. (4) (or of the fused feature) to every class
        prompt, each distinct prompt encoded once and cached while in eval mode; text-free variants
        return the linear head's logits. The caller averages over views.
        """
        out = self.encode(batch)
        if not self.use_text:
            return self.head_logits(out)
        if self._text_cache is None or self.training:
            sent, words, wmask = self.encode_texts(self.text_unique_ids)
            pos = self.class_text_pos  # expand the distinct texts to the classes
            cache = (sent[pos], words[pos], wmask[pos])
            if not self.training:
                self._text_cache = cache
        else:
            cache = self._text_cache
        return self.similarity(out, *cache)
