"""`pipeline extract` under nohup or SLURM (stderr a file): progress as periodic one-line reports
(clips done, rate, ETA) instead of a bar that a log cannot show; none at -q."""
import re

from typer.testing import CliRunner

from pipeline.cli import app

DEMO = ["-o", "clips_per_class=1,1", "-o", "num_frames=32"]  # 20 clips


def test_extract_prints_progress_lines_in_a_log(tmp_path, monkeypatch):
    monkeypatch.setenv("PEVL_PROGRESS_INTERVAL", "0")  # a line at every clip (default: every 30 s)
    res = CliRunner().invoke(app, ["extract", "--dataset", "demo", "--cache-root", str(tmp_path / "c"), *DEMO])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("extracting demo:")]
    assert len(lines) == 20, res.output
    assert re.fullmatch(r"extracting demo: 1/20 clips \(5%\), [\d.]+/s, elapsed \d+s, eta \d+(m\d\ds|s)", lines[0])
    assert re.fullmatch(r"extracting demo: 20/20 clips \(100%\), [\d.]+/s, elapsed \d+s, done", lines[-1])
    assert any(ln.startswith("preparing demo: 20/20") for ln in res.output.splitlines())  # the generation
    assert "summary" in res.output and "━" not in res.output  # no bar

    # the same entry extracted again at -q: nothing to do, no progress, the summary only
    again = CliRunner().invoke(app, ["extract", "--dataset", "demo", "--cache-root", str(tmp_path / "c"), *DEMO,
                                     "-q"])
    assert again.exit_code == 0, again.output
    out = [ln for ln in again.output.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(out) == 1 and out[0].startswith("summary entry "), again.output
