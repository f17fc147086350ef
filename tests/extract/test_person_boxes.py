"""Person boxes for HRNet: dataset boxes -> mmdet detector (optional) -> whole frame, warned once."""
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from pevl_testutils import make_video, tiny_hrnet_config, write_custom_dataset
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


def _opts(root, cache_root, pose=None, **kw) -> ExtractOptions:
    return ExtractOptions(dataset="custom", root=str(root), cache_root=str(cache_root),
                          pose_options={"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": False, "batch_size": 4,
                                        **(pose or {})},
                          settings={"num_frames": 2}, **kw)


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

    def detect(self, images, top=1):  # MMDetPersonDetector.detect's signature; one person here
        assert top == 1
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
        run_extract(_opts(root, tmp_path / "cache", pose=dict(person_detector="faster-rcnn",
                                                                  detector_checkpoint=str(ck))))

    from typer.testing import CliRunner

    from pipeline.cli import app

    res = CliRunner().invoke(app, ["extract", "--dataset", "custom", "--root", str(root), "--cache-root",
                                   str(tmp_path / "cache"), "--pose-checkpoint", "none",
                                   "--person-detector", "faster-rcnn", "--detector-checkpoint", str(ck)])
    assert res.exit_code == 2 and "mmcv" in res.output and "GPU server" in res.output
    assert not list((tmp_path / "cache").glob("entries/*/*/clips/*"))  # refused before any work


# -- a dataset's boxes: checked, aligned with the decoded frames, stored ------------------------------
from stages.extract.clip import ClipError  # noqa: E402
from stages.extract.person_boxes import PersonBoxError, check_dataset_boxes  # noqa: E402


def _with_boxes(monkeypatch, adapter, boxes):
    monkeypatch.setattr(adapter, "person_boxes", lambda c: None if boxes is None else np.asarray(boxes, np.float32),
                        raising=False)


def test_dataset_boxes_one_per_frame_are_stored(hrnet_plan, monkeypatch):
    p, pose = hrnet_plan
    boxes = np.array([[4, 4, 28, 36], [6, 5, 30, 38]], np.float32)  # 2 frames of 96x64
    _with_boxes(monkeypatch, p.adapter, boxes)
    res = extract_clip(p.index.clips[0], p.adapter, pose, ExtractSettings(num_frames=2, short_side=64))
    np.testing.assert_array_equal(res.arrays["person_boxes"], boxes)
    assert res.attrs["person_boxes_detail"] == {"given": 2, "aligned": "one per frame"}
    assert not any("dataset boxes" in n for n in res.notes)


def test_dataset_boxes_of_another_count_are_aligned_by_time_with_a_note(hrnet_plan, monkeypatch):
    p, pose = hrnet_plan
    boxes = np.array([[i, i, 30 + i, 40 + i] for i in range(4)], np.float32)  # 4 boxes, 2 frames
    boxes[1] = np.nan  # a frame without a box: the nearest frame's box, noted
    _with_boxes(monkeypatch, p.adapter, boxes)
    res = extract_clip(p.index.clips[0], p.adapter, pose, ExtractSettings(num_frames=2, short_side=64))
    # frame j takes box floor((j + 0.5) * 4 / 2): boxes 1 (filled from 0 or 2) and 3
    used = res.arrays["person_boxes"]
    assert used.shape == (2, 4)
    np.testing.assert_array_equal(used[1], boxes[3])
    assert np.isfinite(used).all()
    assert any("nearest in time" in n for n in res.notes) and any("without a box" in n for n in res.notes)


def test_dataset_boxes_for_another_cut_are_refused_naming_the_clip(hrnet_plan, monkeypatch):
    p, pose = hrnet_plan
    clip = p.index.clips[0]
    _with_boxes(monkeypatch, p.adapter, [[1, 1, 30, 40]] * 7)  # 7 boxes for 2 frames
    with pytest.raises(ClipError, match=f"clip {clip.clip_id}: the dataset gives 7 person boxes, the clip decoded 2"):
        extract_clip(clip, p.adapter, pose, ExtractSettings(num_frames=2, short_side=64))


def test_box_count_checked_against_decoded_frames_not_the_header(tmp_path, monkeypatch, hrnet_plan):
    """A container that promises 50 frames (its audio lasts 5 s) but holds 3: 3 boxes fit exactly,
    50 boxes (streamed one per frame as the header promised) are refused once the clip is decoded."""
    import subprocess

    from pevl_testutils import ffmpeg_exe, make_timecoded_video

    _, pose = hrnet_plan
    v = make_timecoded_video(tmp_path / "v.mp4", 3, size=(80, 32))
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=5",
                    str(tmp_path / "a.m4a")], check=True)
    av = tmp_path / "av.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(v), "-i",
                    str(tmp_path / "a.m4a"), "-map", "0:v", "-map", "1:a", "-c", "copy", str(av)], check=True)
    root = write_custom_dataset(tmp_path / "data", [(str(av), 0, "train")], ["a", "b"])
    p = plan_entry(_opts(root, tmp_path / "cache"))
    clip = p.index.clips[0]
    settings = ExtractSettings(num_frames=2, short_side=32)
    boxes = np.array([[2 + i, 2, 40, 30] for i in range(3)], np.float32)
    _with_boxes(monkeypatch, p.adapter, boxes)
    res = extract_clip(clip, p.adapter, pose, settings)
    np.testing.assert_array_equal(res.arrays["person_boxes"], boxes)
    assert not any("dataset boxes" in n for n in res.notes)
    _with_boxes(monkeypatch, p.adapter, np.repeat(boxes, 50, axis=0)[:50])
    with pytest.raises(ClipError, match="gives 50 person boxes, the clip decoded 3"):
        extract_clip(clip, p.adapter, pose, settings)


@pytest.mark.parametrize("boxes, match", [
    ([[0.1, 0.1, 0.5, 0.9]] * 3, "normalized"),
    ([[100, 100, 140, 160]] * 3, "outside the 96x64"),
    ([[-60, 0, 40, 60]] * 3, "outside the 96x64"),
    ([[10, 10, 10, 40]] * 3, "is empty"),
    ([[np.nan] * 4] * 3, "no finite person box"),
    (np.zeros((3, 5)), r"shape \(3, 5\)"),
])
def test_dataset_boxes_that_cannot_be_these_frames_are_refused(boxes, match):
    with pytest.raises(PersonBoxError, match=match):
        check_dataset_boxes("clip_x", np.asarray(boxes, np.float32), (64, 96))


def test_person_boxes_round_trip_through_the_cache(tmp_path, monkeypatch):
    """Stored beside the clip, read back by CacheEntry.read_clip, checked by verify, copied by export."""
    import h5py

    from cache import CacheStore
    from cache.store import export_hdf5
    from stages.datasets.custom import CustomDataset

    root = _dataset(tmp_path / "data", n=2, frames=3)
    monkeypatch.setattr(CustomDataset, "person_boxes",
                        lambda self, c: None if c.clip_id == "v1" else np.array([[4, 4, 40, 50]] * 3, np.float32))
    rep = run_extract(_opts(root, tmp_path / "cache"))
    assert rep.complete
    by = {r["clip_id"]: rep.entry.read_clip(r["uid"]) for r in rep.entry.clips()}
    np.testing.assert_array_equal(by["v0"].person_boxes, [[4, 4, 40, 50]] * 3)
    assert by["v1"].person_boxes is None and by["v1"].attrs["person_boxes"] == "whole frame"
    store = CacheStore(tmp_path / "cache")
    assert store.verify(rep.entry).ok
    export_hdf5(rep.entry, tmp_path / "e.h5")
    with h5py.File(tmp_path / "e.h5") as f:
        np.testing.assert_array_equal(f["clips"]["v0"]["person_boxes"][...], by["v0"].person_boxes)
        assert "person_boxes" not in f["clips"]["v1"]
    # verify notices a person_boxes array of the wrong shape ...
    import zarr

    clip_dir = str(rep.entry.path / "clips" / "v0")
    g = zarr.open_group(clip_dir, mode="r+")
    del g["person_boxes"]
    g.create_array("person_boxes", data=np.ones((2, 4), np.float32))
    # ... an array the clip's (consolidated) metadata does not list ...
    assert any("differ from those the clip's metadata lists" in prob
               for prob in store.verify(rep.entry, deep=False).problems)
    # ... and, once listed, its shape
    zarr.consolidate_metadata(clip_dir)
    assert any("person_boxes (2, 4), expected (3, 4)" in prob for prob in store.verify(rep.entry, deep=False).problems)


def test_detector_weights_load_strictly_with_weights_only(tmp_path):
    """init_detector's mmengine load_checkpoint is strict=False: another detector's file half-loaded
    with a log line. The product loads the file itself: whole, weights_only, every tensor."""
    import torch
    from torch import nn

    from stages.extract.person_boxes import DetectorWeightsError, load_detector_weights

    def detector():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))

    src = detector()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    sd = {f"module.{k}": v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "faster_rcnn.pth"
    torch.save({"meta": {"CLASSES": ("person", "bicycle")}, "state_dict": sd}, path)
    from cache.keys import file_sha256

    model = detector()
    load_detector_weights(model, path, file_sha256(path))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src.state_dict().values())
               if a.is_floating_point())
    assert model.dataset_meta == {"classes": ("person", "bicycle")}
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 2, 1))  # another detector
    with pytest.raises(DetectorWeightsError, match=r"does not fit the configured detector: 0 tensors missing .* 7 of "
                                                   r"another shape"):
        load_detector_weights(other, path, file_sha256(path))
    import argparse

    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=1)}, tmp_path / "args.pth")
    with pytest.raises(DetectorWeightsError, match="it pickles argparse.Namespace"):
        load_detector_weights(detector(), tmp_path / "args.pth", file_sha256(tmp_path / "args.pth"))


def test_a_damaged_detector_checkpoint_is_refused_before_any_clip(tmp_path, monkeypatch):
    """The file was first read when the first clip built the detector: each clip then failed on it,
    recorded in the entry. Its bytes are checked when the detector is named (here with full mmcv
    pretended: this machine has mmcv-lite)."""
    import torch

    import stages.extract.person_boxes as pb
    from stages.extract.person_boxes import DetectorWeightsError, MMDetPersonDetector

    monkeypatch.setattr(pb, "mmcv_has_ops", lambda: True)
    ck = tmp_path / "faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth"  # a release name, another file's bytes
    torch.save({"state_dict": {"w": torch.zeros(4)}}, ck)
    with pytest.raises(DetectorWeightsError, match="carries the sha256 prefix 047c8118 of the released file"):
        MMDetPersonDetector("faster-rcnn", str(ck))


def test_dataset_boxes_on_non_square_pixels_get_a_note(tmp_path, monkeypatch, hrnet_plan):
    """A box file names no image size: on an anamorphic stream (decoded at display size) whether its
    boxes are in the stored or the displayed pixels is not known; the clip says so."""
    from pevl_testutils import make_timecoded_video

    _, pose = hrnet_plan
    v = make_timecoded_video(tmp_path / "anamorphic.mp4", 3, size=(80, 32), extra=("-vf", "setsar=3/2"))
    root = write_custom_dataset(tmp_path / "data", [(str(v), 0, "train")], ["a", "b"])
    p = plan_entry(_opts(root, tmp_path / "cache"))
    _with_boxes(monkeypatch, p.adapter, np.array([[2 + i, 2, 40, 30] for i in range(3)], np.float32))
    res = extract_clip(p.index.clips[0], p.adapter, pose, ExtractSettings(num_frames=2, short_side=32))
    assert any("dataset person boxes taken in the decoded 120x32 display pixels; the stream's pixels are not square "
               "(SAR 3:2, stored 80x32)" in n and "x scaled by 1.5" in n for n in res.notes), res.notes
