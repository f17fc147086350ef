import pytest

from _fixtures import touch
from stages.datasets import DatasetLayoutError, create_dataset
from stages.datasets.base import check_labels
from stages.datasets.haa500 import class_texts


def _make(root, classes=("playing_violin", "abseiling"), n=20, flat=False):
    for c in classes:
        for i in range(n, 0, -1):  # created in reverse: order must come from the numbers
            rel = f"{c}_{i:03d}.mp4" if flat else f"{c}/{c}_{i:03d}.mp4"
            touch(root / "video" / rel)
    return root


@pytest.mark.parametrize("flat", [False, True])
def test_split_by_file_order(tmp_path, flat):
    idx = create_dataset("haa500", root=_make(tmp_path, flat=flat)).load()
    check_labels(idx)
    assert idx.classes == ["abseiling", "playing violin"]
    assert idx.split_counts() == {"train": 32, "val": 2, "test": 6}
    violin = [c for c in idx.clips if c.label == 1]
    assert [c.clip_id for c in violin if c.split == "val"] == ["playing_violin_017"]
    assert [c.clip_id for c in violin if c.split == "test"] == [
        "playing_violin_018", "playing_violin_019", "playing_violin_020"]
    assert violin[0].clip_id == "playing_violin_001" and violin[0].split == "train"
    assert idx.missing() == [] and idx.meta["unusual_classes"] == {}


def test_unusual_counts_and_options(tmp_path):
    _make(tmp_path, classes=("a",), n=5)
    idx = create_dataset("haa500", root=tmp_path, train_per_class=3, val_per_class=1).load()
    assert idx.split_counts() == {"train": 3, "val": 1, "test": 1}
    assert idx.meta["unusual_classes"] == {"a": 5}


def test_variant_class_texts():
    assert class_texts(["yoga_tree", "yoga_tree_2", "soccer_kick_1", "hula-hoop"]) == [
        "yoga tree", "yoga tree (variant 2)", "soccer kick", "hula hoop"]
    assert class_texts(["jump_1", "jump_2"]) == ["jump (variant 1)", "jump (variant 2)"]


def test_empty_root_error(tmp_path):
    with pytest.raises(DatasetLayoutError, match="per-class folders"):
        create_dataset("haa500", root=tmp_path).load()
