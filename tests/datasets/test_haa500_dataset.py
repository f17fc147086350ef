import pytest

from _fixtures import touch, write_text
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
    assert class_texts(["flip360", "flip"]) == ["flip360", "flip"]  # digits with no separator are the name's


def test_class_texts_have_single_spaces():
    """A class name with a space beside an underscore (or two spaces) gave a text with two spaces;
    texts enter the entry key, which changes only for such names (a correction)."""
    assert class_texts(["hand_ stand", "sit  up", "a -b\tc", "playing_violin"]) == [
        "hand stand", "sit up", "a b c", "playing violin"]


def test_empty_root_error(tmp_path):
    with pytest.raises(DatasetLayoutError, match="per-class folders"):
        create_dataset("haa500", root=tmp_path).load()


def _class_files(root, classes=("playing_violin", "abseiling"), n=20, folder="raw"):
    for c in classes:
        write_text(root / folder / f"{c}.txt", "".join(
            f"https://www.youtube.com/watch?v=vid{c[:3]}{i:05d},{i}.5,{i + 2}.25,{i % 2},1\n" for i in range(n)))


def _make0(root, classes=("playing_violin", "abseiling"), numbers=range(20)):
    """Videos numbered from 000, as the v1.1 archive names them."""
    for c in classes:
        for i in numbers:
            touch(root / "video" / c / f"{c}_{i:03d}.mp4")
    return root


@pytest.mark.parametrize("folder", ["raw", "annotations", ""])
def test_split_by_line_order_of_the_class_files(tmp_path, folder):
    _make0(tmp_path, numbers=[i for i in range(20) if i != 5])  # video 005 of each class lost
    _class_files(tmp_path, folder=folder)
    write_text(tmp_path / "README.txt", "not a class file")
    idx = create_dataset("haa500", root=tmp_path).load()
    check_labels(idx)
    assert idx.split_counts() == {"train": 32, "val": 2, "test": 6}  # by line: the lost video is still train
    violin = {c.clip_id: c for c in idx.clips if c.label == 1}
    assert violin["playing_violin_016"].split == "val"  # line 17; file order would have said 017
    assert [c.clip_id for c in idx.missing()] == ["abseiling_005", "playing_violin_005"]
    assert violin["playing_violin_016"].extra["line"] == 17
    assert violin["playing_violin_003"].extra["start_time"] == 3.5
    assert "line order" in idx.meta["split_source"] and len(idx.source_files) == 2
    # without the class files: the videos' numbers give the same split, the lost video a hole
    for p in (tmp_path / folder).glob("*_*.txt"):
        p.unlink()
    for p in (tmp_path / folder).glob("abseiling.txt"):
        p.unlink()
    plain = create_dataset("haa500", root=tmp_path).load()
    assert plain.meta["split_source"].startswith("the videos' numbers")
    assert {c.clip_id: c.split for c in plain.clips} == {c.clip_id: c.split for c in idx.clips}
    assert [c.clip_id for c in plain.missing()] == ["abseiling_005", "playing_violin_005"]
    assert plain.meta["numbers_without_video"] == {"abseiling": ["abseiling_005"],
                                                   "playing_violin": ["playing_violin_005"]}
    assert plain.meta["unusual_classes"] == {}


@pytest.mark.parametrize("flat", [False, True])
def test_without_class_files_a_lost_video_moves_no_split(tmp_path, flat):
    """Before 2026-12-06 the files were split by position: with _005 lost, the official val video
    _016 went to train and the test video _017 to val, with no word but a count."""
    for c in ("abseiling", "playing_violin"):
        for i in range(20):
            if not (c == "abseiling" and i == 5):
                touch(tmp_path / "video" / (f"{c}_{i:03d}.mp4" if flat else f"{c}/{c}_{i:03d}.mp4"))
    # what a zip made on a Mac leaves beside every video, and a Finder file
    touch(tmp_path / "video" / ("._abseiling_000.mp4" if flat else "abseiling/._abseiling_000.mp4"))
    touch(tmp_path / "video" / ".DS_Store")
    idx = create_dataset("haa500", root=tmp_path).load()
    split = {c.clip_id: c.split for c in idx.clips}
    assert split["abseiling_015"] == "train" and split["abseiling_016"] == "val"
    assert [k for k, v in split.items() if v == "test" and k.startswith("abseiling")] == [
        "abseiling_017", "abseiling_018", "abseiling_019"]
    assert [c.clip_id for c in idx.missing()] == ["abseiling_005"]
    assert idx.split_counts() == {"train": 32, "val": 2, "test": 6}
    assert not any(c.clip_id.startswith(".") for c in idx.clips)


def test_without_class_files_a_video_the_numbers_cannot_place_is_refused(tmp_path):
    _make0(tmp_path, classes=("abseiling",))
    touch(tmp_path / "video" / "abseiling" / "abseiling_final.mp4")
    with pytest.raises(DatasetLayoutError, match=r"abseiling_final.mp4: expected <class_name>_<nnn>"):
        create_dataset("haa500", root=tmp_path).load()
    (tmp_path / "video" / "abseiling" / "abseiling_final.mp4").unlink()
    touch(tmp_path / "video" / "abseiling" / "abseiling_2019.mp4")  # planned 2,000 missing clips, never complete
    with pytest.raises(DatasetLayoutError, match=r"abseiling_2019.mp4: its number leaves 1999 numbers of class "
                                                 r"abseiling without a video \(21 videos\)"):
        create_dataset("haa500", root=tmp_path).load()
    (tmp_path / "video" / "abseiling" / "abseiling_2019.mp4").unlink()
    touch(tmp_path / "video" / "abseiling" / "abseiling_003.mkv")
    with pytest.raises(DatasetLayoutError, match=r"abseiling_003.m.. and abseiling_003.m.. have one number"):
        create_dataset("haa500", root=tmp_path).load()


def test_class_files_that_do_not_fit_the_videos_are_refused(tmp_path):
    _make(tmp_path)  # numbered 001..020: video 020 has no line 21
    _class_files(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"abseiling_020.mp4 does not fit .*line i being video i-1"):
        create_dataset("haa500", root=tmp_path).load()


def test_class_without_a_file_and_bad_lines(tmp_path):
    _make0(tmp_path)
    _class_files(tmp_path, classes=("abseiling",))
    with pytest.raises(DatasetLayoutError, match="no annotation file"):
        create_dataset("haa500", root=tmp_path).load()
    _class_files(tmp_path)
    write_text(tmp_path / "raw" / "abseiling.txt", "https://youtu.be/x,1.0,2.0\n")
    with pytest.raises(DatasetLayoutError, match="abseiling.txt:1"):
        create_dataset("haa500", root=tmp_path).load()


def test_a_blank_line_inside_a_class_file_is_refused_at_its_end_kept(tmp_path):
    """Rows are counted for the split and the videos' numbers: a blank line inside would move every
    row after it (silently, when it was skipped)."""
    _make0(tmp_path)
    _class_files(tmp_path)
    f = tmp_path / "raw" / "abseiling.txt"
    rows = f.read_text().splitlines(keepends=True)
    write_text(f, "".join(rows) + "\n\n")
    assert create_dataset("haa500", root=tmp_path).load().split_counts() == {"train": 32, "val": 2, "test": 6}
    write_text(f, "".join(rows[:5]) + "\n" + "".join(rows[5:]))
    with pytest.raises(DatasetLayoutError, match=r"abseiling.txt:6: a blank line before the last row"):
        create_dataset("haa500", root=tmp_path).load()


def test_class_files_define_the_classes(tmp_path):
    _make0(tmp_path, classes=("abseiling",))
    _class_files(tmp_path, classes=("abseiling", "zumba"))  # no zumba video was downloaded
    idx = create_dataset("haa500", root=tmp_path, annotation_dir=str(tmp_path / "raw")).load()
    assert idx.classes == ["abseiling", "zumba"] and idx.meta["classes_without_videos"] == ["zumba"]
    assert len(idx.missing()) == 20
