"""CLIP weight files in the structures labs hold, built from open_clip's own models with random values.

* :func:`openai_archive`: OpenAI's release form: open_clip's CLIP built as
  ``build_model_from_openai_state_dict`` builds OpenAI's (QuickGELU, fp32 LayerNorms), converted
  to fp16 by open_clip's ``convert_weights_to_lp`` (Conv/Linear/attention weights and the two
  projections), with OpenAI's three int64 scalar buffers, traced as open_clip's ``trace_model``
  does (``torch.jit.trace_module`` of forward / encode_text / encode_image) and ``torch.jit.save``d.
* :func:`save_hub_files`: open_clip's own ``save_for_hf`` (``open_clip_pytorch_model.bin`` and
  ``open_clip_model.safetensors``).
* :func:`save_training_checkpoint`: what ``open_clip_train`` saves each epoch under DDP.
"""
from __future__ import annotations

from pathlib import Path

import torch

from stages.model.clip_loader import open_clip_module


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every floating tensor of ``model`` random (LayerNorms too: ones and zeros would make an
    equality check say little)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(model.parameters()) + [b for n, b in model.named_buffers() if "attn_mask" not in n]:
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.02)
    return model


def random_clip(arch: str, seed: int = 0, **kw) -> torch.nn.Module:
    """open_clip's model for ``arch`` with random values everywhere (fp32)."""
    return randomize(open_clip_module().create_model(arch, pretrained=None, **kw), seed)


def openai_archive(path: Path, arch: str, seed: int = 0) -> Path:
    """An OpenAI-style TorchScript CLIP archive of ``arch`` (see the module docstring)."""
    oc = open_clip_module()
    from open_clip.model import CLIP, convert_weights_to_lp

    model = randomize(CLIP(**oc.get_model_config(arch), quick_gelu=True, cast_dtype=torch.float16), seed)
    convert_weights_to_lp(model, torch.float16)
    vis = model.visual
    res = int(vis.image_size[0] if isinstance(vis.image_size, (tuple, list)) else vis.image_size)
    ctx, vocab = model.context_length, model.vocab_size
    del model.context_length, model.vocab_size  # plain ints in open_clip, int64 buffers in OpenAI's archives
    for name, value in (("input_resolution", res), ("context_length", ctx), ("vocab_size", vocab)):
        model.register_buffer(name, torch.tensor(value, dtype=torch.int64))
    model.eval()
    image = torch.ones((1, 3, res, res), dtype=torch.float16)  # OpenAI's towers cast their input to fp16
    text = torch.zeros((1, ctx), dtype=torch.int)
    traced = torch.jit.trace_module(model, dict(forward=(image, text), encode_text=(text,), encode_image=(image,)),
                                    check_trace=False)
    torch.jit.save(traced, str(path))
    return Path(path)


class _NoTokenizer:
    """save_for_hf also writes the tokenizer's files; these tests read weights only."""

    def save_pretrained(self, directory) -> None:
        pass


def save_hub_files(model: torch.nn.Module, arch: str, directory: Path) -> tuple[Path, Path]:
    """open_clip's ``save_for_hf``: (``open_clip_pytorch_model.bin``, ``open_clip_model.safetensors``)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    from open_clip.push_to_hf_hub import save_for_hf

    save_for_hf(model, _NoTokenizer(), open_clip_module().get_model_config(arch), str(directory),
                safe_serialization="both")
    return Path(directory) / HF_WEIGHTS_NAME, Path(directory) / HF_SAFE_WEIGHTS_NAME


def save_training_checkpoint(model: torch.nn.Module, path: Path, epoch: int = 3) -> Path:
    """``open_clip_train``'s checkpoint of a DDP run: ``module.``-prefixed state dict, optimizer, scaler."""
    wrapped = torch.nn.ModuleDict({"module": model})  # DDP names its parameters module.<name>
    opt = torch.optim.AdamW(wrapped.parameters(), lr=1e-4)
    loss = sum(p.float().square().sum() for p in wrapped.parameters() if p.is_floating_point())
    loss.backward()
    opt.step()
    opt.zero_grad()
    torch.save({"epoch": epoch, "name": "2024_01_01-vit_b16-lr_0.0005", "state_dict": wrapped.state_dict(),
                "optimizer": opt.state_dict(), "scaler": torch.amp.GradScaler("cpu").state_dict()}, path)
    return Path(path)
