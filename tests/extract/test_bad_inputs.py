"""Bad input is reported with a reason and skipped; everything else is extracted; nothing is lost."""
import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from cache import CacheStore
from pevl_testutils import make_video, tiny_hrnet_config, write_custom_dataset
from pipeline.cli import app


@pytest.fixture
def messy_dataset(tmp_path):
    root = tmp_path / "data"
    v = root / "videos"
    make_video(v / "good0.mp4", frames=8, size=(64, 48))
    make_video(v / "good1.mp4", frames=8, size=(64, 48))
    make_video(v / "portrait.mp4", frames=8, size=(47, 81))  # odd-sized and portrait: fine
    make_video(v / "one_frame.mp4", frames=1, size=(64, 48))
    (v / "zero.mp4").write_bytes(b"")
    (v / "text.mp4").write_text("not a video, just text\n")
    whole = make_video(tmp_path / "whole.mp4", frames=48, size=(160, 120), fps=24, faststart=True)
    data = whole.read_bytes()
    (v / "truncated.mp4").write_bytes(data[: len(data) // 2])
    clips = [("videos/good0.mp4", 0, "train"), ("videos/good1.mp4", 1, "train"),
             ("videos/portrait.mp4", 0, "val"), ("videos/one_frame.mp4", 1, "train"),
             ("videos/zero.mp4", 0, "train"), ("videos/text.mp4", 1, "val"),
             ("videos/truncated.mp4", 0, "train"), ("videos/missing.mp4", 1, "val")]
    return write_custom_dataset(root, clips, ["walk", "run"])


def test_bad_inputs_are_recorded_and_the_rest_extracted(messy_dataset, tmp_path):
    cache_root = tmp_path / "cache"
    args = ["extract", "--dataset", "custom", "--root", str(messy_dataset), "--cache-root", str(cache_root),
            "--pose-checkpoint", "none", "--no-pose-flip-test", "--pose-batch-size", "8",
            "--pose-config", tiny_hrnet_config()]
    runner = CliRunner()
    first = runner.invoke(app, args + ["--limit", "2"])
    assert first.exit_code == 0, first.output
    (entry,) = CacheStore(cache_root).entries("custom")
    before = {u: (entry.path / "clips" / u / "zarr.json").stat().st_mtime_ns for u in entry.done_uids()}
    assert len(before) == 2

    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output  # something failed: non-zero status
    (entry,) = CacheStore(cache_root).entries("custom")
    fails = {f["clip_id"]: f["reason"] for f in entry.failures().values()}
    assert set(fails) == {"videos/one_frame", "videos/zero", "videos/text", "videos/truncated", "videos/missing"}
    assert "only 1 frame" in fails["videos/one_frame"]
    assert "empty file" in fails["videos/zero"]
    assert "moov atom" in fails["videos/text"]
    assert "truncated" in fails["videos/truncated"]
    assert "not found" in fails["videos/missing"]
    assert {entry._by_uid[u]["clip_id"] for u in entry.done_uids()} == {
        "videos/good0", "videos/good1", "videos/portrait"}
    # clips cached before the run are untouched
    for u, t in before.items():
        assert (entry.path / "clips" / u / "zarr.json").stat().st_mtime_ns == t
    # the summary names each failure and its reason
    assert "5 clip(s) failed" in res.output and "videos/truncated" in res.output
    # the portrait clip: short side is the width
    (pu,) = [u for u in entry.done_uids() if entry._by_uid[u]["clip_id"] == "videos/portrait"]
    c = entry.read_clip(pu)
    assert c.frames.shape[1:3] == (448, 256) and c.grids.shape[-2:] == (28, 16)
    m = entry.manifest()
    assert m["status"] == "complete" and m["counts"]["failed"] == 5 and len(m["failures"]) == 5
    assert CacheStore(cache_root).verify(entry).ok

    # a rerun does not retry recorded failures (--retry-failed does): it lists them and, failing
    # nothing now, exits 0, so `extract && train` goes on
    again = runner.invoke(app, args)
    text = again.output.replace("\n", " ")
    assert again.exit_code == 0 and "0 extracted" in text and "5 clip(s) failed" in text

    # stage two says which clips of its splits failed here, and that these poses are random weights'
    from stages.train.train_log import failed_clips_note

    splits = [SimpleNamespace(split="train"), SimpleNamespace(split="val")]
    assert failed_clips_note(entry, *splits) == f" (5 failed in stage one, left out: `pipeline cache info {entry.key[:12]}`)"
    assert failed_clips_note(entry, splits[0], None) == f" (3 failed in stage one, left out: `pipeline cache info {entry.key[:12]}`)"
    assert entry.random_pose_weights
    ls = runner.invoke(app, ["cache", "ls", "--cache-root", str(cache_root), "--json"])
    assert json.loads(ls.stdout)[0]["random_pose_weights"] is True


def test_dataset_info_reports_missing_videos_without_decoding(messy_dataset, monkeypatch):
    from stages.extract import decode

    monkeypatch.setattr(decode, "probe", lambda *a, **k: pytest.fail("dataset info must not decode"))
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "custom", "--root", str(messy_dataset), "--json"])
    assert res.exit_code == 0, res.output
    import json

    info = json.loads(res.stdout)
    assert info["clips"] == 8 and info["missing_videos"] == 1 and info["num_classes"] == 2
    assert info["splits"] == {"train": 5, "val": 3}
    assert info["missing_examples"] == ["videos/missing"]


def _two_clips_with_file_poses(tmp_path):
    """(root, extract args) of a custom dataset of clips a and b, their poses in a skeleton pickle."""
    import pickle

    import numpy as np

    from pevl_testutils import pattern_video

    root = tmp_path / "data"
    root.mkdir()
    for n in ("a", "b"):
        pattern_video(root / f"{n}.mp4", frames=8)
    write_custom_dataset(root, [("a.mp4", 0, "train"), ("b.mp4", 1, "train")], ["x", "y"])
    (tmp_path / "poses.pkl").write_bytes(pickle.dumps([
        {"frame_dir": n, "img_shape": (48, 64), "keypoint": np.full((1, 8, 17, 2), 20.0, np.float32),
         "keypoint_score": np.ones((1, 8, 17), np.float32)} for n in ("a", "b")]))
    args = ["extract", "--dataset", "custom", "--root", str(root), "--cache-root", str(tmp_path / "cache"),
            "--coarse-type", "x", "--pose-source", f"pkl:{tmp_path / 'poses.pkl'}", "--num-frames", "2",
            "--short-side", "48"]
    return root, args


def test_a_video_this_user_cannot_read_stops_the_run_and_is_not_recorded_as_failed(tmp_path, monkeypatch):
    """Permissions (or a failing filesystem) are the storage's fault, not the video's: recorded as
    a failure they were final for the entry (a rerun said 'complete' with 0 clips). The run stops
    naming the file, records nothing for it, and a rerun once it is readable finishes the entry."""
    import os

    root, args = _two_clips_with_file_poses(tmp_path)
    real_open = os.open
    locked = str(root / "b.mp4")

    def no_access(path, flags, *a, **k):  # (the tests may run as root, whom modes do not stop)
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", no_access)
    res = CliRunner().invoke(app, args)
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and f"cannot read {locked} (Permission denied)" in text
    assert "Nothing was recorded as failed for it" in text
    (entry,) = CacheStore(tmp_path / "cache").entries("custom")
    assert entry.failures() == {} and not (entry.path / "claims" / "b").exists()
    monkeypatch.setattr(os, "open", real_open)
    again = CliRunner().invoke(app, args)
    st = entry.status()
    assert again.exit_code == 0 and st.complete and st.done == 2 and st.failed == 0, again.output


def test_a_dataset_root_gone_while_a_clip_decodes_is_not_the_clips_failure(tmp_path, monkeypatch):
    """The root unmounted or moved while ffmpeg reads a clip: ffmpeg fails (no such file), but the
    clip is not at fault; recorded as failed it would be skipped by every later run. The run stops
    naming the root, records nothing for the clip, and a rerun finishes the entry."""


    import stages.extract.run as run_mod
    from stages.extract.clip import ClipError

    root, args = _two_clips_with_file_poses(tmp_path)
    real = run_mod.extract_clip
    moved = tmp_path / "elsewhere"

    def root_goes(clip, *a, **k):
        if clip.clip_id == "b":  # the root moves away while b decodes; ffmpeg then fails as it does
            root.rename(moved)
            raise ClipError(f"ffmpeg failed (exit 254): {clip.video}: No such file or directory")
        return real(clip, *a, **k)

    monkeypatch.setattr(run_mod, "extract_clip", root_goes)
    res = CliRunner().invoke(app, args)
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and f"the dataset root {root} is gone" in text, text[-2000:]
    (entry,) = CacheStore(tmp_path / "cache").entries("custom")
    assert entry.failures() == {} and not (entry.path / "claims" / "b").exists()
    monkeypatch.setattr(run_mod, "extract_clip", real)
    moved.rename(root)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert entry.status().complete and entry.failures() == {}
