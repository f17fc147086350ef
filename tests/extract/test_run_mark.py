"""An extraction run marks the entry it fills (``readers/``) from opening it to its run record:
``cache gc --incomplete-older-than`` removed an old incomplete entry a colleague had just resumed,
in the time before the run's first clip claim (workers starting, clips reused)."""
import dataclasses
import logging
import os
import time

from pevl_testutils import custom_extract_options

from cache.readers import reader_marks
from cache.store import CacheStore


def _options(tmp_path):
    return custom_extract_options(tmp_path, [("a.mp4", 0, "train"), ("b.mp4", 1, "train")], ["jump", "spin"])


def _age(entry_dir, days):
    then = time.time() - days * 86400
    for p in [entry_dir] + [entry_dir / d for d in ("clips", "failures", "runs") if (entry_dir / d).is_dir()]:
        os.utime(p, (then, then))


def test_gc_leaves_an_old_incomplete_entry_a_run_has_opened(tmp_path, caplog):
    from pipeline.engines.local import run_extract
    from stages.extract.run import begin_run

    opts = _options(tmp_path)
    first = run_extract(dataclasses.replace(opts, limit=1))  # an extraction abandoned half-way
    assert not first.complete
    entry_dir = first.entry.path
    store = CacheStore(tmp_path / "cache")
    run = begin_run(opts)  # a colleague resumes it: planned, opened, no clip claimed yet
    try:
        (live, _), = [reader_marks(entry_dir)]
        assert len(live) == 1
        _age(entry_dir, 30)
        with caplog.at_level(logging.WARNING, logger="cache.store"):
            assert [a.path for a in store.gc_plan(incomplete_older_than_days=7)] == []
        assert f"leaving entry {entry_dir}" in caplog.text and "use it now, reading or extracting" in caplog.text
    finally:
        run.close()
    assert reader_marks(entry_dir) == ([], [])  # the mark goes with the run
    _age(entry_dir, 30)
    assert [a.path for a in store.gc_plan(incomplete_older_than_days=7)] == [entry_dir]
    done = run_extract(opts)  # and a whole run leaves no mark behind
    assert done.complete and reader_marks(entry_dir) == ([], [])
