"""What the commands print, in a terminal and in a log file alike.

* :data:`console` (stderr: messages, progress, errors) and :data:`out` (stdout: results, i.e. tables
  and JSON). Neither wraps a line when its stream is not a terminal (a command line in a message
  stays one line in a log).
* :func:`print_table`: a rich :class:`~rich.table.Table` in a terminal where it fits (one block per
  row where it does not: never an ellipsis), and a plain, full-width, space-aligned form when the
  output is a file or a pipe (``| grep``, ``> log``, SLURM): every cell whole, no box characters,
  no colour.
* :func:`print_rows`: rows of dicts as that table, as JSON (``--json``: every key of every row) or
  as CSV (the columns' keys, raw values).
* :func:`print_json`: plain indented JSON (highlighted in a terminal).
* :func:`progress`: a rich progress bar in a terminal; when stderr is a file or a pipe, one line per
  task every ``PEVL_PROGRESS_INTERVAL`` seconds (default 30) and when it completes: done/total, rate,
  elapsed, ETA (:class:`LineProgress`). Nothing at ``--quiet``.
* :func:`info`: a message that ``--quiet`` silences; :func:`print_error`: the one error line.

The log level is :mod:`pipeline.logs`' (``-q`` / default / ``-v``).
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from rich.console import Console
from rich.table import Table
from rich.text import Text

from stages.durations import duration_text


class _Console(Console):
    """A rich console that soft-wraps (does not break lines) whenever its stream is not a terminal,
    decided at each print (the stream may change: tests swap sys.stdout)."""

    @property
    def soft_wrap(self) -> bool:  # type: ignore[override]
        return not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:  # rich's __init__ sets it; the stream decides
        pass


console = _Console(stderr=True)  # messages, progress, errors
out = _Console()  # results (tables, JSON)


# -- levels ------------------------------------------------------------------------------------------
def quiet() -> bool:
    """``--quiet``: only warnings, errors and results."""
    from pipeline.logs import is_quiet

    return is_quiet()


def info(message: str, markup: bool = True) -> None:
    """An informational message on stderr (not at ``--quiet``)."""
    if not quiet():
        console.print(message, markup=markup, highlight=False, emoji=False)


def error_text(ex: BaseException) -> str:
    """An exception's message for one error line: a KeyError's own text (not its repr in quotes),
    else ``str(ex)``, else the exception's type."""
    if isinstance(ex, KeyError) and len(ex.args) == 1 and isinstance(ex.args[0], str):
        text = ex.args[0]
    else:
        text = str(ex)
    return text.strip() or type(ex).__name__


def print_error(ex: Union[BaseException, str]) -> None:
    """``error: <message>`` on stderr (the message as it is: no markup, no quotes around it)."""
    text = ex if isinstance(ex, str) else error_text(ex)
    console.print(Text.assemble(("error:", "bold red"), " ", text), emoji=False)


# -- tables ------------------------------------------------------------------------------------------
def _plain(cell: Any) -> str:
    """A cell's text without markup (rich tables hold markup strings or Text)."""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        try:
            return Text.from_markup(cell).plain
        except Exception:  # noqa: BLE001  (not markup after all: the text as it is)
            return cell
    return str(cell)


def plain_table(table: Table) -> str:
    """``table`` as plain text: its title, a header line, a rule, one line per row, columns two
    spaces apart and as wide as their widest cell (nothing cut); a cell's line breaks become ' / '."""
    cols = table.columns
    cells = [[_plain(c).replace("\n", " / ") for c in col.cells] for col in cols]
    heads = [_plain(col.header) for col in cols]
    n = max((len(c) for c in cells), default=0)
    widths = [max([len(h) if table.show_header else 0] + [len(x) for x in c]) for h, c in zip(heads, cells)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if col.justify == "right" else v.ljust(w) for v, w, col in zip(values, widths, cols)]
        return "  ".join(parts).rstrip()

    lines = []
    if table.title:
        lines.append(_plain(table.title))
    if table.show_header:
        lines.append(line(heads))
        lines.append("  ".join("-" * w for w in widths))
    for i in range(n):
        lines.append(line([c[i] if i < len(c) else "" for c in cells]))
    if table.caption:
        lines.append(_plain(table.caption))
    return "\n".join(lines)


def record_text(table: Table) -> Text:
    """``table`` as one block per row, for a terminal too narrow for its columns: the row's first
    cell as a heading, then ``header  value`` lines (values whole, wrapped by the terminal)."""
    cols = table.columns
    cells = [list(col.cells) for col in cols]
    heads = [_plain(col.header) for col in cols]
    width = max((len(h) for h in heads[1:]), default=0)
    out = Text()
    if table.title:
        out.append(_plain(table.title) + "\n", style="bold")
    for i in range(max((len(c) for c in cells), default=0)):
        first = cells[0][i] if i < len(cells[0]) else ""
        out.append_text(first if isinstance(first, Text) else Text.from_markup(str(first)))
        out.append("\n")
        for h, col in zip(heads[1:], cells[1:]):
            cell = col[i] if i < len(col) else ""
            text = cell if isinstance(cell, Text) else Text.from_markup(str(cell))
            if text.plain:
                out.append(f"  {h.ljust(width)}  ", style="dim")
                out.append_text(text)
                out.append("\n")
    if table.caption:
        out.append(_plain(table.caption) + "\n", style="dim")
    return out


def print_table(table: Table, to: Optional[Console] = None) -> None:
    """Print a rich table whole. In a terminal: the table when its columns fit the width, else one
    block per row (:func:`record_text`), never a cell cut with an ellipsis; elsewhere (a file, a
    pipe) the plain full-width form of :func:`plain_table`."""
    from rich.measure import Measurement

    con = to or out
    if not con.is_terminal:
        con.print(plain_table(table), markup=False, highlight=False, emoji=False, soft_wrap=True)
        return
    for col in table.columns:  # a cell wraps rather than ending in an ellipsis
        col.overflow, col.no_wrap = "fold", False
    natural = Measurement.get(con, con.options.update_width(1 << 20), table).maximum
    if natural <= con.width or not table.show_header:  # a key/value table wraps its values
        con.print(table)
    else:
        con.print(record_text(table), highlight=False, emoji=False)


@dataclass
class Column:
    """A column of :func:`print_rows`: the row key, its header, how a value reads (``text``; default:
    '' for None, else ``str``), its alignment and an optional rich style of a value (terminal only)."""

    key: str
    header: Optional[str] = None
    text: Optional[Callable[[Any], str]] = None
    justify: str = "left"
    style: Optional[Callable[[Any], Optional[str]]] = None

    def cell(self, row: Mapping[str, Any]) -> Union[str, Text]:
        v = row.get(self.key)
        s = self.text(v) if self.text else ("" if v is None else str(v))
        st = self.style(v) if self.style else None
        return Text(s, style=st or "")


def rows_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Union[Column, str]],
               title: Optional[str] = None, show_header: bool = True) -> Table:
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    t = Table(title=title, show_header=show_header)
    for c in cols:
        t.add_column(c.header if c.header is not None else c.key, justify=c.justify)  # type: ignore[arg-type]
    for r in rows:
        t.add_row(*(c.cell(r) for c in cols))
    return t


def print_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[Union[Column, str]], *,
               title: Optional[str] = None, fmt: str = "table", to: Optional[Console] = None) -> None:
    """Rows as a table (:func:`print_table`), as JSON (``fmt="json"``: the rows whole, every key) or as
    CSV (``fmt="csv"``: a header of the columns' keys, then their raw values)."""
    con = to or out
    if fmt == "json":
        print_json(list(rows), to=con)
    elif fmt == "csv":
        keys = [c.key if isinstance(c, Column) else c for c in columns]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(keys)
        for r in rows:
            w.writerow(["" if r.get(k) is None else r.get(k) for k in keys])
        con.print(buf.getvalue().rstrip("\n"), markup=False, highlight=False, emoji=False, soft_wrap=True)
    elif fmt == "table":
        print_table(rows_table(rows, columns, title), to=con)
    else:
        raise ValueError(f"unknown output format {fmt!r} (table, json or csv)")


def print_json(obj: Any, to: Optional[Console] = None) -> None:
    """Indented JSON on stdout (or ``to``): highlighted in a terminal, plain text elsewhere."""
    con = to or out
    text = json.dumps(obj, indent=2, default=str)
    if con.is_terminal:
        con.print_json(text)
    else:
        con.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)


# -- progress ----------------------------------------------------------------------------------------
class LineProgress:
    """The part of :class:`rich.progress.Progress` the commands use (``add_task``, ``advance``,
    ``update``, a context manager), written as one line per task every ``interval`` seconds and
    when it completes, for a log file: ``extracting demo: 120/320 (37%), 2.1/s, 57s, eta 1m35s``.
    ``add_task(..., unit="clips")`` names what is counted."""

    def __init__(self, con: Optional[Console] = None, interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.console = con or console
        self.interval = float(os.environ.get("PEVL_PROGRESS_INTERVAL", 30)) if interval is None else interval
        self.clock = clock
        self.tasks: dict[int, dict] = {}

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: Optional[float] = None, completed: float = 0, **fields) -> int:
        tid = len(self.tasks)
        now = self.clock()
        self.tasks[tid] = dict(description=description, total=total, completed=completed, start=now,
                               start_done=completed, shown=now, unit=fields.get("unit", ""), finished=False)
        return tid

    def advance(self, task_id: int, advance: float = 1) -> None:
        t = self.tasks[task_id]
        self.update(task_id, completed=t["completed"] + advance)

    def update(self, task_id: int, *, completed: Optional[float] = None, total: Optional[float] = None,
               advance: Optional[float] = None, description: Optional[str] = None, **_fields) -> None:
        t = self.tasks[task_id]
        if total is not None:
            t["total"] = total
        if description is not None:
            t["description"] = description
        if advance is not None:
            t["completed"] += advance
        if completed is not None:
            t["completed"] = completed
        now = self.clock()
        done = t["total"] is not None and t["completed"] >= t["total"]
        if done and not t["finished"]:
            t["finished"] = True
            self._show(t, now)
        elif not done and now - t["shown"] >= self.interval:
            self._show(t, now)

    def line(self, task_id: int) -> str:
        return self._line(self.tasks[task_id], self.clock())

    def _line(self, t: dict, now: float) -> str:
        elapsed = max(now - t["start"], 1e-9)
        n = t["completed"] - t["start_done"]
        rate = n / elapsed
        unit = f" {t['unit']}" if t["unit"] else ""
        total = t["total"]
        if total:
            pct = 100.0 * t["completed"] / total
            left = (total - t["completed"]) / rate if rate > 0 else float("inf")
            head = f"{t['description']}: {t['completed']:g}/{total:g}{unit} ({pct:.0f}%)"
            tail = "done" if t["completed"] >= total else f"eta {duration_text(left)}"
        else:
            head, tail = f"{t['description']}: {t['completed']:g}{unit}", ""
        rate_s = f"{rate:.2f}/s" if rate < 10 else f"{rate:.0f}/s"
        return ", ".join(p for p in (head, rate_s, f"elapsed {duration_text(elapsed)}", tail) if p)

    def _show(self, t: dict, now: float) -> None:
        t["shown"] = now
        self.console.print(self._line(t, now), markup=False, highlight=False, emoji=False, soft_wrap=True)


class _NoProgress(LineProgress):
    def _show(self, t: dict, now: float) -> None:
        pass


def progress(con: Optional[Console] = None):
    """A progress display on stderr: rich's bar in a terminal, :class:`LineProgress` lines in a
    log, nothing at ``--quiet``. ``PEVL_PROGRESS=1`` forces the bar; ``PEVL_PROGRESS=lines`` the lines."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    con = con or console
    mode = os.environ.get("PEVL_PROGRESS", "")
    if quiet():
        return _NoProgress(con)
    if mode == "lines" or (not con.is_terminal and mode != "1"):
        return LineProgress(con)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=con, transient=False)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)
