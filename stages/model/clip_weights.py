"""CLIP weight files as labs hold them: read, identified, and placed into an open_clip model exactly.

Accepted (``model.clip.pretrained_path``; docs/install.md has the commands):

* ``torchscript``: OpenAI's released archive (``ViT-B-16.pt``, ``ViT-L-14.pt``), what open_clip
  fetches for ``pretrained='openai'`` from OpenAI's URL. Read by
  :mod:`stages.model.torchscript_reader` (no code from the file runs). fp16 Conv/Linear/attention
  weights and projections, plus three int64 buffers ``input_resolution``, ``context_length``,
  ``vocab_size``.
* ``state_dict``: a ``torch.save``'d dict of tensors: the state dict saved from that archive (with
  the three buffers), OpenAI-key or open_clip-key state dicts (fp16 or fp32; open_clip's custom-text
  layout ``text.*`` too), the hub's ``open_clip_pytorch_model.bin``.
* ``checkpoint``: an open_clip training checkpoint ``{"state_dict": ..., "epoch": ...}``, keys
  usually ``module.``-prefixed (DDP).
* ``safetensors``: the hub's ``open_clip_model.safetensors`` (read with the safetensors package).

Pickled files load with ``torch.load(weights_only=True)``. A DDP ``module.`` prefix on every key
is removed. :func:`place_clip_weights` puts every tensor of the model in place (strict: nothing
missing, nothing left over, every shape equal), cast to the model's dtype, or refuses: a file of
another architecture with the architecture its shapes say (width, layers, patch, resolution) and
the open_clip name of it; anything else with a summary of what is missing, left over or of another
shape.
"""
from __future__ import annotations

import hashlib
import math
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from stages.model.torchscript_reader import TorchScriptReadError, read_torchscript_tensors, torchscript_root
from stages.torch_files import weights_only_refusal, zip_problem

#: OpenAI's archives carry these int64 scalar buffers; no open_clip model has them
OPENAI_BUFFERS = ("input_resolution", "context_length", "vocab_size")
#: top-level names of the text tower in open_clip's plain CLIP; CustomTextCLIP nests them under ``text.``
_TEXT_KEYS = ("text_projection", "positional_embedding", "token_embedding", "transformer", "ln_final")
FORMATS = ("torchscript", "state_dict", "checkpoint", "safetensors")


class ClipWeightsError(ValueError):
    """A CLIP weight file that cannot be read, or does not fit the configured model."""


@dataclass
class ClipWeightsFile:
    """One weight file, read: its tensors under open_clip's plain-CLIP names (``module.`` removed,
    OpenAI's three buffers set aside in :attr:`openai_buffers`)."""

    path: Path
    format: str  # one of FORMATS
    sha256: str
    tensors: dict[str, torch.Tensor]
    openai_buffers: dict[str, int] = field(default_factory=dict)
    release: Optional[dict] = None  # {"arch", "tag", "quick_gelu"} when the sha256 is a release open_clip lists
    notes: list[str] = field(default_factory=list)  # what was normalised ("module. prefix removed")

    @property
    def openai_evidence(self) -> Optional[str]:
        """Why the file is OpenAI's own CLIP (trained with QuickGELU), or None when it does not say."""
        if self.format == "torchscript":
            return "a TorchScript archive, the form OpenAI released"
        if self.openai_buffers:
            return "it holds OpenAI's input_resolution / context_length / vocab_size buffers"
        if self.release and self.release["tag"] == "openai":
            return f"its sha256 is OpenAI's release of {self.release['arch']}"
        return None

    def identity(self) -> dict:
        return {"path": str(self.path), "format": self.format, "sha256": self.sha256}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: 8 bytes of header length, then a JSON header."""
    if path.suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < path.stat().st_size


def known_releases() -> dict[str, dict]:
    """sha256 (or the 8-digit prefix the release's file name carries) -> the open_clip release,
    from open_clip's own pretrained table (OpenAI's URLs name the file's full sha256)."""
    from stages.model.open_clip_setup import open_clip_module

    oc = open_clip_module()
    out: dict[str, dict] = {}
    for arch, tag in oc.list_pretrained():
        cfg = oc.get_pretrained_cfg(arch, tag) or {}
        url = cfg.get("url") or ""
        m = re.search(r"/([0-9a-f]{64})/[^/]+$", url) or re.search(r"-([0-9a-f]{8})\.pth?$", url)
        if m and m.group(1) not in out:
            out[m.group(1)] = {"arch": arch.removesuffix("-quickgelu"), "tag": tag,
                               "quick_gelu": bool(cfg.get("quick_gelu", False))}
    return out


def _release_of(sha256: str) -> Optional[dict]:
    table = known_releases()
    return table.get(sha256) or table.get(sha256[:8])


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError (not a torch file), EOFError ...
        raise ClipWeightsError(
            f"{path}: not a CLIP weight file torch.load(weights_only=True) reads ({weights_only_refusal(e)}). "
            "Accepted: OpenAI's TorchScript archive, a state dict (.pt/.pth/.bin), an open_clip training "
            "checkpoint, .safetensors (docs/install.md)") from None


def read_clip_weights(path: str | Path) -> ClipWeightsFile:
    """Read a CLIP weight file in any accepted form (module docstring) without running its code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights {str(path)!r} do not exist")
    sha = _sha256(path)
    # a known release is known whole by its sha256; any other zip archive by its members' CRCs
    why = zip_problem(path) if _release_of(sha) is None else None
    if why:
        raise ClipWeightsError(f"{path}: {why}; copy the file again (model.clip.pretrained_path)")
    notes: list[str] = []
    if torchscript_root(path) is not None:
        fmt = "torchscript"
        try:
            state = read_torchscript_tensors(path)
        except TorchScriptReadError as e:
            raise ClipWeightsError(str(e)) from None
    elif _is_safetensors(path):
        fmt = "safetensors"
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ClipWeightsError(f"{path}: not a readable .safetensors file ({e})") from None
    else:
        obj = _torch_load(path)
        fmt = "state_dict"
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            fmt = "checkpoint"
            extra = sorted(k for k in obj if k != "state_dict")
            notes.append(f"training checkpoint ({', '.join(f'{k}={obj[k]}' if k == 'epoch' else k for k in extra)})"
                         if extra else "checkpoint")
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ClipWeightsError(f"{path} holds a {type(obj).__name__}, not a state dict of CLIP weights")
        state = obj
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ClipWeightsError(f"{path}: {len(bad)} entries are not tensors (e.g. {bad[:3]}): not a CLIP state dict"
                               + (" (an open_clip training checkpoint keeps its weights under 'state_dict')"
                                  if "epoch" in bad else ""))
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        state = {k[len("module."):]: v for k, v in state.items()}
        notes.append("DDP 'module.' prefix removed")
    buffers = {}
    for k in OPENAI_BUFFERS:
        v = state.get(k)
        if v is not None and v.numel() == 1 and not v.is_floating_point():
            buffers[k] = int(v)
    state = {k: v for k, v in state.items() if k not in buffers}
    return ClipWeightsFile(path, fmt, sha, dict(state), buffers, _release_of(sha), notes)


# -- what a set of tensors is -----------------------------------------------------------------------
@dataclass(frozen=True)
class ClipShape:
    """The architecture a CLIP state dict's shapes say (plain-CLIP key names)."""

    vision: str  # "vit" | "resnet" | "other"
    width: Optional[int] = None
    layers: Optional[int] = None
    patch: Optional[int] = None
    resolution: Optional[int] = None
    text_width: Optional[int] = None
    text_layers: Optional[int] = None
    context_length: Optional[int] = None
    vocab_size: Optional[int] = None
    embed_dim: Optional[int] = None

    def __str__(self) -> str:
        if self.vision == "vit":
            v = f"ViT width {self.width}, {self.layers} layers, patch {self.patch}, {self.resolution} px"
        elif self.vision == "resnet":
            v = f"ResNet image tower, width {self.width}, {self.resolution} px"
        else:
            v = "an image tower of no CLIP layout known here"
        t = (f"; text width {self.text_width}, {self.text_layers} layers" if self.text_width else "; no text tower")
        return v + t + (f"; embedding {self.embed_dim}" if self.embed_dim else "")


def _count_blocks(keys, prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in keys if k.startswith(prefix)})


def clip_shape(tensors: dict[str, torch.Tensor]) -> ClipShape:
    """Read the architecture off the shapes (as open_clip's ``build_model_from_openai_state_dict``)."""
    t = tensors
    text = {}
    if "ln_final.weight" in t and "positional_embedding" in t and "token_embedding.weight" in t:
        text = dict(text_width=int(t["ln_final.weight"].shape[0]), text_layers=_count_blocks(t, "transformer.resblocks."),
                    context_length=int(t["positional_embedding"].shape[0]),
                    vocab_size=int(t["token_embedding.weight"].shape[0]))
    embed = None
    for k in ("text_projection", "visual.proj"):
        if k in t and t[k].ndim == 2:
            embed = int(t[k].shape[1])
            break
    if "visual.conv1.weight" in t and "visual.positional_embedding" in t:
        conv = t["visual.conv1.weight"]
        grid = math.isqrt(max(0, int(t["visual.positional_embedding"].shape[0]) - 1))
        patch = int(conv.shape[-1])
        return ClipShape("vit", int(conv.shape[0]), _count_blocks(t, "visual.transformer.resblocks."), patch,
                         patch * grid, embed_dim=embed, **text)
    if "visual.layer1.0.conv1.weight" in t and "visual.attnpool.positional_embedding" in t:
        side = math.isqrt(max(0, int(t["visual.attnpool.positional_embedding"].shape[0]) - 1))
        return ClipShape("resnet", int(t["visual.layer1.0.conv1.weight"].shape[0]), resolution=side * 32,
                         embed_dim=embed, **text)
    return ClipShape("other", embed_dim=embed, **text)


def open_clip_names(shape: ClipShape, tensors: Optional[dict[str, torch.Tensor]] = None) -> list[str]:
    """open_clip's model configs with exactly these dimensions (``-quickgelu`` twins left out); with
    ``tensors``, only those whose model (built on the meta device) has exactly their names and shapes."""
    if shape.vision != "vit":
        return []
    from stages.model.open_clip_setup import open_clip_module

    oc = open_clip_module()
    names = []
    for name in oc.list_models():
        cfg = oc.get_model_config(name) or {}
        v, tx = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if name.endswith("-quickgelu") or v.get("timm_model_name") or tx.get("hf_model_name") or cfg.get("custom_text"):
            continue
        img = v.get("image_size")
        img = img[0] if isinstance(img, (list, tuple)) else img
        if (v.get("width"), v.get("layers"), v.get("patch_size"), img, cfg.get("embed_dim")) != (
                shape.width, shape.layers, shape.patch, shape.resolution, shape.embed_dim):
            continue
        if shape.text_width and (tx.get("width"), tx.get("layers"), tx.get("context_length", 77),
                                 tx.get("vocab_size", 49408)) != (shape.text_width, shape.text_layers,
                                                                  shape.context_length, shape.vocab_size):
            continue
        if tensors is not None:
            try:
                with torch.device("meta"):  # shapes only: nothing allocated or initialised
                    own = oc.create_model(name, pretrained=None, device="meta").state_dict()
            except Exception:  # noqa: BLE001  (a config this install cannot build names nothing)
                continue
            if {k: tuple(t.shape) for k, t in _plain_layout(own).items()} != {
                    k: tuple(t.shape) for k, t in tensors.items() if k not in OPENAI_BUFFERS and k != "attn_mask"}:
                continue
        names.append(name)
    return names


# -- placing -------------------------------------------------------------------------------------------
def _plain_layout(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of open_clip's CustomTextCLIP (``text.*``) as plain CLIP names them."""
    return {(k[5:] if k.startswith("text.") and k[5:].split(".", 1)[0] in _TEXT_KEYS else k): v
            for k, v in tensors.items()}


def _to_model_layout(tensors: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain-CLIP <-> open_clip CustomTextCLIP (``text.*``) key layout, whichever the model has, and
    a 0-d / 1-element ``logit_scale`` as the model holds it (open_clip's own load does both)."""
    out = dict(tensors)
    model_nested = any(k.startswith("text.") for k in own)
    file_nested = any(k.startswith("text.") for k in out)
    if model_nested and not file_nested:
        out = {("text." + k if k.split(".", 1)[0] in _TEXT_KEYS else k): v for k, v in out.items()}
    elif file_nested and not model_nested:
        out = _plain_layout(out)
    for k in ("logit_scale", "logit_bias"):
        if k in out and k in own and out[k].shape != own[k].shape and out[k].numel() == own[k].numel() == 1:
            out[k] = out[k].reshape(own[k].shape)
    return out


def _some(keys, n: int = 4) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def _groups(keys) -> str:
    """Keys summarised by their first two name parts (``visual.transformer: 144``)."""
    c = Counter(".".join(k.split(".")[:2]) for k in keys)
    return ", ".join(f"{g} ({n})" for g, n in c.most_common(4)) + (", ..." if len(c) > 4 else "")


def fit_clip_weights(model: nn.Module, weights: ClipWeightsFile, arch: str,
                     option: str = "model.clip.pretrained_path") -> dict[str, torch.Tensor]:
    """``weights``' tensors under ``model``'s state-dict names, when they are exactly the model's
    (every name, every shape; ``model`` may be on the meta device), else :class:`ClipWeightsError`
    in a few lines naming what the file holds and ``model.clip.arch``."""
    own = model.state_dict()
    tensors = _to_model_layout(weights.tensors, own)
    src = f"{option}={str(weights.path)!r}"
    # non-persistent buffers of the model (the text tower's causal mask): a traced archive may hold
    # them; they are built, not learned, so they must equal what the model built
    named_buffers = dict(model.named_buffers())
    for k in [k for k in tensors if k not in own and k in named_buffers]:
        built = named_buffers[k]
        if tensors[k].shape != built.shape or (built.device.type != "meta" and not torch.equal(
                tensors[k].to(built.dtype), built.to("cpu"))):
            raise ClipWeightsError(f"{src}: its {k} differs from the one open_clip builds for {arch!r}")
        del tensors[k]
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    other_shape = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    file_shape, model_shape = clip_shape(_plain_layout(tensors)), clip_shape(_plain_layout(own))
    if missing or unexpected or other_shape:
        if file_shape != model_shape and file_shape.vision != "other":
            names = open_clip_names(file_shape, _plain_layout(tensors))
            said = f" (open_clip {' / '.join(names)})" if names else ""
            fix = (f"set model.clip.arch={names[0]} (--cfg-options model.clip.arch={names[0]})" if names
                   else "set model.clip.arch to the architecture the file holds")
            raise ClipWeightsError(
                f"{src} holds another CLIP than model.clip.arch={arch!r}:\n"
                f"  the file:  {file_shape}{said}\n"
                f"  {arch}: {model_shape}\n"
                f"{fix}, or pass weights of {arch}.")
        lines = [f"{src} does not fit open_clip {arch!r} ({model_shape}): "
                 f"{len(own) - len(missing) - len(other_shape)} of {len(own)} tensors would be placed."]
        if missing:
            lines.append(f"  missing from the file: {len(missing)} ({_groups(missing)}; e.g. {_some(missing, 3)})")
        if unexpected:
            lines.append(f"  in the file, not in the model: {len(unexpected)} ({_groups(unexpected)}; "
                         f"e.g. {_some(unexpected, 3)})")
        if other_shape:
            lines.append("  of another shape: " + "; ".join(
                f"{k} {tuple(tensors[k].shape)} in the file, {tuple(own[k].shape)} in the model" for k in other_shape[:3])
                + (f"; ... ({len(other_shape)} in all)" if len(other_shape) > 3 else ""))
        raise ClipWeightsError("\n".join(lines))
    if weights.openai_buffers:
        want = {"input_resolution": model_shape.resolution, "context_length": model_shape.context_length,
                "vocab_size": model_shape.vocab_size}
        off = {k: (v, want[k]) for k, v in weights.openai_buffers.items() if want.get(k) is not None and v != want[k]}
        if off:
            raise ClipWeightsError(f"{src}: its {', '.join(f'{k}={a} (the model: {b})' for k, (a, b) in off.items())} "
                                   f"disagree with its own tensors and with {arch!r}")
    return {k: tensors[k] for k in own}


def place_clip_weights(model: nn.Module, weights: ClipWeightsFile, arch: str,
                       option: str = "model.clip.pretrained_path") -> int:
    """Copy every tensor of ``model`` from ``weights`` (strict, cast to the model's dtypes), or raise
    as :func:`fit_clip_weights`. Returns the number of tensors placed."""
    tensors = fit_clip_weights(model, weights, arch, option)
    with torch.no_grad():
        model.load_state_dict(tensors, strict=True)  # copy_ casts to each tensor's dtype
    return len(tensors)
