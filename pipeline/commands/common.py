"""What the commands share: typer options, KEY=VALUE parsing, the command wrapper (log level and
the one error handler: :func:`cli_command`), and the output helpers of :mod:`pipeline.output`
(re-exported here: ``console``, ``out``, ``progress_bar``, ``human_bytes``).

Heavy libraries (torch, mmengine, open_clip) are imported inside the commands, never here, so
``pipeline --help`` stays fast.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import re
import traceback
from pathlib import Path
from typing import Callable, List, Optional

import typer
from typer.exceptions import TyperException

from pipeline.output import console, human_bytes, out, print_error, progress  # noqa: F401  (re-exported)

DatasetOpt = typer.Option(..., "--dataset", "-d", help="Dataset name: demo, gym99, gym288, diving48, haa500, toyota_smarthome, kinetics400, custom.")
RootOpt = typer.Option(None, "--root", help="Where the raw dataset lives, as its publishers distribute it (the demo needs none: it is generated under the cache root).")
def _cache_root_option(value: Optional[Path]) -> Optional[Path]:
    """--cache-root's callback: a path that is a file is refused at once (commands that may start
    a cache failed late on it, as ``[Errno 20] Not a directory``)."""
    if value is not None and value.expanduser().exists() and not value.expanduser().is_dir():
        raise typer.BadParameter(f"{value} (--cache-root) is not a folder: give the cache's folder")
    return value


CacheRootOpt = typer.Option(None, "--cache-root", envvar="PEVL_CACHE", callback=_cache_root_option, help="Cache root shared by the lab. Default: $PEVL_CACHE, else $XDG_CACHE_HOME/pevl, else ~/.cache/pevl.")
DatasetOptsOpt = typer.Option(None, "--dataset-option", "-o", help="Adapter option KEY=VALUE, repeatable, typed and checked (a bool takes true/false/1/0/yes/no, a pair 480,640): e.g. protocol=cv1 for toyota_smarthome; boxes=PATH or split_version=1.0 for FineGym. `pipeline dataset info --dataset NAME --options` lists a dataset's options with types and defaults.")
CoarseTypeOpt = typer.Option(None, "--coarse-type", help="Coarse action type for the text prompt '{label}, a video of {type} action' (custom datasets).")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Log everything: mmengine's environment dump, config and hook table, per-iteration lines, third-party messages, and the traceback of an error.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Only warnings, errors and the results: no progress, no messages.")


class SchemaHelp(str):
    """An option's help text completed from a schema when the CLI runs (:func:`fill_schema_help`),
    not when it is imported (the schemas import the registries): the schema's help and default
    (``schema``: ``module:Class``; ``field``: its key), plus the datasets' own defaults for a
    stage-one setting. One place for each default, the help reads it."""

    def __new__(cls, schema: str, field: str, prefix: str = "", suffix: str = ""):
        obj = super().__new__(cls, f"{prefix}(see {schema.replace(':', '.')}.{field}){suffix}")
        obj.schema, obj.field, obj.prefix, obj.suffix = schema, field, prefix, suffix
        return obj

    def render(self) -> str:
        import importlib

        from stages.settings import canonical_text, schema_fields

        mod, _, name = self.schema.partition(":")
        info = schema_fields(getattr(importlib.import_module(mod), name))[self.field]
        default = "" if info.required else f" Default: {canonical_text(info.default)}"
        if mod == "stages.extract.settings":  # datasets that default otherwise (the demo's short side)
            from stages.datasets import DATASET_ADAPTERS
            from stages.registry import names

            own = [f"{n}: {DATASET_ADAPTERS.get(n).extract_defaults[self.field]}" for n in names(DATASET_ADAPTERS)
                   if self.field in DATASET_ADAPTERS.get(n).extract_defaults]
            default += f" ({', '.join(own)})" if own else ""
        text = info.help.strip()
        text += "" if text.endswith(".") else "."
        return f"{self.prefix}{text}{default}{'.' if default else ''}{self.suffix}"


def fill_schema_help(app: typer.Typer) -> None:
    """Render every :class:`SchemaHelp` of the app's commands (before typer builds them)."""
    import inspect

    from typer.models import OptionInfo

    groups = [app]
    while groups:
        g = groups.pop()
        groups.extend(t.typer_instance for t in g.registered_groups if t.typer_instance is not None)
        for cmd in g.registered_commands:
            for param in inspect.signature(cmd.callback).parameters.values():
                info = param.default
                if isinstance(info, OptionInfo) and isinstance(info.help, SchemaHelp):
                    info.help = info.help.render()


def checked_device(value: Optional[str]) -> Optional[str]:
    """``--device``'s callback: cpu, cuda or cuda:N, one the machine has (a typo such as ``gpu``
    ran on the CPU without a word), refused before any work."""
    from stages.devices import check_device

    try:
        check_device(value)
    except ValueError as e:
        raise typer.BadParameter(str(e).removeprefix(f"--device {value}: "))
    return value


_SETTING_LIKE = re.compile(r"[A-Za-z_][\w.]*=")


def folder_option(value: Optional[Path]) -> Optional[Path]:
    """An output folder's callback: refused when the path is a file (which failed late, as
    ``[Errno 17] File exists``), and when a folder that does not exist yet reads ``KEY=VALUE``:
    ``-o`` takes a dataset option in extract, train and dataset, so ``eval -o split=val`` would
    otherwise write into a new folder named ``split=val`` with the option never applied."""
    if value is None:
        return value
    if value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is a file; give a folder (made if missing)")
    text = str(value)
    if not value.exists() and _SETTING_LIKE.match(text):
        raise typer.BadParameter(
            f"{text!r} looks like a KEY=VALUE setting, but here -o names the output folder (made if missing); "
            f"for a folder of that name give its path, {Path.cwd() / text}")
    return value


def parse_kv(items: Optional[List[str]]) -> dict:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (values stay strings)."""
    outd = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {it!r}")
        if k.strip() in outd and outd[k.strip()] != v.strip():  # (the last one won, unsaid)
            raise typer.BadParameter(f"{k.strip()} given twice ({outd[k.strip()]!r} and {v.strip()!r}); give it once")
        outd[k.strip()] = v.strip()
    return outd


def dataset_options(dataset_option: Optional[List[str]], coarse_type: Optional[str]) -> dict:
    """The adapter options of ``-o KEY=VALUE`` and ``--coarse-type``."""
    opts = parse_kv(dataset_option)
    if coarse_type:
        if opts.get("coarse_type", coarse_type) != coarse_type:
            raise ValueError(f"--coarse-type {coarse_type} and -o coarse_type={opts['coarse_type']} disagree: give one")
        opts["coarse_type"] = coarse_type
    return opts


def path_str(p: Optional[Path]) -> Optional[str]:
    return str(p) if p else None


def progress_bar():
    """The progress display of :func:`pipeline.output.progress` (a bar in a terminal, lines in a log)."""
    return progress()


def load_progress_callback(prog, what: str):
    """A ``progress(done, total)`` callback for a dataset's preparation (the demo's generation);
    its bar appears only if the dataset has something to prepare."""
    task: dict = {}

    def cb(done: int, total: int) -> None:
        if "t" not in task:
            task["t"] = prog.add_task(what, total=total)
        prog.update(task["t"], completed=done)

    return cb


@contextlib.contextmanager
def exit_on_error(verbose: bool = False, code: int = 2):
    """Ctrl-C exits 130; any other error is one ``error:`` line and exit ``code`` (``-v``: its
    traceback too). Every command already runs inside this (:func:`cli_command`); a command uses it
    itself only for another exit code."""
    from pipeline.logs import is_verbose

    try:
        yield
    except KeyboardInterrupt:
        console.print("interrupted", highlight=False)
        raise typer.Exit(130)
    except (typer.Exit, typer.Abort, TyperException):  # typer's own (usage errors, exits)
        raise
    except Exception as ex:  # noqa: BLE001  (the command's last line of defence)
        if verbose or is_verbose():
            console.print(traceback.format_exc().rstrip(), markup=False, highlight=False)
        print_error(_explained(ex))
        raise typer.Exit(code)


def _explained(ex: Exception) -> Exception:
    """A permission error inside a cache (reading another user's folder made with umask 077)
    explained as writers' are: owner, mode, what a shared cache needs and `cache doctor`."""
    from cache.fsutil import cache_root_of, explain_os_error

    if isinstance(ex, PermissionError) and ex.filename and cache_root_of(ex.filename) is not None:
        return explain_os_error(ex, ex.filename) or ex
    return ex


def cli_command(fn: Callable) -> Callable:
    """A command as the CLI registers it: every command gets ``-v/--verbose`` and ``-q/--quiet``
    (unless it declares them itself), sets the log level before it runs (:mod:`pipeline.logs`), and
    reports an error through one handler (:func:`exit_on_error`: one line, exit 2, the traceback
    only at ``-v``)."""
    if getattr(fn, "_pipeline_command", False):
        return fn
    sig = inspect.signature(fn, eval_str=True)
    own = set(sig.parameters)
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=bool)
             for name, opt in (("verbose", VerboseOpt), ("quiet", QuietOpt)) if name not in own]

    @functools.wraps(fn)
    def command(*args, **kwargs):
        from pipeline.logs import setup_logging

        verbose = bool(kwargs.get("verbose") if "verbose" in own else kwargs.pop("verbose", False))
        quiet = bool(kwargs.get("quiet") if "quiet" in own else kwargs.pop("quiet", False))
        setup_logging(verbose=verbose, quiet=quiet)
        with exit_on_error():
            return fn(*args, **kwargs)

    params = list(sig.parameters.values())
    command.__signature__ = sig.replace(parameters=params + extra)  # type: ignore[attr-defined]
    command.__annotations__ = {**getattr(fn, "__annotations__", {}), **{p.name: bool for p in extra}}
    command._pipeline_command = True  # type: ignore[attr-defined]
    return command


def wrap_commands(app: typer.Typer) -> typer.Typer:
    """:func:`cli_command` around every command of ``app`` and of its groups."""
    groups = [app]
    while groups:
        g = groups.pop()
        groups.extend(t.typer_instance for t in g.registered_groups if t.typer_instance is not None)
        for cmd in g.registered_commands:
            cmd.callback = cli_command(cmd.callback)
    return app
