"""Build the frozen CLIP that every PeVL encoder reuses, through open_clip, without surprises offline."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from stages.compat import ensure_torchvision

log = logging.getLogger(__name__)

TINY_ARCH = "PeVL-tiny"
_TINY_JSON = Path(__file__).with_name("PeVL-tiny.json")
_REGISTERED = False


def open_clip_module():
    """Import open_clip behind the torchvision guard and register the project's tiny config once."""
    global _REGISTERED
    ensure_torchvision()
    import open_clip

    if not _REGISTERED:
        if TINY_ARCH not in open_clip.list_models():
            open_clip.add_model_config(_TINY_JSON)  # registered under the file stem, "PeVL-tiny"
        _REGISTERED = True
    return open_clip


def weights_use_quick_gelu(arch: str, pretrained: Optional[str]) -> bool:
    """Whether open_clip's pretrained tag ``pretrained`` of ``arch`` was trained with QuickGELU
    (``x * sigmoid(1.702 x)``): True for OpenAI's own CLIP weights ('openai'), False for most
    others and for no tag."""
    if not pretrained or Path(str(pretrained)).is_file():
        return False
    cfg = open_clip_module().get_pretrained_cfg(arch, pretrained) or {}
    return bool(cfg.get("quick_gelu", False))


def image_normalization(visual: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of the images the vision tower's weights expect (open_clip keeps them with the
    model, from the pretrained tag's config; OpenAI's for CLIP): the one place they come from."""
    cfg = getattr(visual, "preprocess_cfg", None) or {}
    if "mean" not in cfg or "std" not in cfg:
        raise ValueError("the vision tower carries no preprocess_cfg mean/std (not built by open_clip?)")
    return tuple(float(x) for x in cfg["mean"]), tuple(float(x) for x in cfg["std"])


def tower_activations(model: nn.Module) -> set[str]:
    """Class names of the MLP activations in the model's transformer blocks (what was built)."""
    return {type(m.mlp.gelu).__name__ for m in model.modules() if hasattr(m, "mlp") and hasattr(m.mlp, "gelu")}


def load_clip(
    arch: str = "ViT-B-16",
    pretrained: Optional[str] = "openai",
    pretrained_path: Optional[str] = None,
    cache_dir: Optional[str] = None,
    device: Optional[torch.device | str] = None,
    quick_gelu: Optional[bool] = None,
) -> nn.Module:
    """Return an open_clip CLIP model (float32, eval mode).

    ``pretrained_path`` (a local state-dict file, loaded with ``torch.load(weights_only=True)``) wins
    over ``pretrained`` (an open_clip tag such as ``'openai'``, which may need a download); with a
    path, ``pretrained`` still names what the file holds.
    ``pretrained=None`` and no path gives random weights (tests, FLOP counting).

    ``quick_gelu``: the towers' MLP activation. None builds the one the weights were trained with,
    as the tag says (:func:`weights_use_quick_gelu`: QuickGELU for 'openai', on the download and the
    local-file route alike); True / False force it. open_clip's own ``create_model('ViT-B-16',
    pretrained='openai')`` builds ``nn.GELU`` and only warns, and not at all for a file path.
    """
    open_clip = open_clip_module()
    tag_qg = weights_use_quick_gelu(arch, pretrained)
    use_qg = tag_qg if quick_gelu is None else bool(quick_gelu)
    if use_qg != tag_qg:
        log.warning("clip.quick_gelu=%s but the %r weights of %s were trained with %s: the towers compute "
                    "other features than those weights were trained for", use_qg, pretrained, arch,
                    "QuickGELU" if tag_qg else "GELU")
    # follow an ambient ``with torch.device('meta')`` (FLOP counting) instead of open_clip's cpu
    kwargs = dict(device=device if device is not None else torch.empty(()).device, force_quick_gelu=use_qg)
    if pretrained_path:
        model = open_clip.create_model(arch, pretrained=None, **kwargs)
        path = Path(pretrained_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"clip.pretrained_path={str(path)!r} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("attn_mask")]
        if missing or unexpected:
            raise RuntimeError(
                f"clip.pretrained_path={str(path)!r} does not fit open_clip {arch!r}: "
                f"missing {missing[:5]}..., unexpected {unexpected[:5]}..."
            )
    elif pretrained:
        source = _offline_source(open_clip, arch, pretrained, cache_dir)
        try:
            model = open_clip.create_model(arch, pretrained=source, cache_dir=cache_dir, **kwargs)
        except Exception as e:  # network errors come in many types (OSError, HF errors, URLError)
            raise RuntimeError(
                f"could not load open_clip weights {arch!r} / pretrained={pretrained!r} ({type(e).__name__}: {e}). "
                "Offline? Put the checkpoint (a state dict) on disk and pass it as "
                "model.clip.pretrained_path=/path/to/weights.pt, or set model.clip.pretrained=None "
                "for random weights."
            ) from e
    else:
        model = open_clip.create_model(arch, pretrained=None, **kwargs)
    if not use_qg and "QuickGELU" in tower_activations(model):  # a '-quickgelu' arch cannot be undone
        log.warning("%s is built with QuickGELU although clip.quick_gelu=False", arch)
    model.float()
    model.eval()
    return model


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_source(open_clip, arch: str, pretrained: str, cache_dir: Optional[str]) -> str:
    """``pretrained`` itself when the hub can be reached (or it is a file); else the copy in the
    local Hugging Face cache; else fail at once (open_clip would retry for half a minute) with the
    option that takes a local file."""
    import os

    if os.path.isfile(pretrained) or _hub_reachable():
        return pretrained
    cfg = open_clip.get_pretrained_cfg(arch, pretrained) or {}
    repo = (cfg.get("hf_hub") or "").strip("/")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    raise RuntimeError(
        f"open_clip weights {arch!r} / pretrained={pretrained!r} are not on this machine and the model hub "
        f"cannot be reached. Download them (e.g. {repo or cfg.get('url', 'the open_clip release')}) and pass "
        "model.clip.pretrained_path=/path/to/open_clip_pytorch_model.bin (a state dict; "
        "--cfg-options on the CLI), or set model.clip.pretrained=None for random weights."
    )


def tokenizer_for(arch: str):
    """open_clip's tokenizer for ``arch``; the default CLIP BPE ships inside open_clip (offline)."""
    open_clip = open_clip_module()
    return open_clip.get_tokenizer(arch)


def freeze(clip: nn.Module, frozen: bool = True) -> nn.Module:
    """Freeze the CLIP towers (the papers' setting: only new layers train), or leave them trainable
    (``frozen=False``: the demo, whose tiny CLIP has random weights and nothing to preserve)."""
    for p in clip.parameters():
        p.requires_grad_(not frozen)
    return clip
