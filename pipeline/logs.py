"""The one logging set-up of the command line (and of the worker processes it starts).

Third-party warnings a user can do nothing about are filtered by message *and* module, so a new
warning from the same package still shows; the project's own warnings (random HRNet weights,
whole-frame person boxes, ...) are shown once per run as one line.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

#: (message regex, module regex) of warnings that say nothing actionable on this install
THIRD_PARTY_NOISE = (
    # mmcv-lite has no compiled ops; HRNet never uses them (stages/compat.py)
    (r"Fail to import ``MultiScaleDeformableAttention``", r"mmcv\."),
    # mmengine imports pkg_resources; setuptools<81 is pinned on purpose (docs/install.md)
    (r"pkg_resources is deprecated", r"(mmengine|mmpose|mmdet|pkg_resources)(\.|$)"),
    # mmpose resolves its own metainfo file from its wheel and says so on every model build
    (r'The metainfo config file ".*" does not exist', r"mmpose\."),
)

#: log messages (prefixes) of third-party libraries that say nothing actionable; the model config
#: states random weights where it means them (the demo's tiny CLIP)
THIRD_PARTY_LOG_NOISE = (
    "No pretrained weights loaded for model",  # open_clip, pretrained=None
)

_OURS = tuple(str(Path(__file__).resolve().parents[1] / pkg) + "/" for pkg in ("stages", "cache", "pipeline"))


def _not_noise(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(THIRD_PARTY_LOG_NOISE)


def quiet_third_party_warnings() -> None:
    """Install the :data:`THIRD_PARTY_NOISE` filters (idempotent)."""
    for message, module in THIRD_PARTY_NOISE:
        warnings.filterwarnings("ignore", message=message, module=module)


_SHOWN: set = set()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """One line per warning, each text once per run (also when several worker processes, or
    a planning step and a worker, say the same thing)."""
    import sys

    key = (category, str(message))
    if key in _SHOWN:
        return
    _SHOWN.add(key)
    ours = str(filename).startswith(_OURS)
    where = "" if ours else f" ({filename}:{lineno})"
    print(f"warning: {message}{where}", file=file or sys.stderr)


def setup_logging(verbose: bool = False) -> None:
    """Log level (INFO with ``verbose``, else WARNING), quiet third-party warnings, and warnings
    shown as one line each (with their source only when they are not the project's)."""
    quiet_third_party_warnings()
    warnings.showwarning = _show_warning
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    if _not_noise not in root.filters:
        root.addFilter(_not_noise)
