"""Kinetics-400 in the layouts a lab has (DeepMind's CSVs with the crawler's class folders, CVDF's flat
tarballs with its replacements, mmaction2's tools/data/kinetics with and without the CSVs), files named
as the releases name them: the right counts and labels, missing and broken videos reported."""
import csv
import json

import pytest
from typer.testing import CliRunner

from _fixtures import touch, write_text
from pipeline.cli import app
from stages.datasets import DatasetLayoutError, create_dataset
from stages.datasets.base import check_labels
from stages.datasets.kinetics400 import LABEL_MAP, class_key
from stages.registry import DATASET_ADAPTERS

VIDEO = b"\x00\x00\x00\x18ftypmp42"  # not decoded by the adapter: any bytes but none
# (youtube id, start, end, class, class index in the official list); ids have '-' and '_' as real ones do
TRAIN = [("--6bJUbfpnQ", 17, 27, "abseiling", 0), ("-0BXj_cQ-hE", 0, 10, "zumba", 399),
         ("a_b-cdEFgh1", 30, 40, "passing American football (in game)", 208),
         ("Zz9yX8wV7u6", 5, 15, "massaging person's head", 196), ("LOSTvideo01", 1, 11, "zumba", 399),
         ("EMPTYfile01", 2, 12, "abseiling", 0)]
VAL = [("vAl000000_1", 40, 50, "abseiling", 0), ("vAl000000_2", 100, 110, "zumba", 399),
       ("vAl00000LOST", 3, 13, "zumba", 399)]
TEST = [("tEst0000001", 0, 10, "zumba", 399), ("tEst0000002", 12, 22, "abseiling", 0)]
LOST = {"LOSTvideo01", "vAl00000LOST"}  # no file anywhere
EMPTY = {"EMPTYfile01"}  # a failed download: 0 bytes


def _name(yt, s, e):
    return f"{yt}_{s:06d}_{e:06d}"


def _csv(path, rows, split, labels=True, is_cc=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow((["label"] if labels else []) + ["youtube_id", "time_start", "time_end", "split"]
                   + (["is_cc"] if is_cc else []))
        for yt, s, e, cls, _ in rows:
            w.writerow(([cls] if labels else []) + [yt, s, e, split] + ([0] if is_cc else []))


def _videos(folder, rows, class_folders=None):
    """The clips' files; ``class_folders``: None (flat), 'spaces' (the crawler) or 'underscores'
    (after mmaction2's rename_classnames.sh)."""
    for yt, s, e, cls, _ in rows:
        if yt in LOST:
            continue
        sub = {None: "", "spaces": cls, "underscores": cls.replace(" ", "_")}[class_folders]
        touch(folder / sub / f"{_name(yt, s, e)}.mp4", b"" if yt in EMPTY else VIDEO)


def deepmind(root):
    """kinetics400.tar.gz unpacked (kinetics400/train.csv, validate.csv, test.csv of the first release:
    no label column), videos from the ActivityNet crawler in class folders named with spaces."""
    _csv(root / "kinetics400" / "train.csv", TRAIN, "train")
    _csv(root / "kinetics400" / "validate.csv", VAL, "val")
    _csv(root / "kinetics400" / "test.csv", TEST, "test", labels=False)
    _videos(root / "videos_train", TRAIN, "spaces")
    _videos(root / "videos_val", VAL, "spaces")
    _videos(root / "videos_test", TEST)
    return root


def cvdf(root):
    """cvdfoundation/kinetics-dataset: k400/annotations/{train,val,test}.csv (labelled test, is_cc), the
    tarballs unpacked flat into train/ val/ test/, and replacement_for_corrupted_k400."""
    for split, rows in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        _csv(root / "annotations" / f"{split}.csv", rows, split, is_cc=True)
        _videos(root / split, rows)
    yt, s, e = TRAIN[0][:3]
    touch(root / "replacement" / "replacement_for_corrupted_k400" / f"{_name(yt, s, e)}.mp4", VIDEO * 2)
    return root


def crawler(root):
    """The ActivityNet crawler's own CSV names (Crawler/Kinetics/data/kinetics-400_{train,val,test}.csv),
    videos in class folders named with spaces."""
    for split, rows in (("train", TRAIN), ("val", VAL)):
        _csv(root / f"kinetics-400_{split}.csv", rows, split)
        _videos(root / f"videos_{split}", rows, "spaces")
    _csv(root / "kinetics-400_test.csv", TEST, "test", labels=False)
    return root


def mmaction2(root, with_csv=True):
    """data/kinetics400 after mmaction2's tools/data/kinetics: annotations/kinetics_{train,val,test}.csv,
    videos_train|val/<class_with_underscores>/..., and the video lists (of the videos present)."""
    if with_csv:
        _csv(root / "annotations" / "kinetics_train.csv", TRAIN, "train")
        _csv(root / "annotations" / "kinetics_val.csv", VAL, "val")
        _csv(root / "annotations" / "kinetics_test.csv", TEST, "test", labels=False)
    for split, rows in (("train", TRAIN), ("val", VAL)):
        _videos(root / f"videos_{split}", rows, "underscores")
        present = [r for r in rows if r[0] not in LOST]
        write_text(root / f"kinetics400_{split}_list_videos.txt", "".join(
            f"{cls.replace(' ', '_')}/{_name(yt, s, e)}.mp4 {label}\n" for yt, s, e, cls, label in present))
    return root


def _labels(idx):
    return {c.clip_id: c.label for c in idx.clips}


@pytest.mark.parametrize("layout", [deepmind, cvdf, crawler, mmaction2])
def test_each_layout_reads_the_csvs_with_the_right_counts(tmp_path, layout):
    idx = create_dataset("kinetics400", root=layout(tmp_path)).load()
    check_labels(idx)
    labelled_test = layout is cvdf
    assert idx.num_classes == 400 and idx.classes[208] == "passing American football (in game)"
    assert idx.split_counts() == {"train": 6, "val": 3, **({"test": 2} if labelled_test else {})}
    assert _labels(idx)[_name(*TRAIN[2][:3])] == 208 and _labels(idx)[_name(*TRAIN[1][:3])] == 399
    assert idx.meta["split_source"] == "the official CSVs"
    missing = {c.clip_id: c.extra["problem"] for c in idx.missing()}
    assert missing == {_name("LOSTvideo01", 1, 11): "no video file", _name("vAl00000LOST", 3, 13): "no video file",
                       _name("EMPTYfile01", 2, 12): "empty file (0 bytes)"}
    assert idx.meta["missing_reasons"] == {"no video file": 2, "empty file (0 bytes)": 1}
    assert idx.meta["missing_by_split"]["train"] == "2 of 6 (33.3%)"
    assert idx.meta["missing_by_split"]["val"] == "1 of 3 (33.3%)"
    if not labelled_test:
        assert idx.meta["unlabelled_rows"] == {"test": "2 (no label: not used)"}
    assert "unlisted_videos" not in idx.meta  # the unlabelled test rows still name their videos
    present = [c for c in idx.clips if c.video is not None]
    assert all(c.video.endswith(f"{c.clip_id}.mp4") and c.cut() == {} for c in present)
    assert {c.extra["youtube_id"] for c in idx.clips} >= {"--6bJUbfpnQ", "a_b-cdEFgh1"}


def test_videos_no_row_names_and_repeated_rows_are_counted(tmp_path):
    deepmind(tmp_path)
    touch(tmp_path / "videos_train" / "zumba" / f"{_name('stray000001', 0, 10)}.mp4", VIDEO)
    _csv(tmp_path / "kinetics400" / "validate.csv", VAL + VAL[:1], "val")
    idx = create_dataset("kinetics400", root=tmp_path).load()
    assert idx.split_counts()["val"] == 3
    assert idx.meta["duplicate_rows"]["count"] == 1
    assert idx.meta["duplicate_rows"]["examples"] == [f"validate.csv:5 {_name(*VAL[0][:3])} (first: validate.csv:2)"]
    assert idx.meta["unlisted_videos"] == {"train": {"count": 1, "examples": [_name("stray000001", 0, 10)]}}


def test_cvdf_replacements_take_the_place_of_the_corrupted_copies(tmp_path):
    idx = create_dataset("kinetics400", root=cvdf(tmp_path)).load()
    first = next(c for c in idx.clips if c.clip_id == _name(*TRAIN[0][:3]))
    assert "replacement_for_corrupted_k400" in first.video and first.extra["replacement"]
    assert idx.meta["replacements"].startswith("1 clip(s) from replacement")
    plain = create_dataset("kinetics400", root=tmp_path, replacements=False).load()
    again = next(c for c in plain.clips if c.clip_id == first.clip_id)
    assert again.video == str(tmp_path / "train" / f"{first.clip_id}.mp4") and "replacement" not in again.extra


def test_mmaction2_lists_alone_are_read_and_say_what_they_cannot_show(tmp_path):
    mmaction2(tmp_path, with_csv=False)
    (tmp_path / "videos_val" / "abseiling" / f"{_name(*VAL[0][:3])}.mp4").unlink()  # lost after the lists
    idx = create_dataset("kinetics400", root=tmp_path).load()
    check_labels(idx)
    assert idx.meta["split_source"] == "mmaction2's video lists"
    assert idx.split_counts() == {"train": 5, "val": 2}  # the lists never held the two lost videos
    assert {c.clip_id: c.extra["problem"] for c in idx.missing()} == {
        _name(*VAL[0][:3]): "no video file", _name("EMPTYfile01", 2, 12): "empty file (0 bytes)"}
    assert "present when" in idx.meta["note"]
    assert _labels(idx)[_name(*TRAIN[3][:3])] == 196
    both = create_dataset("kinetics400", root=mmaction2(tmp_path / "both"), split_source="lists").load()
    assert both.meta["split_source"] == "mmaction2's video lists"


def test_the_shipped_class_list_is_the_official_order(tmp_path):
    names = [l for l in LABEL_MAP.read_text().splitlines() if l]
    assert len(names) == len(set(names)) == 400 and names[0] == "abseiling" and names[-1] == "zumba"
    # mmaction2 numbers the classes by the sorted CSV labels with spaces as underscores: the same order
    assert sorted(n.replace(" ", "_") for n in names) == [n.replace(" ", "_") for n in names]
    assert class_key('"massaging_person\'s_head"') == class_key("massaging person's head")


@pytest.mark.parametrize("case, match", [
    ("label", r"train.csv:3: label 'abseilling' is not one of the 400"),
    ("header", r"validate.csv:1: header .* lacks \['time_start'\]"),
    ("list", r"kinetics400_train_list_videos.txt:1: label 0 is 'abseiling' but the video lies in the class folder "
             r"'zumba'"),
    ("nothing", r"expected the official CSVs .* or mmaction2's kinetics400_train_list_videos.txt"),
])
def test_bad_annotations_are_named(tmp_path, case, match):
    if case == "label":
        deepmind(tmp_path)
        rows = list(TRAIN)
        rows[1] = (*rows[1][:3], "abseilling", 0)
        _csv(tmp_path / "kinetics400" / "train.csv", rows, "train")
    elif case == "header":
        deepmind(tmp_path)
        write_text(tmp_path / "kinetics400" / "validate.csv", "label,youtube_id,start,time_end,split\n")
    elif case == "list":
        mmaction2(tmp_path, with_csv=False)
        write_text(tmp_path / "kinetics400_train_list_videos.txt", f"zumba/{_name('x' * 11, 0, 10)}.mp4 0\n")
    with pytest.raises(DatasetLayoutError, match=match):
        create_dataset("kinetics400", root=tmp_path).load()


def test_registered_with_typed_options_and_shown_by_dataset_info(tmp_path):
    assert "kinetics400" in DATASET_ADAPTERS.module_dict
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "kinetics400", "--root", str(cvdf(tmp_path)),
                                   "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["clips"] == 11 and info["missing_videos"] == 3 and info["num_classes"] == 400
    assert info["meta"]["layout"] == "official annotation CSVs"
    assert sorted(info["annotation_files"]) == sorted(str(tmp_path / "annotations" / f"{s}.csv")
                                                      for s in ("train", "val", "test"))
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "kinetics400", "--options", "--json"])
    assert {o["key"] for o in json.loads(res.stdout)["dataset kinetics400 (-o KEY=VALUE)"]} == {
        "split_source", "video_dir", "replacements"}
