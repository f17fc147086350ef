"""PeVL inside mmengine: data preprocessor, BaseModel wrapper, optimiser constructor, DDP wrapper.

* :class:`PeVLDataPreprocessor` moves a collated batch to the device and there turns the uint8
  frames into CLIP-normalised float32 (the loader never ships floats), casts the float16 mask
  grids, and flattens test views (``(B, V, ...)`` -> ``(B * V, ...)``).
* :class:`PeVLRunnerModel` builds the plain model (``build_model``: :class:`stages.model.PeVL`, or
  :class:`stages.model.PGVT` / AIM by ``type``; it is held as ``.pevl`` either way), gives a text
  model the entry's class texts, and exposes ``forward(mode='loss'|'predict')``; prediction
  averages the views' scores (eq. (7) for PeVL, logits for text-free models).
* :class:`TunableOptimWrapperConstructor` gives the optimiser only the tunable parameters (the
  CLIP towers are frozen): weight decay on matrices, none on biases, norms, scalars
  (temperatures) and 1-d embeddings.
* :class:`PeVLDistributedDataParallel` is mmengine's DDP wrapper that drops ``device_ids`` for a
  CPU module (gloo), which mmengine would otherwise always pass.
"""
from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.model.wrappers import MMDistributedDataParallel
from mmengine.optim import DefaultOptimWrapperConstructor

from stages.data.dataset import CLIP_MEAN, CLIP_STD
from stages.registry import MODEL_WRAPPERS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

_LOSS_PART_NAMES = {"loss_t": "l_text", "loss_r": "l_refine"}  # mmengine sums every key with 'loss'


@MODELS.register_module()
class PeVLDataPreprocessor(BaseDataPreprocessor):
    """uint8 frames -> float on the device -> ``(x / 255 - mean) / std``; views flattened."""

    def __init__(self, mean=CLIP_MEAN, std=CLIP_STD, non_blocking: bool = True):
        super().__init__(non_blocking=non_blocking)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(dict(data))
        frames = data["frames"]
        views = 1
        if frames.dim() == 6:  # test: (B, V, T_v, 3, S, S)
            views = frames.shape[1]
            for k in ("frames", "joints", "mask_grid"):
                data[k] = data[k].flatten(0, 1)
            data["video_pose_index"] = data["video_pose_index"].repeat_interleave(views, 0)
        f = data["frames"]
        if f.dtype == torch.uint8:
            f = f.float().div_(255.0)
        data["frames"] = (f - self.mean) / self.std
        data["mask_grid"] = data["mask_grid"].float()
        data["joints"] = data["joints"].float()
        return {"batch": data, "num_views": views}


@MODELS.register_module()
class PeVLRunnerModel(BaseModel):
    """The mmengine face of PeVL.

    Args:
        model_cfg: ``cfg.model`` (``build_model`` builds the plain PeVL from it).
        classes: class label texts (the cache entry's), encoded once per evaluation.
        coarse_type: the prompt's coarse action type (the entry's).
        amp_dtype: 'bfloat16' / 'float16' to autocast evaluation on CUDA (training autocasts
            through ``AmpOptimWrapper``); None for float32.
    """

    def __init__(self, model_cfg: dict, classes: list[str], coarse_type: str = "",
                 amp_dtype: Optional[str] = None, data_preprocessor: Optional[dict] = None):
        from stages.model import build_model

        # an instance, not a config: BaseModel would build a config in mmengine's root registry
        super().__init__(data_preprocessor=PeVLDataPreprocessor(**(data_preprocessor or {})))
        self.pevl = build_model(model_cfg)
        self.num_classes = len(classes)
        self.amp_dtype = amp_dtype
        if self.pevl.use_text:
            self.pevl.set_class_texts(list(classes), coarse_type)

    def tunable_parameters(self) -> list[torch.nn.Parameter]:
        return self.pevl.tunable_parameters()

    def _autocast(self, batch):
        dev = batch["frames"].device
        if self.amp_dtype and dev.type == "cuda":
            return torch.autocast("cuda", dtype=getattr(torch, self.amp_dtype))
        return contextlib.nullcontext()

    def forward(self, batch: dict, num_views: int = 1, mode: str = "tensor") -> Any:
        if mode == "loss":
            out = self.pevl.loss(batch)
            res = {"loss": out["loss"]}
            for k, v in out.items():
                if k != "loss":
                    res[_LOSS_PART_NAMES.get(k, k.replace("loss", "l"))] = v.detach()
            return res
        if mode == "predict":
            with self._autocast(batch):
                scores = self.pevl.predict(batch)
            scores = scores.float().view(-1, num_views, scores.shape[-1]).mean(1)  # average the views
            labels = batch["label"].view(-1)
            index = batch.get("index")
            return [dict(scores=scores[i].detach().cpu(), label=int(labels[i]),
                         index=int(index[i]) if index is not None else i) for i in range(scores.shape[0])]
        if mode == "tensor":
            return self.pevl.encode(batch)
        raise ValueError(f"unknown mode {mode!r}")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TunableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Only parameters with ``requires_grad`` go to the optimiser, in a decay and a no-decay
    group (no decay for tensors with fewer than 2 dims: biases, norms, temperatures)."""

    def __call__(self, model) -> Any:
        from stages.registry import OPTIM_WRAPPERS, OPTIMIZERS

        module = model.module if hasattr(model, "module") else model
        decay, no_decay = [], []
        for _, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 else no_decay).append(p)
        wd = self.optimizer_cfg.get("weight_decay", 0.0)
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault("type", "OptimWrapper")
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg["params"] = [dict(params=decay, weight_decay=wd), dict(params=no_decay, weight_decay=0.0)]
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(optim_wrapper_cfg, default_args=dict(optimizer=optimizer))


@MODEL_WRAPPERS.register_module()
class PeVLDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper; ``device_ids`` only for a CUDA module (gloo on CPU takes none)."""

    def __init__(self, module, device_ids=None, **kwargs):
        on_cuda = any(p.is_cuda for p in module.parameters())
        super().__init__(module=module, device_ids=device_ids if on_cuda else None, **kwargs)
