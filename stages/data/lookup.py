"""Find the cache entry a training run reads: the one `pipeline extract` would fill.

A dataset config (``configs/_base_/datasets/<name>.py``) names the dataset, its root, the pose
source and the stage-one settings. The entry is found by computing the key exactly as extraction
does (:func:`stages.extract.plan.plan_entry`: parses annotations and stats files, decodes nothing).
If that is impossible (the raw videos are not on this machine, the HRNet checkpoint is absent),
the store is searched for entries of the dataset with the same settings; ``--entry KEY`` bypasses
all of it. A missing entry raises :class:`cache.EntryNotFoundError` whose message is the exact
``pipeline extract`` command that makes it.
"""
from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any, Optional

from cache import CacheEntry, CacheStore, EntryNotFoundError, default_root
from cache.codecs import DEFAULT_FRAMES_CODEC
from stages.extract.plan import ExtractOptions, plan_entry

log = logging.getLogger(__name__)

_SETTING_FLAGS = {"num_frames": "--num-frames", "short_side": "--short-side", "grid_cell": "--grid-cell",
                  "frames_codec": "--frames-codec", "jpeg_quality": "--jpeg-quality"}


def extract_command(data_cfg: dict, cache_root: Optional[str] = None) -> str:
    """The ``pipeline extract`` command line that fills the entry ``data_cfg`` describes."""
    parts = ["pipeline", "extract", "--dataset", data_cfg["dataset"]]
    if data_cfg.get("root"):
        parts += ["--root", str(data_cfg["root"])]
    elif data_cfg["dataset"] != "demo":
        # the user's copy of the dataset (train with the same --root, or data.root=...)
        parts += ["--root", "/path/to/" + data_cfg["dataset"]]
    if cache_root:
        parts += ["--cache-root", str(cache_root)]
    if data_cfg.get("pose_source"):
        parts += ["--pose-source", str(data_cfg["pose_source"])]
    if data_cfg.get("pose_checkpoint"):
        parts += ["--pose-checkpoint", str(data_cfg["pose_checkpoint"])]
    if data_cfg.get("pose_config"):
        parts += ["--pose-config", str(data_cfg["pose_config"])]
    for k, v in (data_cfg.get("extract") or {}).items():
        if v is not None and k in _SETTING_FLAGS:
            parts += [_SETTING_FLAGS[k], str(v)]
    for k, v in (data_cfg.get("dataset_options") or {}).items():
        parts += ["-o", f"{k}={_cli_value(v)}"]
    return " ".join(shlex.quote(p) for p in parts)


def _cli_value(v: Any) -> str:
    """An option value as `pipeline extract -o KEY=VALUE` passes it (a string; lists comma-joined),
    because the entry key hashes the options' text."""
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def extract_options(data_cfg: dict, cache_root: Optional[str] = None) -> ExtractOptions:
    """The :class:`ExtractOptions` of the `pipeline extract` command that fills ``data_cfg``'s entry."""
    settings = {k: v for k, v in (data_cfg.get("extract") or {}).items() if v is not None}
    return ExtractOptions(dataset=data_cfg["dataset"], root=data_cfg.get("root"), cache_root=cache_root,
                          pose_source=data_cfg.get("pose_source"), pose_checkpoint=data_cfg.get("pose_checkpoint"),
                          pose_config=data_cfg.get("pose_config"), settings=settings,
                          dataset_options={k: _cli_value(v) for k, v in (data_cfg.get("dataset_options") or {}).items()})


def _settings_match(entry: CacheEntry, data_cfg: dict) -> bool:
    s = entry.settings
    want = dict(data_cfg.get("extract") or {})
    # a config that names no frames codec means the default one (not any of a lab's codecs)
    want["frames_codec"] = want.get("frames_codec") or DEFAULT_FRAMES_CODEC
    for k, v in want.items():
        if v is not None and k in s and s[k] != v:
            return False
    ps = data_cfg.get("pose_source")
    if ps and s.get("pose_source") != ps:
        return False
    return True


def find_entry(data_cfg: dict, cache_root: Optional[str] = None, entry: Optional[str] = None) -> CacheEntry:
    """The cache entry of ``data_cfg`` (or ``entry``: a key, unique key prefix or path)."""
    root = Path(cache_root) if cache_root else default_root()
    store = CacheStore(root)
    if entry:
        p = Path(entry)
        if (p / "zarr.json").is_file():
            return CacheEntry(p)
        try:
            return store.open(entry)
        except Exception as e:
            raise EntryNotFoundError(f"--entry {entry}: {e}") from None
    cmd = extract_command(data_cfg, str(cache_root) if cache_root else None)
    plan_error: Optional[BaseException] = None
    try:
        plan = plan_entry(extract_options(data_cfg, str(root)))
        if (plan.entry_dir / "zarr.json").is_file():
            return CacheEntry(plan.entry_dir)
        expected = f"entry {plan.key} at {plan.entry_dir}"
    except EntryNotFoundError:
        raise
    except Exception as e:  # raw data or pose checkpoint not on this machine
        plan_error = e
        expected = None
    # fall back to the entries of this dataset in the store with the same settings
    cands = [e for e in _entries(store, data_cfg["dataset"]) if _settings_match(e, data_cfg)]
    if plan_error is not None:
        complete = [e for e in cands if e.is_complete] or cands
        if len(complete) == 1:
            log.warning("could not compute the entry key (%s); using the only %s entry with these settings: %s",
                        plan_error, data_cfg["dataset"], complete[0].key)
            return complete[0]
        if len(complete) > 1:
            keys = ", ".join(e.key for e in complete)
            raise EntryNotFoundError(
                f"could not compute the cache entry key for {data_cfg['dataset']} ({plan_error}) and several entries "
                f"have these settings ({keys}); pick one with --entry KEY")
    why = f"no cache entry for dataset {data_cfg['dataset']!r} with these settings"
    why += f" (expected {expected})" if expected else f" (the key could not be computed: {plan_error})"
    others = [e.key for e in _entries(store, data_cfg["dataset"])]
    hint = f"; other {data_cfg['dataset']} entries in {root}: {', '.join(others)} (use --entry KEY)" if others else ""
    old = store.old_format_entries(data_cfg["dataset"])
    if old:
        hint += (f"; {len(old)} {data_cfg['dataset']} entr{'y' if len(old) == 1 else 'ies'} of an older store format "
                 f"({', '.join(p.name for p, _ in old)}) cannot be read: re-extract, then `pipeline cache gc`")
    raise EntryNotFoundError(f"{why} in cache {root}. Make it with:\n    {cmd}\n{hint.lstrip('; ')}".rstrip())


def _entries(store: CacheStore, dataset: str) -> list[CacheEntry]:
    try:
        return list(store.entries(dataset))
    except Exception:
        return []


def data_summary(entry: CacheEntry) -> dict[str, Any]:
    st = entry.status()
    return dict(entry=entry.key, path=str(entry.path), dataset=entry.dataset, clips=st.total, done=st.done,
                missing=len(st.missing), failed=st.failed, settings=entry.settings)
