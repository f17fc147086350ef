"""Stage one's planning: which entry a ``pipeline extract`` fills, and the clips it must hold.

The *plan* of an entry is the list of clips it must hold (its ``plan.json``): each clip's id,
split, label, source video and cut. Planning is cheap and deterministic (parse annotations, stat
files, hash): every process, on any host, computes the same key and plan, so any number of
processes (``--workers``, ``--shard K/N``, other hosts) can fill one entry together.
:func:`plan_entry` decodes nothing; :mod:`stages.extract.run` does the per-clip work;
``pipeline/engines/`` only spread that work.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from cache import CacheStore, entry_key, file_identity
from cache.entry import CacheEntry
from cache.fsutil import case_insensitive
from cache.keys import key_settings, settings_digest
from cache.layout import FORMAT_VERSION, clip_uid
from cache.provenance import git_revision, package_versions, who_when
from cache.writer import create_entry
from stages.datasets import (DatasetAdapter, DatasetIndex, DatasetLayoutError, adapter_class, check_labels, create_dataset,
                             default_data_root)
from stages.extract import frame_seek
from stages.extract.pose import PoseSource, create_pose_source
from stages.extract.request import EntryRequest, default_pose_source, entry_request, resolve_settings
from stages.extract.settings import ExtractSettings

log = logging.getLogger(__name__)


@dataclass
class ExtractOptions:
    """What `pipeline extract` was asked to do (picklable: it travels to worker processes)."""

    dataset: str
    root: Optional[str] = None
    cache_root: Optional[str] = None
    pose_source: Optional[str] = None  # spec (NAME or NAME:ARG); None: the dataset's default
    # the pose source's options as given (checked by its schema: HRNet's checkpoint, flip test, person
    # detector, ...; stages/extract/pose/)
    pose_options: dict = field(default_factory=dict)
    device: str = "cpu"
    workers: int = 1
    limit: Optional[int] = None
    shard: tuple[int, int] = (0, 1)
    retry_failed: bool = False
    decode_workers: Optional[int] = None  # processes decoding ahead of the pose model; None: run.decode_workers
    settings: dict = field(default_factory=dict)  # given stage-one settings (ExtractSettings fields; None: default)
    dataset_options: dict = field(default_factory=dict)  # given adapter options (checked by its schema)
    # Clips the pose source has no poses for (a skeleton file covering part of a split): "error"
    # stops before any work, "skip" leaves them out of the entry, "fail" records them as failed.
    missing_poses: str = "error"


MISSING_POSES_CHOICES = ("error", "skip", "fail")


class MissingPosesError(ValueError):
    """The pose source covers only part of the dataset, and nobody said what to do with the rest."""


@dataclass
class EntryPlan:
    """Everything every extraction process of one entry agrees on (picklable: it travels to workers)."""

    adapter: DatasetAdapter
    index: DatasetIndex
    settings: ExtractSettings
    pose_spec: str
    pose_identity: dict
    key: str
    settings_hash: str
    sources_hash: str
    entry_dir: Path
    clips: list[dict]  # the plan: every clip the entry must hold (plan.json)
    root_attrs: dict
    manifest: dict
    request: EntryRequest
    sources: list[dict]  # every source file's identity, as the key hashes them (sources.json)
    no_pose: frozenset = frozenset()  # clip ids to record as failed without decoding (missing_poses="fail")


def parse_shard(text: Optional[str]) -> tuple[int, int]:
    """``"K/N"`` with 0 <= K < N (e.g. ``$SLURM_ARRAY_TASK_ID/N`` for ``--array=0-(N-1)``)."""
    if not text:
        return (0, 1)
    m = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)  # (int() takes 1_0 and other scripts' digits)
    if m is None:
        raise ValueError(f"--shard wants K/N (two whole numbers), got {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard {text}: need 0 <= K < N")
    return k, n


def worker_device(device: str, worker: int, visible: Optional[int] = None) -> str:
    """The device of extraction worker number ``worker``: a plain ``cuda`` goes round the visible
    GPUs (worker w on ``cuda:<w mod count>``); ``cuda:K``, ``cpu`` and the rest stay as given.
    ``visible``: the number of GPUs (default: what torch sees)."""
    if device != "cuda":
        return device
    if visible is None:
        import torch

        visible = torch.cuda.device_count()
    return f"cuda:{worker % visible}" if visible > 0 else device


def build_adapter(opts: ExtractOptions) -> DatasetAdapter:
    """The dataset adapter ``opts`` names, with its options (generated datasets get a data root
    beside the cache they feed)."""
    options = dict(opts.dataset_options)
    if opts.root is None and not adapter_class(opts.dataset).needs_root:
        # generated datasets (the demo) live beside the cache they feed
        options.setdefault("data_root", str(default_data_root(opts.cache_root)))
    return create_dataset(opts.dataset, root=opts.root, **options)


def request_of(opts: ExtractOptions) -> EntryRequest:
    """The entry request of ``opts`` (checked; reads nothing)."""
    return entry_request(opts.dataset, pose_source=opts.pose_source, pose_options=opts.pose_options,
                         settings=opts.settings, dataset_options=opts.dataset_options)


def make_pose_source(spec: str, opts: ExtractOptions, adapter: DatasetAdapter) -> PoseSource:
    """The pose source of ``--pose-source spec`` with ``opts``' pose options, on ``opts.device``,
    giving the people per frame of ``opts``' stage-one settings."""
    persons = resolve_settings(opts.dataset, opts.settings).persons
    return create_pose_source(spec, opts.pose_options, dataset=adapter, device=opts.device, persons=persons)


def pose_coverage(pose: PoseSource, index: DatasetIndex, adapter: DatasetAdapter) -> Optional[dict]:
    """Which clips ``pose`` has no poses for, counted per split (None: it cannot tell before trying).
    ``"missing"`` holds every such clip id (``"examples"`` the first few, for messages)."""
    missing = pose.clips_without_poses(index.clips, adapter)
    if missing is None:
        return None
    lost = set(missing)
    by_split: dict[str, dict[str, int]] = {}
    for c in index.clips:
        s = by_split.setdefault(c.split, {"clips": 0, "without_poses": 0})
        s["clips"] += 1
        s["without_poses"] += c.clip_id in lost
    return {"clips": len(index.clips), "without_poses": len(lost), "by_split": by_split,
            "examples": missing[:5], "missing": missing}


def _coverage_message(spec: str, cov: dict) -> str:
    parts = ", ".join(f"{s}: {v['without_poses']} of {v['clips']}" for s, v in sorted(cov["by_split"].items())
                      if v["without_poses"])
    return (f"--pose-source {spec} has no poses for {cov['without_poses']} of {cov['clips']} clips ({parts}; "
            f"e.g. {', '.join(cov['examples'][:3])}). Nothing was extracted. Pass --missing-poses skip to leave "
            "them out of the entry, or --missing-poses fail to keep them in it as failed clips (not decoded)"
            + (", or choose a split the file covers (FineGym: -o split_version=1.0 for mmaction2's gym_2d.pkl)"
               if spec.startswith("pkl:") else ", or point the dataset at its pose files (docs/datasets.md)")
            + ".")


def plan_entry(opts: ExtractOptions, adapter: Optional[DatasetAdapter] = None,
               index: Optional[DatasetIndex] = None,
               load_progress: Optional[Callable[[int, int], None]] = None) -> EntryPlan:
    """Parse the dataset and compute the entry key and plan. Decodes nothing.

    ``load_progress(done, total)`` is passed to the adapter's ``load`` (the demo reports its
    generation)."""
    request = request_of(opts)  # every option checked before anything is read
    adapter = adapter or build_adapter(opts)
    index = index or adapter.load(progress=load_progress)
    check_labels(index)
    settings = resolve_settings(opts.dataset, opts.settings)
    pose_spec = opts.pose_source or default_pose_source(opts.dataset)
    pose = make_pose_source(pose_spec, opts, adapter)
    pose_identity = pose.identity()
    if pose.skeleton != index.skeleton and pose_spec.partition(":")[0] == "dataset":
        raise ValueError(f"pose source skeleton {pose.skeleton} != dataset skeleton {index.skeleton}")
    if opts.missing_poses not in MISSING_POSES_CHOICES:
        raise ValueError(f"--missing-poses {opts.missing_poses!r}: want one of {MISSING_POSES_CHOICES}")
    coverage = pose_coverage(pose, index, adapter)
    no_pose: frozenset = frozenset()
    if coverage and not coverage["without_poses"]:
        coverage = None  # every clip covered: nothing to record
    if coverage:
        if opts.missing_poses == "error":
            raise MissingPosesError(_coverage_message(pose_spec, coverage))
        lost = set(coverage.pop("missing"))
        if opts.missing_poses == "skip":
            index = dataclasses.replace(index, clips=[c for c in index.clips if c.clip_id not in lost])
        else:
            no_pose = frozenset(lost)
        coverage["policy"] = opts.missing_poses
    if not index.clips:
        # an entry of nothing would be "complete" at once and train on nothing
        dropped = (index.meta or {}).get("dropped")
        raise DatasetLayoutError(
            f"{index.name}: no clip to extract from {index.root}"
            + (f" (dropped: {'; '.join(f'{n} x {why}' for why, n in dropped.items())})" if dropped else "")
            + ("; every clip lacks poses and --missing-poses skip left them all out" if coverage else "")
            + ". Check --root and the dataset options (`pipeline dataset info` shows what the dataset holds)")
    root = index.root
    plan, sources = [], []
    seen: set[str] = set()
    folded: dict[str, str] = {}  # clip folders' names in one case -> the first clip id of it
    case_twins: list[tuple[str, str]] = []
    for c in index.clips:
        uid = clip_uid(c.clip_id)
        if uid in seen:
            raise ValueError(f"clip id {c.clip_id!r} appears twice in {index.name}")
        seen.add(uid)
        if folded.setdefault(uid.casefold(), c.clip_id) != c.clip_id:
            case_twins.append((folded[uid.casefold()], c.clip_id))
        video_rel = os.path.relpath(c.video, root) if (c.video and root) else c.video
        plan.append({"clip_id": c.clip_id, "uid": uid, "split": c.split, "label": c.label,
                     "video": video_rel, "cut": c.cut()})
        src = {"clip": c.clip_id, "video": file_identity(c.video, root), "cut": c.cut(), "label": c.label,
               "split": c.split}
        if c.start_time is not None or c.end_time is not None:
            src["time_cut_rule"] = frame_seek.TIME_CUT_RULE
        pose_file = c.extra.get("pose_file") if c.extra else None
        if pose_file:
            src["pose_file"] = file_identity(pose_file, root)
        sources.append(src)
    sources.append({"annotations": [file_identity(p, root) for p in index.source_files],
                    "classes": index.classes, "coarse_type": index.coarse_type})
    given_options = adapter.key_options(adapter.given_options)

    def keyed(given: Any) -> dict:  # what the key hashes, with the dataset options as ``given``
        return key_settings(settings.as_dict(), pose_identity, index.skeleton, given)

    key, settings_hash, sources_hash = entry_key(index.name, keyed(given_options), sources)
    store = CacheStore(opts.cache_root)
    if case_twins and case_insensitive(store.entries_dir / index.name):  # (entries/ may be a link elsewhere)
        a, b = case_twins[0]
        raise DatasetLayoutError(
            f"{index.name}: clip ids {a!r} and {b!r} differ only in case ({len(case_twins)} such pair(s)), and the cache "
            f"at {store.root} is on a filesystem that takes them for one name (macOS, an SMB share, exFAT): the "
            "second would be taken for the first's finished clip. Rename one, or put the cache on a case-sensitive "
            "filesystem")
    created = who_when()
    root_attrs = {
        "format": FORMAT_VERSION,
        "key": key,
        "settings_hash": settings_hash,
        "sources_hash": sources_hash,
        "dataset": index.name,
        "settings": {**settings.as_dict(), "pose_source": pose_spec},
        "pose": pose_identity,
        # the layout of the stored joints: the pose source's (HRNet on Toyota-Smarthome gives COCO-17,
        # not the dataset's own toyota13); the key keeps the dataset's, so keys stay as they were
        "skeleton": pose.skeleton,
        "key_skeleton": index.skeleton,  # what the key hashed (cache.entry.identity_problems checks it)
        "classes": index.classes,
        "coarse_type": index.coarse_type,
        "dataset_root": str(root) if root else None,
        "dataset_meta": index.meta,
        "created": created,
        "request": request.to_dict(),
        "request_hash": request.hash,
        "dataset_options": given_options,  # as the key hashes them: the options given, as text
    }
    if coverage:
        root_attrs["clips_without_poses"] = coverage
    manifest = {
        "what": "PeVL stage-one cache entry (see cache/layout.py for the layout)",
        **{k: root_attrs[k] for k in ("format", "key", "settings_hash", "sources_hash", "dataset",
                                      "settings", "pose", "skeleton", "coarse_type", "dataset_root")},
        "num_classes": len(index.classes),
        "annotation_files": [file_identity(p, root) for p in index.source_files],
        "dataset_meta": index.meta,  # which layout and files defined the splits, what was dropped
        **({"clips_without_poses": root_attrs["clips_without_poses"]} if "clips_without_poses" in root_attrs else {}),
        "request": request.to_dict(),
        # the weight file the pose model loaded (strictly): format and sha256; the key has the sha256
        **({"pose_weights": pose.weights()} if pose.weights() else {}),
        "created": created,
        "code_revision": git_revision(),
        "versions": package_versions(),
        "status": "incomplete",
        "counts": {"total": len(plan)},
    }
    twin = None if store.entry_dir(index.name, key).is_dir() else \
        _same_request_entry(store, index.name, request.hash, sources_hash,
                            lambda given: settings_digest(index.name, keyed(given)))
    if twin is not None:
        # the same request and the same files, its key made with options given at their default
        # (``-o seed=0``, ``--coarse-type human``) or left out: the same bytes, so that entry, not
        # a second one extracted from scratch. Its key's own inputs, for a metadata rebuild.
        key, settings_hash = twin.key, twin.attrs["settings_hash"]
        for d in (root_attrs, manifest):
            d.update(key=key, settings_hash=settings_hash)
        root_attrs["dataset_options"] = twin.attrs.get("dataset_options")
        log.warning("entry %s answers this request (the same files, settings and pose weights; dataset options "
                    "given or left at their defaults): extracting into it", key)
    return EntryPlan(adapter, index, settings, pose_spec, pose_identity, key, settings_hash, sources_hash,
                     store.entry_dir(index.name, key), plan, root_attrs, manifest, request, sources, no_pose)


def _same_request_entry(store: CacheStore, dataset: str, request_hash: str, sources_hash: str,
                        settings_hash_with: Callable[[Any], str]) -> Optional[CacheEntry]:
    """An entry of ``dataset`` made from the same request (its options in one canonical form, defaults
    filled in) and the same source files, whose settings hash is this run's with its dataset options
    as given then (``settings_hash_with(given)``: the request names a pose checkpoint or skeleton
    file by path, the key by its sha256, so a file replaced at its path is another entry), and whose
    own metadata still hashes to its key; the newest."""
    from cache.entry import identity_problems

    try:
        entries = store.entries(dataset)
    except OSError:
        return None
    for e in entries:  # newest first
        a = e.attrs
        if a.get("request_hash") == request_hash and a.get("sources_hash") == sources_hash \
                and settings_hash_with(a.get("dataset_options")) == a.get("settings_hash") \
                and not identity_problems(e.path):
            return e
    return None


def open_or_create(p: EntryPlan) -> CacheEntry:
    """The plan's entry, created atomically if nobody has yet."""
    return create_entry(p.entry_dir, p.root_attrs, p.clips, p.manifest, sources=p.sources)
