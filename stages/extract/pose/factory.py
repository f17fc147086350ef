"""Build a pose source from its ``--pose-source`` spec and options; the built-ins register on import.

A spec is ``NAME``, ``NAME:ARG`` (``pkl:PATH``: the argument is the source's ``path`` option), and
may carry options after commas (``pkl:PATH,img_shape=video``), the same as ``--pose-option``.
Each source checks its own options (:attr:`PoseSource.Options`) and builds itself from them
(:meth:`PoseSource.from_options`): nothing here knows one source from another.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional

from stages.extract.pose import dataset_pose, hrnet, skeleton_pkl  # noqa: F401  (register the built-ins)
from stages.extract.pose.base import PoseContext, PoseSource
from stages.registry import POSE_SOURCES, get_registered
from stages.settings import SettingsError, schema_fields

#: where pose-source options come from on the command line (for messages)
CLI_SOURCE = "--pose-option / --pose-* flags"

_OPTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^,]*$")


def split_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``NAME[:ARG][,KEY=VALUE...]`` -> (name, arg, options). ``ARG`` is a path: when it exists as
    written (commas and all) it is taken whole; otherwise trailing ``,KEY=VALUE`` parts are options
    (``pkl:/data/poses,img_shape=video``)."""
    name, _, arg = spec.partition(":")
    options: dict[str, str] = {}
    if arg and not os.path.exists(os.path.expanduser(arg)):
        parts = arg.split(",")
        while len(parts) > 1 and _OPTION.match(parts[-1].strip()):
            k, _, v = parts.pop().strip().partition("=")
            options.setdefault(k, v)
        arg = ",".join(parts)
    elif not arg and "," in name:
        name, *rest = name.split(",")
        for part in rest:
            if not _OPTION.match(part.strip()):
                raise ValueError(f"--pose-source {spec!r}: expected NAME[:PATH][,KEY=VALUE...], got {part!r}")
            k, _, v = part.strip().partition("=")
            options.setdefault(k, v)
    return name, arg, options


def pose_source_class(spec: str) -> type:
    """The registered class of ``spec``'s name."""
    return get_registered(POSE_SOURCES, split_spec(spec)[0])


def check_pose_options(spec: str, options: Optional[Mapping[str, Any]] = None, source: str = CLI_SOURCE,
                       where: str = "") -> Any:
    """``options`` (and ``spec``'s argument and ``,KEY=VALUE`` options) checked and converted by the
    source's schema."""
    name, arg, spec_options = split_spec(spec)
    cls = pose_source_class(spec)
    opts = {**dict(options or {}), **spec_options}
    if arg:
        if "path" not in schema_fields(cls.Options):
            raise SettingsError(f"--pose-source {spec}: pose source {name!r} takes no argument after ':'")
        opts["path"] = arg
    try:
        return cls.Options.from_dict(opts, where=where, source_of=lambda _k: source)
    except SettingsError as e:
        raise SettingsError(f"pose source {name!r}: {e}", e.key, e.source) from None


def create_pose_source(spec: str, options: Optional[Mapping[str, Any]] = None, *, dataset=None,
                       device: str = "cpu", source: str = CLI_SOURCE, persons: int = 1) -> PoseSource:
    """``hrnet`` | ``dataset`` | ``pkl:PATH`` (with its options) -> a ready :class:`PoseSource`
    giving ``persons`` people per frame (stage-one setting; > 1 only for a multi-person source)."""
    typed = check_pose_options(spec, options, source)
    cls = pose_source_class(spec)
    if persons > 1 and not cls.multi_person:
        multi = sorted(n for n, c in POSE_SOURCES.module_dict.items() if getattr(c, "multi_person", False))
        raise SettingsError(
            f"--pose-source {spec}: pose source {split_spec(spec)[0]!r} gives one person per frame, but the stage-one "
            f"setting persons={persons} (--persons, extract.persons) asks for {persons}. Use a source that gives "
            f"several ({', '.join(n + (':PATH' if n == 'pkl' else '') for n in multi)}), or persons=1",
            "persons")
    return cls.from_options(typed, PoseContext(dataset=dataset, device=device, persons=int(persons)))
