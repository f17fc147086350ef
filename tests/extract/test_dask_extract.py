"""``--engine dask``: a LocalCluster of 2 worker processes fills one entry like a plain local run."""
import json
import sys

import numpy as np
import pytest

from cache import CacheStore
from pevl_testutils import make_video, tiny_hrnet_config, write_custom_dataset
from pipeline.engines.local import run_extract
from stages.extract.plan import ExtractOptions

pytest.importorskip("distributed", reason="Dask distributed is not installed (the dask extra: pip install -e .[dask])")

from pipeline.engines.dask import DaskMissing, parse_scheduler, run_extract_dask  # noqa: E402


@pytest.fixture
def six_clips(tmp_path):
    """Six tiny clips of 3 frames each (with the small HRNet of pevl_testutils.tiny_hrnet_config)."""
    root = tmp_path / "data"
    clips = []
    for i in range(6):
        make_video(root / f"v{i}.mp4", frames=3, size=(48, 32))
        clips.append((f"v{i}.mp4", i % 2, "train" if i < 4 else "val"))
    return write_custom_dataset(root, clips, ["jump", "spin"])


def _opts(root, cache_root) -> ExtractOptions:
    return ExtractOptions(dataset="custom", root=str(root), cache_root=str(cache_root),
                          pose_options={"checkpoint": "none", "flip_test": False, "batch_size": 8,
                                        "config": tiny_hrnet_config()}, settings={"num_frames": 3})


def _runs(entry) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((entry.path / "runs").glob("*.json"))]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_local_cluster_fills_one_entry_like_a_local_run(six_clips, tmp_path):
    import torch

    dask_root, local_root = tmp_path / "cache-dask", tmp_path / "cache-local"
    rep = run_extract_dask(_opts(six_clips, dask_root), "local:2", chunk=2)
    assert rep.complete and not rep.failed_now and sorted(rep.done_now) == sorted(set(rep.done_now))
    (entry,) = CacheStore(dask_root).entries("custom")
    assert entry.status().complete and len(entry.done_uids()) == 6
    assert CacheStore(dask_root).verify(entry).ok
    assert entry.manifest()["status"] == "complete"
    (run,) = _runs(entry)
    assert run["engine"] == "dask" and run["workers"] == 2 and len(run["tasks"]) == 3
    assert len(run["done_clip_ids"]) == len(set(run["done_clip_ids"])) == 6  # no clip done twice
    assert sum(t["done"] for t in run["tasks"]) == 6 and rep.counters.decoded_clips == 6

    # A rerun of the complete entry starts no cluster and does nothing.
    again = run_extract_dask(_opts(six_clips, dask_root), "local:2", chunk=2)
    assert again.complete and not again.done_now and again.counters.decoded_clips == 0

    # The same extraction in this process, single-threaded like the workers: same key, same arrays.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_extract(_opts(six_clips, local_root))
    finally:
        torch.set_num_threads(threads)
    assert local.complete
    (ref,) = CacheStore(local_root).entries("custom")
    assert ref.key == entry.key
    for uid in sorted(ref.done_uids()):
        a, b = entry.clip_group(uid), ref.clip_group(uid)
        for name in ("frames", "frame_indices"):
            np.testing.assert_array_equal(a[name][...], b[name][...])
        for name in ("keypoints", "scores", "grids"):
            np.testing.assert_allclose(a[name][...], b[name][...], atol=1e-4)
        assert a.attrs["person_boxes"] == b.attrs["person_boxes"] == "whole frame"


def test_scheduler_spec():
    assert parse_scheduler(None, 3) == ("local", 3)
    assert parse_scheduler("local:2") == ("local", 2)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    with pytest.raises(ValueError, match="local:N"):
        parse_scheduler("local:0")


def test_missing_dask_names_the_extra(monkeypatch, six_clips, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(DaskMissing, match=r"pip install -e \.\[dask\]"):
        run_extract_dask(_opts(six_clips, tmp_path / "c"), None, 0)


def test_cli_scheduler_needs_dask_engine(six_clips, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    res = CliRunner().invoke(app, ["extract", "--dataset", "custom", "--root", str(six_clips), "--cache-root",
                                   str(tmp_path / "c"), "--scheduler", "local:2"])
    assert res.exit_code != 0 and "--engine dask" in res.output


def test_a_worker_builds_one_pose_model_for_all_its_tasks(monkeypatch):
    from types import SimpleNamespace

    import pipeline.engines.dask as dist

    built = []
    monkeypatch.setattr(dist, "make_pose_source", lambda spec, opts, adapter: built.append(spec) or object())
    monkeypatch.setattr(dist, "_WORKER_POSE", {})
    a = SimpleNamespace(key="k1", pose_spec="hrnet", adapter=None)
    b = SimpleNamespace(key="k2", pose_spec="hrnet", adapter=None)
    first = dist._worker_pose(a, None)
    assert dist._worker_pose(a, None) is first  # a second task on the same worker reuses it
    assert dist._worker_pose(b, None) is not first  # another entry (other settings) gets its own
    assert built == ["hrnet", "hrnet"]


def test_clips_the_workers_report_but_this_machine_cannot_see_are_an_error(six_clips, tmp_path, monkeypatch):
    """Workers that see another filesystem at the cache's path (a node-local disk bind-mounted
    there) extract into a cache nobody reads; the run said "6 extracted", exit 0. The clips they
    report are looked for where this command reads the cache."""
    import pipeline.engines.dask as dask_engine

    def elsewhere(p, opts, todo, *args):  # what such workers report: every clip done, none here
        report = args[4]
        for c in todo:
            report.record("done", c.clip_id, None, None)
        return [{"worker": "tcp://node7:4001", "host": "node7", "pid": 1, "seconds": 1.0, "done": len(todo),
                 "failed": 0}], 1

    monkeypatch.setattr(dask_engine, "_run_tasks", elsewhere)
    with pytest.raises(RuntimeError, match=r"report 6 clip\(s\) extracted that are not in .* as this machine sees "
                                           r"it .*--cache-root a path every worker and this machine share"):
        run_extract_dask(_opts(six_clips, tmp_path / "cache"), "local:2", chunk=2)
