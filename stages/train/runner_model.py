"""The recognizer (PeVL, PGVT or AIM) inside mmengine: data preprocessor, the Runner's model,
optimiser constructor, DDP wrapper.

* :class:`ClipDataPreprocessor` moves a collated batch to the device and there turns the uint8
  frames into float32 normalised as the CLIP weights expect (the loader never ships floats), casts the float16 mask
  grids, and flattens test views (``(B, V, ...)`` -> ``(B * V, ...)``); with
  ``data.views_on_device`` (``data.decode_on_device``) it first cuts, resizes and flips the rows
  the items read (decodes the batch's JPEG frames, then the same) there
  (:mod:`stages.data.device_frames`).
* :class:`RunnerModel` builds the plain model (``build_model``: :class:`stages.model.PeVL`, or
  :class:`stages.model.PGVT` / AIM by ``type``; it is held as ``.recognizer`` either way), gives a text
  model the entry's class texts, and exposes ``forward(mode='loss'|'predict')``; prediction
  averages the views' scores (eq. (7) for PeVL, logits for text-free models). Training autocasts
  here (bf16 needs no loss scaling, so no GradScaler and no per-step inf check); fp16 trains
  through mmengine's ``AmpOptimWrapper`` (GradScaler). Its ``state_dict`` leaves out a frozen
  *pretrained* backbone (0.6 GB for ViT-B/16, 1.7 GB for ViT-L/14 per checkpoint): checkpoints
  hold the trainable state, and :meth:`backbone_identity` names the weights they were trained on.
* :class:`TunableOptimWrapperConstructor` gives the optimiser only the tunable parameters (the
  CLIP towers are frozen), in the recipe's named groups (:mod:`stages.train.param_groups`: video,
  pose, UCMR, SGMC, text, heads, each with its lr multiplier; no weight decay on norms, biases,
  embeddings, temperatures).
* :class:`RecognizerDDP` is mmengine's DDP wrapper that drops ``device_ids`` for a CPU module
  (gloo), which mmengine would otherwise always pass.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Optional

import torch
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.model.wrappers import MMDistributedDataParallel
from mmengine.optim import DefaultOptimWrapperConstructor

from stages.data.device_frames import frames_from_jpeg, frames_from_rows
from stages.data.device_poses import joints_and_grids
from stages.registry import MODEL_WRAPPERS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

_LOSS_PART_NAMES = {"loss_t": "l_text", "loss_r": "l_refine"}  # mmengine sums every key with 'loss'


@MODELS.register_module()
class ClipDataPreprocessor(BaseDataPreprocessor):
    """uint8 frames -> float on the device -> ``(x / 255 - mean) / std`` (the CLIP weights'
    normalisation, :func:`stages.model.clip_loader.image_normalization`); views flattened."""

    def __init__(self, mean, std, non_blocking: bool = True):
        super().__init__(non_blocking=non_blocking)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = dict(data)
        if "pose_joints" in data:  # views on the device: their joints and grids here (stages.data.device_poses)
            data["joints"], data["mask_grid"] = joints_and_grids(
                data.pop("pose_joints").to(self.device, non_blocking=self._non_blocking), data["frames_crop"],
                data.pop("joint_flip"), data.pop("grid_cell"), data["video_pose_index"])
        if "frames_jpeg" in data:  # data.decode_on_device: decode, cut, resize and flip here
            data["frames"] = frames_from_jpeg(data.pop("frames_jpeg"), data.pop("frames_jpeg_lengths"),
                                              data.pop("frames_crop"), self.device)
        elif "frames_rows" in data:  # data.views_on_device: cut, resize and flip here
            data["frames"] = frames_from_rows(data.pop("frames_rows"), data.pop("frames_rows_top"),
                                              data.pop("frames_crop"), self.device)
        data = self.cast_data(data)
        frames = data["frames"]
        views = 1
        if frames.dim() == 6:  # test: (B, V, T_v, 3, S, S)
            views = frames.shape[1]
            for k in ("frames", "joints", "mask_grid"):
                data[k] = data[k].flatten(0, 1)
            for k in ("video_pose_index", "pose_time"):
                if k in data:
                    data[k] = data[k].repeat_interleave(views, 0)
        f = data["frames"]
        if f.dtype == torch.uint8:
            f = f.float().div_(255.0)
        data["frames"] = (f - self.mean) / self.std
        data["mask_grid"] = data["mask_grid"].float()
        data["joints"] = data["joints"].float()
        return {"batch": data, "num_views": views}


@MODELS.register_module()
class RunnerModel(BaseModel):
    """The mmengine face of a recognizer (PeVL, PGVT or AIM), held as ``.recognizer``.

    Args:
        model_cfg: ``cfg.model`` (``build_model`` builds the recognizer from it).
        classes: class label texts (the cache entry's), encoded once per evaluation.
        coarse_type: the prompt's coarse action type (the entry's).
        amp_dtype: 'bfloat16' / 'float16' to autocast on CUDA (fp16 training autocasts through
            ``AmpOptimWrapper`` instead, which scales the loss); None for float32.
        label_smoothing, mixup_alpha: the training loss's (``train.*``; :mod:`stages.train.mixup`).
        seed: the run's seed (mixup's draws).
    """

    def __init__(self, model_cfg: dict, classes: list[str], coarse_type: str = "",
                 amp_dtype: Optional[str] = None, data_preprocessor: Optional[dict] = None,
                 label_smoothing: float = 0.0, mixup_alpha: float = 0.0, seed: int = 0):
        from stages.model import build_model
        from stages.model.clip_loader import image_normalization

        recognizer = build_model(model_cfg)
        mean, std = image_normalization(recognizer.clip.visual)
        # an instance, not a config: BaseModel would build a config in mmengine's root registry
        super().__init__(data_preprocessor=ClipDataPreprocessor(mean, std, **(data_preprocessor or {})))
        self.recognizer = recognizer
        self.num_classes = len(classes)
        self.amp_dtype = amp_dtype
        self.label_smoothing = float(label_smoothing)
        self.mixup_alpha = float(mixup_alpha)
        self.seed = int(seed)
        if self.recognizer.use_text:
            self.recognizer.set_class_texts(list(classes), coarse_type)
        self._register_load_state_dict_pre_hook(_renamed_recognizer_keys)
        self.register_load_state_dict_post_hook(_frozen_backbone_is_not_missing)

    # -- checkpoints: the trainable state, and the name of the backbone ---------------------------
    def backbone_identity(self) -> dict:
        """Which CLIP weights the model was built on (what a checkpoint without them needs)."""
        c = dict(self.recognizer.cfg.get("clip", {}))
        path = c.get("pretrained_path")
        ident = {"arch": c.get("arch"), "pretrained": None if path else c.get("pretrained"),
                 "pretrained_path": path, "frozen": bool(c.get("frozen", True))}
        if path:
            import os

            ident["pretrained_size"] = os.path.getsize(path) if os.path.isfile(path) else None
        loaded = getattr(self.recognizer.clip, "pretrained_identity", None)  # what load_clip placed
        if loaded:
            ident.update(weights_format=loaded["format"], weights_sha256=loaded["sha256"],
                         activation=loaded["activation"])
        return ident

    def pretrained_fields(self) -> dict:
        """The result row's record of the CLIP weights: ``pretrained`` (the open_clip tag, or the file
        when the weights came from one; None for random weights), the file's format and sha256, and
        the towers' activation."""
        loaded = getattr(self.recognizer.clip, "pretrained_identity", None)
        if not loaded:
            return dict(pretrained=None, pretrained_format=None, pretrained_sha256=None, clip_activation=None)
        from_file = bool(self.recognizer.cfg.get("clip", {}).get("pretrained_path"))
        return dict(pretrained=loaded["path"] if from_file else loaded["tag"], pretrained_format=loaded["format"],
                    pretrained_sha256=loaded["sha256"], clip_activation=loaded["activation"])

    def frozen_backbone_keys(self) -> set[str]:
        """State-dict keys a checkpoint leaves out: frozen parameters, when they come from named
        pretrained weights (a random backbone is saved whole: nothing else could rebuild it)."""
        ident = self.backbone_identity()
        if not (ident["pretrained"] or ident["pretrained_path"]):
            return set()
        return {n for n, p in self.named_parameters() if not p.requires_grad}

    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        drop = {prefix + k for k in self.frozen_backbone_keys()}
        if not drop:
            return sd
        out = OrderedDict((k, v) for k, v in sd.items() if k not in drop)
        if hasattr(sd, "_metadata"):
            out._metadata = sd._metadata
        return out

    def tunable_parameters(self) -> list[torch.nn.Parameter]:
        return self.recognizer.tunable_parameters()

    def _autocast(self, batch, training: bool = False):
        """bf16 autocast on CUDA, for training and evaluation; fp16 only for evaluation (training
        in fp16 autocasts through AmpOptimWrapper, which also scales the loss)."""
        dev = batch["frames"].device
        if self.amp_dtype and dev.type == "cuda" and not (training and self.amp_dtype == "float16"):
            return torch.autocast("cuda", dtype=getattr(torch, self.amp_dtype))
        return contextlib.nullcontext()

    def forward(self, batch: dict, num_views: int = 1, mode: str = "tensor") -> Any:
        if mode == "loss":
            from stages.train.mixup import mix_batch

            batch = mix_batch(batch, self.mixup_alpha, self.seed)
            with self._autocast(batch, training=True):
                out = self.recognizer.loss(batch, label_smoothing=self.label_smoothing)
            res = {"loss": out["loss"]}
            for k, v in out.items():
                if k != "loss":
                    res[_LOSS_PART_NAMES.get(k, k.replace("loss", "l"))] = v.detach()
            return res
        if mode == "predict":
            with self._autocast(batch):
                scores = self.recognizer.predict(batch)
            scores = scores.float().view(-1, num_views, scores.shape[-1])
            if getattr(self.recognizer, "scores_are_logits", False):  # a classifier: AIM averages probabilities
                scores = scores.softmax(-1)
            scores = scores.mean(1)  # average the views
            # one device-to-host copy per tensor and batch, not one per sample
            scores = scores.detach().cpu()
            labels = batch["label"].view(-1).tolist()
            index = batch["index"].view(-1).tolist() if batch.get("index") is not None else range(len(labels))
            return [dict(scores=scores[i], label=labels[i], index=index[i]) for i in range(len(labels))]
        if mode == "tensor":
            return self.recognizer.encode(batch)
        raise ValueError(f"unknown mode {mode!r}")


def _renamed_recognizer_keys(state_dict, prefix, *args) -> None:
    """Checkpoints written before the recognizer was held as ``.recognizer`` (``.pevl``) load too."""
    old = prefix + "pevl."
    for k in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + "recognizer." + k[len(old):]] = state_dict.pop(k)


def _frozen_backbone_is_not_missing(module: "RunnerModel", incompatible_keys) -> None:
    """A checkpoint without the frozen pretrained backbone (see ``state_dict``) loads without
    listing those keys as missing; the backbone itself was loaded when the model was built."""
    frozen = module.frozen_backbone_keys()
    incompatible_keys.missing_keys[:] = [k for k in incompatible_keys.missing_keys if k not in frozen]


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TunableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """The optimiser over the tunable parameters only (the CLIP towers are frozen), in the named
    groups of ``paramwise_cfg`` (:func:`stages.train.param_groups.paramwise_cfg`: each group's
    ``lr_mult`` and ``decay_mult``, the kinds without weight decay): one torch parameter group per
    (group, decayed or not), each parameter in exactly one (:mod:`stages.train.param_groups`)."""

    def __call__(self, model) -> Any:
        from stages.registry import OPTIM_WRAPPERS, OPTIMIZERS
        from stages.train.param_groups import build_param_groups

        module = model.module if hasattr(model, "module") else model
        recognizer = getattr(module, "recognizer", module)
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault("type", "OptimWrapper")
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg["params"] = build_param_groups(recognizer, float(self.base_lr or 0.0),
                                                     float(self.base_wd or 0.0), self.paramwise_cfg)
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(optim_wrapper_cfg, default_args=dict(optimizer=optimizer))


@MODEL_WRAPPERS.register_module()
class RecognizerDDP(MMDistributedDataParallel):
    """mmengine's DDP wrapper; ``device_ids`` only for a CUDA module (gloo on CPU takes none)."""

    def __init__(self, module, device_ids=None, **kwargs):
        on_cuda = any(p.is_cuda for p in module.parameters())
        super().__init__(module=module, device_ids=device_ids if on_cuda else None, **kwargs)
