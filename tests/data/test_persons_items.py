"""Stage two on an entry of two people per frame: items hold both people's joints and grids, a flip
swaps left and right within each person, and the model's J = j x n comes from the entry."""
import pickle

import numpy as np
import pytest
from mmengine.config import Config

from stages.data.dataset import CacheClipDataset
from stages.skeletons import get_skeleton

V = 17


@pytest.fixture(scope="module")
def two_person_entry(tmp_path_factory):
    from pevl_testutils import make_video, write_custom_dataset

    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    tmp = tmp_path_factory.mktemp("persons")
    root = tmp / "data"
    make_video(root / "c0.mp4", frames=8, size=(64, 48))
    write_custom_dataset(root, [("c0.mp4", 0, "train")], ["a"])
    rng = np.random.default_rng(0)
    kp = np.stack([rng.uniform(18, 30, (8, V, 2)), rng.uniform(36, 44, (8, V, 2))]).astype(np.float32)
    score = np.stack([np.full((8, V), 0.5, np.float32), np.full((8, V), 0.9, np.float32)])
    pkl = tmp / "poses.pkl"
    pkl.write_bytes(pickle.dumps([{"frame_dir": "c0", "img_shape": (48, 64), "label": 0, "keypoint": kp,
                                   "keypoint_score": score}], protocol=4))
    rep = run_extract(ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp / "cache"),
                                     pose_source=f"pkl:{pkl}",
                                     settings={"num_frames": 2, "short_side": 48, "persons": 2}))
    assert rep.complete and not rep.failed_now
    return rep.entry


def test_items_hold_both_people_and_flip_within_each(two_person_entry):
    from stages.data.settings import DataSettings
    from stages.data.views import ViewSampler

    # a 48-pixel crop of the 64 x 48 frames (left 0 or 16), always mirrored: both people stay in it
    views = ViewSampler.from_settings(DataSettings.from_dict({"train_crop": "fixed_size", "flip_prob": 1.0}), 48, 16)
    ds = CacheClipDataset(two_person_entry, "train", mode="train", crop_size=48, num_pose_frames=4,
                          num_video_frames=2, views=views)
    two = get_skeleton("coco17").for_persons(2)
    assert list(ds.flip_index) == two.flip_index() and ds.skeleton == two
    item = ds[0]
    assert item["joints"].shape == (4, 2 * V, 3) and item["mask_grid"].shape == (2, 2 * V, 3, 3)
    # scores travel with their joints through the flip: person 0 (the better, 0.9) stays in 0..16
    assert np.allclose(item["joints"][..., :V, 2].numpy(), 0.9) and np.allclose(item["joints"][..., V:, 2].numpy(), 0.5)
    grids = item["mask_grid"].numpy()
    assert grids[:, :V].max() == pytest.approx(0.9, abs=1e-3) and grids[:, V:].max() == pytest.approx(0.5, abs=1e-3)


def test_the_model_gets_j_times_n_joints_from_the_entry(two_person_entry):
    from stages.train.runner import prepare_model_cfg

    m = prepare_model_cfg(Config({"model": {"type": "PGVT", "num_joints": 17}}), two_person_entry)
    assert (m["num_joints"], m["num_persons"]) == (34, 2)
