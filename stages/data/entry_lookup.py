"""Find the cache entry a training run reads, from the cache alone.

Stage one records in every entry what it was asked for (:mod:`stages.extract.request`). A run's
data settings (:class:`stages.data.settings.DataSettings`) give the same request without reading
the raw dataset or building a pose model, and the entry whose recorded request matches is opened:
training needs the shared cache, not the videos or the HRNet checkpoint. ``--entry KEY`` names
an entry directly. A missing entry raises :class:`cache.EntryNotFoundError` whose message is the
``pipeline extract`` command that makes it, and what the dataset's other entries differ in.

Whether the dataset's files changed since the entry was made is an explicit check
(:func:`source_changes`: ``pipeline cache verify --sources``, ``pipeline train --check-sources``),
which re-plans the entry from its request and the raw dataset and names what changed.
"""
from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from cache import CacheEntry, CacheStore, EntryNotFoundError, default_root
from cache.store import CacheRootNotFoundError
from cache.fsutil import read_json
from cache.layout import SOURCES
from stages.data.settings import DataSettings
from stages.extract.request import EntryRequest
from stages.extract.settings import ExtractSettings

log = logging.getLogger(__name__)


def _data_settings(data: Union[DataSettings, Mapping[str, Any]]) -> DataSettings:
    return data if isinstance(data, DataSettings) else DataSettings.from_dict(dict(data), where="data")


def extract_command(data: Union[DataSettings, Mapping[str, Any]], cache_root: Optional[str] = None,
                    always: Sequence[str] = ()) -> str:
    """The ``pipeline extract`` command line that fills the entry ``data`` names (stage-one settings
    that differ from the dataset's defaults, and those named in ``always``)."""
    d = _data_settings(data)
    parts = ["pipeline", "extract", "--dataset", str(d.dataset)]
    if d.root:
        parts += ["--root", str(d.root)]
    elif d.dataset != "demo":
        parts += ["--root", f"/path/to/{d.dataset}"]  # the user's copy of the dataset
    if cache_root:
        parts += ["--cache-root", str(cache_root)]
    if d.pose_source:
        parts += ["--pose-source", str(d.pose_source)]
    for k, v in sorted(d.pose_options.items()):
        parts += ["--pose-option", f"{k}={_text(v)}"]
    from stages.extract.request import resolve_settings

    defaults = resolve_settings(str(d.dataset), {}).to_dict()
    for k, v in d.extract.items():
        if v is not None and (v != defaults.get(k) or k in always):
            parts += [f"--{k.replace('_', '-')}", _text(v)]
    for k, v in sorted(d.dataset_options.items()):
        parts += ["-o", f"{k}={_text(v)}"]
    return " ".join(shlex.quote(p) for p in parts)


def extract_options(data: Union[DataSettings, Mapping[str, Any]], cache_root: Optional[str] = None):
    """The :class:`~stages.extract.plan.ExtractOptions` of the ``pipeline extract`` that fills the
    entry ``data`` names (what :func:`extract_command` prints)."""
    from stages.extract.plan import ExtractOptions

    d = _data_settings(data)
    return ExtractOptions(dataset=str(d.dataset), root=str(d.root) if d.root else None, cache_root=cache_root,
                          pose_source=d.pose_source, pose_options=dict(d.pose_options), settings=dict(d.extract),
                          dataset_options=dict(d.dataset_options))


def _text(v: Any) -> str:
    from stages.settings import canonical_text

    return canonical_text(v)


def entry_data_options(entry: CacheEntry) -> dict[str, Any]:
    """The ``data.*`` settings that name ``entry`` (the request it recorded: dataset, stage-one
    settings, pose source and its options, adapter options): a run config with them looks this
    entry up again. Empty for an entry made before entries recorded their request."""
    from stages.extract.settings import ExtractSettings

    r = entry.attrs.get("request")
    if not r:
        return {}
    # as recorded (the key's form: a count of 1 left out) read back in full
    settings = ExtractSettings.of_entry(r.get("settings") or {}, where=f"entry {entry.key} request").to_dict()
    return {"data.dataset": r["dataset"], "data.extract": settings,
            "data.pose_source": r.get("pose_source"), "data.pose_options": dict(r.get("pose_options") or {}),
            "data.dataset_options": dict(r.get("dataset_options") or {})}


def find_entry(data: Union[DataSettings, Mapping[str, Any]], cache_root: Optional[str] = None,
               entry: Optional[str] = None) -> CacheEntry:
    """The cache entry ``data`` names (or ``entry``: a key, unique key prefix or path)."""
    root = Path(cache_root) if cache_root else default_root()
    try:  # a mistyped or unmounted root is said as such, not only as an entry to extract again (hours of work)
        store = CacheStore.existing(root, entry)
    except CacheRootNotFoundError as e:
        if entry or root.exists():
            raise EntryNotFoundError(str(e)) from None
        cmd = extract_command(_data_settings(data), str(cache_root) if cache_root else None)
        raise EntryNotFoundError(f"{e}. If the path is right, make the entry with:\n    {cmd}") from None
    if entry:
        p = Path(entry)
        if (p / "zarr.json").is_file():
            return CacheEntry(p)
        try:
            return store.open(entry)
        except Exception as e:
            raise EntryNotFoundError(f"--entry {entry}: {e}") from None
    d = _data_settings(data)
    request = d.entry_request()
    entries = _entries(store, request.dataset)
    hits = [e for e in entries if e.attrs.get("request_hash") == request.hash]
    if hits:
        complete = [e for e in hits if e.is_complete]
        chosen = (complete or hits)[0]  # newest first
        if len(hits) > 1:
            others = ", ".join(e.key for e in hits if e is not chosen)
            log.warning("%d cache entries answer this request (made from other copies of the dataset's files, or "
                        "on other devices); using the newest %s: %s (others: %s; --entry KEY picks one)",
                        len(hits), "complete one" if complete else "one", chosen.key, others)
        return chosen
    raise EntryNotFoundError(_not_found_message(d, request, entries, store, root, cache_root))


def _not_found_message(d: DataSettings, request: EntryRequest, entries: list[CacheEntry], store: CacheStore,
                       root: Path, cache_root: Optional[str]) -> str:
    cmd = extract_command(d, str(cache_root) if cache_root else None)
    lines = [f"no cache entry of {request.dataset!r} with these settings in {root}. Make it with:", f"    {cmd}"]
    for e in entries[:5]:
        theirs = e.attrs.get("request")
        if theirs is None:
            lines.append(f"  entry {e.key}: made before entries recorded their request (--entry {e.key} uses it)")
        else:
            diff = "; ".join(request.differences(theirs))
            lines.append(f"  entry {e.key} differs in {diff} (--entry {e.key} uses it)")
    old = store.old_format_entries(request.dataset)
    if old:
        lines.append(f"  {len(old)} {request.dataset} entr{'y' if len(old) == 1 else 'ies'} of an older store format "
                     f"({', '.join(p.name for p, _ in old)}) cannot be read: re-extract, then `pipeline cache gc`")
    newer = store.newer_format_entries(request.dataset)
    if newer:
        lines.append(f"  {len(newer)} {request.dataset} entr{'y' if len(newer) == 1 else 'ies'} of a newer store format "
                     f"({', '.join(p.name for p, _ in newer)}) cannot be read by this code: update pevl-pipeline")
    return "\n".join(lines)


def _entries(store: CacheStore, dataset: str) -> list[CacheEntry]:
    try:
        return list(store.entries(dataset))
    except OSError:
        return []


# -- the explicit check of the sources ------------------------------------------------------------
def replan_options(entry: CacheEntry, root: Optional[str] = None, cache_root: Optional[str] = None):
    """The :class:`~stages.extract.plan.ExtractOptions` that re-plan ``entry`` from its recorded
    request, with the dataset at ``root`` (default: where the entry was made from)."""
    from stages.extract.plan import ExtractOptions

    req = entry.attrs.get("request")
    if req is None:
        raise ValueError(f"entry {entry.key} was made before entries recorded their request; its sources cannot "
                         "be re-checked (re-extract it to get an entry that can)")
    settings = {k: v for k, v in req["settings"].items() if k in ExtractSettings.keys()}
    # the pose options as text convert back to the same values; the adapter options as given (the key
    # hashes only those: passing the defaults too would be another key)
    return ExtractOptions(dataset=req["dataset"], root=root or entry.attrs.get("dataset_root"),
                          cache_root=cache_root, pose_source=entry.settings.get("pose_source"),
                          pose_options=dict(req["pose_options"]), settings=settings,
                          dataset_options=dict(entry.attrs.get("dataset_options") or {}))


def source_changes(entry: CacheEntry, root: Optional[str] = None, cache_root: Optional[str] = None) -> list[str]:
    """What changed in the dataset's files since ``entry`` was made (empty: nothing). Re-plans the
    entry (parses the annotations, stats the videos; decodes nothing) and compares keys, and, where
    the entry keeps ``sources.json``, names the clips whose files changed."""
    from stages.extract.plan import plan_entry

    p = plan_entry(replan_options(entry, root, cache_root))
    if p.key == entry.key:
        return []
    out = []
    if p.settings_hash != entry.attrs.get("settings_hash"):
        out.append(f"the settings hash differs ({p.settings_hash} now, {entry.attrs.get('settings_hash')} in the "
                   "entry): another pose checkpoint or skeleton file, or another code version")
    if p.sources_hash != entry.attrs.get("sources_hash"):
        old_path = entry.path / SOURCES
        if not old_path.is_file():
            out.append("the dataset's files changed (the entry keeps no sources.json to say which)")
        else:
            old = read_json(old_path)["sources"]
            out.extend(_source_diff(old, p.sources))
    return out or [f"the key differs ({p.key} now, {entry.key} in the entry)"]


def _source_diff(old: list[dict], new: list[dict], limit: int = 20) -> list[str]:
    def by_clip(rows):
        return {r.get("clip", "annotations"): r for r in rows}

    o, n = by_clip(old), by_clip(new)
    out = [f"clip {c}: no longer in the dataset" for c in sorted(set(o) - set(n))]
    out += [f"clip {c}: new in the dataset" for c in sorted(set(n) - set(o))]
    for c in sorted(set(o) & set(n)):
        if o[c] != n[c]:
            what = [k for k in sorted(set(o[c]) | set(n[c])) if o[c].get(k) != n[c].get(k)]
            out.append(f"{'annotation files' if c == 'annotations' else 'clip ' + c}: {', '.join(what)} changed")
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


def data_summary(entry: CacheEntry) -> dict[str, Any]:
    st = entry.status()
    return dict(entry=entry.key, path=str(entry.path), dataset=entry.dataset, clips=st.total, done=st.done,
                missing=len(st.missing), failed=st.failed, settings=entry.settings)
