"""A worker's failure reaches the exit status: a full disk is said once, naming where, with no
traceback; a worker killed outright is named with its signal; a rerun then finishes the entry.

The faults are real errors raised where they happen: a ``sitecustomize`` module on the
subprocesses' path (every process of the run, the spawned workers included, imports it at start)
makes zarr's chunk writes into ``.staging/`` fail with ENOSPC, exactly as write(2) on a full disk
does (no file name), or SIGKILLs the worker process that reaches its first write.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cache import CacheStore
from pevl_testutils import REPO, make_video, tiny_hrnet_config, write_custom_dataset

SITE = r'''
import errno, os, signal
_fault = os.environ.get("PEVL_TEST_STAGING_FAULT")
if _fault:
    import multiprocessing
    from zarr.storage import _local

    _orig = _local._put

    def _put(path, value, exclusive=False):
        if "/.staging/" in str(path):
            if _fault == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if _fault == "kill-worker" and multiprocessing.parent_process() is not None:
                os.kill(os.getpid(), signal.SIGKILL)
        return _orig(path, value, exclusive)

    _local._put = _put
'''


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "data"
    clips = []
    for i in range(4):
        make_video(root / f"v{i}.mp4", frames=6, size=(48, 32))
        clips.append((f"v{i}.mp4", i % 2, "train"))
    return write_custom_dataset(root, clips, ["jump", "spin"])


def _extract(root: Path, cache_root: Path, fault=None, *extra: str):
    site = cache_root.parent / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), OMP_NUM_THREADS="1", COLUMNS="400")
    env.pop("PEVL_TEST_STAGING_FAULT", None)
    if fault:
        env["PEVL_TEST_STAGING_FAULT"] = fault
    res = subprocess.run([sys.executable, "-m", "pipeline", "extract", "--dataset", "custom", "--root", str(root),
                          "--cache-root", str(cache_root), "--coarse-type", "x", "--pose-checkpoint", "none",
                          "--pose-config", tiny_hrnet_config(), "--no-pose-flip-test", *extra],
                         capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    return res, " ".join((res.stdout + res.stderr).split())


def test_a_full_disk_fails_the_run_once_naming_where(dataset, tmp_path):
    cache_root = tmp_path / "cache"
    res, text = _extract(dataset, cache_root, "enospc", "--workers", "2")
    assert res.returncode == 2, text[-3000:]
    (entry,) = CacheStore(cache_root).entries("custom")
    assert text.count("no space left on the filesystem holding") == 1, text[-3000:]
    assert f"holding {entry.path} (mounted at" in text
    assert "Traceback" not in text and "zarr" not in text, text[-3000:]
    assert "2 of 2 extraction workers failed" in text and "2 workers (0, 1)" in text
    st = entry.status()
    assert st.done == 0 and st.failed == 0 and st.claimed == 0  # nothing committed, no clip blamed, claims given back
    assert not list((entry.path / ".staging").iterdir())


def test_a_full_disk_in_one_process_names_the_entry(tmp_path, monkeypatch):
    """Without workers the error reaches the command the same way (the writer names the entry)."""
    import errno

    from zarr.storage import _local

    from cache.fsutil import DiskFullError
    from cache.writer import EntryWriter
    from tests.cache.test_store_format import clip_arrays, make_entry

    entry = make_entry(tmp_path, n=3)
    shutil.rmtree(entry.path / "clips" / "c2")  # a clip still to do
    writer = EntryWriter(entry)
    assert writer.claim("c2")
    monkeypatch.setattr(_local, "_put", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    with pytest.raises(DiskFullError, match=f"no space left on the filesystem holding {entry.path} "):
        writer.commit("c2", clip_arrays(2), {"clip_id": "c2"})
    assert not (entry.path / "clips" / "c2").exists() and not list((entry.path / ".staging").iterdir())
    assert not (entry.path / "claims" / "c2").exists()


def test_a_killed_worker_fails_the_run(dataset, tmp_path):
    res, text = _extract(dataset, tmp_path / "cache", "kill-worker", "--workers", "2")
    assert res.returncode == 2, text[-3000:]
    assert "2 of 2 extraction workers failed" in text and "killed by signal 9" in text, text[-3000:]
    assert "Traceback" not in text
