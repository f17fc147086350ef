"""Tunable parameters and GFLOPs per clip, counted the fvcore way (one multiply-add = one FLOP).

The model is built on the ``meta`` device (random, no weights, no download, no memory) and one
clip is run under :class:`torch.utils.flop_counter.FlopCounterMode`, whose FLOPs (2 per MAC) are
halved. On meta tensors scaled-dot-product attention decomposes into the two batched matmuls, so
attention maps are counted; on CPU tensors the fused CPU kernel is silently skipped by the counter
(which is why a ViT-B/16 image reads 16.85 instead of 17.58 GMACs there).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from stages.nested_config import deep_merge, to_plain

from .batch import Batch, dummy_batch
from .factory import build_model, model_settings

#: Per-clip cost components reported next to the total.
PARTS = {"video": ("VideoEncoder",), "pose": ("PoseEncoder", "PoseformerEncoder"), "text": ("TextEncoder",),
         "ucmr": ("UCMRBlock",)}


def inference_forward(model, batch: Batch, texts_per_clip: int = 1) -> torch.Tensor:
    """One clip through the encoders, UCMR and the similarity against ``texts_per_clip`` prompts
    (the clip's own label text at 1), or through the linear head for text-free variants."""
    if hasattr(model, "logits"):  # models with their own classifier (PGVT, AIM): nothing else runs
        return model.logits(batch)
    out = model.encode(batch)
    if not model.use_text:
        return model.head_logits(out)
    ctx = model.clip.positional_embedding.shape[0]
    tokens = torch.zeros(texts_per_clip, ctx, dtype=torch.long, device=batch["frames"].device)
    tokens[:, 0], tokens[:, -1] = 49406, 49407  # SOT ... EOT: a full-length prompt, like fvcore sees
    sent, words, mask = model.text_encoder(tokens)
    return model.similarity(out, sent, words, mask)


def model_stats(model_cfg: Any, arch: str = "ViT-B-16", num_video_frames: Optional[int] = None,
                num_pose_frames: Optional[int] = None, texts_per_clip: int = 1,
                device: Optional[str] = "meta") -> dict[str, float]:
    """``tunable_params_m``, ``gflops`` (per clip, MACs) and per-part GFLOPs for a model config
    (frame counts: the config's own unless given)."""
    cfg = model_settings(model_cfg).to_dict()
    cfg = deep_merge(cfg, dict(clip=dict(arch=arch, pretrained=None, pretrained_path=None),
                               num_video_frames=num_video_frames or cfg["num_video_frames"],
                               num_pose_frames=max(num_pose_frames or cfg["num_pose_frames"], 1)))
    with torch.device(device):
        model = build_model(cfg)
    params = sum(p.numel() for p in model.tunable_parameters())
    batch = dummy_batch(model, 1, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        inference_forward(model, batch, texts_per_clip)
    counts = fc.get_flop_counts()
    total = fc.get_total_flops() / 2
    res = {"tunable_params_m": params / 1e6, "gflops": total / 1e9}
    # FlopCounterMode keys modules by class name (all instances of a class aggregated)
    for part, classes in PARTS.items():
        res[f"gflops_{part}"] = sum(sum(counts.get(cls, {}).values()) for cls in classes) / 2 / 1e9
    return res
