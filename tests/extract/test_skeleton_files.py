"""Hostile and mislabelled third-party skeleton files (issue 19): a nested-list bomb, one video's
dict and folders of them, 3D skeletons, an img_shape that disagrees with the video, and custom
datasets whose videos sit in subfolders."""
import json
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pevl_testutils import make_video, write_custom_dataset
from stages.datasets import create_dataset
from stages.datasets.base import ClipRecord
from stages.extract.pose import PoseSourceError, create_pose_source
from stages.extract.pose.skeleton_pkl import PickleSkeletonSource, load_skeleton_pickle
from stages.settings import SettingsError

REPO = Path(__file__).resolve().parents[2]


def _ann(name, t=4, v=17, xy=(10.0, 20.0), img_shape=(48, 64), m=1, **extra):
    kp = np.tile(np.asarray(xy, np.float32), (m, t, v, 1))
    return {"frame_dir": name, "total_frames": t, "img_shape": img_shape, "original_shape": img_shape,
            "label": 0, "keypoint": kp, "keypoint_score": np.full((m, t, v), 0.9, np.float32), **extra}


def _dump(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


# -- the nested-list bomb: bounded in time and memory, refused by name -------------------------------
_BOMB_CHILD = textwrap.dedent("""
    import json, pickle, sys, time, tracemalloc
    import numpy as np
    from stages.extract.pose.skeleton_pkl import load_skeleton_pickle

    path, depth = sys.argv[1], int(sys.argv[2])
    level = [0.5] * 17
    for _ in range(depth):  # each level references the one below twice: 2**depth rows of 17 scores
        level = [level, level]
    ann = {"frame_dir": "c0", "img_shape": (48, 64), "keypoint": np.zeros((1, 4, 17, 2), np.float32),
           "keypoint_score": level}
    with open(path, "wb") as f:
        pickle.dump({"split": {}, "annotations": [ann]}, f, protocol=4)
    tracemalloc.start()
    t0 = time.process_time()
    try:
        load_skeleton_pickle(path)
        result = "loaded"
    except Exception as e:
        result = f"{type(e).__name__}: {e}"
    print(json.dumps({"result": result, "peak_bytes": tracemalloc.get_traced_memory()[1],
                      "cpu_s": time.process_time() - t0}))
""")


@pytest.mark.parametrize("depth, refusal", [
    # the file: 2**60 rows if numpy were let near it; the unpickler's structure check refuses it
    (60, "expands to more than 1,048,576 objects"),
    # small enough for the structure check (70,000 scores): the field check refuses a list
    (12, r"keypoint_score must be a numeric numpy array \(M, T, V\) \(lists are refused\), got a list"),
])
def test_nested_list_bomb_is_refused_in_bounded_time_and_memory(tmp_path, depth, refusal):
    p = tmp_path / "bomb.pkl"
    # a child process, so a regression fails this test (timeout) instead of taking the machine
    out = subprocess.run([sys.executable, "-c", _BOMB_CHILD, str(p), str(depth)], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    assert p.stat().st_size < 2000  # a 1-2 KB file
    assert rep["result"].startswith("UnpicklingError" if depth == 60 else "ValueError"), rep
    assert str(p) in rep["result"]  # names the file
    assert re.search(refusal, rep["result"]), rep["result"]
    # generous bounds (the measured figures are about 1 MB and under a second): the unbounded
    # conversion took 2.5 GB and 60 s at a depth of 27 and doubles with each level
    assert rep["peak_bytes"] < 64 << 20, rep
    assert rep["cpu_s"] < 60, rep


def test_the_bomb_is_real_without_the_checks():
    """Control: what numpy would have built from the depth-12 file's scores (each level doubles it)."""
    level = [0.5] * 17
    for _ in range(12):
        level = [level, level]
    raw = pickle.dumps(level, protocol=4)
    assert len(raw) < 500 and np.asarray(pickle.loads(raw)).size == 17 * 2 ** 12


@pytest.mark.parametrize("field, value, match", [
    ("keypoint_score", np.ones((1, 4, 16), np.float32), r"keypoint_score \(1, 4, 16\) does not match keypoint"),
    ("keypoint_score", np.array(["a"] * 4), "numeric numpy array"),
    ("keypoint", np.zeros((4, 17, 2), np.float32), r"keypoint must be an array \(M, T, V, 2\), got \(4, 17, 2\)"),
    ("keypoint", np.zeros((1, 4, 17, 2), np.complex64), "must hold numbers"),
    ("img_shape", [[48], [64]], "img_shape must be .*two positive integers"),
    ("img_shape", (0, 64), "img_shape must be"),
    ("frame_dir", ["c0"], "lacks 'frame_dir' as a clip name"),
])
def test_fields_are_checked_by_type_and_shape_before_use(tmp_path, field, value, match):
    a = _ann("c0")
    a[field] = value
    with pytest.raises(ValueError, match=match):
        load_skeleton_pickle(_dump(tmp_path / "s.pkl", [a]))


def test_real_layouts_still_load(tmp_path):
    """pyskl's custom_2d_skeleton.py (a list; float16; img_shape a tuple from frame.shape[:2]) and
    mmaction2's ntu_pose_extraction.py (one dict), as their code writes them."""
    pyskl = _ann("c0")
    pyskl["keypoint"], pyskl["keypoint_score"] = pyskl["keypoint"].astype(np.float16), pyskl["keypoint_score"].astype(np.float16)
    pyskl["num_person_raw"] = 1
    assert load_skeleton_pickle(_dump(tmp_path / "pyskl.pkl", [pyskl]))["annotations"][0]["frame_dir"] == "c0"
    ntu = _ann("S001C001P001R001A001_rgb", img_shape=(1080, 1920))
    data = load_skeleton_pickle(_dump(tmp_path / "ntu.pkl", ntu))
    assert [a["frame_dir"] for a in data["annotations"]] == ["S001C001P001R001A001_rgb"]
    np_shape = _ann("c1", img_shape=np.array([48, 64]))  # an array, as some converters write it
    load_skeleton_pickle(_dump(tmp_path / "arr.pkl", [np_shape]))


# -- one video's dict, and folders of them ------------------------------------------------------------
def test_a_single_video_dict_is_a_skeleton_file(tmp_path):
    p = _dump(tmp_path / "c0.pkl", _ann("c0", xy=(5.0, 6.0)))
    src = create_pose_source(f"pkl:{p}")
    track = src.estimate(ClipRecord("c0", "train", 0, None), None, None, dataset=None)
    assert track.keypoints.shape == (4, 17, 2) and np.all(track.keypoints == [5.0, 6.0])
    assert src.identity()["sha256"] and "files" not in src.identity()


def test_a_folder_of_per_video_dicts(tmp_path):
    poses = tmp_path / "poses"
    _dump(poses / "c0.pkl", _ann("c0", xy=(1.0, 1.0)))
    _dump(poses / "sub" / "c1.pkl", _ann("c1", xy=(2.0, 2.0)))
    _dump(poses / "both.pkl", {"split": {}, "annotations": [_ann("c2", xy=(3.0, 3.0))]})  # any form mixes in
    (poses / "README.txt").write_text("not a pickle")
    src = create_pose_source(f"pkl:{poses}")
    clips = [ClipRecord(c, "train", 0, None) for c in ("c0", "c1", "c2", "c3")]
    assert src.clips_without_poses(clips, None) == ["c3"]
    for c, want in zip(clips[:3], (1.0, 2.0, 3.0)):
        assert src.estimate(c, None, None, dataset=None).keypoints[0, 0, 0] == want
    assert src.clip_info(clips[1])["file"] == "sub/c1.pkl"
    ident = src.identity()
    assert ident["files"] == 3 and ident["path"] == str(poses.resolve())
    _dump(poses / "c0.pkl", _ann("c0", xy=(9.0, 9.0)))  # another file's content: another identity (key)
    assert create_pose_source(f"pkl:{poses}").identity()["sha256"] != ident["sha256"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        create_pose_source(f"pkl:{tmp_path / 'empty'}").identity()


def test_a_dict_that_is_no_skeleton_says_what_it_holds(tmp_path):
    with pytest.raises(ValueError, match=r"not a skeleton pickle .*one video's annotation dict.*keys 'foo'"):
        load_skeleton_pickle(_dump(tmp_path / "x.pkl", {"foo": 1}))


# -- 3D skeletons and other joint counts --------------------------------------------------------------
def _ntu_3d(name):
    """An annotation of mmaction2's ntu60_3d.pkl: (M, T, 25, 3) Kinect joints in metres, no scores."""
    rng = np.random.default_rng(0)
    return {"frame_dir": name, "label": 0, "total_frames": 4,
            "keypoint": rng.uniform(-1, 4, (2, 4, 25, 3)).astype(np.float32)}


def test_a_3d_file_is_refused_as_3d_by_dataset_info(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    root = write_custom_dataset(tmp_path / "data", [("c0.mp4", 0, "train"), ("c1.mp4", 0, "val")], ["a"])
    p = _dump(tmp_path / "ntu60_3d.pkl", {"split": {"xsub_train": ["c0"]}, "annotations": [_ntu_3d("c0"), _ntu_3d("c1")]})
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "custom", "--root", str(root),
                                   "--pose-source", f"pkl:{p}"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "3D skeleton" in text and "ntu60_3d.pkl" in text and "(M, T, V, 2)" in text


def test_another_joint_count_is_refused_for_the_skeleton(tmp_path):
    p = _dump(tmp_path / "k.pkl", [_ann("c0", v=25)])
    with pytest.raises(ValueError, match="25 joints, the coco17 skeleton 17"):
        create_pose_source(f"pkl:{p}").identity()


# -- img_shape against the video ----------------------------------------------------------------------
def _clip_for(tmp_path, size=(64, 48)):
    root = tmp_path / "data"
    make_video(root / "c0.mp4", frames=4, size=size)
    write_custom_dataset(root, [("c0.mp4", 0, "train")], ["a"])
    ds = create_dataset("custom", root=root)
    (clip,) = ds.load().clips
    return ds, clip


def _extract(tmp_path, spec, ds, clip):
    from stages.extract.clip import ExtractSettings, extract_clip

    return extract_clip(clip, ds, create_pose_source(spec), ExtractSettings(num_frames=2, short_side=48))


def test_img_shape_that_disagrees_with_the_video_is_refused_naming_the_option(tmp_path):
    """mmaction2's ntu_pose_extraction.py stamps (1080, 1920) on every video: on a 4:3 video with
    joints in its own pixels, rescaling would squeeze the poses by different factors in x and y."""
    from stages.extract.clip import ClipError

    ds, clip = _clip_for(tmp_path)  # a 64x48 (4:3) video
    p = _dump(tmp_path / "c0.pkl", _ann("c0", xy=(60.0, 40.0), img_shape=(1080, 1920)))
    with pytest.raises(ClipError) as e:
        _extract(tmp_path, f"pkl:{p}", ds, clip)
    msg = str(e.value)
    assert str(p) in msg and "(1080, 1920)" in msg and "(48, 64)" in msg and "aspect ratios differ" in msg
    assert "img_shape=video" in msg and "img_shape=file" in msg
    # the video's pixels: the joints as the file gives them, nothing rescaled
    res = _extract(tmp_path, f"pkl:{p},img_shape=video", ds, clip)
    np.testing.assert_allclose(res.arrays["keypoints"][0, 0], [60.0, 40.0])
    assert not any("rescaled" in n for n in res.notes)
    # img_shape's pixels: rescaled by 64/1920 and 48/1080, as before, and noted
    res = _extract(tmp_path, f"pkl:{p},img_shape=file", ds, clip)
    np.testing.assert_allclose(res.arrays["keypoints"][0, 0], [60.0 * 64 / 1920, 40.0 * 48 / 1080], rtol=1e-5)
    assert any("rescaled from 1920x1080 to 64x48" in n for n in res.notes)


def test_img_shape_that_agrees_is_used(tmp_path):
    from stages.extract.clip import ClipError

    ds, clip = _clip_for(tmp_path)
    same_aspect = _dump(tmp_path / "a.pkl", _ann("c0", xy=(120.0, 90.0), img_shape=(96, 128)))
    res = _extract(tmp_path, f"pkl:{same_aspect}", ds, clip)  # 4:3 both: a uniform rescale by 1/2
    np.testing.assert_allclose(res.arrays["keypoints"][0, 0], [60.0, 45.0])
    outside = _dump(tmp_path / "b.pkl", _ann("c0", xy=(300.0, 90.0), img_shape=(96, 128)))
    with pytest.raises(ClipError, match="joints lie outside img_shape"):
        _extract(tmp_path, f"pkl:{outside}", ds, clip)


def test_a_stamp_twice_the_video_with_every_joint_inside_the_video_is_refused_not_shrunk(tmp_path):
    """ntu_pose_extraction.py's (1080, 1920) on a 16:9 video (the aspects agree) with joints in the
    video's own pixels: rescaled, the poses shrank 4.5x into the top-left corner with only a note."""
    from stages.extract.clip import ClipError

    ds, clip = _clip_for(tmp_path, size=(96, 54))  # 16:9, as the stamp
    stamp = _dump(tmp_path / "s.pkl", _ann("c0", xy=(60.0, 40.0), img_shape=(1080, 1920)))
    with pytest.raises(ClipError, match=r"mmaction2's stamp \(1080, 1920\).*within the video's own frame.*"
                                        "img_shape=video if the file is ntu_pose_extraction.py's"):
        _extract(tmp_path, f"pkl:{stamp}", ds, clip)
    res = _extract(tmp_path, f"pkl:{stamp},img_shape=video", ds, clip)
    np.testing.assert_allclose(res.arrays["keypoints"][0, 0], [60.0, 40.0], rtol=0.02)
    # the stamp with joints beyond the video's frame, or a real frame size recorded (pyskl's) with
    # joints in a corner: img_shape's pixels, rescaled as before
    far = _dump(tmp_path / "f.pkl", _ann("c0", xy=(1200.0, 900.0), img_shape=(1080, 1920)))
    np.testing.assert_allclose(_extract(tmp_path, f"pkl:{far}", ds, clip).arrays["keypoints"][0, 0],
                               [1200.0 * 96 / 1920, 900.0 * 54 / 1080], rtol=0.02)
    real = _dump(tmp_path / "r.pkl", _ann("c0", xy=(60.0, 40.0), img_shape=(540, 960)))
    np.testing.assert_allclose(_extract(tmp_path, f"pkl:{real}", ds, clip).arrays["keypoints"][0, 0],
                               [60.0 / 10, 40.0 / 10], rtol=0.02)


def test_img_shape_option_joins_the_identity_only_when_not_the_default(tmp_path):
    p = _dump(tmp_path / "s.pkl", [_ann("c0")])
    default = create_pose_source(f"pkl:{p}").identity()
    assert set(default) == {"name", "path", "sha256", "person_rule", "skeleton"}  # as before: the same keys
    assert create_pose_source(f"pkl:{p},img_shape=check").identity() == default
    assert create_pose_source(f"pkl:{p},img_shape=video").identity() == {**default, "img_shape": "video"}
    with pytest.raises(SettingsError, match="img_shape = 'sideways' .* expected one of 'check', 'file', 'video'"):
        create_pose_source(f"pkl:{p},img_shape=sideways")
    with pytest.raises(SettingsError, match="unknown pose source option colour .*known: path, skeleton, img_shape"):
        create_pose_source(f"pkl:{p},colour=red")
    # the same option through --pose-option
    assert create_pose_source(f"pkl:{p}", {"img_shape": "video"}).identity() == {**default, "img_shape": "video"}
    odd = _dump(tmp_path / "a,b=c.pkl", [_ann("c0")])  # a path that looks like an option is taken whole
    assert create_pose_source(f"pkl:{odd}").path == str(odd.resolve())


# -- custom datasets in subfolders --------------------------------------------------------------------
def _custom(tmp_path, paths):
    root = write_custom_dataset(tmp_path / "data", [(p, 0, "train") for p in paths], ["a"])
    ds = create_dataset("custom", root=root)
    return ds, ds.load()


@pytest.mark.parametrize("naming", ["base name", "relative path", "filename under another root"])
def test_custom_clips_in_a_subfolder_match_by_base_name_and_by_relative_path(tmp_path, naming):
    ds, idx = _custom(tmp_path, [f"v/c{i}.mp4" for i in range(16)])
    assert idx.clips[0].clip_id == "v/c0"
    if naming == "base name":  # pyskl's custom_2d_skeleton.py and mmaction2's scripts
        anns = [_ann(f"c{i}", xy=(i, i)) for i in range(16)]
    elif naming == "relative path":
        anns = [_ann(f"v/c{i}", xy=(i, i)) for i in range(16)]
    else:  # mmaction2's filename: a path on the machine that made the file
        anns = [{**_ann("x", xy=(i, i)), "filename": f"/old/data/v/c{i}.mp4"} for i in range(16)]
    src = create_pose_source(f"pkl:{_dump(tmp_path / 's.pkl', anns)}")
    assert src.clips_without_poses(idx.clips, ds) == []
    assert src.estimate(idx.clips[5], None, None, ds).keypoints[0, 0, 0] == 5


def test_two_clips_with_one_base_name_are_an_ambiguity_named(tmp_path):
    ds, idx = _custom(tmp_path, ["v/c0.mp4", "w/c0.mp4"])
    src = create_pose_source(f"pkl:{_dump(tmp_path / 's.pkl', [_ann('c0')])}")
    with pytest.raises(PoseSourceError, match=r"clips 'v/c0' and 'w/c0' both match annotation 'c0'"):
        src.clips_without_poses(idx.clips, ds)
    # named by their paths, each clip takes its own
    src = create_pose_source(f"pkl:{_dump(tmp_path / 't.pkl', [_ann('w/c0', xy=(2, 2)), _ann('v/c0', xy=(1, 1))])}")
    assert src.clips_without_poses(idx.clips, ds) == []
    assert [src.estimate(c, None, None, ds).keypoints[0, 0, 0] for c in idx.clips] == [1, 2]


def test_an_annotation_of_another_folder_is_not_taken_by_base_name(tmp_path):
    """An annotation named w/c0 gave clip v/c0 its joints through the base-name alias without a word
    (pipeline predict refused the same pairing): refused naming both and match=name; an annotation
    naming no folder, or the clip's, still matches."""
    ds, idx = _custom(tmp_path, ["v/c0.mp4"])
    other = _dump(tmp_path / "w.pkl", [{**_ann("x", xy=(2, 2)), "filename": "/elsewhere/w/c0.mp4"}])
    with pytest.raises(PoseSourceError, match=r"clip 'v/c0': the annotation .* known by its base name 'c0' is "
                                              r"'/elsewhere/w/c0.mp4'.*names another folder.*match=name"):
        create_pose_source(f"pkl:{other}").clips_without_poses(idx.clips, ds)
    assert create_pose_source(f"pkl:{other},match=name").estimate(idx.clips[0], None, None, ds).keypoints[0, 0, 0] == 2
    for name in ("c0", "v/c0", "/old/data/v/c0.mp4"):
        src = create_pose_source(f"pkl:{_dump(tmp_path / 's.pkl', [{**_ann('x', xy=(1, 1)), 'filename': name}])}")
        assert src.clips_without_poses(idx.clips, ds) == [], name


def test_dataset_info_counts_subfolder_clips(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    ds, idx = _custom(tmp_path, [f"v/c{i}.mp4" for i in range(16)])
    p = _dump(tmp_path / "s.pkl", [_ann(f"c{i}") for i in range(16)])
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "custom", "--root", str(tmp_path / "data"),
                                   "--pose-source", f"pkl:{p}", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["pose_coverage"]["without_poses"] == 0


def test_a_cut_clip_does_not_take_the_whole_videos_skeleton(tmp_path):
    root = tmp_path / "data"
    write_custom_dataset(root, [], ["a"])
    (root / "train.csv").write_text("path,label,start_frame,end_frame\nv/c0.mp4,0,0,10\n")
    ds = create_dataset("custom", root=root)
    (clip,) = ds.load().clips
    assert clip.clip_id == "v/c0@0-10" and ds.clip_aliases(clip) == ("c0@0-10",)
    src = PickleSkeletonSource(path=_dump(tmp_path / "s.pkl", [_ann("c0")]))
    assert src.clips_without_poses([clip], ds) == ["v/c0@0-10"]


def test_img_shape_of_a_non_square_pixel_videos_stored_pixels_is_read_as_the_stored_picture(tmp_path):
    """pyskl writes img_shape from decord's frames, which keep a video's stored pixels (decord
    ignores the sample aspect ratio): an 80x32 stored, SAR 3:2 video is 120x32 as decoded here. The
    joints are in the stored picture, so x scales by the SAR and y stays."""
    from pevl_testutils import make_timecoded_video

    root = tmp_path / "data"
    make_timecoded_video(root / "c0.mp4", 6, size=(80, 32), extra=("-vf", "setsar=3/2"))
    write_custom_dataset(root, [("c0.mp4", 0, "train")], ["a"])
    ds = create_dataset("custom", root=root)
    (clip,) = ds.load().clips
    p = _dump(tmp_path / "c0.pkl", _ann("c0", xy=(40.0, 16.0), img_shape=(32, 80)))
    res = _extract(tmp_path, f"pkl:{p}", ds, clip)  # the default, img_shape=check
    np.testing.assert_allclose(res.arrays["keypoints"][0, 0], [60.0, 16.0], rtol=1e-5)  # the picture's centre
    assert any("rescaled from 80x32 to 120x32" in n for n in res.notes)


def test_normalised_coordinates_are_refused_in_every_img_shape_mode(tmp_path):
    from stages.extract.clip import ClipError

    ds, clip = _clip_for(tmp_path)
    kp = np.random.default_rng(0).uniform(0.2, 0.8, (1, 4, 17, 2)).astype(np.float32)
    p = _dump(tmp_path / "c0.pkl", {**_ann("c0"), "keypoint": kp})
    for spec in (f"pkl:{p}", f"pkl:{p},img_shape=file", f"pkl:{p},img_shape=video"):
        with pytest.raises(ClipError) as e:
            _extract(tmp_path, spec, ds, clip)
        assert str(p) in str(e.value) and "normalised to the frame, not pixels" in str(e.value)
    # pixels near the corner are still pixels
    near = _dump(tmp_path / "near.pkl", _ann("c0", xy=(2.0, 1.0)))
    _extract(tmp_path, f"pkl:{near}", ds, clip)


def test_an_annotation_without_a_person_is_a_clip_without_poses_before_any_decoding(tmp_path):
    """pyskl's custom_2d_skeleton.py writes keypoint (0, T, V, 2) for a video in which nothing was
    detected: counted with the clips the file has no poses for, so --missing-poses decides."""
    from stages.extract.plan import ExtractOptions, MissingPosesError, plan_entry

    root = tmp_path / "data"
    for n in ("c0", "c1"):
        make_video(root / f"{n}.mp4", frames=4)
    write_custom_dataset(root, [("c0.mp4", 0, "train"), ("c1.mp4", 0, "train")], ["a"])
    empty = {**_ann("c1"), "keypoint": np.zeros((0, 4, 17, 2), np.float32),
             "keypoint_score": np.zeros((0, 4, 17), np.float32)}
    p = _dump(tmp_path / "s.pkl", [_ann("c0"), empty])
    opts = dict(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"), pose_source=f"pkl:{p}")
    with pytest.raises(MissingPosesError, match=r"no poses for 1 of 2 clips"):
        plan_entry(ExtractOptions(**opts))
    skip = plan_entry(ExtractOptions(**opts, missing_poses="skip"))
    assert [c["clip_id"] for c in skip.clips] == ["c0"]


def test_pyskl_compressed_kinetics_layout_is_named(tmp_path):
    toc = {"frame_dir": "k0", "label": 0, "img_shape": (340, 256), "total_frames": 300,
           "raw_file": "kpfiles/k400_0.pkl", "frame_inds": np.arange(300), "box_score": np.ones(300, np.float32),
           "valid": {}}
    p = _dump(tmp_path / "k400_hrnet.pkl", {"split": {"train": ["k0"]}, "annotations": [toc]})
    with pytest.raises(ValueError, match="pyskl's compressed layout .*k400_hrnet.pkl.*does not read"):
        load_skeleton_pickle(p)
