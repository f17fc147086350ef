"""The ``pipeline`` command line. It only wires the command groups of :mod:`pipeline.commands`.

Every command is wrapped by :func:`pipeline.commands.common.cli_command` (``-v``/``-q`` and the one
error handler). Help is click's plain formatter: it wraps at any width and never cuts an option's
name or help, in a terminal or a log, and a flag shows no value (``--resume``, not ``--resume <bool>``).
"""
from __future__ import annotations

import typer

from pipeline.commands import cache, dataset, explain, extract, predict, stats, train
from pipeline.commands.common import wrap_commands

app = typer.Typer(
    help="PeVL pipeline: cache stage-one features once (`extract`), then train and ablate from the cache.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if not value:
        return
    import platform

    from cache.layout import FORMAT_VERSION
    from cache.provenance import git_revision, package_versions

    v = package_versions()
    typer.echo(f"pevl-pipeline {v.get('pevl-pipeline', '?')} (git {git_revision() or 'unknown'}), store format "
               f"{FORMAT_VERSION}; Python {platform.python_version()}, torch {v.get('torch', '?')}, "
               f"mmpose {v.get('mmpose', '?')}, open_clip {v.get('open_clip_torch', '?')}")
    raise typer.Exit()


@app.callback()
def _top(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version, git revision, store format and key packages' versions, then exit.")) -> None:
    """PeVL pipeline: cache stage-one features once (`extract`), then train and ablate from the cache."""


app.command("extract")(extract.extract)
app.add_typer(dataset.app, name="dataset")
app.add_typer(cache.app, name="cache")
app.command("train")(train.train)
app.command("eval")(train.eval_)
app.command("stats")(stats.stats)
app.command("explain")(explain.explain)
app.command("predict")(predict.predict)


_ABBREVIATIONS = ("supp.", "e.g.", "i.e.", "Fig.", "Figs.", "Sec.", "cf.", "vs.", "etc.")


def _first_sentence(text: str) -> str:
    words = (text or "").split()
    for i, w in enumerate(words):
        if w.endswith((".", "!", "?")) and not w.endswith(_ABBREVIATIONS):
            return " ".join(words[:i + 1])
    return " ".join(words)


def plain_help(app: typer.Typer) -> typer.Typer:
    """Click's plain help for ``app`` and its groups (see the module docstring); a group lists each
    command with the first sentence of its help, whole (click would cut it to the width with '...')."""
    groups = [app]
    while groups:
        g = groups.pop()
        g.rich_markup_mode = None
        groups.extend(t.typer_instance for t in g.registered_groups if t.typer_instance is not None)
        for cmd in g.registered_commands:
            if not cmd.short_help:
                cmd.short_help = _first_sentence(cmd.help or (cmd.callback.__doc__ if cmd.callback else "") or "")
    return app


plain_help(wrap_commands(app))


#: commands whose -c takes several KEY=VALUE at once, as mmengine's --cfg-options does (they take no
#: positional argument a KEY=VALUE could be mistaken for)
_SPREAD_CFG_OPTIONS = {"train", "eval", "explain"}


def spread_cfg_options(argv: list[str]) -> list[str]:
    """``-c a=1 b=2`` as ``-c a=1 -c b=2`` (mmengine's own form, which click refused as "unexpected
    extra argument"), for the commands of :data:`_SPREAD_CFG_OPTIONS`."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in _SPREAD_CFG_OPTIONS:
        return argv
    out: list[str] = []
    state = None  # "flag": -c just seen; "value": its value taken
    for a in argv:
        if a in ("-c", "--cfg-options"):
            state = "flag"
        elif state == "flag":
            state = "value"
        elif state == "value" and not a.startswith("-") and "=" in a:
            out.append("-c")
        else:
            state = None
        out.append(a)
    return out


def main() -> None:
    import sys

    from cache.fsutil import no_home_folder

    if no_home_folder():  # (mmengine's imports fail on it)
        sys.exit("error: no home folder (HOME is unset and this user has none): set HOME, or XDG_CACHE_HOME "
                 "and PEVL_CACHE")
    from pipeline.commands.common import fill_schema_help

    fill_schema_help(app)
    app(args=spread_cfg_options(sys.argv[1:]))


if __name__ == "__main__":
    main()
