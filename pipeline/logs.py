"""The one logging set-up of the command line (and of the worker processes it starts).

Three levels, for every command (``-q``, default, ``-v``):

=========  =====================================================================================
``-q``     warnings and errors; the results (tables, JSON, summaries); no progress
default    + the project's INFO messages (what a run does, its settings, one line per reported
           epoch, progress); third-party libraries only from WARNING
``-v``     + DEBUG: everything mmengine logs (its environment dump, the config, the hook table,
           per-iteration lines), third-party INFO, and the traceback of an error
=========  =====================================================================================

mmengine's Runner logs through its own ``MMLogger``, which prints to stdout by itself;
:func:`stages.train.train_log.bridge_mmlogger` hands its records to Python's ``mmengine`` logger
instead (each one a level lower: mmengine's INFO is our DEBUG), so this set-up decides. The
run's own log file (``W/.../<time>/<time>.log``) keeps everything at INFO.

Third-party warnings a user can do nothing about are filtered by message *and* module, so a new
warning from the same package still shows; the project's own warnings (random HRNet weights,
whole-frame person boxes, ...) are shown once per run as one line.
"""
from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from stages.stderr_handler import CurrentStderrHandler

#: (message regex, module regex) of warnings that say nothing actionable on this install
THIRD_PARTY_NOISE = (
    # mmcv-lite has no compiled ops; HRNet never uses them (stages/compat.py)
    (r"Fail to import ``MultiScaleDeformableAttention``", r"mmcv\."),
    # mmengine imports pkg_resources; setuptools<81 is pinned on purpose (docs/install.md)
    (r"pkg_resources is deprecated", r"(mmengine|mmpose|mmdet|pkg_resources)(\.|$)"),
    # mmpose resolves its own metainfo file from its wheel and says so on every model build
    (r'The metainfo config file ".*" does not exist', r"mmpose\."),
    # torch 2.13 deprecates TorchScript; libraries (mmengine, mmcv, open_clip) script helpers at import
    (r"`torch\.jit\.(script|interface|trace)` is deprecated", r"torch\.jit\."),
)

#: log messages (prefixes) of third-party libraries that say nothing actionable
THIRD_PARTY_LOG_NOISE = (
    # open_clip, pretrained=None: the model config states random weights where it means them (the demo)
    "No pretrained weights loaded for model",
    # mmengine's CheckpointHook builds a FileClient, deprecated inside mmengine itself
    '"FileClient" will be deprecated in future',
    '"HardDiskBackend" is the alias of "LocalBackend"',
)

_OURS = tuple(str(Path(__file__).resolve().parents[1] / pkg) + "/" for pkg in ("stages", "cache", "pipeline"))
#: the project's loggers, shown from INFO at the default level
OUR_LOGGERS = ("stages", "cache", "pipeline")

QUIET, DEFAULT, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG
_level = DEFAULT


def level() -> int:
    """The command line's level: :data:`QUIET`, :data:`DEFAULT` or :data:`VERBOSE`."""
    return _level


def is_quiet() -> bool:
    return _level >= QUIET


def is_verbose() -> bool:
    return _level <= VERBOSE


def _not_noise(record: logging.LogRecord) -> bool:
    return not str(record.msg).lstrip().startswith(THIRD_PARTY_LOG_NOISE)


def quiet_third_party_warnings() -> None:
    """Install the :data:`THIRD_PARTY_NOISE` filters (idempotent)."""
    for message, module in THIRD_PARTY_NOISE:
        warnings.filterwarnings("ignore", message=message, module=module)


_SHOWN: set = set()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """One line per warning, each text once per run (also when several worker processes, or
    a planning step and a worker, say the same thing)."""
    key = (category, str(message))
    if key in _SHOWN:
        return
    _SHOWN.add(key)
    ours = str(filename).startswith(_OURS)
    where = "" if ours else f" ({filename}:{lineno})"
    print(f"warning: {message}{where}", file=file or sys.stderr)


class _Formatter(logging.Formatter):
    """INFO as the message alone (what a run says); ``warning: ...`` / ``error: ...``; DEBUG
    with the logger's name. At ``-v`` every line has its time and logger."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and is_verbose():
            msg += "\n" + self.formatException(record.exc_info)
        if is_verbose():
            return f"{self.formatTime(record, '%H:%M:%S')} {record.levelname.lower()} {record.name}: {msg}"
        if record.levelno >= logging.ERROR:
            return f"error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"warning: {msg}"
        return msg


_HANDLER = CurrentStderrHandler()
_HANDLER.setFormatter(_Formatter())
_HANDLER.addFilter(_not_noise)


def setup_logging(verbose: bool = False, quiet: bool = False) -> int:
    """Set the command line's level (``verbose`` wins over ``quiet``), quiet third-party warnings,
    and show warnings as one line each (with their source only when they are not the project's).
    Returns the level."""
    global _level
    _level = VERBOSE if verbose else QUIET if quiet else DEFAULT
    quiet_third_party_warnings()
    warnings.showwarning = _show_warning
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    # third parties: WARNING (INFO at -v, not DEBUG: matplotlib's and PIL's are not for users)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in OUR_LOGGERS + ("mmengine",):
        logging.getLogger(name).setLevel(_level)
    return _level
