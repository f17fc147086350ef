import numpy as np
import pytest

from _fixtures import touch, write_json
from stages.datasets import DatasetLayoutError, create_dataset
from stages.datasets.base import check_labels
from stages.datasets.toyota_smarthome import readable_class

NAMES = [
    "Drink.Fromcup_p03_r00_v01_c01",  # train subject, cam 1
    "Drink.Fromcup_p02_r01_v02_c02",  # test subject, cam 2
    "Cook.Cleandishes_p25_r00_v01_c06",  # CS only class
    "Pour.Fromcup_p03_r00_v01_c01",  # outside the 31 classes
    "Walk_p18_r02_v05_c05",
    "Walk_p04_r00_v01_c07",
]


def _root(tmp_path):
    for n in NAMES:
        touch(tmp_path / "mp4" / f"{n}.mp4")
    touch(tmp_path / "mp4" / "README.txt")
    return tmp_path


def test_readable_class():
    assert readable_class("Drink.Fromcup") == "drink from cup"
    assert readable_class("WatchTV") == "watch TV"
    assert readable_class("Cook.Cleandishes") == "cook, clean dishes"
    assert readable_class("Foo.BarBaz") == "foo, bar baz"


def test_cross_subject(tmp_path):
    idx = create_dataset("toyota_smarthome", root=_root(tmp_path)).load()
    check_labels(idx)
    assert idx.num_classes == 31 and len(set(idx.classes)) == 31
    assert idx.skeleton == "toyota13" and idx.meta["protocol"] == "cs"
    by = {c.clip_id: c for c in idx.clips}
    assert by["Drink.Fromcup_p03_r00_v01_c01"].split == "train"
    assert by["Drink.Fromcup_p02_r01_v02_c02"].split == "test"
    assert by["Cook.Cleandishes_p25_r00_v01_c06"].split == "train"
    assert by["Walk_p18_r02_v05_c05"].split == "test"
    assert idx.classes[by["Drink.Fromcup_p03_r00_v01_c01"].label] == "drink from cup"
    # Pour.Fromcup is dropped, and counted
    assert "Pour.Fromcup_p03_r00_v01_c01" not in by
    assert idx.meta["dropped"] == {"class Pour.Fromcup not in the cs protocol": 1}
    assert idx.missing() == []


def test_cs_val_subjects(tmp_path):
    idx = create_dataset("toyota_smarthome", root=_root(tmp_path), val_subjects=["p25"]).load()
    assert {c.clip_id: c.split for c in idx.clips}["Cook.Cleandishes_p25_r00_v01_c06"] == "val"


@pytest.mark.parametrize("protocol,expected", [
    ("cv1", {"Drink.Fromcup_p03_r00_v01_c01": "train", "Drink.Fromcup_p02_r01_v02_c02": "test"}),
    ("cv2", {"Drink.Fromcup_p03_r00_v01_c01": "train", "Drink.Fromcup_p02_r01_v02_c02": "test",
             "Walk_p18_r02_v05_c05": "val"}),
])
def test_cross_view(tmp_path, protocol, expected):
    idx = create_dataset("toyota_smarthome", root=_root(tmp_path), protocol=protocol).load()
    check_labels(idx)
    assert idx.num_classes == 19
    assert {c.clip_id: c.split for c in idx.clips} == expected
    assert any("c07" in k for k in idx.meta["dropped"])  # camera 7 unused
    assert any("Cook.Cleandishes" in k for k in idx.meta["dropped"])  # not a CV class


def test_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="_pNN_rNN_vNN_cNN"):
        create_dataset("toyota_smarthome", root=tmp_path).load()
    _root(tmp_path)
    with pytest.raises(DatasetLayoutError, match="protocol"):
        create_dataset("toyota_smarthome", root=tmp_path, protocol="cv3").load()


def _pose(x0, y0):
    xs = [x0 + j for j in range(13)]
    ys = [y0 + 2 * j for j in range(13)]
    return xs + ys  # LCR-Net: 13 x then 13 y


def test_dataset_poses_main_person(tmp_path):
    _root(tmp_path)
    cid = "Walk_p18_r02_v05_c05"
    frames = [
        [{"pose2d": _pose(10, 20), "pose3d": [0] * 39, "cumscore": 0.5},
         {"pose2d": _pose(100, 200), "pose3d": [0] * 39, "cumscore": 2.0}],
        [],
        [{"pose2d": _pose(11, 21), "pose3d": [0] * 39, "cumscore": 1.0}],
    ]
    write_json(tmp_path / "skeletons" / f"{cid}_pose3d2d.json", {"njts": 13, "frames": frames})
    ds = create_dataset("toyota_smarthome", root=tmp_path)
    clip = {c.clip_id: c for c in ds.load().clips}[cid]
    track = ds.dataset_poses(clip)
    assert track.keypoints.shape == (3, 13, 2) and track.frame_size == (480, 640)
    np.testing.assert_allclose(track.keypoints[0, 3], [103, 206])  # highest cumscore wins
    np.testing.assert_allclose(track.keypoints[2, 0], [11, 21])
    assert track.scores[1].sum() == 0 and track.scores[0].min() == 1
    other = {c.clip_id: c for c in ds.load().clips}["Drink.Fromcup_p03_r00_v01_c01"]
    with pytest.raises(FileNotFoundError, match="pose3d2d"):
        ds.dataset_poses(other)
