"""HRNet with several people per frame: every person box of a frame posed, the detections linked
into tracks over the frames by box IoU, the best n kept person-major (stages/extract/pose/tracks.py)."""
import warnings

import numpy as np
import pytest

from stages.datasets.base import ClipRecord
from stages.extract.person_boxes import PersonBoxes, top_person_boxes
from stages.extract.pose import create_pose_source
from stages.extract.pose.tracks import box_iou, keep_best_tracks, link_boxes

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # random HRNet weights

A = np.array([4, 4, 28, 44], np.float32)  # a person on the left
B = np.array([36, 2, 60, 46], np.float32)  # one on the right


def test_box_iou():
    iou = box_iou(np.stack([A, B]), np.stack([A, A + [2, 0, 2, 0]]))
    assert iou[0, 0] == pytest.approx(1.0) and iou[1, 0] == 0.0
    assert iou[0, 1] == pytest.approx((22 * 40) / (24 * 40 * 2 - 22 * 40))


def test_detections_in_any_order_are_linked_by_iou():
    frames = [np.stack([A, B]), np.stack([B + 1, A + 1]), np.stack([A + 2]), np.stack([B + 2, A + 3]),
              np.stack([[100, 100, 120, 140]])]  # a third person, far away
    ids = link_boxes(frames)
    assert [i.tolist() for i in ids] == [[0, 1], [1, 0], [0], [1, 0], [2]]


def test_the_best_tracks_are_kept_by_mean_score_over_the_clip():
    v = 3
    ids = [np.array([0, 1]), np.array([1, 0]), np.array([0])]
    kp = [np.full((2, v, 2), d, np.float32) for d in (1, 2)] + [np.full((1, v, 2), 3, np.float32)]
    kp[0][1], kp[1][0] = 10, 20  # track 1's joints
    sc = [np.array([[0.5] * v, [0.9] * v]), np.array([[0.9] * v, [0.5] * v]), np.array([[0.5] * v])]
    boxes = [np.stack([A, B]), np.stack([B, A]), np.stack([A])]
    k, s, bx, summary = keep_best_tracks(ids, kp, sc, 3, boxes)
    # track 1 (0.9, 0.9, absent: mean 0.6) beats track 0 (0.5, 0.5, 0.5: mean 0.5)
    assert summary == {"tracks": 2, "kept": [1, 0], "mean_scores": [0.6, 0.5], "missing_persons": 1}
    assert k.shape == (3, 3 * v, 2) and s.shape == (3, 3 * v) and bx.shape == (3, 3, 4)
    assert (k[0, :v] == 10).all() and (k[1, :v] == 20).all() and (s[2, :v] == 0).all()
    assert (k[0, v:2 * v] == 1).all() and (k[2, v:2 * v] == 3).all()
    np.testing.assert_array_equal(bx[1, 0], B)
    assert np.isnan(bx[2, 0]).all() and np.isnan(bx[:, 2]).all()
    assert not s[:, 2 * v:].any()


def test_top_person_boxes_best_first_above_threshold():
    from types import SimpleNamespace

    inst = SimpleNamespace(labels=np.array([0, 1, 0, 0]), scores=np.array([0.6, 0.99, 0.9, 0.3]),
                           bboxes=np.stack([A, B, B, A + 1]))
    np.testing.assert_array_equal(top_person_boxes(inst, 0.5, 3), np.stack([B, A]))
    np.testing.assert_array_equal(top_person_boxes(inst, 0.5, 1), np.stack([B]))
    assert top_person_boxes(inst, 0.95, 2).shape == (0, 4)


class TwoPeopleDetector:
    """Stands in for MMDetPersonDetector (mmcv-lite cannot run a real one): two people per frame,
    listed in a different order every other frame, none in frame 2."""

    config_name = "fake/det.py"
    batch_size = 2

    def __init__(self):
        self.seen, self.tops = 0, []

    def detect(self, images, top=1):
        self.tops.append(top)
        out = []
        for _ in images:
            f = self.seen
            self.seen += 1
            out.append(np.zeros((0, 4), np.float32) if f == 2 else
                       np.stack([A + f, B - f] if f % 2 == 0 else [B - f, A + f])[:top])
        return out

    def identity(self):
        return {"name": "fake", "config": self.config_name}

    def close(self):
        pass


def test_hrnet_keeps_two_tracks_in_order_through_a_detector():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    pose = create_pose_source("hrnet", {"checkpoint": "none", "flip_test": False, "batch_size": 3}, persons=2)
    hrnet = pose.inner
    det = TwoPeopleDetector()
    chain = PersonBoxes(det, persons=2)
    clip = ClipRecord("c", "train", 0, None)
    fr, boxes, info = chain.stream(clip, None, iter(frames))
    track = hrnet.estimate(clip, fr, boxes, None)
    assert set(det.tops) == {2} and info["frames_without_person"] == 1 and "persons_note" not in info
    assert track.keypoints.shape == (5, 34, 2) and track.person_boxes.shape == (5, 2, 4)
    # the track of the left person keeps its box whatever the detector's order (frame 2: frame 1's boxes)
    left = np.stack([A + f for f in (0, 1, 1, 3, 4)])
    right = np.stack([B - f for f in (0, 1, 1, 3, 4)])
    p_left = 0 if np.allclose(track.person_boxes[:, 0], left) else 1
    np.testing.assert_array_equal(track.person_boxes[:, p_left], left)
    np.testing.assert_array_equal(track.person_boxes[:, 1 - p_left], right)
    # each person's joints are HRNet's on that person's box alone; the better mean score first
    one = create_pose_source("hrnet", {"checkpoint": "none", "flip_test": False}).inner
    for p, want_boxes in ((p_left, left), (1 - p_left, right)):
        ref = one.estimate(clip, iter(frames), want_boxes, None)
        np.testing.assert_allclose(track.keypoints[:, p * 17:(p + 1) * 17], ref.keypoints, atol=1e-3)
        np.testing.assert_allclose(track.scores[:, p * 17:(p + 1) * 17], ref.scores, atol=1e-4)
    assert track.scores[:, :17].mean() >= track.scores[:, 17:].mean()
    info = hrnet.clip_info(clip)
    assert info["tracks"] == 2 and info["most_boxes_in_a_frame"] == 2


def test_one_box_per_frame_with_two_persons_is_noted_and_pads(tmp_path):
    from pevl_testutils import make_video, write_custom_dataset

    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    root = tmp_path / "data"
    make_video(root / "v0.mp4", frames=4, size=(64, 48))
    write_custom_dataset(root, [("v0.mp4", 0, "train")], ["a"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = run_extract(ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                                         pose_options={"checkpoint": "none", "flip_test": False},
                                         settings={"num_frames": 2, "persons": 2}))
    assert rep.complete and not rep.failed_now
    (row,) = rep.entry.clips("train")
    c = rep.entry.read_clip(row["uid"])
    assert c.keypoints.shape == (4, 34, 2) and c.grids.shape[1] == 34
    assert c.scores[:, :17].any() and not c.scores[:, 17:].any()  # the whole frame: one person
    assert any("persons=2" in n and "zero-score" in n for n in c.attrs["notes"])
    assert c.person_boxes is None  # whole frames store no boxes, as with one person


def test_stage_one_stores_each_kept_persons_box_and_draws_them(tmp_path):
    from pevl_testutils import make_video

    from stages.extract.clip import ExtractSettings, extract_clip
    from stages.extract.person_boxes import PoseWithPersonBoxes
    from stages.predict.predictor import clip_data
    from stages.show import frame_overlay
    from stages.skeletons import entry_skeleton

    video = make_video(tmp_path / "v.mp4", frames=5, size=(64, 48))
    hrnet = create_pose_source("hrnet", {"checkpoint": "none", "flip_test": False}, persons=2).inner
    pose = PoseWithPersonBoxes(hrnet, PersonBoxes(TwoPeopleDetector(), persons=2))
    settings = ExtractSettings(num_frames=2, frames_per_segment=1, short_side=48, persons=2)
    res = extract_clip(ClipRecord("v", "train", 0, str(video)), None, pose, settings)
    boxes = res.arrays["person_boxes"]
    assert boxes.shape == (5, 2, 4) and res.arrays["keypoints"].shape == (5, 34, 2)
    assert res.arrays["grids"].shape[1] == 34 and res.attrs["person_boxes"] == "detector"
    assert {tuple(boxes[0, 0]), tuple(boxes[0, 1])} == {tuple(A), tuple(B)}
    assert res.attrs["pose_info"]["tracks"] == 2
    import dataclasses

    cd = clip_data(res, settings)
    two = entry_skeleton("coco17", {"persons": 2})
    img, bare = frame_overlay(cd, 0, two), frame_overlay(dataclasses.replace(cd, person_boxes=None), 0, two)
    f = int(cd.frame_indices[0])
    changed = (img != bare).any(-1)
    for box in cd.person_boxes[f]:  # both people's boxes drawn: most pixels of each box's left edge change
        x, y1, y2 = (int(round(v)) for v in (box[0] * cd.scale[0], box[1] * cd.scale[1], box[3] * cd.scale[1]))
        assert changed[y1:y2, x].mean() > 0.5
