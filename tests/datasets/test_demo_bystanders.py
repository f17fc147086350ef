"""The demo with a second, idle figure in some clips (option ``bystanders``): the performer is the
same as without it, the bystander is drawn and its joints shipped beside the performer's, and the
default dataset is exactly the one of before."""
import numpy as np
import pytest

from stages.datasets.demo import DemoDataset
from stages.datasets.demo import generate as gen

CFG = dict(clips_per_class=(2, 1), num_frames=(32,), seed=7)


def test_no_bystanders_is_the_dataset_of_before():
    assert gen.normalize_config(bystanders=0.0) == gen.normalize_config()
    assert gen.config_tag(gen.normalize_config(**CFG, bystanders=0)) == gen.config_tag(gen.normalize_config(**CFG))
    assert DemoDataset(**CFG).root == DemoDataset(**CFG, bystanders=0.0).root
    assert DemoDataset(**CFG, bystanders=0.5).root != DemoDataset(**CFG).root
    with pytest.raises(ValueError, match="bystanders must be a fraction"):
        gen.normalize_config(bystanders=1.5)


def test_a_bystander_is_drawn_beside_the_same_performer():
    with_b = gen.normalize_config(**CFG, bystanders=1.0)
    without = gen.normalize_config(**CFG)
    f1, p1 = gen.render_clip(with_b, 3, "train", 0)
    f0, p0 = gen.render_clip(without, 3, "train", 0)
    np.testing.assert_array_equal(p1["keypoints"], p0["keypoints"])  # the performer is unchanged
    np.testing.assert_array_equal(p1["scores"], p0["scores"])
    (other,) = p1["others"]
    assert p0["others"] == []
    kp, sc = other["keypoints"], other["scores"]
    assert kp.shape == p0["keypoints"].shape and (sc > 0).mean() > 0.5  # mostly in the picture
    # idle: its hips barely move; apart: its body is to one side of the performer's
    assert np.ptp(kp[:, 11:13], axis=0).max() < 2.0
    assert np.abs(kp[:, 11:13, 0].mean() - p0["keypoints"][:, 11:13, 0].mean()) > 30
    # drawn: the frames differ around the bystander's hips
    x, y = np.round(kp[0, 11]).astype(int)
    assert np.abs(f1[0, y - 2:y + 3, x - 2:x + 3].astype(int) - f0[0, y - 2:y + 3, x - 2:x + 3]).max() > 20


def test_people_of_a_generated_clip(tmp_path):
    ds = DemoDataset(root=tmp_path / "d", workers=1, clips_per_class=(3, 1), num_frames=(32,), seed=7,
                     bystanders=0.5)
    idx = ds.load()
    counts = []
    for c in idx.clips:
        kp, sc, size = ds.dataset_people(c)
        main = ds.dataset_poses(c)
        np.testing.assert_array_equal(kp[0], main.keypoints)
        assert kp.shape[1:] == (32, 17, 2) and sc.shape == kp.shape[:3] and size == (128, 176)
        counts.append(len(kp))
    assert set(counts) == {1, 2}  # some clips have a bystander, some not (the same in every class)
