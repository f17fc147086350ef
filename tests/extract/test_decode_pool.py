"""Decoding in worker processes, pipelined with the pose model: the same entry as decoding in the
pose process, per-clip failures with their reasons, a dead worker costs one clip, Ctrl-C gives the
claims back, and the workers do not outlive the pose process."""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cache.entry import CacheEntry
from pevl_testutils import REPO, make_video, tiny_hrnet_config, write_custom_dataset
from pipeline.engines.local import run_extract
from stages.datasets.base import ClipRecord
from stages.extract.clip import ClipDecoder, ExtractSettings
from stages.extract.decode import DecodeError
from stages.extract.decode_pool import DecodePool, DecodeWorkerDied, decode_pool_available
from stages.extract.plan import ExtractOptions, plan_entry

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # random HRNet weights, whole-frame boxes


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp") / "data"
    clips = []
    for i, n in enumerate((3, 2, 2, 2)):
        make_video(root / f"v{i}.mp4", frames=n, size=(64, 48))
        clips.append((f"v{i}.mp4", i % 2, "train"))
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    clips.insert(2, ("broken.mp4", 0, "train"))
    make_video(root / "long.mp4", frames=90, size=(64, 48))
    return write_custom_dataset(root, clips, ["a", "b"])


def _opts(root, cache, **kw) -> ExtractOptions:
    return ExtractOptions(dataset="custom", root=str(root), cache_root=str(cache),
                          pose_options={"checkpoint": "none", "flip_test": False, "batch_size": 3,
                                        "config": tiny_hrnet_config()},
                          settings={"num_frames": 4}, **kw)


def _clip(root, name) -> ClipRecord:
    return ClipRecord(name, "train", 0, str(root / name))


def test_pipelined_entry_equals_sequential(videos, tmp_path):
    """HRNet on frames decoded by two worker processes writes the same clips, byte for byte, and
    the same failure, as decoding in the pose process."""
    seq = run_extract(_opts(videos, tmp_path / "seq", decode_workers=0))
    pipe = run_extract(_opts(videos, tmp_path / "pipe", decode_workers=2))
    assert seq.entry.key == pipe.entry.key  # how frames are decoded is not part of what is stored
    assert sorted(seq.done_now) == sorted(pipe.done_now) and len(pipe.done_now) == 4
    assert seq.failed_now == pipe.failed_now and pipe.failed_now[0][0] == "broken"
    assert pipe.counters.decoded_frames == seq.counters.decoded_frames == 3 + 2 + 2 + 2
    assert pipe.complete and not list((pipe.entry.path / "claims").iterdir())
    for uid in seq.entry.done_uids():
        a, b = seq.entry.clip_group(uid), pipe.entry.clip_group(uid)
        for name in ("frames", "frame_indices", "keypoints", "scores", "grids"):
            np.testing.assert_array_equal(a[name][...], b[name][...])
        drop = ("written", "digests", "attrs_digest")  # (of "written" too)
        assert {k: v for k, v in a.attrs.items() if k not in drop} == {k: v for k, v in b.attrs.items() if k not in drop}


def test_stream_gives_what_the_decoder_gives_and_errors_per_clip(videos):
    settings = ExtractSettings(num_frames=4, short_side=32)
    with DecodePool(1, settings, send_frames=True) as pool:
        streams = [pool.submit(_clip(videos, n)) for n in ("long.mp4", "broken.mp4", "v1.mp4")]
        here = ClipDecoder(_clip(videos, "long.mp4"), settings)
        frames = list(streams[0].frames())
        assert len(frames) == 90 and frames[0].shape == (48, 64, 3)
        np.testing.assert_array_equal(np.stack(frames), np.stack(list(here.frames())))
        res, ref = streams[0].result(), here.result()
        np.testing.assert_array_equal(res.frames, ref.frames)
        np.testing.assert_array_equal(res.frame_indices, ref.frame_indices)
        assert res.num_decoded == 90 and res.info == ref.info
        with pytest.raises(DecodeError, match="moov atom|not a readable video|no video stream"):
            list(streams[1].frames())
        assert streams[2].result().num_decoded == 2  # the worker goes on after a failed clip


def test_a_dead_worker_fails_its_clip_and_a_fresh_one_takes_the_rest(videos):
    settings = ExtractSettings(num_frames=4, short_side=32)
    with DecodePool(1, settings, send_frames=True) as pool:
        long, after = pool.submit(_clip(videos, "long.mp4")), pool.submit(_clip(videos, "v0.mp4"))
        frames = long.frames()
        next(frames)
        pool._slots[0].proc.kill()  # e.g. the kernel's OOM killer
        with pytest.raises(DecodeWorkerDied, match="killed by signal 9"):
            for _ in frames:
                pass
        assert after.result().num_decoded == 3
        # A worker that dies before its clip was used costs nothing: the clip is decoded again.
        nxt = pool.submit(_clip(videos, "v1.mp4"))
        pool._slots[0].proc.kill()  # at once: it cannot have sent the clip whole (an ffmpeg decode)
        assert len(list(nxt.frames())) == 2 and nxt.result().num_decoded == 2
        assert nxt._resubmitted  # the kill did hit it: its clip was decoded again


def test_ctrl_c_gives_the_claims_back_and_stops_the_workers(videos, tmp_path, monkeypatch):
    """KeyboardInterrupt while posing the second clip: the first is committed, nothing stays claimed,
    no decode worker is left, and a rerun finishes the entry."""
    from stages.extract.pose.hrnet import HRNetPoseSource

    calls = []
    real = HRNetPoseSource.estimate

    def estimate(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(HRNetPoseSource, "estimate", estimate)
    opts = _opts(videos, tmp_path / "cache", decode_workers=2)
    with pytest.raises(KeyboardInterrupt):
        run_extract(opts)
    entry = CacheEntry(plan_entry(opts).entry_dir)
    assert len(entry.done_uids()) == 1
    assert not list((entry.path / "claims").iterdir())
    assert not [p for p in mp.active_children() if p.name == "pevl-decode"]
    monkeypatch.setattr(HRNetPoseSource, "estimate", real)
    again = run_extract(opts)
    assert again.complete and len(again.done_now) == 3


def test_workers_exit_when_the_pose_process_is_killed(videos, tmp_path):
    code = f"""
import sys, time
sys.path[:0] = [{str(REPO)!r}]
from stages.datasets.base import ClipRecord
from stages.extract.clip import ExtractSettings
from stages.extract.decode_pool import DecodePool
pool = DecodePool(2, ExtractSettings(num_frames=4, short_side=32), send_frames=True)
for _ in range(4):
    pool.submit(ClipRecord("l", "train", 0, {str(videos / "long.mp4")!r}))
print(*[s.proc.pid for s in pool._slots], flush=True)
time.sleep(600)
"""
    # (stderr to a file: the killed process's resource tracker reports the queues it could not close)
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2, (tmp_path / "stderr").read_text()
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie has exited; only its parent has not reaped it
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_decode_worker_defaults_and_daemonic_fallback(monkeypatch):
    from types import SimpleNamespace

    from stages.extract import decode_pool
    from stages.extract.run import decode_workers

    assert decode_workers(ExtractOptions(dataset="demo", device="cuda:1")) == 2
    assert decode_workers(ExtractOptions(dataset="demo")) == 0
    assert decode_workers(ExtractOptions(dataset="demo", device="cuda", decode_workers=0)) == 0
    assert decode_pool_available() is None
    monkeypatch.setattr(decode_pool.mp, "current_process", lambda: SimpleNamespace(daemon=True))
    assert "daemonic" in decode_pool_available()  # a Dask worker decodes in its own process
