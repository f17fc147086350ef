"""Several people per frame (stage-one setting ``persons``): skeleton files' M slots linked into tracks, the stored
layout (person-major in the joint axis), the grids over every kept person, and n = 1 unchanged."""
import pickle

import numpy as np
import pytest

from stages.datasets.base import ClipRecord
from stages.extract.pose import create_pose_source
from stages.extract.pose.skeleton_pkl import PickleSkeletonSource, select_main_person
from stages.extract.settings import ExtractSettings
from stages.settings import SettingsError
from stages.skeletons import entry_skeleton, get_skeleton

V = 17


def _four_persons(t=6):
    """M = 4 people, each in its own slot in every frame, standing apart (x about 15, 45, 75, 105
    of a 128-pixel frame), with mean scores 0.3, 0.9, 0.1, 0.6: best first is 1, 3, 0, 2."""
    rng = np.random.default_rng(1)
    kp = rng.uniform(-8, 8, size=(4, t, V, 2)).astype(np.float32)
    kp[..., 0] += np.array([15, 45, 75, 105], np.float32)[:, None, None]
    kp[..., 1] += 24
    score = np.empty((4, t, V), np.float32)
    for m, s in enumerate((0.3, 0.9, 0.1, 0.6)):
        score[m] = s
    score[3, 0] = 0.0  # person 3 unseen in frame 0: its mean still beats person 0's
    return {"frame_dir": "clip_a", "total_frames": t, "img_shape": (48, 128), "original_shape": (48, 128),
            "label": 0, "keypoint": kp, "keypoint_score": score}


def _write(path, anns):
    path.write_bytes(pickle.dumps({"split": {}, "annotations": anns}, protocol=4))
    return path


def _track(path, persons):
    src = create_pose_source(f"pkl:{path}", persons=persons)
    clip = ClipRecord("clip_a", "train", 0, None)
    return src, src.estimate(clip, None, None, dataset=None)


def test_m4_skeleton_file_keeps_the_two_best_tracks_in_order(tmp_path):
    ann = _four_persons()
    p = _write(tmp_path / "s.pkl", [ann])
    src, track = _track(p, 2)
    assert track.keypoints.shape == (6, 2 * V, 2) and track.scores.shape == (6, 2 * V)
    # person-major: joints 0..16 are person 1 (the best), 17..33 person 3 (the second best)
    np.testing.assert_array_equal(track.keypoints[:, :V], ann["keypoint"][1])
    np.testing.assert_array_equal(track.keypoints[1:, V:], ann["keypoint"][3, 1:])
    np.testing.assert_array_equal(track.scores[:, :V], ann["keypoint_score"][1])
    np.testing.assert_array_equal(track.scores[:, V:], ann["keypoint_score"][3])
    assert not track.keypoints[0, V:].any()  # a frame without any scored joint of the person: absent, at 0
    info = src.clip_info(ClipRecord("clip_a", "train", 0, None))
    assert info["rule"] == "slots_linked_by_box_iou" and info["num_persons"] == 4 and info["tracks"] == 4
    assert info["mean_scores"] == [0.9, 0.5]  # person 3 unseen in frame 0: 0.6 * 5 / 6


def test_people_who_change_slots_from_frame_to_frame_stay_one_track_each(tmp_path):
    """pyskl's custom_2d_skeleton.py and mmaction2's ntu_pose_extraction.py fill slots per frame
    (frame f's j-th detection in slot j): two people swapping slots every frame are still two
    people, each kept whole, not two halves of each."""
    ann = _four_persons()
    swapped = ann["keypoint"][[1, 3]].copy(), ann["keypoint_score"][[1, 3]].copy()
    for k in swapped:
        k[:, 1::2] = k[::-1, 1::2]  # odd frames: the two slots swapped
    p = _write(tmp_path / "s.pkl", [{**ann, "keypoint": swapped[0], "keypoint_score": swapped[1]}])
    src, track = _track(p, 2)
    np.testing.assert_array_equal(track.keypoints[:, :V], ann["keypoint"][1])
    np.testing.assert_array_equal(track.keypoints[1:, V:], ann["keypoint"][3, 1:])
    np.testing.assert_array_equal(track.scores[:, :V], ann["keypoint_score"][1])
    assert src.identity()["person_tracks"] == "slots_linked_by_box_iou"  # another key than kept slots'
    _, one = _track(p, 1)  # one person: the best slot, as PoseC3D reads the file
    np.testing.assert_array_equal(one.keypoints, swapped[0][0])


def test_persons_1_is_todays_output_exactly(tmp_path):
    ann = _four_persons()
    p = _write(tmp_path / "s.pkl", [ann])
    src, track = _track(p, 1)
    best, rule = select_main_person(ann["keypoint"], ann["keypoint_score"])
    assert (best, rule) == (1, "max_total_score")
    np.testing.assert_array_equal(track.keypoints, ann["keypoint"][best])
    np.testing.assert_array_equal(track.scores, np.clip(ann["keypoint_score"][best], 0, 1))
    assert src.clip_info(ClipRecord("clip_a", "train", 0, None)) == {
        "person": 1, "rule": "max_total_score", "num_persons": 4}
    # n = 1: the source's identity (so the entry key) is as before; n > 1 links slots, and says so
    assert src.identity() == PickleSkeletonSource(path=str(p)).identity()


def test_fewer_tracks_than_persons_are_zero_score_people(tmp_path):
    ann = _four_persons()
    p = _write(tmp_path / "s.pkl", [ann])
    src, track = _track(p, 6)
    assert track.keypoints.shape == (6, 6 * V, 2)
    np.testing.assert_array_equal(track.keypoints[:, 3 * V:4 * V], ann["keypoint"][2])  # the worst, 4th
    assert not track.scores[:, 4 * V:].any() and not track.keypoints[:, 4 * V:].any()
    assert src.clip_info(ClipRecord("clip_a", "train", 0, None))["missing_persons"] == 2


def test_one_person_dataset_poses_refuse_persons_naming_the_setting():
    from stages.datasets.base import DatasetAdapter

    class OnePersonPoses(DatasetAdapter):  # e.g. Toyota-Smarthome's LCR-Net files: one person per clip
        name, has_poses, needs_root = "one_person", True, False

    with pytest.raises(SettingsError, match=r"'one_person' ships hold one person per clip.*persons=2 \(--persons"):
        create_pose_source("dataset", dataset=OnePersonPoses(), persons=2)


def test_a_single_person_source_is_refused_by_the_factory(monkeypatch):
    from stages.extract.pose.dataset_pose import DatasetPoseSource

    monkeypatch.setattr(DatasetPoseSource, "multi_person", False)
    with pytest.raises(SettingsError, match=r"'dataset' gives one person per frame.*persons=2 \(--persons.*"
                                            r"hrnet, pkl:PATH"):
        create_pose_source("dataset", persons=2)


def test_persons_enters_the_key_only_when_not_1():
    assert "persons" not in ExtractSettings().as_dict()
    assert ExtractSettings(persons=2).as_dict()["persons"] == 2
    assert ExtractSettings.of_entry({"num_frames": 16}).persons == 1
    with pytest.raises(SettingsError, match="persons must be positive"):
        ExtractSettings.from_dict({"persons": 0})


def test_the_layout_of_n_persons_flips_within_each_person():
    coco = get_skeleton("coco17")
    two = coco.for_persons(2)
    assert coco.for_persons(1) is coco and two.num_joints == 34
    assert two.joints[V] == "p1.nose" and two.joints[5] == "p0.left_shoulder"
    flip = two.flip_index()
    assert flip[:V] == coco.flip_index() and flip[V:] == [V + i for i in coco.flip_index()]
    assert all(a // V == b // V for a, b in two.limbs)
    assert entry_skeleton("coco17", {"persons": 2}) == two and entry_skeleton("coco17", {}) is coco


def test_two_people_through_stage_one_grids_hold_both(tmp_path):
    """A synthetic clip with two people at known places: the stored joints keep both, best first,
    and the mask grids mark each person's joints in their own planes."""
    from pevl_testutils import make_video, write_custom_dataset

    from cache import CacheStore
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    root = tmp_path / "data"
    make_video(root / "c0.mp4", frames=8, size=(64, 48))
    write_custom_dataset(root, [("c0.mp4", 0, "train")], ["a"])
    t = 8
    kp = np.zeros((2, t, V, 2), np.float32)
    kp[0, :, :, 0], kp[0, :, :, 1] = 8.0, 8.0  # the faint person: top-left cell
    kp[1, :, :, 0], kp[1, :, :, 1] = 56.0, 40.0  # the clear one: bottom-right cell
    score = np.stack([np.full((t, V), 0.4, np.float32), np.full((t, V), 0.8, np.float32)])
    pkl = _write(tmp_path / "poses.pkl", [{"frame_dir": "c0", "total_frames": t, "img_shape": (48, 64),
                                           "label": 0, "keypoint": kp, "keypoint_score": score}])

    def extract(persons):
        opts = ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                              pose_source=f"pkl:{pkl}",
                              settings={"num_frames": 2, "frames_per_segment": 1, "short_side": 48,
                                        "persons": persons})
        rep = run_extract(opts)
        assert rep.complete and not rep.failed_now
        return rep.entry

    two, one = extract(2), extract(1)
    assert two.key != one.key and two.persons == 2 and one.persons == 1
    assert two.settings["persons"] == 2 and "persons" not in one.settings
    (row,) = two.clips("train")
    c = CacheStore(tmp_path / "cache").open(two.key).read_clip(row["uid"])
    assert c.keypoints.shape == (8, 2 * V, 2) and c.scores.shape == (8, 2 * V)
    assert np.allclose(c.keypoints[:, 0], [56.0, 40.0])  # person 0: the clear one
    assert np.allclose(c.keypoints[:, V], [8.0, 8.0])
    g = np.asarray(c.grids, np.float32)  # (T, 34, 3, 4) on 16-pixel cells of 64x48
    assert g.shape == (2, 2 * V, 3, 4)
    assert np.allclose(g[:, :V, 2, 3], 0.8, atol=1e-3) and g[:, :V].sum() == pytest.approx(0.8 * 2 * V, rel=1e-3)
    assert np.allclose(g[:, V:, 0, 0], 0.4, atol=1e-3) and g[:, V:].sum() == pytest.approx(0.4 * 2 * V, rel=1e-3)
    (row1,) = one.clips("train")
    c1 = CacheStore(tmp_path / "cache").open(one.key).read_clip(row1["uid"])
    np.testing.assert_array_equal(c1.keypoints, c.keypoints[:, :V])  # n = 1: the best person alone
    np.testing.assert_array_equal(np.asarray(c1.grids), np.asarray(c.grids)[:, :V])


def test_the_entry_records_the_layout_of_its_joints_not_the_datasets(tmp_path):
    """Toyota-Smarthome's own poses are toyota13; HRNet or a COCO skeleton file on its videos gives
    COCO-17 joints, and stage two must read them as such (J, flip index)."""
    import dataclasses

    from pevl_testutils import make_video, write_custom_dataset

    from stages.datasets import create_dataset
    from stages.extract.plan import ExtractOptions, plan_entry

    root = tmp_path / "data"
    make_video(root / "c0.mp4", frames=4, size=(64, 48))
    write_custom_dataset(root, [("c0.mp4", 0, "train")], ["a"])
    pkl = _write(tmp_path / "p.pkl", [dict(_four_persons(4), frame_dir="c0")])
    opts = ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                          pose_source=f"pkl:{pkl}", settings={"persons": 2})
    adapter = create_dataset("custom", root=root)
    index = dataclasses.replace(adapter.load(), skeleton="toyota13")  # a dataset whose own poses are toyota13
    p = plan_entry(opts, adapter, index)
    assert p.root_attrs["skeleton"] == "coco17" and p.manifest["skeleton"] == "coco17"
    assert entry_skeleton(p.root_attrs["skeleton"], p.root_attrs["settings"]).num_joints == 34
