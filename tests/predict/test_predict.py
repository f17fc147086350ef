"""``pipeline predict`` on the demo: a model trained here for one epoch on a small demo entry.

The scores of such a model say nothing about accuracy, so every check compares predict with what
must equal it: ``pipeline eval``'s scores of the same clip from the cache, and a long video's
windows with the clips they cover, each predicted alone.
"""
import csv
import io
import json
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app

#: 10 classes x (1 train + 1 val) clips of 32 frames (24 fps): a few seconds to generate and extract
DEMO_OPTIONS = {"clips_per_class": "1,1", "num_frames": "32", "workers": "1"}
TRAIN = {"train.max_epochs": 1, "train.warmup_epochs": 0, "train.batch_size": 4, "data.num_workers": 0,
         "train.val_interval": 1, "train.log_interval": 1, "model.num_video_frames": 4, "model.num_pose_frames": 8,
         "data.dataset_options": {k: v for k, v in DEMO_OPTIONS.items() if k != "workers"}}
#: the same as --cfg-options text (for `pipeline eval`, and predict with --exp)
CFG = ("data.num_workers=0 model.num_video_frames=4 model.num_pose_frames=8 data.dataset_options.clips_per_class=1,1 "
       "data.dataset_options.num_frames=32")
CLIPS = ("demo_kick_right2_val_000", "demo_jump_turn1_val_000", "demo_wave_right3_val_000")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(cache root, entry, checkpoint, the demo's folder) of a one-epoch demo PeVL."""
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions
    from stages.train.sweep import run_sweep

    base = tmp_path_factory.mktemp("predict")
    cache = base / "cache"
    rep = run_extract(ExtractOptions(dataset="demo", cache_root=str(cache), dataset_options=dict(DEMO_OPTIONS)))
    assert rep.complete, rep.failures
    sweep = run_sweep("demo", cache_root=str(cache), work_dir=base / "w", cfg_options=dict(TRAIN), say=lambda m: None)
    assert [o.status for o in sweep.outcomes] == ["trained"], [o.error for o in sweep.outcomes]
    return cache, rep.entry, Path(sweep.rows[0]["checkpoint"]), Path(rep.entry.attrs["dataset_root"])


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def predict_json(trained, *args) -> dict:
    cache, _, ckpt, _ = trained
    res = run("predict", *args, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu", "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def pose_pickle(path: Path, data_root: Path, names: dict) -> Path:
    """A 2D skeleton pickle (mmaction2 layout) holding the demo's own joints: ``names`` maps an
    annotation name to the clips whose poses it holds, one after the other."""
    anns = []
    for name, clips in names.items():
        z = [np.load(data_root / "poses" / f"{c}.npz") for c in clips]
        kp = np.concatenate([x["keypoints"] for x in z])
        anns.append({"frame_dir": name, "total_frames": len(kp), "img_shape": (128, 176), "label": 0,
                     "keypoint": kp[None].astype(np.float32),
                     "keypoint_score": np.concatenate([x["scores"] for x in z])[None].astype(np.float32)})
    with open(path, "wb") as f:
        pickle.dump(anns, f)
    return path


def test_checkpoints_carry_their_run_and_clips_their_videos_hash(trained):
    from cache.keys import file_sha256
    from stages.train.checkpoints import read_checkpoint_meta

    _, entry, ckpt, data_root = trained
    rec = read_checkpoint_meta(ckpt)["run_record"]
    assert (rec["experiment"], rec["variant"]) == ("demo", "pevl")
    assert rec["run_config"]["model"]["num_video_frames"] == 4
    assert rec["entry"]["key"] == entry.key and rec["entry"]["classes"] == entry.classes
    assert rec["entry"]["request"]["settings"]["short_side"] == 128 and rec["entry"]["pose"] == entry.attrs["pose"]
    clip = entry.read_clip(CLIPS[0])
    assert clip.attrs["source_sha256"] == file_sha256(data_root / "videos" / f"{CLIPS[0]}.mp4")


def test_predict_on_a_held_back_clip_gives_the_scores_eval_gives_from_the_cache(trained, tmp_path):
    cache, entry, ckpt, data_root = trained
    clip = CLIPS[0]  # a val clip: held back from training
    res = run("eval", "--exp", "demo", "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu", "-c", CFG,
              "--out-dir", tmp_path / "eval")
    assert res.exit_code == 0, res.output
    want = next(r for r in json.loads((tmp_path / "eval" / "predictions.json").read_text()) if r["clip_id"] == clip)
    # another name, the same bytes: the poses are found by content; frames decoded again
    video = shutil.copy(data_root / "videos" / f"{clip}.mp4", tmp_path / "recording.mp4")
    got = predict_json(trained, video)["videos"][0]
    assert got["ok"] and got["poses"].startswith(f"reused from cache entry {entry.key}, clip {clip}")
    assert got["top"][0]["class_id"] == want["pred"]
    np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-5, rtol=0)
    # --exp: the experiment's defaults (48 pose frames) rebuilt another model than the weights' (a size
    # mismatch; a setting of no tensor's shape went silently): the checkpoint's model settings are taken
    with_exp = predict_json(trained, video, "--exp", "demo", "-c", "data.dataset_options.clips_per_class=1,1 "
                            "data.dataset_options.num_frames=32")["videos"][0]
    np.testing.assert_allclose(with_exp["scores"], want["scores"], atol=1e-5, rtol=0)
    # the same joints from a skeleton file instead of the cache: stage one runs whole, the same scores
    pkl = pose_pickle(tmp_path / "poses.pkl", data_root, {"recording": [clip]})
    again = predict_json(trained, video, "--no-reuse", "--pose-source", f"pkl:{pkl}")["videos"][0]
    assert again["poses"] == f"estimated: pkl:{pkl}"
    np.testing.assert_allclose(again["scores"], want["scores"], atol=1e-5, rtol=0)


def test_a_skeleton_files_annotation_must_agree_with_the_videos_folder(trained, tmp_path):
    """An annotation ``cam1/recording`` gave ``cams/cam2/recording.mp4`` (another video, the same
    base name) its joints without a word; a folder's video under a sub-folder found no bare-named
    annotation. Both are decided by the path's end: base name, and the folder where one is named."""
    cache, _, ckpt, data_root = trained
    pkl = pose_pickle(tmp_path / "cams.pkl", data_root, {"cam1/recording": [CLIPS[2]], "bare": [CLIPS[1]]})
    for cam, clip in (("cam1", CLIPS[2]), ("cam2", CLIPS[0]), ("day1", CLIPS[1])):
        (tmp_path / "cams" / cam).mkdir(parents=True)
    shutil.copy(data_root / "videos" / f"{CLIPS[2]}.mp4", tmp_path / "cams" / "cam1" / "recording.mp4")
    shutil.copy(data_root / "videos" / f"{CLIPS[0]}.mp4", tmp_path / "cams" / "cam2" / "recording.mp4")
    shutil.copy(data_root / "videos" / f"{CLIPS[1]}.mp4", tmp_path / "cams" / "day1" / "bare.mp4")
    args = ("--no-reuse", "--pose-source", f"pkl:{pkl}", "--checkpoint", ckpt, "--cache-root", cache, "--device",
            "cpu", "--json")
    res = run("predict", tmp_path / "cams" / "cam2" / "recording.mp4", *args)
    (bad,) = json.loads(res.stdout)["videos"]
    assert res.exit_code == 1 and not bad["ok"]
    assert "'cam1/recording'" in bad["error"] and "names another folder: its poses may be another video's" in \
        bad["error"] and "--pose-option match=name" in bad["error"]
    res = run("predict", tmp_path / "cams", *args)  # a folder: cam1's and the bare name's found, cam2's refused
    got = {v["name"]: v for v in json.loads(res.stdout)["videos"]}
    assert got["cam1/recording.mp4"]["ok"] and got["day1/bare.mp4"]["ok"] and not got["cam2/recording.mp4"]["ok"]
    # a link elsewhere to cam1's video is cam1's (judged by its target too)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "take.mp4").symlink_to(tmp_path / "cams" / "cam1" / "recording.mp4")
    res = run("predict", tmp_path / "links" / "take.mp4", *args)
    assert res.exit_code == 0 and json.loads(res.stdout)["videos"][0]["ok"], res.output
    # match=name: the base name alone (the file's folders say where the videos were when it was made)
    cam2 = tmp_path / "cams" / "cam2" / "recording.mp4"
    res = run("predict", cam2, *args, "--pose-option", "match=name", "--out", tmp_path / "o")
    assert res.exit_code == 0 and json.loads(res.stdout)["videos"][0]["ok"], res.output
    # its saved result is that option's: the same --out without it does not serve it (the video is refused)
    res = run("predict", cam2, *args, "--out", tmp_path / "o")
    assert res.exit_code == 1 and not json.loads(res.stdout)["videos"][0]["ok"], res.output


def test_a_folder_with_a_broken_file_predicts_the_rest_and_reports_it(trained, tmp_path):
    cache, _, ckpt, data_root = trained
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(data_root / "videos" / f"{CLIPS[1]}.mp4", folder / "a.mp4")
    shutil.copy(data_root / "videos" / f"{CLIPS[2]}.mp4", folder / "sub" / "b.MP4")
    (folder / "broken.mp4").write_bytes((data_root / "videos" / f"{CLIPS[0]}.mp4").read_bytes()[:2000])
    (folder / "notes.txt").write_text("not a video")
    res = run("predict", folder, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu", "--csv",
              "--top-k", "2", "--decode-workers", "1", "--out", tmp_path / "out", "--video")
    assert res.exit_code == 1, res.output  # some video failed
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["video"], r["rank"]) for r in rows if not r["error"]] == [("a.mp4", "1"), ("a.mp4", "2"),
                                                                        ("sub/b.MP4", "1"), ("sub/b.MP4", "2")]
    broken = [r for r in rows if r["error"]]
    assert [r["video"] for r in broken] == ["broken.mp4"] and "moov atom not found" in broken[0]["error"]
    said = " ".join(res.stderr.split())  # the console wraps lines
    assert "failed broken.mp4: unreadable mp4" in said and "1 file(s) without a video extension left out" in said
    for name in ("a", "sub__b"):
        png = tmp_path / "out" / f"{name}.png"
        assert png.stat().st_size > 1000 and (tmp_path / "out" / f"{name}.mp4").stat().st_size > 1000
    assert not list((tmp_path / "out").glob("broken*"))


def test_a_long_video_gives_a_timeline_whose_windows_are_its_clips(trained, tmp_path):
    from stages.extract.decode import ffmpeg_exe

    cache, entry, ckpt, data_root = trained
    videos = [data_root / "videos" / f"{c}.mp4" for c in CLIPS]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"file '{v}'\n" for v in videos))
    long = tmp_path / "long.mp4"  # the three clips' streams one after the other (no re-encoding)
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i",
                    str(listing), "-c", "copy", str(long)], check=True)
    pkl = pose_pickle(tmp_path / "long.pkl", data_root, {"long": list(CLIPS)})
    got = predict_json(trained, long, "--pose-source", f"pkl:{pkl}", "--window", 32 / 24, "--out", tmp_path / "out")
    windows = got["videos"][0]["windows"]
    assert [(w["start_frame"], w["end_frame"]) for w in windows] == [(0, 32), (32, 64), (64, 96)]
    alone = predict_json(trained, *videos)["videos"]  # each clip on its own (poses reused from the cache)
    for w, a, c in zip(windows, alone, CLIPS):
        assert a["poses"].endswith(f"clip {c}")
        assert w["top"][0]["class_id"] == a["top"][0]["class_id"]
        np.testing.assert_allclose(w["scores"], a["scores"], atol=1e-5, rtol=0)
    rows = list(csv.DictReader(open(tmp_path / "out" / "long_windows.csv")))
    assert [(r["start_frame"], r["rank"]) for r in rows[:2]] == [("0", "1"), ("0", "2")] and len(rows) == 3 * 5
    assert (tmp_path / "out" / "long_timeline.png").stat().st_size > 1000


def test_a_long_video_whose_tail_is_cut_off_keeps_its_whole_windows(trained, tmp_path):
    """A recording cut short (a copy that stopped, a camera that died): every whole window was
    scored, then the truncated tail failed the whole video and they were thrown away."""
    from stages.extract.decode import ffmpeg_exe

    _, _, _, data_root = trained
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"file '{data_root / 'videos' / f'{c}.mp4'}'\n" for c in CLIPS))
    long = tmp_path / "long.mp4"  # the index first, so a cut file still opens
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i",
                    str(listing), "-c", "copy", "-movflags", "+faststart", str(long)], check=True)
    data = long.read_bytes()
    long.write_bytes(data[: int(len(data) * 0.8)])
    pkl = pose_pickle(tmp_path / "long.pkl", data_root, {"long": list(CLIPS)})
    res = run("predict", long, "--pose-source", f"pkl:{pkl}", "--window", 32 / 24, "--out", tmp_path / "out",
              "--checkpoint", trained[2], "--cache-root", trained[0], "--device", "cpu", "--json")
    # (its windows are output; the video is said to be incomplete, and the exit status is 1: the
    # table and --csv showed a success)
    assert res.exit_code == 1 and "incomplete long.mp4: decoding stopped early" in res.stderr, res.output
    assert "0 of 1 video(s) failed, 1 predicted in part" in res.stderr
    got = json.loads(res.stdout)["videos"][0]
    assert got["ok"], got
    assert [(w["start_frame"], w["end_frame"]) for w in got["windows"]] == [(0, 32), (32, 64)]
    assert any(n.startswith("decoding stopped early (truncated") and n.endswith("the 2 whole window(s) before it, "
                                                                                "frames 0-64, are kept")
               for n in got["notes"]), got["notes"]
    # its pictures are written, its result is not saved: a rerun tries the video again
    assert (tmp_path / "out" / "long_windows.csv").is_file() and not (tmp_path / "out" / "long.result.json").exists()
    # poses that do not cover a whole video are no damaged tail: the video fails, as before
    short = pose_pickle(tmp_path / "short.pkl", data_root, {"long": list(CLIPS[:2])})
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i",
                    str(listing), "-c", "copy", str(long)], check=True)
    res = run("predict", long, "--pose-source", f"pkl:{short}", "--window", 32 / 24, "--checkpoint", trained[2],
              "--cache-root", trained[0], "--device", "cpu", "--json")
    assert res.exit_code == 1 and "the poses cover 64 frames, the video decoded 96" in res.stdout, res.output


def test_hrnet_on_the_fly_whole_and_in_windows(trained, tmp_path):
    from pevl_testutils import make_video

    video = make_video(tmp_path / "clip.mp4", frames=12, size=(64, 48), fps=12)  # HRNet on a CPU: few frames
    hrnet = ["--pose-source", "hrnet", "--pose-option", "checkpoint=none", "--pose-option", "flip_test=false",
             "--no-reuse"]
    out = predict_json(trained, video, *hrnet)
    whole = out["videos"][0]
    assert whole["ok"] and whole["poses"] == "estimated: hrnet" and whole["num_frames"] == 12
    # the model was trained on the demo's own poses: the results say these came from elsewhere
    assert out["pose_source"] == "hrnet" and out["trained_pose_source"] == "dataset"
    assert any("the model was trained on poses from" in n for n in out["notes"])
    win = predict_json(trained, video, *hrnet, "--window", "0.5")["videos"][0]
    assert [(w["start_frame"], w["end_frame"]) for w in win["windows"]] == [(0, 6), (6, 12)]
    assert all(np.isfinite(w["scores"]).all() for w in win["windows"])


def test_a_checkpoint_without_its_run_record_names_what_to_give(trained, tmp_path):
    from stages.train.checkpoints import checkpoint_safe_globals

    cache, _, ckpt, data_root = trained
    with checkpoint_safe_globals():
        old = torch.load(ckpt, map_location="cpu", weights_only=True)
    del old["meta"]["run_record"]
    old_path = tmp_path / "old.pth"
    torch.save(old, old_path)
    video = data_root / "videos" / f"{CLIPS[0]}.mp4"
    res = run("predict", video, "--checkpoint", old_path, "--cache-root", cache, "--device", "cpu")
    assert res.exit_code == 2
    said = " ".join(res.stderr.split())
    assert "carries no run record" in said and "--exp EXPERIMENT --variant VARIANT" in said
    # the run config from --exp; the entry the checkpoint's mmengine dataset_meta names, from this cache
    new = predict_json(trained, video)["videos"][0]
    res = run("predict", video, "--checkpoint", old_path, "--cache-root", cache, "--device", "cpu", "--exp", "demo",
              "-c", CFG, "--json")
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(json.loads(res.stdout)["videos"][0]["scores"], new["scores"], atol=1e-6, rtol=0)


def test_windows_cover_the_video():
    from stages.predict.windows import windows_of

    assert windows_of(96, 32, 32) == [(0, 32), (32, 64), (64, 96)]
    assert windows_of(100, 32, 32) == [(0, 32), (32, 64), (64, 96), (68, 100)]  # the last one ends at the end
    assert windows_of(96, 32, 16)[-1] == (64, 96) and len(windows_of(96, 32, 16)) == 5
    assert windows_of(20, 32, 16) == [(0, 20)]  # shorter than a window: one window


def test_outputs_that_cannot_be_written_fail_that_video_not_the_run(trained, tmp_path):
    """A picture that cannot be written (a full disk; here a folder under its name) stopped the whole
    run with nothing printed: the videos after it were never predicted."""
    cache, _, ckpt, data_root = trained
    folder = tmp_path / "in"
    folder.mkdir()
    for name, c in (("a", CLIPS[1]), ("b", CLIPS[2])):
        shutil.copy(data_root / "videos" / f"{c}.mp4", folder / f"{name}.mp4")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    res = run("predict", folder, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu", "--csv",
              "--top-k", "1", "--decode-workers", "0", "--out", tmp_path / "out")
    assert res.exit_code == 1, res.output
    rows = {r["video"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert "predicted, but its outputs could not be written into" in rows["a.mp4"]["error"]
    assert not rows["b.mp4"]["error"] and (tmp_path / "out" / "b.result.json").is_file()
    assert not (tmp_path / "out" / "a.result.json").exists()  # predicted again by a rerun


def test_a_file_name_that_is_not_utf8_is_predicted_with_all_its_outputs(trained, tmp_path):
    """``b'caf\xe9.mp4'``: OpenCV's captions crashed the process (SIGSEGV), the windows' CSV and the
    timeline's title raised, and the whole `--out` run stopped."""
    import os

    cache, _, ckpt, data_root = trained
    folder = tmp_path / "in"
    folder.mkdir()
    odd = folder / os.fsdecode(b"caf\xe9.mp4")
    shutil.copy(data_root / "videos" / f"{CLIPS[1]}.mp4", odd)
    shutil.copy(data_root / "videos" / f"{CLIPS[2]}.mp4", folder / "b.mp4")
    for extra in ([], ["--window", 1.0]):
        out = tmp_path / f"out{len(extra)}"
        res = run("predict", folder, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu", "--csv",
                  "--decode-workers", "0", "--out", out, *extra)
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in out.glob("*.result.json")) == sorted([os.fsdecode(b"caf\xe9.result.json"),
                                                                           "b.result.json"])
        assert "caf\\udce9.mp4," in res.stdout  # the CSV escapes the byte, as --json does
    again = run("predict", folder, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu",
                "--decode-workers", "0", "--out", tmp_path / "out0")  # the table, from the saved results
    assert again.exit_code == 0 and "caf\\udce9.mp4" in again.stdout, again.output


def test_videos_are_found_under_folders(tmp_path):
    from stages.predict.inputs import find_videos

    (tmp_path / "d" / "e").mkdir(parents=True)
    for p in ("d/x.mp4", "d/e/y.MKV", "d/.hidden.mp4", "d/z.txt"):
        (tmp_path / p).write_bytes(b"")
    found, notes = find_videos([tmp_path / "d", tmp_path / "d" / "x.mp4", tmp_path / "missing.mp4"])
    assert [(v.name, v.clip_id) for v in found] == [("e/y.MKV", "e/y"), ("x.mp4", "x"), ("missing.mp4", "missing")]
    assert notes == [f"{tmp_path / 'd'}: 1 file(s) without a video extension left out",
                     f"{tmp_path / 'd'}: 1 hidden file(s) or folder(s) left out"]
    # a symlinked folder is searched (it was skipped, uncounted), a loop once; a second name of a
    # video is predicted once and said (it vanished from the outputs)
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "w.mp4").write_bytes(b"")
    (tmp_path / "d" / "lnk").symlink_to(tmp_path / "ext")
    (tmp_path / "d" / "e" / "loop").symlink_to(tmp_path / "d")
    (tmp_path / "d" / "alias.mp4").symlink_to(tmp_path / "d" / "x.mp4")
    (tmp_path / "d" / "a_link").symlink_to(tmp_path / "d" / "e")  # sorts before the folder it names
    (tmp_path / "d" / "e" / "up").symlink_to(tmp_path)  # a way out above the folder
    found, notes = find_videos([tmp_path / "d"])
    assert [v.name for v in found] == ["e/y.MKV", "lnk/w.mp4", "x.mp4"]
    assert f"{tmp_path / 'd'}: 3 symlinked folder(s) inside it or above it not followed" in notes
    assert notes[-1] == "1 name(s) of a video already listed predicted once, under its first name: alias.mp4 (= x.mp4)"
    (tmp_path / "via").symlink_to(tmp_path / "d")  # the same folder, named through a link: the same names
    assert [v.name for v in find_videos([tmp_path / "via"])[0]] == [v.name for v in found]


def test_a_damaged_cached_clip_is_not_reused_and_said(trained, tmp_path):
    """Poses found in the cache by the video's content, but the clip's keypoints are damaged: not
    reused; with the demo's own poses (only in the cache) the video fails saying so and naming the
    other pose sources, where it failed with an internal error."""
    cache, entry, ckpt, data_root = trained
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)  # the module's cache stays whole for the other tests
    clip = CLIPS[1]
    uid = next(r["uid"] for r in entry.clips() if r["clip_id"] == clip)
    chunk = copy / entry.path.relative_to(cache) / "clips" / uid / "keypoints" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[-2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    video = shutil.copy(data_root / "videos" / f"{clip}.mp4", tmp_path / "again.mp4")
    res = run("predict", video, "--checkpoint", ckpt, "--cache-root", copy, "--device", "cpu", "--json")
    got = json.loads(res.stdout)["videos"][0]
    assert res.exit_code == 1 and not got["ok"]
    assert f"its clip in the cache cannot be read: cached clip {clip} of entry {entry.key} cannot be read" in \
        got["error"] and "content does not match the digest" in got["error"] and "--pose-source" in got["error"]


def test_quiet_predict_prints_the_results_and_no_messages(trained, tmp_path):
    cache, entry, ckpt, data_root = trained
    video = shutil.copy(data_root / "videos" / f"{CLIPS[2]}.mp4", tmp_path / "q.mp4")
    res = run("predict", video, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu", "-q",
              "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert "from " + str(ckpt) not in res.output and "wrote " not in res.output  # the header and the files written
    assert "q.mp4" in res.stdout and (tmp_path / "out" / "q.png").is_file()


def test_a_rerun_into_the_same_out_folder_takes_the_results_written_before(trained, tmp_path):
    """A killed `predict --out DIR` over a folder continues: the videos whose result files the first
    run wrote (with this checkpoint, these options, these bytes) are read back, not predicted again;
    a video that changed is predicted again; the output lists every video in order."""
    _, _, _, data_root = trained
    videos = tmp_path / "videos"
    videos.mkdir()
    for c in CLIPS[:2]:
        shutil.copy(data_root / "videos" / f"{c}.mp4", videos / f"{c}.mp4")
    out = tmp_path / "out"
    first = predict_json(trained, videos, "--out", out)
    order = sorted(CLIPS[:2])  # a folder's videos come sorted by path
    assert [v["name"] for v in first["videos"]] == [f"{c}.mp4" for c in order]
    saved = {c: out / f"{c}.result.json" for c in CLIPS[:2]}
    assert all(p.is_file() for p in saved.values()) and (out / f"{CLIPS[0]}.png").is_file()

    # what the rerun shows of a video done before is its file's: a planted score comes out
    planted = json.loads(saved[order[0]].read_text())
    planted["result"]["scores"] = [0.0] * len(planted["result"]["scores"])
    planted["result"]["scores"][7] = 0.99
    saved[order[0]].write_text(json.dumps(planted))
    shutil.copy(data_root / "videos" / f"{CLIPS[2]}.mp4", videos / f"{CLIPS[2]}.mp4")  # one more video
    cache, _, ckpt, _ = trained
    res = run("predict", videos, "--out", out, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu",
              "--json")
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert "2 of 3 video(s) predicted before into" in " ".join(res.stderr.split())
    names = [v["name"] for v in again["videos"]]
    assert names == [f"{c}.mp4" for c in sorted(CLIPS)]
    got = {v["name"]: v for v in again["videos"]}
    assert got[f"{order[0]}.mp4"]["top"][0]["class_id"] == 7 and \
        got[f"{order[0]}.mp4"]["top"][0]["score"] == pytest.approx(0.99)
    assert got[f"{order[1]}.mp4"]["scores"] == first["videos"][1]["scores"]
    assert (out / f"{CLIPS[2]}.result.json").is_file()

    # a video whose bytes changed (its modification time here) is predicted again
    import os

    st = os.stat(videos / f"{order[0]}.mp4")
    os.utime(videos / f"{order[0]}.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third = {v["name"]: v for v in predict_json(trained, videos, "--out", out)["videos"]}
    assert third[f"{order[0]}.mp4"]["scores"] == first["videos"][0]["scores"]
    # a video that changed and now fails loses its earlier result file (a script reading the result
    # files took the old content's label as this run's); the others keep theirs
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(videos / f"{order[0]}.mp4", broken / "v.mp4")
    predict_json(trained, broken, "--out", out)
    assert (out / "v.result.json").is_file()
    (broken / "v.mp4").write_bytes(b"not a video any more")
    res = run("predict", broken, "--out", out, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu")
    assert res.exit_code == 1 and not (out / "v.result.json").exists() and saved[order[1]].is_file(), res.output
    # another option is another result: nothing is taken from the files
    res = run("predict", videos / f"{order[1]}.mp4", "--out", out, "--window", "1", "--checkpoint", ckpt,
              "--cache-root", cache, "--device", "cpu")
    assert res.exit_code == 0 and "predicted before" not in " ".join(res.output.split()), res.output
    # but not --top-k (every class's score is saved: HRNet ran again on every video for it); the
    # windows' CSV, which holds the ranks, is written again
    stem = order[1]
    for k in (2, 4):
        res = run("predict", videos / f"{stem}.mp4", "--out", out, "--window", "1", "--top-k", k, "--checkpoint",
                  ckpt, "--cache-root", cache, "--device", "cpu", "--json")
        assert res.exit_code == 0 and "1 of 1 video(s) predicted before" in " ".join(res.stderr.split()), res.output
        rows = list(csv.DictReader(open(out / f"{stem}_windows.csv")))
        assert {r["rank"] for r in rows} == {str(i + 1) for i in range(k)}
        assert all(len(w["top"]) == k for w in json.loads(res.stdout)["videos"][0]["windows"])
    # a CSV that cannot be written again fails that video, not the run
    (out / f"{stem}_windows.csv").unlink()
    (out / f"{stem}_windows.csv").mkdir()
    res = run("predict", videos / f"{stem}.mp4", "--out", out, "--window", "1", "--checkpoint", ckpt, "--cache-root",
              cache, "--device", "cpu", "--csv")
    assert res.exit_code == 1 and "its windows' CSV could not be written into" in res.stdout, res.output
    # without the cache's poses the demo's videos have none (their source is the dataset): it fails, as
    # a fresh run does, and is not taken from the file the run that reused them wrote
    res = run("predict", videos / f"{order[1]}.mp4", "--out", out, "--no-reuse", "--checkpoint", ckpt,
              "--cache-root", cache, "--device", "cpu")
    assert res.exit_code == 1 and "predicted before" not in " ".join(res.output.split()), res.output


def test_videos_that_would_share_their_outputs_names_get_names_of_their_own():
    from stages.predict.draw import output_stems
    from stages.predict.inputs import VideoInput

    vids = [VideoInput("/d/sub/a.mp4", "sub/a.mp4"), VideoInput("/d/sub__a.mp4", "sub__a.mp4"),
            VideoInput("/d/x.mp4", "x.mp4"), VideoInput("/d/x.avi", "x.avi"), VideoInput("/d/y.mp4", "y.mp4"),
            VideoInput("/d/Case.mp4", "Case.mp4"), VideoInput("/d/case.mp4", "case.mp4")]
    stems = output_stems(vids)
    assert stems["/d/y.mp4"] == "y" and len({s.lower() for s in stems.values()}) == 7
    assert stems["/d/Case.mp4"].startswith("Case__")
    assert stems["/d/sub/a.mp4"].startswith("sub__a__") and stems["/d/x.avi"].startswith("x__")
    assert output_stems(list(reversed(vids))) == stems  # the same names on every run


def test_long_names_get_outputs_a_filesystem_takes(tmp_path):
    """A 248-byte name, or folders of 120-byte names flattened into one stem, made output names over
    the 255 bytes a file name may hold: the video was predicted and never saved, on every rerun."""
    from cache.fsutil import atomic_write_json, written_whole
    from stages.predict.draw import MAX_STEM_BYTES, output_stems
    from stages.predict.inputs import VideoInput
    from stages.predict.saved import result_path

    long = "é" * 60 + "L" * 120 + ".mp4"  # 244 bytes
    folders = "/".join(["F" * 120] * 3) + "/clip.mp4"
    vids = [VideoInput(f"/d/{long}", long), VideoInput(f"/d/{folders}", folders),
            VideoInput(f"/d/{folders[:-4]}x.mp4", folders[:-4] + "x.mp4"), VideoInput("/d/short.mp4", "short.mp4")]
    stems = output_stems(vids)
    assert stems["/d/short.mp4"] == "short" and len(set(stems.values())) == 4
    assert all(len(s.encode()) <= MAX_STEM_BYTES for s in stems.values())
    assert stems[f"/d/{long}"].startswith("é" * 60) and output_stems(list(reversed(vids))) == stems
    for stem in stems.values():  # the longest names made of a stem, as they are written
        atomic_write_json(result_path(tmp_path, stem), {"ok": 1})
        with written_whole(tmp_path / f"{stem}_timeline.png", keep_suffix=True) as tmp:
            tmp.write_bytes(b"png")
    assert len(list(tmp_path.iterdir())) == 8


def test_runs_into_one_out_folder_keep_each_others_outputs(trained, tmp_path):
    """``predict d1/x.mp4 --out o`` then ``predict d2/x.mp4 --out o``: the second wrote its picture
    and result over the first's (each run named the video ``x``), and a third run of the first
    predicted it again. A stem an earlier run's result holds for another video is kept apart."""
    cache, _, ckpt, data_root = trained
    for d, clip in (("d1", CLIPS[0]), ("d2", CLIPS[1])):
        (tmp_path / d).mkdir()
        shutil.copy(data_root / "videos" / f"{clip}.mp4", tmp_path / d / "x.mp4")
    out = tmp_path / "o"

    def predict(video):
        res = run("predict", video, "--out", out, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu",
                  "--json")
        assert res.exit_code == 0, res.output
        return res

    predict(tmp_path / "d1" / "x.mp4")
    first = json.loads((out / "x.result.json").read_text())
    predict(tmp_path / "d2" / "x.mp4")
    assert json.loads((out / "x.result.json").read_text()) == first  # the first run's, untouched
    (other,) = [p for p in out.glob("x__*.result.json")]
    assert json.loads(other.read_text())["result"]["video"] == str(tmp_path / "d2" / "x.mp4")
    assert (out / f"{other.name[:-len('.result.json')]}.png").is_file()
    res = predict(tmp_path / "d1" / "x.mp4")
    assert "1 of 1 video(s) predicted before" in " ".join(res.stderr.split())


def test_window_times_are_on_the_files_timeline_when_the_video_starts_late(trained, tmp_path):
    """A recording whose video stream starts 2 s after its audio: a player shows the first frame at
    2 s, and the windows were reported from 0 (every time on the timeline 2 s early)."""
    from stages.extract.decode import ffmpeg_exe, probe

    _, _, _, data_root = trained
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"file '{data_root / 'videos' / f'{c}.mp4'}'\n" for c in CLIPS))
    joined = tmp_path / "joined.mp4"
    ff = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error"]
    subprocess.run(ff + ["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(joined)], check=True)
    late = tmp_path / "late.mp4"
    subprocess.run(ff + ["-f", "lavfi", "-t", "7", "-i", "anullsrc=r=8000:cl=mono", "-itsoffset", "2", "-i",
                         str(joined), "-map", "1:v", "-map", "0:a", "-c:v", "copy", "-c:a", "aac", str(late)],
                   check=True)
    assert probe(str(late)).video_delay == 2.0 and probe(str(joined)).video_delay == 0.0
    pkl = pose_pickle(tmp_path / "late.pkl", data_root, {"late": list(CLIPS)})
    got = predict_json(trained, late, "--pose-source", f"pkl:{pkl}", "--window", 32 / 24)["videos"][0]
    assert [(w["start_frame"], w["start_s"]) for w in got["windows"]] == [(0, 2.0), (32, 2.0 + 32 / 24),
                                                                         (64, 2.0 + 64 / 24)]
    assert any("the video stream starts 2.000 s into the file" in n for n in got["notes"]), got["notes"]


def test_an_entry_of_other_stage_one_settings_is_noted(trained, tmp_path):
    """``--entry`` of a JPEG entry for a model trained on raw frames ran stage one as JPEG with no
    note (the settings line alone showed the codec)."""
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    cache, entry, ckpt, data_root = trained
    jpeg = run_extract(ExtractOptions(dataset="demo", cache_root=str(cache), dataset_options=dict(DEMO_OPTIONS),
                                      settings={"frames_codec": "jpeg"})).entry
    video = data_root / "videos" / f"{CLIPS[0]}.mp4"
    res = run("predict", video, "--entry", jpeg.key, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu",
              "--json")
    assert res.exit_code == 0, res.output
    notes = json.loads(res.stdout)["notes"]
    assert any(n.startswith(f"stage one as entry {jpeg.key} (--entry), the model was trained on entry {entry.key}: ")
               and "frames_codec 'jpeg' (trained: 'none')" in n for n in notes), notes
    plain = json.loads(run("predict", video, "--checkpoint", ckpt, "--cache-root", cache, "--device", "cpu",
                           "--json").stdout)
    assert not any(n.startswith("stage one as entry") for n in plain["notes"])
