"""stages.extract.plan: what an entry's plan refuses before any work."""
import pytest

from pevl_testutils import make_video, tiny_hrnet_config

from cache.fsutil import case_insensitive
from stages.datasets import DatasetLayoutError


def _options(tmp_path):
    from stages.extract.plan import ExtractOptions

    root = tmp_path / "data"
    for name in ("Walk_01", "walk_01", "run"):
        make_video(root / f"{name}.mp4", frames=4, size=(48, 32))
    (root / "labels.txt").write_text("walk\nrun\n")
    (root / "train.csv").write_text("path,label\nWalk_01.mp4,0\nwalk_01.mp4,0\n")
    (root / "val.csv").write_text("path,label\nrun.mp4,1\n")
    return ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                          pose_options={"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": False},
                          dataset_options={"coarse_type": "x"}, settings={"num_frames": 2})


def test_clip_ids_differing_only_in_case_are_refused_where_the_cache_cannot_tell_them_apart(tmp_path, monkeypatch):
    """On a case-blind filesystem (macOS' default, SMB, exFAT) 'walk_01''s clip folder is
    'Walk_01''s: it would be skipped as finished and read as the other clip's frames and poses."""
    from stages.extract import plan as plan_module

    opts = _options(tmp_path)
    if case_insensitive(tmp_path):
        pytest.skip("this filesystem is blind to case: the two videos cannot both exist")
    assert [c["uid"] for c in plan_module.plan_entry(opts).clips if c["split"] == "train"] == ["Walk_01", "walk_01"]
    monkeypatch.setattr(plan_module, "case_insensitive", lambda path: True)
    with pytest.raises(DatasetLayoutError, match="clip ids 'Walk_01' and 'walk_01' differ only in case.*macOS"):
        plan_module.plan_entry(opts)


def test_case_insensitive_probes_with_a_file_of_its_own_and_leaves_nothing(tmp_path):
    (tmp_path / "Probe").touch()
    blind = (tmp_path / "probe").exists()  # what this filesystem does (False on Linux, True on macOS' default)
    (tmp_path / "Probe").unlink()
    folder = tmp_path / "not" / "yet"  # the nearest existing folder is tried
    assert case_insensitive(folder) is blind
    assert list(tmp_path.iterdir()) == []
