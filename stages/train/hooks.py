"""The Runner hooks of a training run: which epoch was validated last, and which CLIP weights a
checkpoint belongs to."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from stages.registry import HOOKS


@HOOKS.register_module()
class RecordValHook(Hook):
    """Remembers after which training epoch the last validation ran (same on every rank)."""

    priority = "LOWEST"

    def __init__(self):
        self.last_val_epoch = -1

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.last_val_epoch = runner.epoch


@HOOKS.register_module()
class BackboneCheckpointHook(Hook):
    """Names the CLIP weights in every checkpoint (which holds the trainable state only when the
    backbone is frozen pretrained weights), and refuses to load a checkpoint trained on others."""

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})["backbone"] = self._model(runner).backbone_identity()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = (checkpoint.get("meta") or {}).get("backbone")
        if saved is None:  # written before checkpoints named their backbone: it holds all weights
            return
        ours = self._model(runner).backbone_identity()
        keys = ("arch", "pretrained", "frozen") + (("pretrained_size",) if saved.get("pretrained_path") else ())
        # the weights' sha256 where both name it (checkpoints written before they did keep loading)
        keys += ("weights_sha256",) if saved.get("weights_sha256") and ours.get("weights_sha256") else ()
        if any(saved.get(k) != ours.get(k) for k in keys):
            raise ValueError(f"the checkpoint was trained on backbone {saved}, but this model is built on {ours}: "
                             "its adapters and heads only make sense on those weights (set model.clip.* to match)")
