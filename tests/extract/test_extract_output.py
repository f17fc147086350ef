"""What stage one tells a researcher as it runs: the notes of the clips it kept, and an entry it
is about to duplicate."""
import pickle

import numpy as np
from typer.testing import CliRunner

from cache import CacheStore
from pevl_testutils import pattern_video, remux, write_custom_dataset
from pipeline.cli import app


def test_notes_reach_the_extract_summary_and_cache_show(tmp_path):
    """What stage one kept with a note (here a phone's rotation) is listed when the run ends and
    printed with the clip, not only left in its attributes."""
    root = tmp_path / "data"
    root.mkdir()
    pattern_video(root / "plain.mp4", frames=8)
    remux(root / "plain.mp4", root / "phone.mp4", before_input=("-display_rotation", "90"))
    write_custom_dataset(root, [("plain.mp4", 0, "train"), ("phone.mp4", 1, "train")], ["a", "b"])
    kp = np.full((1, 8, 17, 2), 20.0, np.float32)
    (tmp_path / "poses.pkl").write_bytes(pickle.dumps([
        {"frame_dir": name, "img_shape": shape, "keypoint": kp, "keypoint_score": np.ones((1, 8, 17), np.float32)}
        for name, shape in (("plain", (48, 64)), ("phone", (64, 48)))]))
    cache = str(tmp_path / "cache")
    res = CliRunner().invoke(app, ["extract", "--dataset", "custom", "--root", str(root), "--cache-root", cache,
                                   "--coarse-type", "x", "--pose-source", f"pkl:{tmp_path / 'poses.pkl'}",
                                   "--num-frames", "2", "--short-side", "48"])
    text = " ".join(res.output.split())
    assert res.exit_code == 0, text[-2000:]
    assert "notes on 1 of the 2 clips extracted now" in text and "phone: " in text and "rotat" in text, text
    (entry,) = CacheStore(cache).entries("custom")
    shown = CliRunner().invoke(app, ["cache", "show", entry.key, "phone", "--out", str(tmp_path / "p.png"),
                                     "--cache-root", cache])
    assert shown.exit_code == 0 and "note: " in shown.output and "rotat" in shown.output


def _one_clip_dataset(tmp_path) -> list[str]:
    """A custom dataset of one clip with its poses in a skeleton file; the extract command for it."""
    root = tmp_path / "data"
    root.mkdir()
    pattern_video(root / "a.mp4", frames=8)
    write_custom_dataset(root, [("a.mp4", 0, "train")], ["x", "y"])
    (tmp_path / "poses.pkl").write_bytes(pickle.dumps([{"frame_dir": "a", "img_shape": (48, 64),
                                                        "keypoint": np.full((1, 8, 17, 2), 20.0, np.float32),
                                                        "keypoint_score": np.ones((1, 8, 17), np.float32)}]))
    return ["extract", "--dataset", "custom", "--root", str(root), "--cache-root", str(tmp_path / "cache"),
            "--pose-source", f"pkl:{tmp_path / 'poses.pkl'}", "--num-frames", "2", "--short-side", "48"]


def test_a_new_entry_that_differs_only_in_adapter_options_is_pointed_out(tmp_path):
    """A rerun that leaves out --coarse-type makes a new entry and extracts every clip again: said
    before it starts, naming the entry and what differs."""
    args = _one_clip_dataset(tmp_path)
    first = CliRunner().invoke(app, args + ["--coarse-type", "action"])
    assert first.exit_code == 0 and "differs from this one" not in first.output, first.output
    # a root that was not there is said to be new (a mistyped path, a shared mount that is down)
    assert f"no cache at {tmp_path / 'cache'} yet: starting one there" in " ".join(first.output.split())
    (old,) = CacheStore(tmp_path / "cache").entries("custom")
    again = CliRunner().invoke(app, args)
    text = " ".join(again.output.split())
    assert "starting one there" not in text
    assert again.exit_code == 0 and f"entry {old.key} (1/1 clips cached) differs from this one only in " \
        "dataset_options.coarse_type: action" in text, text


def test_missing_clips_claimed_by_other_writers_are_named(tmp_path):
    """A clip another writer holds (here a claim stamped ahead by a clock running fast, within the
    ttl) is left to it: the summary says whose claim and since when, not only 'missing'."""
    import json
    import os
    import shutil
    import time

    args = _one_clip_dataset(tmp_path) + ["--coarse-type", "action"]
    assert CliRunner().invoke(app, args).exit_code == 0
    (entry,) = CacheStore(tmp_path / "cache").entries("custom")
    shutil.rmtree(entry.path / "clips" / "a")
    claim = entry.path / "claims" / "a"
    claim.parent.mkdir(exist_ok=True)
    claim.write_text(json.dumps({"host": "node17", "pid": 4242, "time": time.time(), "token": "deadbeef"}))
    os.utime(claim, (time.time() + 200,) * 2)  # ahead, but within the ttl: still held
    res = CliRunner().invoke(app, args)
    text = " ".join(res.output.split())
    assert res.exit_code == 0 and "incomplete" in text, text
    assert "1 missing clip(s) are claimed by other writers" in text and "a (claims/a: node17 pid 4242, touched" in text
    assert "s in the future: a clock running ahead" in text
