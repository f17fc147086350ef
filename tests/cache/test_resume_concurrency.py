"""A killed extractor resumes losing at most its in-flight clip; two extractors share one entry."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cache import CacheStore
from cache.entry import CacheEntry
from pevl_testutils import REPO, make_video, tiny_hrnet_config, write_custom_dataset


def _dataset(root: Path, n: int) -> Path:
    clips = []
    for i in range(n):
        make_video(root / f"v{i:02d}.mp4", frames=6, size=(48, 32))
        clips.append((f"v{i:02d}.mp4", i % 2, "train"))
    return write_custom_dataset(root, clips, ["jump", "spin"])


def _args(root: Path, cache_root: Path, *extra: str) -> list[str]:
    """`pipeline extract`'s arguments, with a small HRNet: these tests are about claims and runs."""
    return ["extract", "--dataset", "custom", "--root", str(root), "--cache-root", str(cache_root),
            "--pose-checkpoint", "none", "--no-pose-flip-test", "--pose-config", tiny_hrnet_config(),
            "--pose-batch-size", "6", *extra]


def _cmd(root: Path, cache_root: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", *_args(root, cache_root)]


def _extract_here(*args: str) -> None:
    """`pipeline extract` in this process (a subprocess costs seconds of imports; the runs that
    must be separate processes, killed or concurrent, stay so)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output[-2000:]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _entry(cache_root: Path) -> CacheEntry:
    entries = CacheStore(cache_root).entries("custom")
    assert len(entries) == 1
    return entries[0]


def _runs(entry: CacheEntry) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((entry.path / "runs").glob("*.json"))]


def test_killed_extractor_resumes(tmp_path):
    n = 12  # the small HRNet takes a fraction of a second a clip: enough clips to kill it half-way
    root = _dataset(tmp_path / "data", n)
    cache_root = tmp_path / "cache"
    proc = subprocess.Popen(_cmd(root, cache_root), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    clips_dir = None
    while time.time() < deadline:
        hits = list(cache_root.glob("entries/custom/*/clips"))
        if hits:
            clips_dir = hits[0]
            if sum(p.is_dir() for p in clips_dir.iterdir()) >= 2:
                break
        if proc.poll() is not None:
            pytest.fail("extractor finished before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    entry = _entry(cache_root)
    before = entry.done_uids()
    assert 2 <= len(before) < n
    st = entry.status()
    assert not st.complete and st.claimed <= 1  # at most the in-flight clip is claimed
    assert CacheStore(cache_root).verify(entry).ok  # nothing half-written is visible

    _extract_here(*_args(root, cache_root))
    entry = _entry(cache_root)
    assert entry.status().complete and len(entry.done_uids()) == n
    (run,) = _runs(entry)  # the killed run wrote no record; the resumed run did the rest only
    assert run["done"] == n - len(before)
    assert not set(run["done_clip_ids"]) & {entry._by_uid[u]["clip_id"] for u in before}
    assert CacheStore(cache_root).verify(entry).ok
    # the killed writer's leftovers are recognised as stale and collected
    store = CacheStore(cache_root)
    store.gc(store.gc_plan())
    assert not list((entry.path / "claims").iterdir())
    assert not list((entry.path / ".staging").iterdir())


def test_two_extractors_on_one_entry(tmp_path):
    root = _dataset(tmp_path / "data", 10)
    cache_root = tmp_path / "cache"
    procs = [subprocess.Popen(_cmd(root, cache_root), env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-2000:]
    entry = _entry(cache_root)
    assert entry.status().complete and len(entry.done_uids()) == 10
    runs = _runs(entry)
    assert len(runs) == 2
    done = [cid for r in runs for cid in r["done_clip_ids"]]
    assert len(done) == len(set(done)) == 10  # no clip done twice
    assert CacheStore(cache_root).verify(entry).ok
    assert entry.manifest()["status"] == "complete"


def test_sharded_extractors_fill_one_entry(tmp_path):
    root = _dataset(tmp_path / "data", 4)
    cache_root = tmp_path / "cache"
    _extract_here(*_args(root, cache_root, "--shard", "0/2"))
    entry = _entry(cache_root)
    assert sorted(entry.done_uids()) == ["v00", "v02"] and not entry.status().complete
    _extract_here(*_args(root, cache_root, "--shard", "1/2"))
    assert _entry(cache_root).status().complete


@pytest.mark.parametrize("text, want", [("3/8", (3, 8)), (" 0 / 1 ", (0, 1)), (None, (0, 1))])
def test_shard_values_read(text, want):
    from stages.extract.plan import parse_shard

    assert parse_shard(text) == want


@pytest.mark.parametrize("text", ["1_0/20", "\u0663/8", "a/b", "1/2/3", "-1/2", "+1/2", "1.0/2"])
def test_shard_values_that_are_not_two_whole_numbers_are_refused(text):
    """int() reads 1_0 as 10 and Arabic-Indic digits as digits: a typo took another shard."""
    from stages.extract.plan import parse_shard

    with pytest.raises(ValueError, match="--shard wants K/N"):
        parse_shard(text)
