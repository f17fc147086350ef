"""Person boxes for HRNet: dataset boxes -> mmdet detector (optional) -> whole frame, warned once."""
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from pevl_testutils import make_video, write_custom_dataset
from pipeline.engines.local import run_extract
from stages.extract.plan import ExtractOptions, make_pose_source, plan_entry
from stages.datasets.base import ClipRecord
from stages.extract.clip import ExtractSettings, extract_clip
from stages.extract.person_boxes import (DetectorUnavailable, PersonBoxes, PoseWithPersonBoxes,
                                         WholeFrameBoxesWarning, best_person_box, mmcv_has_ops)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # random HRNet weights; recorded where asserted


def _dataset(root, n=2, frames=2, size=(96, 64)):
    clips = []
    for i in range(n):
        make_video(root / f"v{i}.mp4", frames=frames, size=size)
        clips.append((f"v{i}.mp4", i % 2, "train"))
    return write_custom_dataset(root, clips, ["jump", "spin"])


def _opts(root, cache_root, **kw) -> ExtractOptions:
    return ExtractOptions(dataset="custom", root=str(root), cache_root=str(cache_root), pose_checkpoint="none",
                          pose_flip_test=False, pose_batch_size=4, settings={"num_frames": 2}, **kw)


@pytest.fixture(scope="module")
def hrnet_plan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pb")
    p = plan_entry(_opts(_dataset(tmp / "data"), tmp / "cache"))
    pose = make_pose_source(p.pose_spec, _opts(p.index.root, tmp / "cache"), p.adapter)
    yield p, pose
    pose.close()


def test_dataset_boxes_are_used_and_change_the_crops(hrnet_plan, monkeypatch):
    p, pose = hrnet_plan
    assert isinstance(pose, PoseWithPersonBoxes) and "person_detector" not in pose.identity()
    clip = p.index.clips[0]
    settings = ExtractSettings(num_frames=2, short_side=64)
    whole = extract_clip(clip, p.adapter, pose, settings)
    box = np.array([4, 4, 28, 36], np.float32)  # a small person in the top-left corner of 96x64
    monkeypatch.setattr(p.adapter, "person_boxes", lambda c: np.stack([box] * 2), raising=False)
    boxed = extract_clip(clip, p.adapter, pose, settings)
    assert whole.attrs["person_boxes"] == "whole frame" and boxed.attrs["person_boxes"] == "dataset"
    kw, kb = whole.arrays["keypoints"], boxed.arrays["keypoints"]
    assert not np.allclose(kw, kb, atol=1.0)  # another crop, other joints
    # HRNet's crop is the box padded by 1.25: every joint lies inside it, not across the frame.
    cx, cy, hw, hh = 16, 20, 12 * 1.25, 16 * 1.25
    assert (np.abs(kb[..., 0] - cx) <= hw * 1.4 + 1).all() and (np.abs(kb[..., 1] - cy) <= hh * 1.4 + 1).all()
    np.testing.assert_array_equal(whole.arrays["frames"], boxed.arrays["frames"])


def test_whole_frame_warns_once_per_run(tmp_path):
    root = _dataset(tmp_path / "data", n=3)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rep = run_extract(_opts(root, tmp_path / "cache"))
    assert rep.complete and len(rep.done_now) == 3
    whole = [w for w in rec if issubclass(w.category, WholeFrameBoxesWarning)]
    assert len(whole) == 1 and "whole frame" in str(whole[0].message).lower()
    for uid in rep.entry.done_uids():
        assert rep.entry.clip_group(uid).attrs["person_boxes"] == "whole frame"


class FakeDetector:
    """Stands in for MMDetPersonDetector (mmcv-lite cannot run a real one): one box per frame."""

    config_name = "fake/det.py"

    def __init__(self, boxes, batch_size=2):
        self.boxes, self.batch_size, self.calls, self.seen = boxes, batch_size, [], 0

    def detect(self, images):
        self.calls.append(len(images))
        out = [self.boxes[self.seen + i] for i in range(len(images))]
        self.seen += len(images)
        return out

    def identity(self):
        return {"name": "fake", "config": self.config_name}

    def close(self):
        pass


def test_detector_boxes_stream_ahead_of_hrnet_without_decoding_twice(hrnet_plan, rng):
    _, pose = hrnet_plan
    hrnet = pose.inner
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    b = np.array([10, 5, 40, 45], np.float32)
    det = FakeDetector([b, None, b + 2], batch_size=2)
    pulled = []

    def decoder():  # the decoder yields each frame once
        for f in frames:
            pulled.append(1)
            yield f

    chain = PersonBoxes(det)
    fr, boxes, info = chain.stream(ClipRecord("c", "train", 0, None), None, decoder())
    track = hrnet.estimate(ClipRecord("c", "train", 0, None), fr, boxes, None)
    assert len(pulled) == 3 and det.calls == [2, 1]  # batched, each frame decoded once
    assert info == {"source": "detector", "detector": "fake/det.py", "frames": 3, "frames_without_person": 1}
    want = np.stack([b, b, b + 2])  # a frame without a person keeps the previous box
    np.testing.assert_array_equal(np.stack(boxes), want)
    ref = hrnet.estimate(ClipRecord("c", "train", 0, None), iter(frames), want, None)
    np.testing.assert_allclose(track.keypoints, ref.keypoints, atol=1e-4)
    # The detector is part of the pose identity, hence of the entry key.
    ident = PoseWithPersonBoxes(hrnet, chain).identity()
    assert ident["person_detector"] == det.identity() and {k: v for k, v in ident.items()
                                                           if k != "person_detector"} == hrnet.identity()


def test_best_person_box_takes_the_top_person_above_threshold():
    inst = SimpleNamespace(labels=np.array([0, 2, 0, 0]), scores=np.array([0.6, 0.99, 0.8, 0.4]),
                           bboxes=np.arange(16, dtype=np.float32).reshape(4, 4))
    np.testing.assert_array_equal(best_person_box(inst, 0.5), [8, 9, 10, 11])
    assert best_person_box(inst, 0.9) is None


@pytest.mark.skipif(mmcv_has_ops(), reason="full mmcv with compiled ops is installed: a detector can be built")
def test_detector_without_full_mmcv_is_a_clear_error(tmp_path):
    root = _dataset(tmp_path / "data", n=1)
    ck = tmp_path / "det.pth"
    ck.write_bytes(b"not really weights")
    with pytest.raises(DetectorUnavailable, match=r"mmcv-lite.*mmcv>=2\.0,<2\.2"):
        run_extract(_opts(root, tmp_path / "cache", person_detector="faster-rcnn", detector_checkpoint=str(ck)))

    from typer.testing import CliRunner

    from pipeline.cli import app

    res = CliRunner().invoke(app, ["extract", "--dataset", "custom", "--root", str(root), "--cache-root",
                                   str(tmp_path / "cache"), "--pose-checkpoint", "none",
                                   "--person-detector", "faster-rcnn", "--detector-checkpoint", str(ck)])
    assert res.exit_code == 2 and "mmcv" in res.output and "GPU server" in res.output
    assert not list((tmp_path / "cache").glob("entries/*/*/clips/*"))  # refused before any work
