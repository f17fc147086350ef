"""Build the frozen CLIP that every PeVL encoder reuses, through open_clip, without surprises offline."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from stages.model.open_clip_setup import _TINY_JSON, TINY_ARCH, open_clip_module  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


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

    ``pretrained_path``: a local weight file in any form :mod:`stages.model.clip_weights` accepts
    (OpenAI's TorchScript archive, state dicts, open_clip training checkpoints, .safetensors); it wins
    over ``pretrained``, an open_clip tag such as ``'openai'`` (its file is taken from the local
    Hugging Face cache, or downloaded), which with a path names what the file holds.
    ``pretrained=None`` and no path gives random weights (tests, FLOP counting). Either way every
    tensor of the model is placed from the file (strict) or the file is refused by name, and one log
    line says what was loaded; the model's ``pretrained_identity`` records it (None: random).

    ``quick_gelu``: the towers' MLP activation. None builds the one the weights were trained with:
    QuickGELU for OpenAI's weights (a TorchScript archive, its buffers, OpenAI's release sha256 or
    the tag), else what the tag or release says; True / False force it. open_clip's own
    ``create_model('ViT-B-16', pretrained='openai')`` builds ``nn.GELU`` and only warns.
    """
    open_clip = open_clip_module()
    # follow an ambient ``with torch.device('meta')`` (FLOP counting) instead of open_clip's cpu
    dev = device if device is not None else torch.empty(()).device
    if not pretrained_path and pretrained and Path(str(pretrained)).expanduser().is_file():
        pretrained_path, pretrained = pretrained, None  # a path given as the tag
    if pretrained_path or pretrained:
        from stages.model.clip_weights import fit_clip_weights, place_clip_weights, read_clip_weights

        if pretrained_path:
            option = "model.clip.pretrained_path"
            path = Path(pretrained_path).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{option}={str(path)!r} does not exist")
        else:
            option = f"model.clip.pretrained={pretrained!r}: the file"
            path = Path(_weights_file(open_clip, arch, pretrained, cache_dir))
        weights = read_clip_weights(path)
        use_qg, why = weights_activation(arch, pretrained, quick_gelu, weights, option)
        with _weights_follow():
            with torch.device("meta"):  # refuse a file that does not fit before building anything
                fit_clip_weights(open_clip.create_model(arch, pretrained=None, device="meta"), weights, arch, option)
            model = open_clip.create_model(arch, pretrained=None, device=dev, force_quick_gelu=use_qg)
        placed = place_clip_weights(model, weights, arch, option)
        norm_from = _follow_release_normalization(model, arch, weights, pretrained)
        acts = tower_activations(model)
        activation = "QuickGELU" if acts == {"QuickGELU"} else "/".join(sorted(acts)) or "none"
        model.pretrained_identity = {"arch": arch, "tag": pretrained, **weights.identity(), "tensors": placed,
                                     "activation": activation, "activation_from": why}
        log.info("CLIP %s: %d/%d tensors placed from %s (format %s, sha256 %s%s), activation %s (%s), image "
                 "mean/std %s", arch, placed, placed, path, weights.format, weights.sha256,
                 "".join(f"; {n}" for n in weights.notes), activation, why, norm_from)
    else:
        use_qg = bool(quick_gelu)
        model = open_clip.create_model(arch, pretrained=None, device=dev, force_quick_gelu=use_qg)
        model.pretrained_identity = None
    if not use_qg and "QuickGELU" in tower_activations(model):  # a '-quickgelu' arch cannot be undone
        log.warning("%s is built with QuickGELU although clip.quick_gelu=False", arch)
    model.float()
    model.eval()
    return model


def _follow_release_normalization(model: nn.Module, arch: str, weights, pretrained: Optional[str]) -> str:
    """Set the vision tower's image mean/std (:func:`image_normalization`) to those of the release the
    weights are (OpenAI's or a release open_clip lists, by the file; else the tag ``pretrained``):
    the model is built without a tag, with the architecture's defaults (OpenAI's), while e.g. LAION's
    ViT-L-14 releases expect 0.5 / 0.5. Returns where the values came from, for the log line."""
    tag = "openai" if weights.openai_evidence else (weights.release or {}).get("tag") or pretrained
    cfg = (open_clip_module().get_pretrained_cfg(arch, tag) or {}) if tag else {}
    if "mean" in cfg and "std" in cfg:
        model.visual.preprocess_cfg = {**model.visual.preprocess_cfg, "mean": tuple(cfg["mean"]),
                                       "std": tuple(cfg["std"])}
        return f"of release {arch}/{tag}"
    return f"{arch}'s defaults (no release named)"


class _RandomInitNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded for model")


@contextlib.contextmanager
def _weights_follow():
    """open_clip's root-logger warning "No pretrained weights loaded ... initialized randomly",
    held back while a model is built whose weights are placed from a file right after (beside our
    own line saying which file, it read as if the file had been ignored)."""
    note = _RandomInitNote()
    logging.getLogger().addFilter(note)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(note)


def weights_activation(arch: str, pretrained: Optional[str], quick_gelu: Optional[bool], weights,
                       option: str = "model.clip.pretrained_path") -> tuple[bool, str]:
    """(build QuickGELU?, why) for ``weights`` (a :class:`~stages.model.clip_weights.ClipWeightsFile`).

    What the weights were trained with comes from the file when it says (OpenAI's archive or
    buffers or release sha256: QuickGELU; another release open_clip lists: its flag), else from the
    tag ``pretrained``, else from an arch that is QuickGELU by config. A tag that contradicts the
    file, or nothing saying at all (and no ``quick_gelu``), is refused: building the wrong one would
    compute other features than the weights were trained for, silently."""
    from stages.model.clip_weights import ClipWeightsError

    src = f"{option}={str(weights.path)!r}"
    oc = open_clip_module()
    tag = pretrained or None
    tag_cfg = (oc.get_pretrained_cfg(arch, tag) or {}) if tag else {}
    file_origin, trained, why = None, None, None
    if weights.openai_evidence:
        file_origin, trained, why = "openai", True, f"OpenAI's weights: {weights.openai_evidence}"
    elif weights.release:
        r = weights.release
        file_origin, trained = r["tag"], r["quick_gelu"]
        why = f"open_clip release {r['arch']}/{r['tag']} (by sha256), trained with {'QuickGELU' if trained else 'GELU'}"
    if tag and file_origin and tag != file_origin:
        held = (f"OpenAI's CLIP ({weights.openai_evidence})" if file_origin == "openai"
                else f"open_clip's release {weights.release['arch']}/{file_origin} (by its sha256)")
        raise ClipWeightsError(f"{src} holds {held}, but model.clip.pretrained={tag!r} names other weights: set "
                               f"model.clip.pretrained={file_origin} (or None) so the run records what it trained on")
    if trained is None and tag and (tag_cfg or tag == "openai"):
        trained = tag == "openai" or bool(tag_cfg.get("quick_gelu", False))
        why = f"model.clip.pretrained={tag!r} names weights trained with {'QuickGELU' if trained else 'GELU'}"
    if trained is None and (oc.get_model_config(arch) or {}).get("quick_gelu"):
        trained, why = True, f"{arch} is a QuickGELU config"
    if quick_gelu is not None:
        if trained is not None and bool(quick_gelu) != trained:
            log.warning("clip.quick_gelu=%s but the weights of %s were trained with %s (%s): the towers compute "
                        "other features than those weights were trained for", bool(quick_gelu), arch,
                        "QuickGELU" if trained else "GELU", why)
        return bool(quick_gelu), "model.clip.quick_gelu"
    if trained is None:
        raise ClipWeightsError(
            f"{src}: nothing says which activation its weights were trained with (not OpenAI's archive, no "
            f"OpenAI buffers, not a release open_clip lists, and model.clip.pretrained={tag!r} is no open_clip "
            f"tag of {arch}).\nSet model.clip.pretrained to the tag the file was published under (openai: "
            "QuickGELU), or model.clip.quick_gelu=True / False.")
    return trained, why


def describe_pretrained(identity: Optional[dict]) -> str:
    """One line for the pretrained weights a CLIP was built on (``pretrained_identity``)."""
    if not identity:
        return "random weights (no pretrained CLIP)"
    tag = f", tag {identity['tag']}" if identity.get("tag") else ""
    return (f"{identity['arch']} from {identity['path']} ({identity['format']}, sha256 {identity['sha256'][:16]}..."
            f"{tag}), {identity['tensors']} tensors, {identity['activation']}")


#: the environment variables by which Hugging Face's libraries are told not to touch the network
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _offline() -> bool:
    import os

    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENV)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether open_clip's tag may be downloaded: not when the environment says offline (no
    connection is even tried then), else whether huggingface.co answers."""
    import socket

    if _offline():
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _weights_file(open_clip, arch: str, pretrained: str, cache_dir: Optional[str]) -> str:
    """The local file of open_clip's tag ``pretrained`` for ``arch``: the copy in the local Hugging
    Face cache, else downloaded (open_clip's ``download_pretrained``) when the hub can be reached
    and ``HF_HUB_OFFLINE`` is not set; else fail at once (open_clip would retry for half a minute) with the option that takes a file."""
    import os

    cfg = open_clip.get_pretrained_cfg(arch, pretrained) or {}
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(arch)
        raise RuntimeError(
            f"open_clip has no pretrained weights {pretrained!r} for {arch!r} (its tags: {known or 'none'}). Pass a "
            "local file as model.clip.pretrained_path=/path/to/weights (--cfg-options on the CLI), or set "
            "model.clip.pretrained=None for random weights.")
    repo = (cfg.get("hf_hub") or "").strip("/")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    if _hub_reachable():
        from open_clip.pretrained import download_pretrained

        try:
            return download_pretrained(cfg, cache_dir=cache_dir)
        except Exception as e:  # network errors come in many types (OSError, HF errors, URLError)
            raise RuntimeError(
                f"could not download open_clip weights {arch!r} / pretrained={pretrained!r} ({type(e).__name__}: "
                f"{e}). Put the file on disk and pass it as model.clip.pretrained_path=/path/to/weights, or set "
                "model.clip.pretrained=None for random weights.") from e
    raise RuntimeError(
        f"open_clip weights {arch!r} / pretrained={pretrained!r} are not on this machine and the model hub "
        + ("may not be used (HF_HUB_OFFLINE)" if _offline() else "cannot be reached")
        + f". Download them (e.g. {repo or cfg.get('url', 'the open_clip release')}) and pass "
        "model.clip.pretrained_path=/path/to/the/file (OpenAI's ViT-B-16.pt, open_clip_pytorch_model.bin, "
        ".safetensors ...; --cfg-options on the CLI), or set model.clip.pretrained=None for random weights."
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
