"""What entry is asked for: the request stage one records in an entry and stage two looks up.

A request names a dataset, its adapter options, the pose source and its options, and the
stage-one settings, each resolved to its full typed value (defaults filled in, one text form per
value) without reading the dataset or building a pose model: only the registered classes'
schemas are consulted. Stage one writes it into the entry (``attrs["request"]`` and its hash);
stage two computes it from its data config and opens the entry whose hash matches, so training
needs the cache alone (no raw videos, no pose checkpoint on the training machine).

The request is not the entry key: the key also pins the source files' identities and the pose
weights' hash. Two entries may answer one request (the dataset's files changed between two
extractions, or the same request ran on a CPU and on a GPU with ``precision=auto``); stage two then
takes the newest complete one and says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from cache.keys import stable_hash
from stages.datasets.factory import adapter_class
from stages.extract.pose.factory import CLI_SOURCE, check_pose_options, pose_source_class
from stages.extract.settings import ExtractSettings, resolve_extract_settings
from stages.settings import canonical_text, schema_fields

#: the pose source when neither the dataset nor the user names one
DEFAULT_POSE_SOURCE = "hrnet"


@dataclass(frozen=True)
class EntryRequest:
    dataset: str
    settings: dict  # ExtractSettings.as_dict(): what the key hashes
    pose_source: str  # the source's registered name (a spec's argument is its ``path`` option)
    pose_options: dict  # every option of the source that enters the key, as text
    dataset_options: dict  # every adapter option that enters the key, as text

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "settings": dict(self.settings), "pose_source": self.pose_source,
                "pose_options": dict(self.pose_options), "dataset_options": dict(self.dataset_options)}

    @property
    def hash(self) -> str:
        return stable_hash(self.to_dict())

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """``key: this vs other`` for each value that differs from another request's dict."""
        mine = _flat(self.to_dict())
        theirs = _flat(dict(other))
        return [f"{k}: {theirs.get(k, '(not set)')} (asked: {mine.get(k, '(not set)')})"
                for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]


def _flat(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _key_text(options: Any) -> dict:
    """Every option of a checked options object that enters the key, as text."""
    fields = schema_fields(type(options))
    d = options.to_dict()
    return {k: canonical_text(d[k]) for k in sorted(d) if fields[k].in_key}


def default_pose_source(dataset: str) -> str:
    """The pose source of ``dataset`` when none is named: the dataset's own choice, else HRNet."""
    return adapter_class(dataset).extract_defaults.get("pose_source") or DEFAULT_POSE_SOURCE


def resolve_settings(dataset: str, overrides: Optional[Mapping[str, Any]], where: str = "extract",
                     source_of=None) -> ExtractSettings:
    """The stage-one settings of ``dataset`` with ``overrides`` (None values: not given)."""
    return resolve_extract_settings(adapter_class(dataset).extract_defaults, overrides, where=where,
                                    source_of=source_of)


def entry_request(dataset: str, *, pose_source: Optional[str] = None, pose_options: Optional[Mapping] = None,
                  settings: Optional[Mapping] = None, dataset_options: Optional[Mapping] = None,
                  pose_options_source: str = CLI_SOURCE, dataset_options_source: str = "-o") -> EntryRequest:
    """The request for these inputs, every value checked by its schema (nothing is read or built)."""
    cls = adapter_class(dataset)
    spec = pose_source or default_pose_source(dataset)
    pose = check_pose_options(spec, pose_options, source=pose_options_source)
    ds_opts = cls.check_options(dataset_options, source=dataset_options_source)
    return EntryRequest(dataset=dataset, settings=resolve_settings(dataset, settings).as_dict(),
                        pose_source=pose_source_class(spec).name or spec.partition(":")[0],
                        pose_options=_key_text(pose), dataset_options=_key_text(ds_opts))
