"""Build a pose source from its ``--pose-source`` spec and options; the built-ins register on import.

A spec is ``NAME`` or ``NAME:ARG`` (``pkl:PATH``: the argument is the source's ``path`` option).
Each source checks its own options (:attr:`PoseSource.Options`) and builds itself from them
(:meth:`PoseSource.from_options`): nothing here knows one source from another.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from stages.extract.pose import dataset_pose, hrnet, skeleton_pkl  # noqa: F401  (register the built-ins)
from stages.extract.pose.base import PoseContext, PoseSource
from stages.registry import POSE_SOURCES, get_registered
from stages.settings import SettingsError, schema_fields

#: where pose-source options come from on the command line (for messages)
CLI_SOURCE = "--pose-option / --pose-* flags"


def pose_source_class(spec: str) -> type:
    """The registered class of ``spec``'s name."""
    return get_registered(POSE_SOURCES, spec.partition(":")[0])


def check_pose_options(spec: str, options: Optional[Mapping[str, Any]] = None, source: str = CLI_SOURCE,
                       where: str = "") -> Any:
    """``options`` (and ``spec``'s argument) checked and converted by the source's schema."""
    name, _, arg = spec.partition(":")
    cls = pose_source_class(spec)
    opts = dict(options or {})
    if arg:
        if "path" not in schema_fields(cls.Options):
            raise SettingsError(f"--pose-source {spec}: pose source {name!r} takes no argument after ':'")
        opts["path"] = arg
    try:
        return cls.Options.from_dict(opts, where=where, source_of=lambda _k: source)
    except SettingsError as e:
        raise SettingsError(f"pose source {name!r}: {e}", e.key, e.source) from None


def create_pose_source(spec: str, options: Optional[Mapping[str, Any]] = None, *, dataset=None,
                       device: str = "cpu", source: str = CLI_SOURCE) -> PoseSource:
    """``hrnet`` | ``dataset`` | ``pkl:PATH`` (with its options) -> a ready :class:`PoseSource`."""
    typed = check_pose_options(spec, options, source)
    return pose_source_class(spec).from_options(typed, PoseContext(dataset=dataset, device=device))
