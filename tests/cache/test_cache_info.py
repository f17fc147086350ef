"""`pipeline cache info`: a summary by default (counts, settings, provenance, runs, failures), the clip
list with --clips, the whole manifest with --json."""
import json

from typer.testing import CliRunner

from pipeline.cli import app


def test_cache_info_summary_clips_and_json(tmp_path):
    from cache import CacheStore
    from cache.writer import EntryWriter
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    cache = tmp_path / "cache"
    rep = run_extract(ExtractOptions(dataset="demo", cache_root=str(cache), limit=3,
                                     dataset_options=dict(clips_per_class="1,1", num_frames="32")))
    key = rep.entry.key
    res = CliRunner().invoke(app, ["cache", "info", key[:6], "--cache-root", str(cache)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"entry {key} (demo)" and len(lines) < 25
    fields = {ln.split("  ")[0]: ln.split("  ", 1)[1].strip() for ln in lines[1:-1] if ln.strip() and ln[0] != " "}
    assert fields["status"].startswith("incomplete: 3/20 clips cached, 0 failed, 17 missing")
    assert fields["splits"] == "train 3/10, val 0/10"
    assert "num_frames 16" in fields["settings"] and "short_side 128" in fields["settings"]
    assert "clips_per_class=1,1" in fields["dataset options"] and fields["failures"] == "none"
    assert fields["runs"].startswith("1 run(s) on ") and "3 clips extracted" in fields["runs"]
    assert "demo_jump_straight_train_000" not in res.stdout  # no clip list by default
    clips = CliRunner().invoke(app, ["cache", "info", key, "--cache-root", str(cache), "--clips"])
    rows = [ln.split() for ln in clips.stdout.splitlines()[3:]]
    assert len(rows) == 20 and [r[3] for r in rows].count("cached") == 3 and rows[-1][3] == "missing"
    # a clip moved aside since the manifest was written: the splits are counted as they are now
    entry = CacheStore(cache).open(key)
    EntryWriter(entry).quarantine(next(iter(entry.done_uids())), ["test"])
    res = CliRunner().invoke(app, ["cache", "info", key, "--cache-root", str(cache)])
    assert "train 2/10, val 0/10" in res.stdout
    as_json = CliRunner().invoke(app, ["cache", "info", key, "--cache-root", str(cache), "--clips", "--json"])
    assert len(json.loads(as_json.stdout)) == 20
    manifest = json.loads(CliRunner().invoke(app, ["cache", "info", key, "--cache-root", str(cache), "--json"]).stdout)
    assert manifest["key"] == key and manifest["live_status"]["done"] == 2 and manifest["runs"]
