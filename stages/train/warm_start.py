"""Two-stage variants: start from the final weights other variants of the same experiment finished with
(PGVT Table 4 (3), late fusion: ``init_from=dict(pose_only=['pose_'], video_only_16=['video_'])``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

from stages.nested_config import to_plain
from stages.train.checkpoints import checkpoint_backbone_differences, load_whole_checkpoint, non_finite_tensors
from stages.train.report import RESULT_FILE, read_result

log = logging.getLogger(__name__)


def init_from_variants(model, init_from: dict, exp_dir: Path) -> dict[str, str]:
    """Copy into ``model`` (the runner model) the weights that other variants of the same experiment
    finished with: ``init_from = {variant: [name prefixes of the built model, e.g. 'pose_']}``, read
    from ``exp_dir/<variant>/``'s final checkpoint. Every parameter and buffer of ``model`` under a
    prefix must be in that checkpoint with the same shape. Returns ``{variant: checkpoint path}``.

    Raises ``FileNotFoundError`` naming the command to run when a source variant has not finished."""
    own = model.state_dict()
    wrapper = "recognizer."  # the runner model holds the plain model as .recognizer
    used: dict[str, str] = {}
    picked: dict[str, torch.Tensor] = {}
    for variant, prefixes in to_plain(init_from).items():
        prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        vdir = exp_dir / variant
        ckpt = _finished_checkpoint(vdir)
        if ckpt is None:
            raise FileNotFoundError(
                f"this variant starts from the final weights of {variant!r}, which has not finished in {exp_dir} "
                f"(no {vdir / RESULT_FILE} with its checkpoint): train it first (pipeline train --variant "
                f"{variant} with this experiment, --dataset and --work-dir)")
        whole = load_whole_checkpoint(ckpt)  # refused when damaged, like every checkpoint this project loads
        state = whole.get("state_dict", whole)
        differ = checkpoint_backbone_differences(whole, model)
        if differ:
            raise ValueError(f"init_from {variant!r} ({ckpt}) was trained on other CLIP weights ({'; '.join(differ)}): "
                             "its weights only make sense on those (set model.clip.* as that variant had it)")
        wanted = [k for k in own if any(k.startswith(wrapper + p) for p in prefixes)]
        if not wanted:
            raise ValueError(f"init_from {variant!r}: the model has nothing under {prefixes}")
        missing = [k for k in wanted if k not in state]
        bad = [k for k in wanted if k in state and state[k].shape != own[k].shape]
        if missing or bad:
            raise ValueError(f"init_from {variant!r} ({ckpt}): {len(missing)} weights missing "
                             f"{[k.removeprefix(wrapper) for k in missing[:4]]}, {len(bad)} of another shape "
                             f"{[k.removeprefix(wrapper) for k in bad[:4]]}: is it a run of this experiment?")
        bad = non_finite_tensors({k: state[k] for k in wanted})
        if bad:
            raise ValueError(f"init_from {variant!r} ({ckpt}): {len(bad)} of the weights taken hold NaN or infinity "
                             f"({', '.join(bad[:3])}): that run diverged; train it again")
        picked.update((k, state[k]) for k in wanted)
        used[variant] = str(ckpt)
        log.info("initialised %d tensors under %s from %s", len(wanted), prefixes, ckpt)
    # only the picked tensors: the rest (a new head, the frozen CLIP) stays as built
    unexpected = model.load_state_dict(picked, strict=False).unexpected_keys
    assert not unexpected, unexpected  # picked from our own state dict's keys
    return used


def _finished_checkpoint(vdir: Path) -> Optional[Path]:
    """The final checkpoint of a finished variant dir: the file its result.json names, looked up
    beside it (the recorded path may be another machine's, or the tree this one was copied from,
    whose variant may have been trained again since), else None."""
    row = read_result(vdir)
    if row is None or not row.get("checkpoint"):
        return None
    cand = vdir / Path(row["checkpoint"]).name
    return cand if cand.is_file() else None
