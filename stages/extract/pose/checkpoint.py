"""mmpose top-down checkpoints: read safely, checked against the configured model, or refused by name.

Accepted layouts (``--pose-checkpoint``):

* mmpose 0.x (the official ``hrnet_w32_coco_256x192-c78dce93_20200708.pth``): ``{"meta": {...
  numpy objects ...}, "state_dict": {backbone.*, keypoint_head.final_layer.*}}``;
* mmpose 1.x (``td-hm_hrnet-w32_8xb64-210e_coco-256x192-81c58e40_20220909.pth``, what mmengine
  saves): ``{"meta": {"dataset_meta": ...}, "state_dict": {backbone.*, head.final_layer.*}}``;
* either with a DDP ``module.`` prefix on every key, or a bare state dict.

The file is read once (``torch.load(weights_only=True)``, admitting the numpy types mmpose puts in
``meta``), hashed from the same bytes, and its names are converted exactly as mmpose converts them
when it loads: by the model's own load-state-dict pre-hooks (mmpose 1.3.2's ``BasePoseEstimator``
renames ``keypoint_head`` to ``head`` for checkpoints older than its version 2, and ``HeatmapHead``
maps the old ``final_layer.N`` layers), run here on a copy before anything is loaded. Then every
tensor of the model must be in the file with its shape, and nothing else (strict), or
:class:`PoseCheckpointMismatch` says what is missing, left over or of another shape, and, when
the file fits another of mmpose's configs (HRNet-w48, 384x288 input), names it and ``--pose-config``.
The check runs on a model built on the meta device (nothing allocated), so a pose source refuses
a wrong file when it is constructed, before any clip is decoded.
"""
from __future__ import annotations

import hashlib
import io
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from stages.torch_files import name_hash_problem, safe_globals, weights_only_refusal, zip_problem

#: what the official COCO HRNet-w32 file is called (the pose checkpoint most entries use)
OFFICIAL_FILE = "hrnet_w32_coco_256x192-c78dce93_20200708.pth"


class PoseCheckpointMismatch(ValueError):
    """A pose checkpoint that cannot be loaded strictly into the configured model."""


@dataclass
class PoseCheckpoint:
    """One checkpoint file, read: its state dict (a DDP ``module.`` prefix removed) and meta."""

    path: Path
    sha256: str
    layout: str  # "mmpose 0.x" | "mmpose 1.x" | "no keypoint head"
    state: "OrderedDict"
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def provenance(self) -> dict:
        return {"file": self.path.name, "sha256": self.sha256, "layout": self.layout, "tensors": len(self.state),
                **({"notes": list(self.notes)} if self.notes else {})}


def _load(data: bytes, path: Path):
    """The checkpoint from its bytes (``weights_only=True``, admitting the numpy objects of an mmcv
    ``meta`` and an mmengine training checkpoint's message hub: :func:`stages.torch_files.safe_globals`)."""
    import torch

    try:
        with safe_globals():
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError (not a torch file), EOFError ...
        raise PoseCheckpointMismatch(f"--pose-checkpoint {path}: torch.load(weights_only=True) cannot read it "
                                     f"({weights_only_refusal(e)})") from None


def read_pose_checkpoint(path: str | Path) -> PoseCheckpoint:
    """Read ``path`` once: sha256 of its bytes and the checkpoint from the same bytes."""
    import torch

    path = Path(path)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    why = zip_problem(data) or name_hash_problem(path, sha)
    if why:
        raise PoseCheckpointMismatch(f"--pose-checkpoint {path}: {why}. Nothing was extracted; copy the file again "
                                     f"(the official one: {OFFICIAL_FILE}, docs/install.md)")
    ckpt = _load(data, path)
    meta = {}
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        state, meta = ckpt["state_dict"], ckpt.get("meta") or {}
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        raise PoseCheckpointMismatch(f"--pose-checkpoint {path}: holds no state dict (a "
                                     f"{type(ckpt).__name__}{' with keys ' + str(sorted(ckpt)[:6]) if isinstance(ckpt, dict) else ''})")
    notes = []
    out = OrderedDict(state)
    if state and all(k.startswith("module.") for k in state):
        out = OrderedDict((k[len("module."):], v) for k, v in state.items())
        notes.append("DDP 'module.' prefix removed")
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        out._metadata = OrderedDict((k[len("module."):] if k.startswith("module.") else ("" if k == "module" else k), v)
                                    for k, v in metadata.items()) if notes else metadata
    if any(k.startswith("keypoint_head.") for k in out):
        layout = "mmpose 0.x"
    elif any(k.startswith("head.") for k in out):
        layout = "mmpose 1.x"
    else:
        layout = "no keypoint head"
    return PoseCheckpoint(path, sha, layout, out, meta if isinstance(meta, dict) else {}, notes)


def mmpose_names(model, state: "OrderedDict") -> "OrderedDict":
    """``state`` under the names ``model.load_state_dict`` would give it: a copy passed through the
    model's own load-state-dict pre-hooks, module by module in the order torch calls them."""
    sd = OrderedDict(state)
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        sd._metadata = metadata
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        local = (metadata or {}).get(name, {})
        for hook in module._load_state_dict_pre_hooks.values():
            hook(sd, prefix, local, True, [], [], [])
    return sd


def build_meta_model(config_path: Path):
    """mmpose's model for a config file on the meta device (shapes only, nothing allocated)."""
    import torch
    from mmengine.config import Config
    from mmpose.apis import init_model

    cfg = Config.fromfile(str(config_path))
    with torch.device("meta"):
        return init_model(cfg, None, device="meta")


def head_keypoints(state) -> Optional[int]:
    """How many keypoints the heatmap head of a state dict predicts (its final layer's output
    channels; mmpose 1.x ``head.``, 0.x ``keypoint_head.``); None without such a layer."""
    for k in ("head.final_layer.weight", "keypoint_head.final_layer.weight"):
        w = state.get(k) if hasattr(state, "get") else None
        if w is not None and getattr(w, "ndim", 0) >= 1:
            return int(w.shape[0])
    return None


def check_model_keypoints(model, config_rel: str, skeleton: str, joints: int) -> None:
    """Refuse a pose model whose head predicts another number of keypoints than the skeleton the
    pose source stores (a COCO-WholeBody config, 133, for coco17): every clip would fail after its
    decode and pose pass."""
    n = head_keypoints(model.state_dict())
    if n is not None and n != joints:
        raise PoseCheckpointMismatch(
            f"--pose-config {config_rel}: its head predicts {n} keypoints, but the hrnet pose source stores "
            f"{skeleton} ({joints} joints) and the model's joint embedding is built for it. Nothing was extracted. "
            f"Use a {joints}-keypoint top-down config and checkpoint (the default: {OFFICIAL_FILE}).")


def _groups(keys) -> str:
    c = Counter(".".join(k.split(".")[:2]) for k in keys)
    return ", ".join(f"{g} ({n})" for g, n in c.most_common(3)) + (", ..." if len(c) > 3 else "")


def _missing_bn_counters(missing: list[str], sd) -> list[str]:
    """BatchNorm counters torch fills in itself for state dicts older than BatchNorm's version 2."""
    meta = getattr(sd, "_metadata", None) or {}
    return [k for k in missing if k.endswith(".num_batches_tracked")
            and (meta.get(k.rsplit(".", 1)[0], {}).get("version") or 0) < 2]


@dataclass
class Fit:
    missing: list[str]
    unexpected: list[str]
    other_shape: list[tuple[str, tuple, tuple]]
    total: int
    found: int  # tensors of the model the file holds with their shape

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.other_shape)


def fit(model, ckpt: PoseCheckpoint) -> Fit:
    """How ``ckpt`` fits ``model`` after mmpose's own name conversion (``model`` may be on meta)."""
    sd = mmpose_names(model, ckpt.state)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    other = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in own if k in sd and sd[k].shape != own[k].shape]
    if not unexpected and not other and set(missing) <= set(_missing_bn_counters(missing, sd)):
        missing = []  # an old file without BatchNorm counters loads (torch fills them) and fits
    found = sum(1 for k in own if k in sd and sd[k].shape == own[k].shape)
    return Fit(missing, unexpected, other, len(own), found)


def hrnet_width(state) -> Optional[int]:
    """The HRNet width (w32, w48) a pose model's state dict says, if it is an HRNet."""
    for k in ("backbone.transition1.0.0.weight", "transition1.0.0.weight"):
        if k in state:
            return int(state[k].shape[0])
    return None


def _size_hints(ckpt: PoseCheckpoint) -> set[str]:
    """Input sizes ('384x288') the file name or the meta's config text mention."""
    text = ckpt.path.name
    for v in ckpt.meta.values():
        if isinstance(v, str):
            text += " " + v[:200_000]
    hints = set(re.findall(r"(\d{3})x(\d{3})", text))
    for w, h in re.findall(r"(?:input_size|image_size)\s*=\s*[\[(]\s*(\d+)\s*,\s*(\d+)", text):
        hints.add((h, w))  # mmpose writes (w, h)
    return {f"{h}x{w}" for h, w in hints}


def fitting_configs(ckpt: PoseCheckpoint, config_path: Path, config_rel: str) -> list[str]:
    """mmpose configs beside the configured one (``config_path``, same dataset folder) whose model
    the file fits exactly, named as ``config_rel`` names its config: for an HRNet file, the plain
    ``td-hm_hrnet-w<width>_*`` configs (no DARK / UDP: the batched top-down path does not reproduce
    them), preferring the input size the file name or meta says."""
    width = hrnet_width(ckpt.state)
    if width is None:
        return []
    here = Path(config_path).parent
    cands = sorted(p for p in here.glob(f"*hrnet-w{width}_*.py")
                   if not re.search(r"(dark|udp|fp16|coarsedropout|gridmask|photometric|aic)", p.name))
    fits = []
    for p in cands:
        try:
            if fit(build_meta_model(p), ckpt).ok:
                fits.append(p)
        except Exception:  # noqa: BLE001  (a config this install cannot build names nothing)
            continue
    hints = _size_hints(ckpt)
    hinted = [p for p in fits if any(p.stem.endswith(h) for h in hints)]
    rel = Path(config_rel).parent
    return [str(rel / p.name) for p in (hinted or fits)]


def mismatch_message(ckpt: PoseCheckpoint, result: Fit, config_rel: str, suggestions: list[str],
                     model_width: Optional[int] = None, model_state=None) -> str:
    src = f"--pose-checkpoint {ckpt.path} ({ckpt.layout + ' layout' if ckpt.layout.startswith('mmpose') else ckpt.layout})"
    lines = [f"{src} does not fit the pose model of {Path(config_rel).name}: {result.found} of {result.total} "
             "tensors would be loaded. Nothing was extracted."]
    if result.missing:
        lines.append(f"  missing from the file: {len(result.missing)} ({_groups(result.missing)})")
    if result.unexpected:
        lines.append(f"  in the file, not in the model: {len(result.unexpected)} ({_groups(result.unexpected)})")
    if result.other_shape:
        k, a, b = result.other_shape[0]
        lines.append(f"  of another shape: {len(result.other_shape)} ({_groups(k for k, _, _ in result.other_shape)}; "
                     f"e.g. {k} {a} in the file, {b} in the model)")
    width, ours = hrnet_width(ckpt.state), model_width
    theirs_k, ours_k = head_keypoints(ckpt.state), head_keypoints(model_state or {})
    if theirs_k and ours_k and theirs_k != ours_k:
        lines.append(f"The file's head predicts {theirs_k} keypoints, the configured model's {ours_k}"
                     + (" (COCO-WholeBody's 133?)" if theirs_k == 133 else "") + ".")
    head = [k for k in result.missing if k.startswith("head.")]
    if head and len(head) == len(result.missing) and not result.unexpected and not result.other_shape:
        lines.append(f"It has no keypoint head ({', '.join(head)}): a backbone without the layer that predicts the "
                     f"joints. Use a top-down pose checkpoint such as {OFFICIAL_FILE}.")
    elif not any(k.startswith(("backbone.", "head.", "keypoint_head.")) for k in ckpt.state):
        lines.append("Its names have no 'backbone.' prefix and no head: a bare backbone (an ImageNet-pretrained "
                     f"classifier?), not a pose model. Use a top-down pose checkpoint such as {OFFICIAL_FILE}.")
    elif suggestions:
        what = f"HRNet-w{width}" if width else "another model"
        lines.append(f"The file holds {what}" + (f" (the configured model: HRNet-w{ours})" if ours and width != ours else "")
                     + f"; it fits mmpose's {' and '.join(Path(s).name for s in suggestions)}"
                     + (" (the input size is not in the weights: use the one it was trained at)" if len(suggestions) > 1
                        else "") + f": pass --pose-config {suggestions[0]}")
    elif width:
        lines.append(f"The file holds HRNet-w{width}" + (f", the model HRNet-w{ours}" if ours else "")
                     + "; no mmpose config beside the configured one fits it: pass --pose-config with the file's config.")
    return "\n".join(lines)


def check_pose_checkpoint(ckpt: Optional[PoseCheckpoint], config_path: Path, config_rel: str,
                          skeleton: str = "coco17", joints: int = 17, flip_test: Optional[bool] = None) -> int:
    """Refuse ``ckpt`` unless it fits the model of ``config_path`` strictly (meta-device build),
    and the model unless its head predicts the ``joints`` of ``skeleton`` (also with no
    checkpoint), and, with ``flip_test`` given, unless the batched top-down path reproduces its
    config (``TopdownSpec.check``: a DARK or UDP config was refused only inside the first clip, and
    every clip was then recorded as failed). Returns the number of tensors the file places (0
    without one)."""
    model = build_meta_model(config_path)
    if flip_test is not None:
        from stages.extract.pose.topdown import TopdownSpec, UnsupportedTopdownConfig

        model.test_cfg = dict(model.test_cfg or {}, flip_test=flip_test)
        try:
            TopdownSpec.check(model)
        except UnsupportedTopdownConfig as e:
            raise UnsupportedTopdownConfig(f"--pose-config {config_rel}: {e}") from None
    if ckpt is not None:
        result = fit(model, ckpt)
        if not result.ok:
            raise PoseCheckpointMismatch(mismatch_message(ckpt, result, config_rel,
                                                          fitting_configs(ckpt, config_path, config_rel),
                                                          hrnet_width(model.state_dict()), model.state_dict()))
    check_model_keypoints(model, config_rel, skeleton, joints)
    return result.total if ckpt is not None else 0
