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


def test_a_new_entry_that_differs_only_in_adapter_options_is_pointed_out(tmp_path):
    """A rerun that leaves out --coarse-type makes a new entry and extracts every clip again: said
    before it starts, naming the entry and what differs."""
    root = tmp_path / "data"
    root.mkdir()
    pattern_video(root / "a.mp4", frames=8)
    write_custom_dataset(root, [("a.mp4", 0, "train")], ["x", "y"])
    (tmp_path / "poses.pkl").write_bytes(pickle.dumps([{"frame_dir": "a", "img_shape": (48, 64),
                                                        "keypoint": np.full((1, 8, 17, 2), 20.0, np.float32),
                                                        "keypoint_score": np.ones((1, 8, 17), np.float32)}]))
    args = ["extract", "--dataset", "custom", "--root", str(root), "--cache-root", str(tmp_path / "cache"),
            "--pose-source", f"pkl:{tmp_path / 'poses.pkl'}", "--num-frames", "2", "--short-side", "48"]
    first = CliRunner().invoke(app, args + ["--coarse-type", "action"])
    assert first.exit_code == 0 and "differs from this one" not in first.output, first.output
    (old,) = CacheStore(tmp_path / "cache").entries("custom")
    again = CliRunner().invoke(app, args)
    text = " ".join(again.output.split())
    assert again.exit_code == 0 and f"entry {old.key} (1/1 clips cached) differs from this one only in " \
        "dataset_options.coarse_type: action" in text, text
