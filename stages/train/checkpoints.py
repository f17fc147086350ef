"""Checkpoints: loaded safely, written whole or not at all, resumed from the newest whole one.

Loading: ``weights_only=True`` with exactly the types mmengine's own checkpoints hold admitted
(:func:`checkpoint_safe_globals`), never a blanket unpickler.

mmengine's ``CheckpointHook`` writes ``epoch_N.pth`` in place (a kill mid-write leaves a truncated
file under the final name) and, with ``max_keep_ckpts``, deletes the oldest kept checkpoint
*before* writing the new one; ``last_checkpoint`` is rewritten in place too. With
``max_keep_ckpts=1`` a kill during a save left a 0-byte ``epoch_N.pth``, no previous checkpoint,
and a ``last_checkpoint`` naming the deleted file: ``--resume`` had nothing to start from.

:class:`AtomicCheckpointHook` (the runner's ``checkpoint`` hook) keeps mmengine's schedule and
bookkeeping (``keep_ckpt_ids`` in the message hub) and changes the order and the writes:

1. the checkpoint goes to a temporary file beside it (``.epoch_N.pth.<host>.<pid>.tmp``), which is
   fsynced and renamed into place (then the folder is fsynced): ``epoch_N.pth`` is whole or absent;
2. then ``last_checkpoint`` is replaced (written beside, renamed);
3. only then is the checkpoint beyond ``max_keep_ckpts`` deleted.

Temporary files of writers that are gone are removed when training starts. :func:`resume_checkpoint`
picks the checkpoint to resume from by looking at the files, not at ``last_checkpoint``: the newest
``epoch_*.pth`` / ``iter_*.pth`` that is whole (a complete zip archive whose members' CRCs check,
which a truncated or 0-byte file is not), saying so when ``last_checkpoint`` names another.
"""
from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from cache.claims import PIDS_TAG, named_writer_gone
from cache.fsutil import atomic_write_text, publish
from stages.registry import HOOKS
from stages.torch_files import safe_globals, zip_problem

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"  # mmengine's name for the file naming the newest checkpoint
_TMP = re.compile(r"^\.(?P<name>.+\.pth)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.tmp$")
_NUMBERED = re.compile(r"^(?P<kind>epoch|iter)_(?P<n>\d+)\.pth$")


def checkpoint_safe_globals():
    """torch >= 2.6 loads with ``weights_only=True``; mmengine checkpoints also hold the message
    hub (``HistoryBuffer`` of numpy arrays): :func:`stages.torch_files.safe_globals` admits exactly
    those types, not arbitrary pickles."""
    return safe_globals()


def temporary_name(final_name: str) -> str:
    """Where this process writes ``final_name`` before renaming it into place."""
    return f".{final_name}.{PIDS_TAG}.{os.getpid()}.tmp"  # (a pid means something only in its process space)


def remove_stale_temporaries(folder: os.PathLike) -> list[Path]:
    """Remove ``.<checkpoint>.<tag>.<pid>.tmp`` files whose writer is gone
    (:func:`cache.claims.named_writer_gone`: this process space's dead pids at once; another node,
    boot or container, or older code's names, once untouched for ``DEFAULT_TTL``, as a writer's
    temporary grows while it writes)."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP.match(name)
        p = Path(folder) / name
        if m and named_writer_gone(p, m["host"], int(m["pid"])):
            try:
                p.unlink()
            except OSError:  # removed meanwhile, or not ours to remove
                continue
            removed.append(p)
    return removed


def _is_pickle(name: str) -> bool:
    """The archive member of a ``torch.save`` file that holds everything but the tensors' bytes."""
    return name.endswith("/data.pkl") or name == "data.pkl"


def whole_checkpoint_problem(path: os.PathLike, record_only: bool = False) -> Optional[str]:
    """None when ``path`` is a whole ``torch.save`` file (a zip archive, complete, every member's
    CRC right), else what is wrong with it (missing, empty, truncated, damaged). ``record_only``:
    of the members, only the pickle's CRC is checked (what :func:`read_checkpoint_meta` reads)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size == 0:
        return "empty (0 bytes)"
    try:
        with zipfile.ZipFile(p) as z:
            if not any(_is_pickle(n) for n in z.namelist()):
                return "not a torch checkpoint (no data.pkl)"
        return zip_problem(p, _is_pickle if record_only else None)
    except zipfile.BadZipFile as e:
        return f"truncated or not a zip archive ({e})"
    except OSError as e:
        return f"unreadable ({e})"


def checkpoint_files(folder: os.PathLike) -> list[Path]:
    """``epoch_*.pth`` and ``iter_*.pth`` in ``folder``, newest first (by their number)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        m = _NUMBERED.match(name)
        if m:
            found.append((int(m["n"]), m["kind"] == "epoch", Path(folder) / name))
    return [p for *_, p in sorted(found, reverse=True)]


#: where a run that starts over puts the checkpoints of the unfinished run before it
ABANDONED_DIR = "abandoned"


#: what a run writes in its variant folder besides its checkpoints: its result and reports, and
#: mmengine's per-launch log folders and config dumps (``20261206_100026/``, ``20261206_100026.py``)
RUN_OUTPUTS = ("result.json", "predictions.json", "confusion.json", "confusion.png", "curves.png")
_LAUNCH = re.compile(r"^\d{8}_\d{6}(\.py)?$")


def set_aside_run(work_dir: os.PathLike, stamp: str) -> Optional[Path]:
    """Move what an earlier run wrote (its checkpoints, ``last_checkpoint``, :data:`RUN_OUTPUTS`, its
    launches' log folders) into ``work_dir/abandoned/<stamp>/``, so a run that starts over never
    resumes from, reports or plots beside its own what another run wrote (a ``--force`` retrain cut
    short left the old ``result.json``, which the next run then took for this one's). Nothing is
    deleted (a save a kill cut short is left to the hook's own clean-up). Returns that folder (None:
    nothing to move)."""
    work_dir = Path(work_dir)
    moving = checkpoint_files(work_dir) + [work_dir / n for n in (LAST_CHECKPOINT, *RUN_OUTPUTS)
                                           if (work_dir / n).is_file()]
    moving += sorted(p for p in work_dir.iterdir() if _LAUNCH.match(p.name)) if work_dir.is_dir() else []
    if not moving:
        return None
    dest = work_dir / ABANDONED_DIR / stamp
    dest.mkdir(parents=True, exist_ok=True)
    for p in moving:
        os.replace(p, dest / p.name)
    return dest


def resume_checkpoint(work_dir: os.PathLike) -> Optional[Path]:
    """The newest whole checkpoint in ``work_dir`` (None when there is none), whatever
    ``last_checkpoint`` says; a warning names the files passed over and a ``last_checkpoint``
    that named another file."""
    work_dir = Path(work_dir)
    named = None
    try:
        named = Path((work_dir / LAST_CHECKPOINT).read_text().strip() or "-")
    except OSError:
        pass
    skipped = []
    chosen = None
    for p in checkpoint_files(work_dir):
        why = whole_checkpoint_problem(p)
        if why is None:
            chosen = p
            break
        skipped.append(f"{p.name} ({why})")
    if named is not None and (chosen is None or named.name != chosen.name):
        state = whole_checkpoint_problem(named if named.is_absolute() else work_dir / named)
        log.warning("%s names %s (%s); resuming from %s instead", work_dir / LAST_CHECKPOINT, named,
                    state or "not the newest whole checkpoint",
                    chosen.name if chosen else "nothing: no whole checkpoint, so training starts over")
    if skipped:
        log.warning("passing over checkpoints that are not whole: %s", ", ".join(skipped))
    return chosen


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a quota, a folder made read-only): says
    where, on which filesystem, and which whole checkpoint ``--resume`` would continue from."""

    def __init__(self, cause: OSError, target: Path, newest: Optional[Path]):
        from cache.fsutil import mount_point

        super().__init__(cause.errno, cause.strerror or str(cause))
        self.message = (f"could not write checkpoint {target} ({cause.strerror or cause}, on the filesystem mounted at "
                        f"{mount_point(target.parent)}); the part written was removed. "
                        + (f"The newest whole checkpoint is {newest.name}: `--resume` continues from it once the "
                           "folder can take another (a checkpoint is written beside the one it replaces: "
                           "max_keep_ckpts = 1 needs room for two)" if newest else "No checkpoint of this run is whole yet"))

    def __str__(self) -> str:
        return self.message


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` whose checkpoints appear whole or not at all, and whose
    ``max_keep_ckpts`` deletes an old checkpoint only after the new one is in place (module doc)."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._local() and is_main_process():
            for p in remove_stale_temporaries(self.out_dir):
                runner.logger.info(f"removed {p}, a checkpoint whose writer was killed while saving it")

    def _local(self) -> bool:
        return isinstance(getattr(self, "file_backend", None), LocalBackend)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._local():  # another storage backend: mmengine's own way
            return super()._save_checkpoint_with_step(runner, step, meta)
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                self.keep_ckpt_ids.popleft()  # deleted once the new one is whole (below)
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        name = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, name)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        tmp = temporary_name(name)
        try:
            runner.save_checkpoint(self.out_dir, tmp, self.file_client_args, save_optimizer=self.save_optimizer,
                                   save_param_scheduler=self.save_param_scheduler, meta=meta,
                                   by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
            if not is_main_process():
                return
            publish(Path(self.out_dir) / tmp, Path(self.last_ckpt))
        except OSError as e:
            try:
                (Path(self.out_dir) / tmp).unlink(missing_ok=True)  # a part-written file would keep the disk full
            except OSError:  # (a read-only mount refuses even this)
                pass
            raise CheckpointWriteError(e, Path(self.last_ckpt), resume_checkpoint(self.out_dir)) from e
        atomic_write_text(Path(runner.work_dir) / LAST_CHECKPOINT, self.last_ckpt)
        if self.max_keep_ckpts > 0:
            self._remove_unkept(step)

    def _remove_unkept(self, step: int) -> None:
        """Every numbered checkpoint before ``step`` that ``keep_ckpt_ids`` does not keep: the one
        this save replaces, and any a kill between a save and its deletion left behind (the resumed
        run's list no longer names it, so mmengine's own deletion never would). A run that starts
        over sets earlier runs' checkpoints aside first, so every one here is this run's."""
        kept = set(self.keep_ckpt_ids)
        for old in checkpoint_files(self.out_dir):
            m = _NUMBERED.match(old.name)
            if old.name != self.filename_tmpl.format(int(m["n"])) or int(m["n"]) in kept or int(m["n"]) >= step:
                continue  # another kind (iter_ beside epoch_), kept, or not older
            if old.is_dir():  # checkpoints saved by deepspeed are folders
                self.file_backend.rmtree(str(old))
            else:
                old.unlink(missing_ok=True)


def load_whole_checkpoint(path: os.PathLike):
    """A checkpoint file, loaded with ``weights_only=True`` once it is known whole: a copy whose
    bytes rotted or were cut loads without complaint where the damage falls inside a tensor."""
    why = whole_checkpoint_problem(path)
    if why is not None:
        raise ValueError(f"checkpoint {path} cannot be used: {why}")
    with checkpoint_safe_globals():
        return torch.load(str(path), map_location="cpu", weights_only=True)


def backbone_differences(saved: dict, ours: dict) -> list[str]:
    """How the CLIP weights a checkpoint names (``meta["backbone"]``, from the model's
    ``backbone_identity``) differ from the model's, each ``key: saved -> ours``; empty when they
    are the same. Where both name the weights' sha256 it decides, whichever tag or path found the
    file (a file at another path, or the tag's own file given by path, is the same weights; another
    file of one size is not); checkpoints written before the sha256 was recorded compare the tag
    and, for a file, its size."""
    keys = ["arch", "frozen"]
    random = (lambda b: not b.get("weights_sha256") and not b.get("pretrained") and not b.get("pretrained_path"))
    if (saved.get("weights_sha256") and ours.get("weights_sha256")) or random(saved) != random(ours):
        keys.append("weights_sha256")  # (random weights on one side only: None against a sha256)
    else:
        keys += ["pretrained"] + (["pretrained_size"] if saved.get("pretrained_path") else [])
    return [f"{k}: {saved.get(k)!r} -> {ours.get(k)!r}" for k in keys if saved.get(k) != ours.get(k)]


def checkpoint_backbone_differences(ckpt: dict, model) -> list[str]:
    """:func:`backbone_differences` of a loaded checkpoint's ``meta["backbone"]`` and ``model``'s
    (the runner model's ``backbone_identity``); empty where either does not say (a checkpoint from
    before backbones were named, a model without the method)."""
    saved, ours = (ckpt.get("meta") or {}).get("backbone"), getattr(model, "backbone_identity", None)
    return backbone_differences(saved, ours()) if saved and ours is not None else []


def non_finite_tensors(state: dict) -> list[str]:
    """The names of the floating-point tensors of ``state`` holding a NaN or an infinity."""
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_checkpoint_into(model: torch.nn.Module, checkpoint: os.PathLike) -> None:
    """Weights of an mmengine checkpoint (``state_dict``), loaded with ``weights_only=True`` from a
    whole file; weights holding NaN or infinity (a run that diverged) are refused by name."""
    ckpt = load_whole_checkpoint(checkpoint)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    bad = non_finite_tensors(state) if isinstance(state, dict) else []
    if bad:
        raise ValueError(f"checkpoint {checkpoint}: {len(bad)} of its {len(state)} tensors hold NaN or infinity "
                         f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): the run that saved it diverged; "
                         "use a checkpoint from before the loss went non-finite")
    differ = checkpoint_backbone_differences(ckpt, model)
    if differ:
        raise RuntimeError(f"checkpoint {checkpoint} was trained on other CLIP weights ({'; '.join(differ)}): its "
                           "adapters and heads only make sense on those (set model.clip.* to match)")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {checkpoint} does not fit this variant's model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]} (is --exp / --variant / --dataset the one it was trained with?)")


def read_checkpoint_meta(path: os.PathLike) -> dict:
    """The ``meta`` of an mmengine checkpoint, loaded with ``weights_only=True``: the archive's
    index and its pickle checked whole, the tensors memory-mapped and never read (a ViT-B/16 run's
    file is ~0.6 GB: 0.8 s a read from the page cache where this takes 0.02 s; eval, predict and
    ``--resume`` read the record before the weights)."""
    why = whole_checkpoint_problem(path, record_only=True)
    if why is not None:
        raise ValueError(f"checkpoint {path} cannot be used: {why}")
    with checkpoint_safe_globals():
        try:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # a filesystem that refuses to map files (FUSE with direct I/O): read it whole
            if "mmap" not in str(e).lower():
                raise
            why = whole_checkpoint_problem(path)
            if why is not None:
                raise ValueError(f"checkpoint {path} cannot be used: {why}") from None
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not an mmengine checkpoint (a {type(ckpt).__name__}, not a dict with "
                         "'state_dict' and 'meta')")
    return dict(ckpt.get("meta") or {})
