"""Entry keys and manifests: a changed setting is a new entry; a rerun is a no-op."""
import json

import numpy as np
import pytest
import zarr

from cache import CacheStore
from cache.layout import FORMAT_VERSION
from pevl_testutils import tiny_hrnet_config
from pipeline.engines.local import run_extract
from stages.extract.plan import ExtractOptions, plan_entry
from stages.extract import clip as clip_mod


def _opts(root, cache_root, **kw):
    base = dict(dataset="custom", root=str(root), cache_root=str(cache_root),
                pose_options={"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": False, "batch_size": 16})
    base.update(kw)
    return ExtractOptions(**base)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """One HRNet (random weights) extraction of the tiny dataset, shared by the tests below."""
    from pevl_testutils import make_video, write_custom_dataset

    tmp = tmp_path_factory.mktemp("keys")
    root = tmp / "data"
    clips = []
    for i in range(3):
        make_video(root / f"v{i}.mp4", frames=8, size=(64, 48))
        clips.append((f"v{i}.mp4", i % 2, "train" if i < 2 else "val"))
    write_custom_dataset(root, clips, ["turn once", "turn twice"])
    rep = run_extract(_opts(root, tmp / "cache"))
    return root, tmp / "cache", rep


def test_first_run_extracts_everything(extracted):
    root, cache_root, rep = extracted
    assert rep.complete and len(rep.done_now) == 3 and not rep.failed_now
    assert rep.counters.decoded_clips == 3 and rep.counters.pose_calls == 3
    m = rep.entry.manifest()
    assert m["status"] == "complete" and m["counts"]["done"] == 3 and m["format"] == FORMAT_VERSION
    for k in ("settings", "pose", "versions", "created", "completed", "runs", "failures"):
        assert k in m, k
    assert m["pose"]["checkpoint"].startswith("none") and m["pose"]["name"] == "hrnet"
    assert m["versions"]["mmpose"].startswith("1.3") and "torch" in m["versions"]
    assert m["runs"][0]["done"] == 3


def test_rerun_decodes_nothing_and_calls_no_pose_model(extracted, monkeypatch):
    root, cache_root, rep = extracted

    def boom(*a, **k):
        raise AssertionError("a complete entry must not decode or run pose estimation")

    monkeypatch.setattr(clip_mod, "read_frames", boom)
    monkeypatch.setattr(clip_mod, "probe", boom)
    monkeypatch.setattr("stages.extract.pose.hrnet.HRNetPoseSource.estimate", boom)
    monkeypatch.setattr("stages.extract.pose.hrnet.HRNetPoseSource._build", boom)
    again = run_extract(_opts(root, cache_root))
    assert again.entry.key == rep.entry.key
    assert again.done_now == [] and again.counters.decoded_clips == 0 and again.counters.pose_calls == 0
    assert again.complete


def test_changed_settings_make_a_new_entry_beside_the_old(extracted):
    root, cache_root, rep = extracted
    base = plan_entry(_opts(root, cache_root))
    assert base.key == rep.entry.key
    for change in (dict(settings={"num_frames": 8}), dict(settings={"short_side": 128}),
                   dict(settings={"grid_cell": 32}),
                   dict(pose_options={"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": True}),
                   dict(settings={"frames_codec": "zstd"}), dict(settings={"frames_per_segment": 1})):
        assert plan_entry(_opts(root, cache_root, **change)).key != base.key, change
    # a changed source file changes the key too
    v = root / "v0.mp4"
    data = v.read_bytes()
    v.write_bytes(data + b"\0")
    try:
        assert plan_entry(_opts(root, cache_root)).key != base.key
    finally:
        v.write_bytes(data)
    # key order in the settings dict does not matter (canonical hashing)
    from cache.keys import stable_hash
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})


def test_new_setting_entry_lives_beside_old(extracted):
    root, cache_root, rep = extracted
    rep8 = run_extract(_opts(root, cache_root, settings={"num_frames": 4}, limit=1))
    keys = {e.key for e in CacheStore(cache_root).entries("custom")}
    assert {rep.entry.key, rep8.entry.key} <= keys and rep8.entry.key != rep.entry.key
    assert rep.entry.status().complete  # untouched
    assert not rep8.complete and len(rep8.entry.status().missing) == 2


def test_entry_reads_back_with_plain_zarr(extracted):
    _, _, rep = extracted
    path = rep.entry.path
    root = zarr.open_group(str(path), mode="r")
    assert root.attrs["format"] == FORMAT_VERSION and root.attrs["dataset"] == "custom"
    uid = sorted(root["clips"].group_keys())[0]
    g = root["clips"][uid]
    frames, grids, kp, sc = (g[k][...] for k in ("frames", "grids", "keypoints", "scores"))
    assert frames.shape == (48, 256, 336, 3) and frames.dtype == np.uint8  # 16 segments x 3 candidates
    assert grids.shape == (48, 17, 16, 21)
    assert kp.shape == (8, 17, 2) and sc.shape == (8, 17)
    assert g.attrs["num_frames"] == 8 and g.attrs["orig_size"] == [48, 64]
    idx = root["index"]
    assert idx["offsets"][...].tolist()[-1] == idx["keypoints"].shape[0] == 24
    assert json.loads((path / "manifest.json").read_text())["key"] == rep.entry.key


def test_grids_match_cached_keypoints(extracted):
    """The stored grids are exactly the incidence of the stored joints on the cached frames."""
    from stages.geometry import joint_patch_grid

    _, _, rep = extracted
    for row in rep.entry.clips():
        c = rep.entry.read_clip(row["uid"])
        kp = c.keypoints_in_frame()[c.frame_indices]
        want = joint_patch_grid(kp, c.scores[c.frame_indices], c.frames.shape[1:3], c.grid_cell)
        np.testing.assert_array_equal(c.grids, want)
        assert c.frame_indices[1::3].tolist() == [int((i + 0.5) * 8 / 16) for i in range(16)]  # the middles
        assert c.frame_indices.tolist() == [min(7, int((i + f) * 8 / 16)) for i in range(16) for f in (1 / 6, 0.5, 5 / 6)]


def test_verify_detects_corruption(extracted, tmp_path):
    import shutil

    _, _, rep = extracted
    copy = tmp_path / "copy"
    shutil.copytree(rep.entry.path, copy)
    from cache.entry import CacheEntry

    store = CacheStore(tmp_path)
    e = CacheEntry(copy)
    assert store.verify(e).ok
    uid = sorted(e.done_uids())[0]
    z = zarr.open_group(str(copy / "clips" / uid), mode="r+")
    z["scores"][0, 0] = 0.123  # silent bit rot
    assert not store.verify(e).ok


def test_export_to_hdf5_matches_the_entry(extracted, tmp_path):
    import h5py

    from cache.store import export_hdf5

    _, _, rep = extracted
    out = tmp_path / "entry.h5"
    assert export_hdf5(rep.entry, out) == 3
    with h5py.File(out, "r") as f:
        for row in rep.entry.clips():
            c = rep.entry.read_clip(row["uid"])
            g = f["clips"][row["uid"]]
            np.testing.assert_array_equal(g["frames"][...], c.frames)
            np.testing.assert_array_equal(g["keypoints"][...], c.keypoints)
            assert g.attrs["label"] == c.label
        assert (f.attrs["export_clips"], f.attrs["export_planned_clips"]) == (3, len(rep.entry.plan))
    assert not (tmp_path / "entry.h5.partial").exists()
    # the command refuses to replace a file (it replaced any, HDF5 or not, without a word) unless --force
    from typer.testing import CliRunner

    from pipeline.cli import app

    kept = tmp_path / "notes.txt"
    kept.write_text("mine")
    args = ["cache", "export", rep.entry.key, "--cache-root", str(rep.entry.path.parents[2]), "--h5", str(kept)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "exists; --force replaces it" in " ".join(res.output.split()), res.output
    assert kept.read_text() == "mine"
    res = CliRunner().invoke(app, [*args, "--force"])
    assert res.exit_code == 0 and "wrote 3 clips to" in res.output and "incomplete" not in res.output, res.output


def test_demo_key_of_the_current_format_is_pinned_for_fixed_inputs(tmp_path, monkeypatch):
    """Moving code changes no key: a tiny demo with pinned file sizes and mtimes plans to the key
    pinned here for store format 3. The same inputs under format 2 give the key format 2 gave
    (commit 2e5757f; ``frames_per_segment`` = 1 is left out of the key, as ``jpeg_quality`` is for
    raw frames), and under format 1's version and frames codec the key commit dd8b271 computed, so
    only the format bumps (and format 2's new default codec) changed the key."""
    import os
    from pathlib import Path

    import cache.keys
    from stages.extract.plan import build_adapter

    opts = ExtractOptions(dataset="demo", cache_root=str(tmp_path),
                          dataset_options={"clips_per_class": "1", "num_frames": "32"})
    adapter = build_adapter(opts)
    adapter.load()
    # planning only stats the videos: fix their sizes and every file's mtime (annotations.json
    # keeps its generated bytes, which the generator makes byte-identical)
    for v in Path(adapter.root, "videos").glob("*.mp4"):
        v.write_bytes(b"\0" * 1000)
    for dirpath, _, files in os.walk(adapter.root):
        for f in files:
            os.utime(os.path.join(dirpath, f), ns=(1_700_000_000_000_000_000,) * 2)
    assert FORMAT_VERSION == 3
    p = plan_entry(opts)  # the default: three candidate frames per segment
    assert (p.key, p.settings_hash, p.sources_hash) == ("866a4da488e72808", "08d474e58282fa31", "988b679e2532ec3d")
    opts.settings = {"frames_per_segment": 3}
    assert plan_entry(opts).key == p.key
    # one candidate per segment: the frames format 2 stored, and its key but for the version
    opts.settings = {"frames_per_segment": 1}
    p = plan_entry(opts)
    assert (p.key, p.settings_hash, p.sources_hash) == ("3c4a4e59c3704d69", "f7d3ac1444547398", "988b679e2532ec3d")
    monkeypatch.setattr(cache.keys, "FORMAT_VERSION", 2)
    p2 = plan_entry(opts)
    assert (p2.key, p2.settings_hash, p2.sources_hash) == ("59ba0a7ba5e45acb", "db778d50f7df17b5", "988b679e2532ec3d")
    monkeypatch.setattr(cache.keys, "FORMAT_VERSION", 1)
    opts.settings = {"frames_codec": "lz4", "frames_per_segment": 1}
    p1 = plan_entry(opts)
    assert (p1.key, p1.settings_hash, p1.sources_hash) == ("7e991e526a29057f", "653b1d5e3a5c58fe", "988b679e2532ec3d")


def test_options_given_at_their_default_extract_into_the_entry_that_answers_the_same_request(tmp_path, caplog):
    """`-o seed=0` (the default) hashed the given option into another key: a second entry, every clip
    decoded and posed again, and two entries answering one request for stage two to choose from."""
    import logging

    from stages.extract.plan import open_or_create

    opts = ExtractOptions(dataset="demo", cache_root=str(tmp_path), dataset_options={"clips_per_class": "1"})
    first = plan_entry(opts)
    open_or_create(first)
    with caplog.at_level(logging.WARNING, logger="stages.extract.plan"):
        same = plan_entry(ExtractOptions(dataset="demo", cache_root=str(tmp_path),
                                         dataset_options={"clips_per_class": "1", "seed": "0"}))
    assert (same.key, same.entry_dir) == (first.key, first.entry_dir)
    assert f"entry {first.key} answers this request" in caplog.text
    entry = open_or_create(same)  # the entry's own metadata as it was: nothing rewritten
    assert entry.attrs["dataset_options"] == first.root_attrs["dataset_options"]
    assert [e.key for e in CacheStore(tmp_path).entries("demo")] == [first.key]
    other = plan_entry(ExtractOptions(dataset="demo", cache_root=str(tmp_path),
                                      dataset_options={"clips_per_class": "1", "seed": "1"}))
    assert other.key != first.key and not other.entry_dir.exists()
    # the same request with other pose weights (a checkpoint replaced at its path: the request names
    # the path, the key its sha256) is another entry, never the one of the old weights
    from stages.extract.pose.dataset_pose import DatasetPoseSource

    real = DatasetPoseSource.identity
    DatasetPoseSource.identity = lambda self: {**real(self), "weights_sha256": "another"}
    try:
        swapped = plan_entry(ExtractOptions(dataset="demo", cache_root=str(tmp_path),
                                            dataset_options={"clips_per_class": "1", "seed": "0"}))
    finally:
        DatasetPoseSource.identity = real
    assert swapped.request.hash == same.request.hash and swapped.key != first.key
