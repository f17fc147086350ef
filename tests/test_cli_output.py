"""What the commands print when not on a terminal (a pipe, a log file, SLURM): whole tables in a
plain full-width form, never an ellipsis; wrapped cells in a narrow terminal; JSON and CSV rows;
progress as periodic lines; help that cuts nothing and shows no value beside a flag."""
import io
import json

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.output import Column, LineProgress, plain_table, print_rows, print_table

LONG = "b21102bfd4dbc693" + "-with-a-long-tail" * 8  # wider than any 80-column terminal


def _table() -> Table:
    t = Table(title="cache /somewhere/long")
    t.add_column("key", no_wrap=True)
    for col in ("dataset", "status", "clips", "created"):
        t.add_column(col, justify="right" if col == "clips" else "left")
    t.add_row(LONG, "demo", "[red]complete[/]", "30/30", "2026-12-04T23:24:23+0000")
    t.add_row("short", "gym99", "incomplete", "3/29000", "")
    return t


def test_a_table_in_a_log_is_plain_full_width_and_whole():
    buf = io.StringIO()
    print_table(_table(), to=Console(file=buf, width=80))  # a file: not a terminal
    text = buf.getvalue()
    lines = text.splitlines()
    assert "…" not in text and "..." not in text
    assert lines[0] == "cache /somewhere/long"
    assert lines[1].split() == ["key", "dataset", "status", "clips", "created"]
    assert set(lines[2].replace(" ", "")) == {"-"}
    assert lines[3].split() == [LONG, "demo", "complete", "30/30", "2026-12-04T23:24:23+0000"]  # markup dropped
    assert len(lines[3]) > 80 and not any(ch in text for ch in "│┃━─")
    # columns line up; a right-justified column ends where its header ends
    assert lines[3].index("demo") == lines[4].index("gym99") == lines[1].index("dataset")
    assert lines[3].index("30/30") + 5 == lines[4].index("3/29000") + 7 == lines[1].index("clips") + 5


def test_a_table_in_a_terminal_where_it_fits_and_one_block_per_row_where_it_does_not():
    buf = io.StringIO()
    print_table(_table(), to=Console(file=buf, width=300, force_terminal=True, color_system=None))
    wide = buf.getvalue()
    assert "┃ key" in wide and any(LONG in ln for ln in wide.splitlines()) and "…" not in wide
    buf = io.StringIO()
    print_table(_table(), to=Console(file=buf, width=60, force_terminal=True, color_system=None))
    narrow = buf.getvalue()
    lines = narrow.splitlines()
    assert "…" not in narrow and not any(ch in narrow for ch in "│┃━")
    assert lines[0] == "cache /somewhere/long"
    assert LONG in "".join(lines[1:4])  # the key whole (folded at the terminal's width)
    block = [ln.split() for ln in lines if ln.startswith("  ")]
    assert block[:4] == [["dataset", "demo"], ["status", "complete"], ["clips", "30/30"],
                         ["created", "2026-12-04T23:24:23+0000"]]
    assert ["short"] in [ln.split() for ln in lines] and ["dataset", "gym99"] in block


def test_plain_table_without_header_and_rows_as_json_and_csv():
    t = Table(show_header=False)
    t.add_column("k")
    t.add_column("v")
    t.add_row("root", "/data/x")
    assert plain_table(t).splitlines() == ["root  /data/x"]
    rows = [dict(variant="pevl", top1=91.25, note=None, extra=[1, 2]), dict(variant="wo, ucmr", top1=None)]
    cols = [Column("variant"), Column("top1", "top-1", text=lambda v: "-" if v is None else f"{v:.1f}",
                                      justify="right")]
    buf = io.StringIO()
    print_rows(rows, cols, fmt="json", to=Console(file=buf))
    assert json.loads(buf.getvalue()) == rows  # every key of every row
    buf = io.StringIO()
    print_rows(rows, cols, fmt="csv", to=Console(file=buf))
    assert buf.getvalue().splitlines() == ["variant,top1", "pevl,91.25", '"wo, ucmr",']
    buf = io.StringIO()
    print_rows(rows, cols, fmt="table", title="t", to=Console(file=buf))
    assert buf.getvalue().splitlines()[3:] == ["pevl       91.2", "wo, ucmr      -"]
    with pytest.raises(ValueError, match="table, json or csv"):
        print_rows(rows, cols, fmt="xml")


def test_progress_lines_for_a_log():
    now = [0.0]
    buf = io.StringIO()
    p = LineProgress(Console(file=buf, width=80), interval=30, clock=lambda: now[0])
    task = p.add_task("extracting demo", total=320, unit="clips")
    for i in range(320):
        now[0] += 0.5
        p.advance(task)
    lines = buf.getvalue().splitlines()
    # one line every 30 s of a 160 s run, and one when it completes
    assert len(lines) == 6, lines
    assert lines[0] == "extracting demo: 60/320 clips (19%), 2.00/s, elapsed 30s, eta 2m10s"
    assert lines[-1] == "extracting demo: 320/320 clips (100%), 2.00/s, elapsed 2m40s, done"


def test_cache_ls_piped_shows_every_cell_whole(tmp_path):
    """`pipeline cache ls | cat`: the key, the dataset, the status and the creation time whole."""
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    cache = tmp_path / "cache"
    rep = run_extract(ExtractOptions(dataset="demo", cache_root=str(cache), limit=1,
                                     dataset_options=dict(clips_per_class="1,1", num_frames="32")))
    res = CliRunner().invoke(app, ["cache", "ls", "--cache-root", str(cache)])
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith(rep.entry.key))
    created = rep.entry.attrs["created"]["time"]
    assert row.split()[:4] == [rep.entry.key, "demo", "gymnastic", "incomplete"] and row.split()[-1] == created
    js = CliRunner().invoke(app, ["cache", "ls", "--cache-root", str(cache), "--json"])
    assert json.loads(js.stdout)[0]["key"] == rep.entry.key


def test_stats_piped_shows_whole_headers():
    res = CliRunner().invoke(app, ["stats", "--exp", "table9_pose_form", "--arch", "PeVL-tiny"])
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout
    header = res.stdout.splitlines()[1].split()
    assert header[:4] == ["variant", "arch", "frames", "params"] and "paper" in header and "GFLOPs" in header


def test_help_cuts_nothing_and_flags_take_no_value():
    res = CliRunner().invoke(app, ["extract", "--help"])
    assert res.exit_code == 0
    assert "…" not in res.stdout and "--decode-workers" in res.stdout and "--detector-checkpoint" in res.stdout
    train = CliRunner().invoke(app, ["train", "--help"]).stdout
    assert "<bool>" not in train and "BOOLEAN" not in train
    resume = next(ln for ln in train.splitlines() if ln.strip().startswith("--resume"))
    assert resume.split()[1] == "Continue"  # the flag, then its help: no value beside it
    for group in ([], ["cache"], ["dataset"]):  # command lists: each command's first sentence whole
        text = CliRunner().invoke(app, [*group, "--help"]).stdout
        assert "..." not in text.split("Commands:")[1], text
    assert "(supp. Fig. 8)" in CliRunner().invoke(app, ["--help"]).stdout
    for cmd in (["train"], ["eval"], ["extract"], ["stats"], ["explain"], ["dataset", "info"], ["cache", "ls"],
                ["cache", "info"]):
        text = CliRunner().invoke(app, [*cmd, "--help"]).stdout
        assert "-q, --quiet" in text and "-v, --verbose" in text, cmd


def test_print_config_is_a_config_and_says_what_the_entry_sets():
    """`train --print-config` prints each variant's run config as mmengine reads it, and says that
    the class, joint and person counts come from the cache entry (the printed ones are placeholders)."""
    from mmengine.config import Config

    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--print-config"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("# demo / pevl\n# model.num_classes, num_joints and num_persons are set from the cache")
    cfg = Config.fromstring(res.stdout, file_format=".py")
    assert cfg.data.dataset == "demo" and cfg.model.clip.arch == "PeVL-tiny"
