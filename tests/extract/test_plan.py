"""stages.extract.plan: what an entry's plan refuses before any work."""
import pytest

from pevl_testutils import custom_extract_options

from cache.fsutil import case_insensitive
from stages.datasets import DatasetLayoutError


def _options(tmp_path):
    return custom_extract_options(tmp_path, [("Walk_01.mp4", 0, "train"), ("walk_01.mp4", 0, "train"),
                                             ("run.mp4", 1, "val")], ["walk", "run"])


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
