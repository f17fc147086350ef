import os
import pickle

import numpy as np
import pytest

from stages.datasets.base import ClipRecord
from stages.extract.pose import PoseSourceError
from stages.registry import POSE_SOURCES
from stages.safe_pickle import restricted_load
from stages.extract.pose.skeleton_pkl import (
    PickleSkeletonSource,
    load_skeleton_pickle,
    select_main_person,
)


def _ann(frame_dir, m=2, t=5, v=17, best=1):
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 60, size=(m, t, v, 2)).astype(np.float32)
    score = np.full((m, t, v), 0.2, np.float32)
    score[best] = 0.9
    return {"frame_dir": frame_dir, "total_frames": t, "img_shape": (48, 64),
            "original_shape": (48, 64), "label": 3, "keypoint": kp, "keypoint_score": score}


def _write(path, anns, protocol=4):
    data = {"split": {"train": [a["frame_dir"] for a in anns]}, "annotations": anns}
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_load_roundtrip(tmp_path, protocol):
    p = _write(tmp_path / "gym_2d.pkl", [_ann("clip_a")], protocol)
    data = load_skeleton_pickle(p)
    assert data["split"] == {"train": ["clip_a"]}
    a = data["annotations"][0]
    assert a["keypoint"].shape == (2, 5, 17, 2) and a["img_shape"] == (48, 64)


def test_numpy2_spelling_admitted():
    raw = pickle.dumps({"k": np.arange(3)}, protocol=0)
    assert b"numpy.core.multiarray" in raw
    out = restricted_load(raw.replace(b"numpy.core.multiarray", b"numpy._core.multiarray"))
    np.testing.assert_array_equal(out["k"], np.arange(3))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import builtins

        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("cls", [_Evil, _EvilEval])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_pickle_refused(tmp_path, cls, protocol):
    marker = tmp_path / "pwned"
    payload = {"split": {}, "annotations": [{"frame_dir": "x", "keypoint": cls(marker)}]}
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_skeleton_pickle(p)
    with pytest.raises(pickle.UnpicklingError):
        PickleSkeletonSource(path=p).identity()
    assert not marker.exists()
    # control: plain pickle.loads would have run it
    pickle.loads(p.read_bytes())
    assert marker.exists()


def test_other_globals_refused():
    import collections

    with pytest.raises(pickle.UnpicklingError):
        restricted_load(pickle.dumps(collections.Counter(a=1)))
    assert restricted_load(pickle.dumps(collections.OrderedDict(a=1))) == {"a": 1}


def test_select_main_person():
    kp = np.ones((3, 4, 17, 2), np.float32)
    sc = np.zeros((3, 4, 17), np.float32)
    sc[0, :1] = 1.0  # high score but seen in one frame
    sc[2] = 0.5  # moderate score, seen throughout -> wins
    assert select_main_person(kp, sc) == (2, "max_total_score")
    assert select_main_person(kp[:1], sc[:1]) == (0, "single_person")
    kp2 = np.zeros((2, 4, 17, 2), np.float32)
    kp2[1, :3] = 1
    assert select_main_person(kp2, None) == (1, "max_visible_frames")


def test_source(tmp_path):
    p = _write(tmp_path / "s.pkl", [_ann("clip_a", best=1), _ann("clip_b", m=1, best=0)])
    assert POSE_SOURCES.get("pkl") is PickleSkeletonSource
    src = PickleSkeletonSource(path=str(p))
    assert src.needs_frames is False
    ident = src.identity()
    assert ident["name"] == "pkl" and ident["person_rule"] == "max_total_score"
    assert len(ident["sha256"]) == 64 and ident["path"] == str(p.resolve())
    clip = ClipRecord("clip_a", "train", 3, None)
    track = src.estimate(clip, None, None, dataset=None)
    assert track.keypoints.shape == (5, 17, 2) and track.frame_size == (48, 64)
    assert np.allclose(track.scores, 0.9)
    assert src.selections["clip_a"] == {"person": 1, "rule": "max_total_score", "num_persons": 2}
    # frames given with another count: one pose per decoded frame
    track = src.estimate(clip, np.zeros((10, 48, 64, 3), np.uint8), None, dataset=None)
    assert track.num_frames == 10 and src.selections["clip_a"]["resampled_from"] == 5
    with pytest.raises(PoseSourceError, match="clip_zzz"):
        src.estimate(ClipRecord("clip_zzz", "train", 0, None), None, None, dataset=None)


def test_source_missing_file(tmp_path):
    with pytest.raises(PoseSourceError, match="not found"):
        PickleSkeletonSource(path=tmp_path / "nope.pkl")


def test_not_a_skeleton_file(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="frame_dir"):
        load_skeleton_pickle(p)
