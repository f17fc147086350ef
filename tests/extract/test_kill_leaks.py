"""A run with workers killed outright (the whole process group, as a job scheduler does) leaves
semaphores in /dev/shm and staging folders; the next run removes them and leaves none of its own."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cache import CacheStore
from pevl_testutils import REPO, make_video, tiny_hrnet_config, write_custom_dataset
from stages.extract.semaphores import SHM_DIR, orphaned_semaphores, semaphore_creator


def _cmd(root: Path, cache_root: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "extract", "--dataset", "custom", "--root", str(root),
            "--cache-root", str(cache_root), "--coarse-type", "x", "--pose-checkpoint", "none",
            "--pose-config", tiny_hrnet_config(), "--no-pose-flip-test", "--workers", "1", "--decode-workers", "1"]


def _ours() -> set[str]:
    return {n for n in os.listdir(SHM_DIR) if semaphore_creator(n) is not None}


@pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason="named semaphores are files in /dev/shm on Linux only")
def test_killed_run_with_workers_leaves_nothing_after_the_next_run(tmp_path):
    root = tmp_path / "data"
    clips = []
    for i in range(8):
        make_video(root / f"v{i}.mp4", frames=6, size=(48, 32))
        clips.append((f"v{i}.mp4", i % 2, "train"))
    write_custom_dataset(root, clips, ["jump", "spin"])
    cache_root = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    before = _ours()
    proc = subprocess.Popen(_cmd(root, cache_root), env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        done = list(cache_root.glob("entries/custom/*/clips/v*"))
        if done and _ours() - before:
            break
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process, workers, decoders, resource trackers
    proc.wait()
    time.sleep(1.0)
    leaked = {os.path.join(SHM_DIR, n) for n in _ours() - before}
    print(f"{len(leaked)} semaphores left by the kill")
    assert leaked and set(orphaned_semaphores()) >= leaked  # the kill left them (about 6 per worker here)
    (entry,) = CacheStore(cache_root).entries("custom")
    assert not entry.status().complete

    res = subprocess.run(_cmd(root, cache_root), env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not [p for p in leaked if os.path.exists(p)]
    assert not orphaned_semaphores()  # nor any of the second run's
    assert entry.status().complete and not list((entry.path / ".staging").iterdir())
