"""Stage two opens its entry from the cache alone: training and eval work with the raw dataset gone;
a change of the dataset's files is found only when asked (--check-sources, cache verify --sources)."""
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

#: 10 classes x (1 train + 1 val) clips of 32 frames: a few seconds to generate and extract
DEMO_OPTIONS = {"clips_per_class": "1,1", "num_frames": "32", "workers": "1"}
ONE_EPOCH = {"train.max_epochs": 1, "train.warmup_epochs": 0, "train.batch_size": 4, "data.num_workers": 0,
             "train.val_interval": 1, "train.log_interval": 1, "model.num_video_frames": 4,
             "model.num_pose_frames": 8, "data.dataset_options": {k: v for k, v in DEMO_OPTIONS.items()
                                                                  if k != "workers"}}


@pytest.fixture(scope="module")
def demo_entry(tmp_path_factory):
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    cache = tmp_path_factory.mktemp("cache-only") / "cache"
    rep = run_extract(ExtractOptions(dataset="demo", cache_root=str(cache), dataset_options=dict(DEMO_OPTIONS)))
    assert rep.complete, rep.failures
    return cache, rep.entry


def test_training_and_eval_work_with_the_dataset_root_moved_away(demo_entry, tmp_path):
    from stages.train.sweep import run_sweep

    cache, entry = demo_entry
    data_root = Path(entry.attrs["dataset_root"])
    moved = tmp_path / "moved-away"
    shutil.move(str(data_root), moved)
    try:
        rep = run_sweep("demo", cache_root=str(cache), work_dir=tmp_path / "w", cfg_options=dict(ONE_EPOCH),
                        say=lambda m: None)
        assert [o.status for o in rep.outcomes] == ["trained"], [o.error for o in rep.outcomes]
        row = rep.rows[0]
        assert row["entry"] == entry.key and row["epochs"] == 1 and row["num_classes"] == 10
        assert not data_root.exists()  # nothing was regenerated
        ckpt = Path(row["checkpoint"])
        res = CliRunner().invoke(app, ["eval", "--exp", "demo", "--checkpoint", str(ckpt), "--cache-root", str(cache),
                                       "--device", "cpu", "-c", "data.num_workers=0 model.num_video_frames=4 "
                                       "model.num_pose_frames=8 data.dataset_options.clips_per_class=1,1 "
                                       "data.dataset_options.num_frames=32"])
        assert res.exit_code == 0, res.output
        assert "top-1" in res.output and not data_root.exists()
    finally:
        shutil.move(str(moved), data_root)


def test_a_missing_entry_names_the_extract_command_and_how_others_differ(demo_entry):
    from cache import EntryNotFoundError
    from stages.data.entry_lookup import find_entry

    cache, entry = demo_entry
    data = dict(dataset="demo", dataset_options={"clips_per_class": "1,1", "num_frames": "32"},
                extract=dict(short_side=160))
    with pytest.raises(EntryNotFoundError) as e:
        find_entry(data, cache_root=str(cache))
    msg = str(e.value)
    assert "pipeline extract --dataset demo" in msg and "--short-side 160" in msg
    assert "-o clips_per_class=1,1" in msg and "-o num_frames=32" in msg
    assert f"entry {entry.key} differs in settings.short_side: 128 (asked: 160)" in msg
    found = find_entry(dict(data, extract={}), cache_root=str(cache))
    assert found.key == entry.key


def test_changed_sources_are_reported_when_asked(demo_entry, tmp_path):
    from stages.data.entry_lookup import source_changes
    from stages.train.sweep import run_sweep

    cache, entry = demo_entry
    assert source_changes(entry) == []
    data_root = Path(entry.attrs["dataset_root"])
    video = sorted((data_root / "videos").glob("*.mp4"))[0]
    backup = tmp_path / "backup.mp4"
    shutil.copy2(video, backup)
    try:
        with open(video, "ab") as f:
            f.write(b"\0")
        changed = source_changes(entry)
        assert any(video.stem in c and "video changed" in c for c in changed), changed
        res = CliRunner().invoke(app, ["cache", "verify", entry.key, "--quick", "--sources", "--cache-root", str(cache)])
        assert res.exit_code == 1 and "sources: clip" in res.output
        from stages.train.sweep import SourcesChangedError

        with pytest.raises(SourcesChangedError, match="files changed since entry"):  # before anything trains
            run_sweep("demo", cache_root=str(cache), work_dir=tmp_path / "w", cfg_options=dict(ONE_EPOCH),
                      check_sources=True, say=lambda m: None)
        assert not (tmp_path / "w").exists()
    finally:
        shutil.copy2(backup, video)
    assert source_changes(entry) == []  # the same bytes and mtime again
