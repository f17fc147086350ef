import os

import numpy as np
import pytest

from _fixtures import touch, write_json, write_text
from stages.datasets import DatasetLayoutError, create_dataset
from stages.datasets.base import check_labels
from stages.datasets.toyota_smarthome import readable_class
from stages.settings import SettingsError

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


# every subject and camera of the release, one Drink.Fromcup clip each (a class of both protocols)
SUBJECTS = (2, 3, 4, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 25)
CAMERAS = (1, 2, 3, 4, 5, 6, 7)


def _grid_root(root):
    for p in SUBJECTS:
        for c in CAMERAS:
            touch(root / "mp4" / f"Drink.Fromcup_p{p:02d}_r00_v01_c{c:02d}.mp4")
    return root


def _by(idx, field):
    out = {}
    for c in idx.clips:
        out.setdefault(c.split, set()).add(c.extra[field])
    return out


def test_cross_subject_protocol(tmp_path):
    idx = create_dataset("toyota_smarthome", root=_grid_root(tmp_path)).load()
    check_labels(idx)
    assert idx.num_classes == 31 and len(set(idx.classes)) == 31 and idx.meta["protocol"] == "cs"
    assert _by(idx, "subject") == {"train": {3, 4, 6, 7, 9, 12, 13, 15, 17}, "val": {19, 25},
                                   "test": {2, 10, 11, 14, 16, 18, 20}}
    assert _by(idx, "camera") == {s: set(CAMERAS) for s in ("train", "val", "test")}  # all cameras
    assert "rule" in idx.meta["split_source"] and idx.source_files == []


@pytest.mark.parametrize("protocol, cameras", [
    ("cv1", {"train": {1}, "val": {5}, "test": {2}}),
    ("cv2", {"train": {1, 3, 4, 6, 7}, "val": {5}, "test": {2}}),
])
def test_cross_view_protocols(tmp_path, protocol, cameras):
    idx = create_dataset("toyota_smarthome", root=_grid_root(tmp_path), protocol=protocol).load()
    check_labels(idx)
    assert idx.num_classes == 19
    assert _by(idx, "camera") == cameras
    assert _by(idx, "subject") == {s: set(SUBJECTS) for s in cameras}  # all subjects
    unused = set(CAMERAS) - set().union(*cameras.values())
    assert idx.meta["dropped"] == {f"camera c{c:02d} not in the {protocol} protocol": len(SUBJECTS)
                                   for c in sorted(unused)}


def test_classes_outside_the_protocol_dropped_and_counted(tmp_path):
    idx = create_dataset("toyota_smarthome", root=_root(tmp_path)).load()
    by = {c.clip_id: c for c in idx.clips}
    assert idx.classes[by["Drink.Fromcup_p03_r00_v01_c01"].label] == "drink from cup"
    assert "Pour.Fromcup_p03_r00_v01_c01" not in by
    assert idx.meta["dropped"]["class Pour.Fromcup not in the cs protocol"] == 1
    cv = create_dataset("toyota_smarthome", root=tmp_path, protocol="cv1").load()
    assert cv.meta["dropped"]["class Cook.Cleandishes not in the cv1 protocol"] == 1


def test_rule_overrides_from_the_command_line(tmp_path):
    idx = create_dataset("toyota_smarthome", root=_grid_root(tmp_path), val_subjects="19,25,2",
                         test_subjects="p10").load()
    assert _by(idx, "subject")["val"] == {2, 19, 25} and _by(idx, "subject")["test"] == {10}
    assert idx.meta["dropped"]["subject p11 not in the cs protocol"] == len(CAMERAS)


def _write_lists(d, suffix, lists):
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        write_text(d / f"{name}_{suffix}.txt", "".join(f"{n}.mp4\n" for n in lists.get(split, ())))


@pytest.mark.parametrize("where", ["splits", "", "elsewhere"])
def test_published_split_lists_define_the_splits(tmp_path, where):
    root = _root(tmp_path / "data")
    lists = {"train": ["Drink.Fromcup_p03_r00_v01_c01", "Pour.Fromcup_p03_r00_v01_c01",
                       "Walk_p09_r00_v01_c01"],  # Walk_p09...: listed, no video
             "val": ["Walk_p18_r02_v05_c05"],  # a subject the rule would call test: the list wins
             "test": ["Drink.Fromcup_p02_r01_v02_c02"]}
    d = tmp_path / "lists" if where == "elsewhere" else root / where
    _write_lists(d, "CS", lists)
    opts = {"split_dir": str(d)} if where == "elsewhere" else {}
    idx = create_dataset("toyota_smarthome", root=root, **opts).load()
    check_labels(idx)
    assert {c.clip_id: c.split for c in idx.clips} == {
        "Drink.Fromcup_p03_r00_v01_c01": "train", "Walk_p09_r00_v01_c01": "train",
        "Walk_p18_r02_v05_c05": "val", "Drink.Fromcup_p02_r01_v02_c02": "test"}
    assert [c.clip_id for c in idx.missing()] == ["Walk_p09_r00_v01_c01"]
    m = idx.meta
    assert m["split_source"].startswith("published split lists") and "train_CS.txt" in m["split_source"]
    assert m["listed_without_video"] == 1
    assert m["dropped"] == {"class Pour.Fromcup not in the cs protocol": 1, "video not in the split lists": 2}
    assert sorted(os.path.basename(p) for p in idx.source_files) == ["test_CS.txt", "train_CS.txt",
                                                                   "validation_CS.txt"]


def test_split_lists_of_the_other_protocols_and_partial_sets(tmp_path):
    root = _root(tmp_path)
    _write_lists(root / "splits", "CV1", {"train": ["Drink.Fromcup_p03_r00_v01_c01"],
                                          "test": ["Drink.Fromcup_p02_r01_v02_c02"]})
    cs = create_dataset("toyota_smarthome", root=root).load()  # no CS lists: the rule, naming the lists found
    assert cs.meta["split_source"] == ("protocol rule on the file names: no CS split lists found, though CV1 lists "
                                       "are (-o protocol=cv1 uses them)")
    cv1 = create_dataset("toyota_smarthome", root=root, protocol="cv1").load()
    assert cv1.split_counts() == {"train": 1, "test": 1}
    (root / "splits" / "validation_CV1.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="validation_CV1.txt"):
        create_dataset("toyota_smarthome", root=root, protocol="cv1").load()
    write_text(root / "splits" / "validation_CV1.txt", "not a clip name\n")
    with pytest.raises(DatasetLayoutError, match="validation_CV1.txt:1"):
        create_dataset("toyota_smarthome", root=root, protocol="cv1").load()


def test_split_lists_whose_lines_carry_a_folder(tmp_path):
    """A list written or moved by hand names mp4/<clip>.mp4 (or a Windows path): before
    2026-12-06 the folder became part of the class name, every clip was dropped as of a class
    outside the protocol, and extract made a complete entry of 0 clips."""
    root = _root(tmp_path)
    _write_lists(root / "splits", "CS", {"train": ["mp4/Drink.Fromcup_p03_r00_v01_c01"],  # (".mp4" added)
                                         "val": ["mp4\\Walk_p18_r02_v05_c05"],
                                         "test": [f"{root}/mp4/Drink.Fromcup_p02_r01_v02_c02"]})
    idx = create_dataset("toyota_smarthome", root=root).load()
    assert {c.clip_id: c.split for c in idx.clips} == {
        "Drink.Fromcup_p03_r00_v01_c01": "train", "Walk_p18_r02_v05_c05": "val",
        "Drink.Fromcup_p02_r01_v02_c02": "test"}
    assert idx.missing() == []


def test_extract_refuses_a_dataset_that_gives_no_clip(tmp_path):
    from stages.extract.plan import ExtractOptions, plan_entry

    for n in ("Pour.Fromcup_p03_r00_v01_c01", "Walk_p01_r00_v01_c01"):  # a class and a subject outside cs
        touch(tmp_path / "mp4" / f"{n}.mp4")
    with pytest.raises(DatasetLayoutError, match=r"toyota_smarthome: no clip to extract from .*\(dropped: 1 x class "
                                                 r"Pour.Fromcup not in the cs protocol; 1 x subject p01 not in"):
        plan_entry(ExtractOptions(dataset="toyota_smarthome", root=str(tmp_path), cache_root=str(tmp_path / "c")))
    assert not (tmp_path / "c").exists()


def test_dataset_info_says_which_source_defined_the_splits(tmp_path):
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app

    root = _root(tmp_path)
    _write_lists(root / "splits", "CS", {"train": ["Drink.Fromcup_p03_r00_v01_c01", "Pour.Fromcup_p03_r00_v01_c01",
                                                   "Walk_p09_r00_v01_c01"]})
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "toyota_smarthome", "--root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["meta"]["split_source"].startswith("published split lists")
    assert info["meta"]["listed_without_video"] == 1 and info["missing_videos"] == 1
    assert info["meta"]["dropped"]["class Pour.Fromcup not in the cs protocol"] == 1


def test_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="_pNN_rNN_vNN_cNN"):
        create_dataset("toyota_smarthome", root=tmp_path).load()
    _root(tmp_path)
    with pytest.raises(SettingsError, match="protocol = 'cv3' .* expected one of 'cs', 'cv1', 'cv2'"):
        create_dataset("toyota_smarthome", root=tmp_path, protocol="cv3").load()


def _pose(x0, y0):
    xs = [x0 + j for j in range(13)]
    ys = [y0 + 2 * j for j in range(13)]
    return xs + ys  # LCR-Net: 13 x then 13 y


def test_lcrnet_main_person_as_the_authors_read_it_and_joints_not_found(tmp_path):
    """Without scores (v1.2) the first detection, as the authors' json_to_npz.py takes frames[i][0],
    never the larger one; the first of equal scores; a joint at (-1, -1) is unseen, not a joint in
    the corner. The reading joins the pose source's identity, so the entry key."""
    from stages.extract.pose.dataset_pose import DatasetPoseSource

    _root(tmp_path)
    cid = "Walk_p18_r02_v05_c05"
    small, large = _pose(10, 20), _pose(100, 200)
    partial = list(_pose(30, 40))
    partial[4] = partial[4 + 13] = -1  # joint 4 not found
    frames = [
        [{"pose2d": small, "pose3d": [0] * 39}, {"pose2d": large, "pose3d": [0] * 39}],  # no scores
        [{"pose2d": small, "cumscore": 1.5}, {"pose2d": large, "cumscore": 1.5}],  # equal scores
        [{"pose2d": partial, "cumscore": 3.0}],
    ]
    write_json(tmp_path / "skeletonv12" / f"{cid}_pose3d.json", {"njts": 13, "frames": frames})
    ds = create_dataset("toyota_smarthome", root=tmp_path)
    clip = {c.clip_id: c for c in ds.load().clips}[cid]
    track = ds.dataset_poses(clip)
    np.testing.assert_allclose(track.keypoints[0, 0], [10, 20])
    np.testing.assert_allclose(track.keypoints[1, 0], [10, 20])
    assert track.scores[2, 4] == 0 and np.delete(track.scores[2], 4).min() == 1
    assert DatasetPoseSource(dataset=ds).identity()["reading"] == ds.pose_reading


@pytest.mark.parametrize("folder, name", [
    ("skeletonv12", "{}_pose3d.json"),  # the refined v1.2 release (pi-ViT's layout)
    ("json", "{}.json"),  # the original release unpacks to json/
    ("smarthome_skeletons", "{}.json"),  # 2s-AGCN / UNIK loaders
    ("smarthome_raw/smarthome_skeletons", "{}.json"),
    ("skeletons", "{}_pose3d2d.json"),  # a local convention, kept
])
def test_dataset_poses_main_person(tmp_path, folder, name):
    _root(tmp_path)
    cid = "Walk_p18_r02_v05_c05"
    frames = [
        [{"pose2d": _pose(10, 20), "pose3d": [0] * 39, "cumscore": 0.5},
         {"pose2d": _pose(100, 200), "pose3d": [0] * 39, "cumscore": 2.0}],
        [],
        [{"pose2d": _pose(11, 21), "pose3d": [0] * 39, "cumscore": 1.0}],
        [{"pose2d": [-1] * 26, "pose3d": [0] * 39}],  # v1.2: all -1 = nobody detected
    ]
    write_json(tmp_path / folder / name.format(cid), {"njts": 13, "frames": frames})
    ds = create_dataset("toyota_smarthome", root=tmp_path)
    idx = ds.load()
    assert idx.meta["skeleton_folder"] == str(tmp_path / folder) and idx.meta["clips_with_skeleton"] == 1
    clip = {c.clip_id: c for c in idx.clips}[cid]
    assert clip.extra["pose_file"] == str(tmp_path / folder / name.format(cid))  # its identity joins the key
    track = ds.dataset_poses(clip)
    assert track.keypoints.shape == (4, 13, 2) and track.frame_size == (480, 640)
    np.testing.assert_allclose(track.keypoints[0, 3], [103, 206])  # highest cumscore wins
    np.testing.assert_allclose(track.keypoints[2, 0], [11, 21])
    assert track.scores[1].sum() == 0 and track.scores[3].sum() == 0 and track.scores[0].min() == 1
    other = {c.clip_id: c for c in idx.clips}["Drink.Fromcup_p03_r00_v01_c01"]
    with pytest.raises(FileNotFoundError, match="_pose3d.json"):
        ds.dataset_poses(other)
    assert ds.clips_without_poses(idx.clips) == [c.clip_id for c in idx.clips if c.clip_id != cid]
