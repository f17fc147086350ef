"""Build a pose source from its ``--pose-source`` spec; the built-in sources register on import."""
from __future__ import annotations

import inspect
import os
import re
from typing import Any

from stages.extract.pose import dataset_pose, hrnet, skeleton_pkl  # noqa: F401  (register the built-ins)
from stages.extract.pose.base import PoseSource
from stages.registry import POSE_SOURCES, lookup

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


def create_pose_source(spec: str, **options: Any) -> PoseSource:
    """``hrnet`` | ``dataset`` | ``pkl:PATH[,KEY=VALUE...]`` -> a ready :class:`PoseSource`.

    Options in the spec must be keyword parameters the source names (an unknown key is an error,
    never ignored); ``options`` are the caller's (device, checkpoint, dataset, ...)."""
    name, arg, spec_options = split_spec(spec)
    builder = lookup(POSE_SOURCES, name)
    if spec_options:
        params = inspect.signature(builder).parameters
        known = sorted(k for k, p in params.items()
                       if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k not in ("self", "path", "dataset"))
        unknown = sorted(set(spec_options) - set(known))
        if unknown:
            raise ValueError(f"--pose-source {spec!r}: unknown option(s) {', '.join(unknown)} for {name!r}; "
                             f"known: {', '.join(known) or 'none'}")
        options.update(spec_options)
    if arg:
        options["path"] = arg
    return builder(**options)
