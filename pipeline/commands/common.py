"""What the commands share: typer options, KEY=VALUE parsing, consoles and the progress bar.

Heavy libraries (torch, mmengine, open_clip) are imported inside the commands, never here, so
``pipeline --help`` stays fast.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)  # messages, progress, errors
out = Console()  # results (tables, JSON)

DatasetOpt = typer.Option(..., "--dataset", "-d", help="Dataset name: demo, gym99, gym288, diving48, haa500, toyota_smarthome, kinetics400, custom.")
RootOpt = typer.Option(None, "--root", help="Where the raw dataset lives, as its publishers distribute it (the demo needs none: it is generated under the cache root).")
CacheRootOpt = typer.Option(None, "--cache-root", envvar="PEVL_CACHE", help="Cache root shared by the lab. Default: $PEVL_CACHE, else ~/.cache/pevl.")
DatasetOptsOpt = typer.Option(None, "--dataset-option", "-o", help="Adapter option KEY=VALUE, repeatable, typed and checked (a bool takes true/false/1/0/yes/no, a pair 480,640): e.g. protocol=cv1 for toyota_smarthome; boxes=PATH or split_version=1.0 for FineGym. `pipeline dataset info --dataset NAME --options` lists a dataset's options with types and defaults.")
CoarseTypeOpt = typer.Option(None, "--coarse-type", help="Coarse action type for the text prompt '{label}, a video of {type} action' (custom datasets).")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Log more (and show tracebacks).")


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


def parse_kv(items: Optional[List[str]]) -> dict:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (values stay strings)."""
    outd = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {it!r}")
        outd[k.strip()] = v.strip()
    return outd


def dataset_options(dataset_option: Optional[List[str]], coarse_type: Optional[str]) -> dict:
    """The adapter options of ``-o KEY=VALUE`` and ``--coarse-type``."""
    opts = parse_kv(dataset_option)
    if coarse_type:
        opts["coarse_type"] = coarse_type
    return opts


def path_str(p: Optional[Path]) -> Optional[str]:
    return str(p) if p else None


def progress_bar() -> Progress:
    """A rich progress bar on stderr (off when stderr is not a terminal, unless PEVL_PROGRESS=1)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
                    transient=False, disable=not console.is_terminal and os.environ.get("PEVL_PROGRESS") != "1")


def load_progress_callback(prog: Progress, what: str):
    """A ``progress(done, total)`` callback for a dataset's preparation (the demo's generation);
    its bar appears only if the dataset has something to prepare."""
    task: dict = {}

    def cb(done: int, total: int) -> None:
        if "t" not in task:
            task["t"] = prog.add_task(what, total=total)
        prog.update(task["t"], completed=done)

    return cb


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


@contextlib.contextmanager
def exit_on_error(verbose: bool, code: int = 2):
    """Ctrl-C exits 130; any other error is one red line and exit ``code`` (``--verbose``: the
    traceback instead)."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(130)
    except typer.Exit:
        raise
    except Exception as ex:  # noqa: BLE001  (the command's last line of defence)
        if verbose:
            raise
        console.print(f"[red]error:[/] {ex}", highlight=False)
        raise typer.Exit(code)
