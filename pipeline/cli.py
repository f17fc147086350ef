"""The ``pipeline`` command line. It only wires the command groups of :mod:`pipeline.commands`."""
from __future__ import annotations

import typer

from pipeline.commands import cache, dataset, explain, extract, stats, train

app = typer.Typer(
    help="PeVL pipeline: cache stage-one features once (`extract`), then train and ablate from the cache.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("extract")(extract.extract)
app.add_typer(dataset.app, name="dataset")
app.add_typer(cache.app, name="cache")
app.command("train")(train.train)
app.command("eval")(train.eval_)
app.command("stats")(stats.stats)
app.command("explain")(explain.explain)


def main() -> None:
    from pipeline.commands.common import fill_schema_help

    fill_schema_help(app)
    app()


if __name__ == "__main__":
    main()
