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


def _one_clip_dataset(tmp_path, names: tuple[str, ...] = ("a",)) -> list[str]:
    """A custom dataset of one clip (or of clips ``names``, in that order) with their poses in a
    skeleton file; the extract command for it."""
    root = tmp_path / "data"
    root.mkdir()
    for name in names:
        pattern_video(root / f"{name}.mp4", frames=8)
    write_custom_dataset(root, [(f"{name}.mp4", 0, "train") for name in names], ["x", "y"])
    (tmp_path / "poses.pkl").write_bytes(pickle.dumps([{"frame_dir": name, "img_shape": (48, 64),
                                                        "keypoint": np.full((1, 8, 17, 2), 20.0, np.float32),
                                                        "keypoint_score": np.ones((1, 8, 17), np.float32)}
                                                       for name in names]))
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


def _cached(tmp_path) -> list[str]:
    (entry,) = CacheStore(tmp_path / "cache").entries("custom")
    return sorted(entry._by_uid[u]["clip_id"] for u in entry.done_uids())


def test_an_empty_shard_says_so_and_exits_0(tmp_path):
    """Shard 5/8 of a 2-clip dataset owns no clip: it says so, naming the shard and the clip count,
    and exits 0 (an array sized above the clip count has empty shards by design)."""
    args = _one_clip_dataset(tmp_path, ("a", "b"))
    res = CliRunner().invoke(app, args + ["--shard", "5/8"])
    text = " ".join(res.output.split())
    assert res.exit_code == 0, text[-2000:]
    assert "shard 5/8 owns no clip: custom has 2 clips, so only shards 0 to 1 of 8 have any" in text, text
    assert "2 of the entry's 2 clips are still missing outside shard 5/8" in text and _cached(tmp_path) == []
    res = CliRunner().invoke(app, args + ["--shard", "1/8"])
    assert res.exit_code == 0 and "owns no clip" not in res.output and _cached(tmp_path) == ["b"], res.output


def test_shards_of_different_counts_are_warned_about(tmp_path):
    """0/2 beside 2/3 leaves clip b (position 1) to no shard, and both exit 0: the later one names
    both counts, how many clips are missing and that a run without --shard finishes them."""
    args = _one_clip_dataset(tmp_path, ("a", "b", "c"))
    first = CliRunner().invoke(app, args + ["--shard", "0/2"])
    text = " ".join(first.output.split())
    assert first.exit_code == 0 and _cached(tmp_path) == ["a", "c"], text[-2000:]
    assert "this shard has no clip left" in text and "rerun to continue" not in text, text
    assert "1 of the entry's 3 clips is still missing outside shard 0/2: the other shards of 2 finish them" in text
    assert "shards of different counts" not in text
    (entry,) = CacheStore(tmp_path / "cache").entries("custom")
    (entry.path / "runs" / "older.json").write_text('{"host": "x"}')  # a record without a shard: passed over
    second = CliRunner().invoke(app, args + ["--shard", "2/3"])
    text = " ".join(second.output.split())
    assert second.exit_code == 0, text[-2000:]
    assert "runs of this entry used --shard 0/2 (N = 2) beside this --shard 2/3 (N = 3)" in text, text
    assert "1 of the entry's 3 clips is still missing: run `pipeline extract` without --shard" in text
    whole = CliRunner().invoke(app, args)
    assert whole.exit_code == 0 and "shards of different counts" not in whole.output
    assert _cached(tmp_path) == ["a", "b", "c"]


def test_a_dead_writers_claim_is_said_to_be_taken_over_at_once(tmp_path):
    """A missing clip claimed by a process of this host that has ended is not 'left to' it until
    the claim goes stale: the next run that reaches it takes it over at once, and the summary says so."""
    import json
    import subprocess
    import sys
    import time

    from cache.claims import HOST
    from cache.layout import clip_uid

    args = _one_clip_dataset(tmp_path, ("a", "b"))
    assert CliRunner().invoke(app, args + ["--shard", "0/2"]).exit_code == 0
    (entry,) = CacheStore(tmp_path / "cache").entries("custom")
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    claim = entry.path / "claims" / clip_uid("b")
    claim.write_text(json.dumps({"host": HOST, "pid": ended.pid, "time": time.time(), "token": "deadbeef"}))
    res = CliRunner().invoke(app, args + ["--shard", "0/2"])  # b is not this shard's: its claim stays
    text = " ".join(res.output.split())
    assert res.exit_code == 0, text[-2000:]
    assert "1 missing clip(s) hold claims of writers that are gone" in text, text
    assert "takes them over at once" in text and f"b (claims/{claim.name}: {HOST} pid {ended.pid}" in text
    assert "left to them" not in text
    whole = CliRunner().invoke(app, args)  # and it does, at once
    assert whole.exit_code == 0 and _cached(tmp_path) == ["a", "b"], whole.output
