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
    # frames given with another count: the file's frames as they are (align_track resamples, noted)
    track = src.estimate(clip, np.zeros((10, 48, 64, 3), np.uint8), None, dataset=None)
    assert track.num_frames == 5 and "resampled_from" not in src.selections["clip_a"]
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


# -- "filename" as well as "frame_dir"; other toolkits' clip names ----------------------------------
def test_filename_identifier_as_mmaction2_chooses_it(tmp_path):
    a, b = _ann("ignored_a"), _ann("ignored_b", best=0)
    a["filename"], b["filename"] = "subdir/clip_a.mp4", "clip_b.avi"  # the first has one: filename names all
    p = _write(tmp_path / "s.pkl", [a, b])
    assert load_skeleton_pickle(p)["identifier"] == "filename"
    src = PickleSkeletonSource(path=str(p))
    assert src.estimate(ClipRecord("clip_a", "train", 0, None), None, None, dataset=None).num_frames == 5
    assert src.selections["clip_a"]["person"] == 1
    with pytest.raises(PoseSourceError, match="ignored_a"):
        src.estimate(ClipRecord("ignored_a", "train", 0, None), None, None, dataset=None)
    del b["filename"]  # one annotation without the identifier the first one set
    with pytest.raises(ValueError, match="annotation 1 lacks 'filename'"):
        load_skeleton_pickle(_write(tmp_path / "t.pkl", [a, b]))


def test_keypoint_must_be_an_array(tmp_path):
    bad = _ann("clip_a")
    bad["keypoint"] = bad["keypoint"].tolist()  # nested lists could alias one row a billion times
    with pytest.raises(ValueError, match="keypoint must be an array"):
        load_skeleton_pickle(_write(tmp_path / "s.pkl", [bad]))


GYM_IDS = ["0LtLS9wROrk_E_002407_002435_A_0003_0005", "0LtLS9wROrk_E_002407_002435_A_0006_0008",
           "A-b_c_DEF12_E_000100_000130_A_0001_0004"]


def _gym_root(root, n_val=1):
    root.mkdir(parents=True, exist_ok=True)
    (root / "gym99_train_element_v1.1.txt").write_text("".join(f"{c} 3\n" for c in GYM_IDS[:-n_val]))
    (root / "gym99_val_element.txt").write_text("".join(f"{c} 4\n" for c in GYM_IDS[-n_val:]))
    return root


def _posec3d(cid):
    """gym_2d.pkl's frame_dir for a FineGym clip: the id without E_ and A_."""
    return cid.replace("_E_", "_").replace("_A_", "_")


def test_finegym_clips_match_gym_2d_frame_dirs(tmp_path):
    from stages.datasets import create_dataset

    ds = create_dataset("gym99", root=_gym_root(tmp_path / "gym"))
    idx = ds.load()
    p = _write(tmp_path / "gym_2d.pkl", [_ann(_posec3d(c)) for c in GYM_IDS])
    src = PickleSkeletonSource(path=str(p))
    assert src.clips_without_poses(idx.clips, ds) == []
    track = src.estimate(idx.clips[2], None, None, dataset=ds)  # "A-b_c_DEF12": an id with "_" and "-"
    assert track.keypoints.shape == (5, 17, 2)
    assert src.clips_without_poses(idx.clips, None) == GYM_IDS  # without the dataset's aliases, nothing


def _pkl_opts(root, cache, pkl, **kw):
    from stages.extract.plan import ExtractOptions

    return ExtractOptions(dataset="gym99", root=str(root), cache_root=str(cache), pose_source=f"pkl:{pkl}", **kw)


def test_partial_coverage_stops_before_any_work_with_counts_and_the_option(tmp_path):
    from stages.extract.plan import MissingPosesError, plan_entry

    root = _gym_root(tmp_path / "gym")
    pkl = _write(tmp_path / "gym_2d.pkl", [_ann(_posec3d(GYM_IDS[0]))])  # covers 1 of 2 train, 0 of 1 val
    with pytest.raises(MissingPosesError, match=r"no poses for 2 of 3 clips \(train: 1 of 2, val: 1 of 1;.*"
                                                r"--missing-poses skip.*--missing-poses fail.*split_version=1.0"):
        plan_entry(_pkl_opts(root, tmp_path / "cache", pkl))
    assert not (tmp_path / "cache").exists()  # nothing created
    skip = plan_entry(_pkl_opts(root, tmp_path / "cache", pkl, missing_poses="skip"))
    assert [c["clip_id"] for c in skip.clips] == [GYM_IDS[0]]
    assert skip.root_attrs["clips_without_poses"]["without_poses"] == 2
    assert skip.root_attrs["clips_without_poses"]["policy"] == "skip"
    fail = plan_entry(_pkl_opts(root, tmp_path / "cache", pkl, missing_poses="fail"))
    assert len(fail.clips) == 3 and fail.no_pose == {GYM_IDS[1], GYM_IDS[2]}
    assert len({skip.key, fail.key}) == 2  # another clip list, another entry


def test_missing_poses_fail_records_them_without_decoding(tmp_path, monkeypatch):
    from pipeline.engines.local import run_extract
    from stages.extract import clip as clip_mod

    root = _gym_root(tmp_path / "gym")
    pkl = _write(tmp_path / "gym_2d.pkl", [_ann("not_a_clip")])  # covers nothing
    monkeypatch.setattr(clip_mod, "probe", lambda *a, **k: pytest.fail("a clip without poses was decoded"))
    rep = run_extract(_pkl_opts(root, tmp_path / "cache", pkl, missing_poses="fail"))
    assert rep.complete and len(rep.failed_now) == 3
    assert all("no poses for this clip" in f["reason"] for f in rep.entry.failures().values())
    assert rep.counters.decoded_clips == 0
    assert rep.entry.manifest()["clips_without_poses"]["without_poses"] == 3


def test_cli_says_so_and_dataset_info_counts_coverage(tmp_path):
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app

    root = _gym_root(tmp_path / "gym")
    pkl = _write(tmp_path / "gym_2d.pkl", [_ann(_posec3d(GYM_IDS[0])), _ann(_posec3d(GYM_IDS[2]))])
    runner = CliRunner()
    res = runner.invoke(app, ["extract", "--dataset", "gym99", "--root", str(root), "--cache-root",
                              str(tmp_path / "cache"), "--pose-source", f"pkl:{pkl}"])
    assert res.exit_code == 2 and "no poses for 1 of 3 clips" in res.output and "--missing-poses" in res.output
    res = runner.invoke(app, ["dataset", "info", "--dataset", "gym99", "--root", str(root), "--pose-source",
                              f"pkl:{pkl}", "--json"])
    assert res.exit_code == 0, res.output
    cov = json.loads(res.stdout)["pose_coverage"]
    assert cov["without_poses"] == 1 and cov["by_split"]["train"] == {"clips": 2, "without_poses": 1}
    res = runner.invoke(app, ["dataset", "info", "--dataset", "gym99", "--root", str(root), "--pose-source",
                              f"pkl:{pkl}"])
    assert res.exit_code == 0 and "2 of 3 clips (train 1/2, val 1/1)" in res.output.replace("\n", " ")


# -- the restricted unpickler bounds memory -----------------------------------------------------------
class _Asks:
    """Pickles as a call to ``func(*args)``; unpickling would make the call."""

    def __init__(self, func, *args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as r
    except ImportError:
        from numpy.core.multiarray import _reconstruct as r
    return r


HUGE = 10 ** 12  # a terabyte: refused by arithmetic, never attempted


@pytest.mark.parametrize("payload, match", [
    (_Asks(bytes, HUGE), r"refusing bytes\(1000000000000\)"),
    (_Asks(bytearray, HUGE), r"refusing bytearray\(1000000000000\)"),
    (_Asks(_reconstruct(), np.ndarray, (HUGE,), b"b"), r"refusing an array of shape \(1000000000000,\)"),
    (_Asks(np.ndarray, (10 ** 6, 10 ** 6)), "refusing to construct a numpy array directly"),
    # an object array's state: numpy would size a billion slots before reading any
    (_Asks(_reconstruct(), np.ndarray, (0,), b"b", state=(1, (10 ** 9,), np.dtype("O"), False, [1])),
     "refusing an object array"),
])
@pytest.mark.parametrize("protocol", [2, 5])
def test_pickles_asking_for_huge_allocations_are_refused(tmp_path, payload, match, protocol):
    p = tmp_path / "bomb.pkl"
    p.write_bytes(pickle.dumps({"annotations": [payload]}, protocol=protocol))
    assert p.stat().st_size < 1000
    with pytest.raises(pickle.UnpicklingError, match=match):
        load_skeleton_pickle(p)


@pytest.mark.parametrize("opcode", [pickle.BINBYTES8, pickle.BYTEARRAY8, pickle.BINUNICODE8, pickle.FRAME])
def test_declared_lengths_beyond_the_file_are_refused_before_allocating(opcode):
    import struct

    raw = pickle.PROTO + b"\x05" + opcode + struct.pack("<Q", HUGE) + b"abc" + pickle.STOP
    with pytest.raises(pickle.UnpicklingError, match="refusing a pickle (that declares a|frame of) 1,000,000,000,000"):
        restricted_load(raw)


def test_real_arrays_still_load_in_every_protocol():
    data = {"k": np.arange(12, dtype=np.float16).reshape(3, 4), "s": np.float32(2.5), "b": b"xyz",
            "ba": bytearray(b"ab"), "t": (1, "two", [3.0])}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        out = restricted_load(pickle.dumps(data, protocol=protocol))
        np.testing.assert_array_equal(out["k"], data["k"])
        assert out["s"] == 2.5 and out["b"] == b"xyz" and out["ba"] == bytearray(b"ab") and out["t"] == (1, "two", [3.0])


def _text_chain(levels: int, step) -> bytes:
    """A protocol-3 pickle of 64 bytes run ``levels`` times through ``step`` (GLOBAL + REDUCE calls)."""
    body = b"C\x40" + b"A" * 64
    for _ in range(levels):
        body = step(body)
    return b"\x80\x03" + body + b"."


def _text(s: str) -> bytes:
    return b"V" + s.encode() + b"\n"


def _call(module: str, name: str, *args: bytes) -> bytes:
    return f"c{module}\n{name}\n(".encode() + b"".join(args) + b"tR"


@pytest.mark.parametrize("step, match", [
    # each hex_codec level doubles (26 levels of 64 bytes asked for 4 GiB from 849 bytes)
    (lambda b: _call("_codecs", "encode", b, _text("hex_codec")), "refusing _codecs.encode of a bytes"),
    (lambda b: _call("_codecs", "encode", _call("builtins", "str", b, _text("latin-1")), _text("utf-32")),
     "refusing _codecs.encode with encoding 'utf-32'"),
    # without _codecs: bytes(str(b, 'latin-1'), 'utf-32') quadruples at each level
    (lambda b: _call("builtins", "bytes", _call("builtins", "str", b, _text("latin-1")), _text("utf-32")),
     r"refusing bytes\(str, ...\) with encoding 'utf-32'"),
    (lambda b: _call("builtins", "bytearray", _call("builtins", "str", b, _text("latin-1")), _text("utf-8")),
     r"refusing bytearray\(str, ...\) with encoding 'utf-8'"),
    (lambda b: _call("builtins", "bytes", _call("builtins", "str", b, _text("ascii"), _text("strict")),
                     _text("ascii"), _text("backslashreplace")), "errors='backslashreplace'"),
    (lambda b: _call("builtins", "str", b), "refusing str\\(\\) of a bytes"),
])
def test_text_conversions_that_multiply_a_small_file_are_refused(step, match):
    """849 bytes of pickle asked for 4 GiB through text conversions the allow-list admitted; now only
    one-byte-per-character codecs convert text (how protocol <= 2 spells bytes), so no chain grows."""
    raw = _text_chain(20, step)  # 64 MiB to 1 TiB were they admitted
    assert len(raw) < 3000
    with pytest.raises(pickle.UnpicklingError, match=match):
        restricted_load(raw)


def test_text_conversions_of_real_pickles_still_load():
    """Protocol <= 2 writes bytes as _codecs.encode(text, 'latin1'); numpy arrays' data and str
    values come through every protocol (test_real_arrays_still_load_in_every_protocol: the arrays)."""
    data = {"b": bytes(range(256)), "s": "café ∑"}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        assert restricted_load(pickle.dumps(data, protocol=protocol)) == data
    assert restricted_load(_call("builtins", "str", b"I12\n") + b".") == "12"
    assert restricted_load(_call("builtins", "bytes", _text("abc"), _text("latin1")) + b".") == b"abc"
    assert restricted_load(_call("builtins", "str", b"C\x03abc", _text("utf-8")).replace(b"c", b"\x80\x03c", 1) + b".") == "abc"


def test_a_python2_pickle_of_an_array_loads_as_numpy_reads_it():
    """Python 2's str holds an array's bytes (and dtype strings): read as latin-1, one character per
    byte, as numpy advises (it failed as 'ascii' before)."""
    import struct

    def py2_str(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING

    arr = np.arange(6, dtype="<f4").reshape(2, 3)
    raw = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b") + b"\x87R"
           + b"(K\x01K\x02K\x03\x86cnumpy\ndtype\n" + py2_str(b"f4") + b"K\x00K\x01\x87R(K\x03" + py2_str(b"<")
           + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T" + struct.pack("<I", arr.nbytes) + arr.tobytes() + b"tb.")
    out = restricted_load(raw)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == np.float32


def test_running_out_of_memory_while_unpickling_names_the_file(tmp_path, monkeypatch):
    from stages import safe_pickle

    p = tmp_path / "poses.pkl"
    p.write_bytes(pickle.dumps({"annotations": []}, protocol=4))

    def no_memory(self):
        raise MemoryError()

    monkeypatch.setattr(safe_pickle.RestrictedUnpickler, "load", no_memory)
    with pytest.raises(pickle.UnpicklingError, match=f"{p}: ran out of memory"):
        load_skeleton_pickle(p)


# -- the restricted unpickler bounds what shared references expand to ---------------------------------
def _nested_tuple(depth):
    t = ()
    for _ in range(depth):
        t = (t, t)  # pickled once per level: the second reference is a memo GET
    return t


@pytest.mark.parametrize("payload, match", [
    # one tuple of 1,023 objects as the key of 3,000 dicts: hashing it each time walks 3 million objects
    ([{_nested_tuple(9): i} for i in range(3000)], "dict keys, set items and call arguments expand to more than"),
    # a list that is its own element: any walk of it never ends
    ("self", "expands to more than|nested more than 100"),
    # 200 containers deep
    ("deep", "nested more than 100 containers deep"),
])
def test_shared_references_cannot_make_a_small_pickle_huge(payload, match):
    if payload == "self":
        payload = []
        payload.append(payload)
    elif payload == "deep":
        payload = []
        for _ in range(200):
            payload = [payload]
    raw = pickle.dumps(payload, protocol=4)
    assert len(raw) < 250_000
    with pytest.raises(pickle.UnpicklingError, match=match):
        restricted_load(raw)


def test_shared_small_objects_of_real_files_are_fine():
    """Real files share a dtype, an img_shape tuple and strings between annotations (memo GETs)."""
    shape = (1080, 1920)  # one constant tuple object, as ntu_pose_extraction.py's literal is
    anns = [{"frame_dir": f"c{i}", "img_shape": shape, "keypoint": np.zeros((1, 2, 17, 2), np.float16)}
            for i in range(5000)]
    data = {"split": {"train": [a["frame_dir"] for a in anns]}, "annotations": anns}
    for protocol in (2, 4, 5):
        out = restricted_load(pickle.dumps(data, protocol=protocol))
        assert len(out["annotations"]) == 5000 and out["annotations"][-1]["img_shape"] == shape


def test_poses_of_another_frame_count_take_the_frame_nearest_in_time():
    """One rule for every pose source (stages.extract.clip.align_track): decoded frame i of L,
    centred at (i + 0.5) / L, takes the file's frame whose centre is nearest: floor((i + 0.5) n / L)."""
    from stages.extract.clip import align_track
    from stages.datasets.base import PoseTrack

    k = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 17, 2), np.float32)  # frame j's joints at j
    notes = []
    got = align_track(PoseTrack(k, np.ones((3, 17), np.float32), frame_size=(48, 64)), 4, (48, 64), notes)
    # decoded frame 1 of 4 (centre 0.375) is nearer the file's frame 1 (0.5) than its frame 0 (0.167)
    assert got.keypoints[:, 0, 0].tolist() == [0, 1, 1, 2]
    assert notes == ["pose frames resampled 3 -> 4 (nearest in time)"]
    got = align_track(PoseTrack(k, np.ones((3, 17), np.float32), frame_size=(48, 64)), 2, (48, 64), notes)
    assert got.keypoints[:, 0, 0].tolist() == [0, 2]
    # 3 poses for 6 frames (another frame rate) are resampled; for 7 or for 1 (a skeleton of another
    # video matched by its base name) they were stretched with only a note: refused, not stretched
    assert align_track(PoseTrack(k, np.ones((3, 17), np.float32), frame_size=(48, 64)), 6, (48, 64), []).num_frames == 6
    from stages.extract.clip import ClipError

    for frames in (7, 1):
        with pytest.raises(ClipError, match=rf"the pose source has 3 frames for the {frames} decoded frames of the "
                                            r"clip, more than 2x apart: most likely the poses of another video"):
            align_track(PoseTrack(k, np.ones((3, 17), np.float32), frame_size=(48, 64)), frames, (48, 64), [])
