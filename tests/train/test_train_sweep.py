"""Stage two end to end on a small real cache entry: a sweep (no decoding, no pose model),
its results schema and files, a rerun that skips, `pipeline eval`, and the metric."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from pevl_stage2_testutils import small_demo  # noqa: E402,F401  (session fixture)

import json

import numpy as np
import pytest

from stages.train.metrics import classification_metrics
from stages.train.report import RESULT_KEYS

#: a few seconds per variant on CPU: 4 of the 16 cached frames, 8 pose frames, one epoch
SMALL = {"train.max_epochs": 1, "train.warmup_epochs": 0, "train.batch_size": 4, "data.num_workers": 0,
         "train.val_interval": 1, "train.log_interval": 1, "model.num_video_frames": 4,
         "model.num_pose_frames": 8}


def small_options(data_cfg: dict) -> dict:
    """The small schedule on the fixture's entry (its candidates per segment named: the session's
    cache also holds the same demo with other stage-one settings)."""
    return {**SMALL, "data.root": data_cfg["root"], "data.dataset_options": data_cfg["dataset_options"],
            "data.extract.frames_per_segment": data_cfg["extract"]["frames_per_segment"]}


def test_classification_metrics():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4]])
    labels = np.array([0, 1, 1, 2, 0])
    r = classification_metrics(scores, labels, 3)
    assert r["top1"] == pytest.approx(60.0)
    assert r["top5"] == pytest.approx(100.0)  # top-min(5, C)
    # per class: 0 -> 1/2, 1 -> 1/2, 2 -> 1/1
    assert r["mean_class_acc"] == pytest.approx(100 * (0.5 + 0.5 + 1.0) / 3)
    assert r["confusion"].tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 1]]
    tie = classification_metrics(np.array([[0.5, 0.5]]), np.array([1]), 2)
    assert tie["top1"] == 0.0  # a tie goes to the lower class id
    # the fine pairs' top-1: only clips of those classes, argmax over all classes
    assert classification_metrics(scores, labels, 3, fine_classes=[1, 2])["fine_pair_top1"] == pytest.approx(
        100 * 2 / 3)
    assert "fine_pair_top1" not in r
    # a class with no clip of its own: left out unless predicted, then counted 0, as mmaction2's
    # mean_class_accuracy (its confusion matrix spans the true and the predicted classes)
    absent = classification_metrics(np.eye(4)[[0, 1, 1, 0]], np.array([0, 1, 1, 0]), 4)
    assert absent["mean_class_acc"] == pytest.approx(100.0)
    predicted = classification_metrics(np.eye(4)[[0, 1, 2, 0]], np.array([0, 1, 1, 0]), 4)
    assert predicted["mean_class_acc"] == pytest.approx(100 * (1.0 + 0.5 + 0.0) / 3)
    assert predicted["per_class_acc"] == [100.0, 50.0, None, None]


def test_fine_pair_classes_from_the_dataset_meta():
    from stages.train.metrics import fine_pair_classes

    meta = dict(class_keys=["a", "b", "c", "d"], aliasing_pairs=[{"classes": ["a", "c"], "why": "..."}])
    assert fine_pair_classes(meta) == [0, 2]
    assert fine_pair_classes(dict(fine_pairs=[[3, 1]])) == [1, 3]
    assert fine_pair_classes({}) is None and fine_pair_classes(None) is None
    with pytest.raises(ValueError, match="'x'"):
        fine_pair_classes(dict(class_keys=["a"], aliasing_pairs=[{"classes": ["a", "x"]}]))


@pytest.fixture
def no_decoding(monkeypatch):
    """Count every call into video decoding, pose estimation and demo generation."""
    import stages.datasets.demo.generate as gen
    import stages.extract.clip as clip_mod
    import stages.extract.decode as dec
    from stages.extract.pose.dataset_pose import DatasetPoseSource
    from stages.extract.pose.hrnet import HRNetPoseSource

    calls = []

    def spy(name):
        def f(*a, **k):
            calls.append(name)
            raise AssertionError(f"stage two called {name}")
        return f

    for mod, names in ((dec, ("probe", "read_frames", "decode_clip")), (clip_mod, ("probe", "read_frames")),
                       (gen, ("render_clip", "encode_mp4"))):
        for n in names:
            if hasattr(mod, n):
                monkeypatch.setattr(mod, n, spy(f"{mod.__name__}.{n}"))
    for cls in (DatasetPoseSource, HRNetPoseSource):
        monkeypatch.setattr(cls, "estimate", spy(f"{cls.__name__}.estimate"))
    monkeypatch.setattr(HRNetPoseSource, "_build", spy("HRNetPoseSource._build"))
    return calls


def test_sweep_trains_from_the_cache_only_and_writes_the_table(small_demo, tmp_path, no_decoding):
    from stages.train.sweep import run_sweep

    cache, entry_dir, data_cfg = small_demo
    said = []
    rep = run_sweep("ucmr_ablate", variants=["pevl,wo_ucmr"], dataset="demo", work_dir=tmp_path / "w",
                    cfg_options=small_options(data_cfg), cache_root=str(cache), say=said.append)
    assert no_decoding == []
    assert [o.status for o in rep.outcomes] == ["trained", "trained"], [o.error for o in rep.outcomes]
    exp_dir = tmp_path / "w" / "ucmr_ablate-demo"
    rows = json.loads((exp_dir / "results.json").read_text())
    assert [r["variant"] for r in rows] == ["pevl", "wo_ucmr"]
    for r in rows:
        for k in RESULT_KEYS:
            assert k in r, k
        assert r["dataset"] == "demo" and r["num_classes"] == 10 and r["epochs"] == 1
        for k in ("top1", "top5", "mean_class_acc", "fine_pair_top1"):  # the demo names fine pairs
            assert 0.0 <= r[k] <= 100.0
        assert r["top5"] >= r["top1"]
        assert r["tunable_params_m"] > 0 and r["gflops"] > 0
        assert r["entry"] == entry_dir.name and r["paper_top1"] in (91.9, 88.9)
        vdir = exp_dir / r["variant"]
        for f in ("result.json", "confusion.json", "confusion.png", "curves.png", "predictions.json", "epoch_1.pth"):
            assert (vdir / f).is_file(), f
        assert list(vdir.glob("*/vis_data/scalars.json")) and list(vdir.glob("*/vis_data/events.out.tfevents*"))
        conf = json.loads((vdir / "confusion.json").read_text())
        assert np.array(conf["matrix"]).sum() == 10 and len(conf["classes"]) == 10
        # the demo's tiny CLIP has random weights: the row says so, and so did the output
        assert r["pretrained"] is None and r["pretrained_sha256"] is None and r["clip_activation"] is None
        assert f"[weights] ucmr_ablate-demo/{r['variant']}: CLIP random weights (no pretrained CLIP)" in said
    # UCMR's refinement adds tunable parameters
    assert rows[0]["tunable_params_m"] > rows[1]["tunable_params_m"]
    md = (exp_dir / "results.md").read_text()
    assert "Table 5" in md and "| pevl |" in md and "91.9" in md and "88.9" in md

    # a rerun skips both
    again = run_sweep("ucmr_ablate", variants=["pevl", "wo_ucmr"], dataset="demo", work_dir=tmp_path / "w",
                      cfg_options=small_options(data_cfg), cache_root=str(cache), say=said.append)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    assert json.loads((exp_dir / "results.json").read_text()) == rows

    # `pipeline eval` of the checkpoint reproduces the sweep's numbers (same weights, same views)
    from typer.testing import CliRunner

    from pipeline.cli import app

    opts = [x for k, v in SMALL.items() for x in ("--cfg-options", f"{k}={v}")]
    res = CliRunner().invoke(app, ["eval", "--exp", "ucmr_ablate", "--variant", "pevl", "--dataset", "demo",
                                   "--entry", str(entry_dir),
                                   "--checkpoint", str(exp_dir / "pevl" / "epoch_1.pth"), "--cache-root", str(cache),
                                   "--out-dir", str(tmp_path / "ev"), *opts])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["top1"] == rows[0]["top1"] and m["mean_class_acc"] == rows[0]["mean_class_acc"]
    assert m["fine_pair_top1"] == rows[0]["fine_pair_top1"]
    assert (tmp_path / "ev" / "confusion.png").is_file()
    # wo_ucmr's checkpoint: without --variant, evaluated as the variant it records; named as pevl,
    # refused (mmengine's loading left UCMR at random init and scored it as pevl; built as recorded, it
    # would score wo_ucmr's model under pevl's name)
    ckpt = str(exp_dir / "wo_ucmr" / "epoch_1.pth")
    base = ["eval", "--exp", "ucmr_ablate", "--dataset", "demo", "--entry", str(entry_dir), "--checkpoint", ckpt,
            "--cache-root", str(cache), *opts]
    res = CliRunner().invoke(app, [*base, "--out-dir", str(tmp_path / "ev2")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ev2" / "metrics.json").read_text())["top1"] == rows[1]["top1"]
    res = CliRunner().invoke(app, [*base, "--variant", "pevl", "--out-dir", str(tmp_path / "ev3")])
    assert res.exit_code != 0 and "was trained as variant wo_ucmr (ucmr_ablate-demo); --variant pevl names another" \
        in " ".join(res.output.split()), res.output

    # `pipeline explain`: the supplement's pictures of one clip from the same checkpoint
    res = CliRunner().invoke(app, ["explain", "--exp", "ucmr_ablate", "--variant", "pevl", "--dataset", "demo",
                                   "--entry", str(entry_dir), "--clip", "demo_kick_right3_val_000",
                                   "--checkpoint", str(exp_dir / "pevl" / "epoch_1.pth"), "--cache-root", str(cache),
                                   "--out", str(tmp_path / "pics"), *opts])
    assert res.exit_code == 0, res.output
    for fig in ("fig8_spatial", "fig9_grouping", "fig10_temporal", "fig11_phrases"):
        png = tmp_path / "pics" / f"{fig}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", fig
    bad = CliRunner().invoke(app, ["explain", "--exp", "ucmr_ablate", "--variant", "pevl", "--dataset", "demo",
                                   "--entry", str(entry_dir), "--clip", "no_such_clip", "--cache-root", str(cache),
                                   "--checkpoint", str(exp_dir / "pevl" / "epoch_1.pth"), *opts])
    assert bad.exit_code == 2 and "no_such_clip" in bad.output
    assert no_decoding == []


def test_a_fresh_cache_gets_one_message_with_the_extract_command_and_no_files(tmp_path):
    """`pipeline train` on a cache not made yet looks its entry up first: one error naming the
    extract command, exit 2, nothing generated (no demo videos) and nothing written (no results.md)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    cache, work = tmp_path / "empty", tmp_path / "w"
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--cache-root", str(cache), "--work-dir", str(work)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    # (the root itself is not there: said first, as a mistyped or unmounted one would be)
    assert lines[0].startswith(f"error: no cache at {cache} (--cache-root): the path is mistyped"), res.output
    assert "nothing was extracted there yet. If the path is right, make the entry with:" in lines[0]
    assert res.output.count("pipeline extract --dataset demo") == 1
    assert f"pipeline extract --dataset demo --cache-root {cache}" in res.output
    assert len(lines) == 2 and "Traceback" not in res.output
    assert not work.exists()  # no results.md / results.json of a run that never started
    assert not (cache / "datasets").exists()  # the demo dataset was not generated


def test_the_pretrained_file_is_named_in_the_row_the_checkpoint_and_the_output(small_demo, tmp_path):
    """`pipeline train --dataset demo` with OpenAI's archive form as model.clip.pretrained_path: the
    run says which weights it used, its row and checkpoint record the file's format and sha256."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
    from clip_weight_testutils import openai_archive

    from stages.model.clip_weights import read_clip_weights
    from stages.train.sweep import run_sweep

    cache, entry_dir, data_cfg = small_demo
    archive = openai_archive(tmp_path / "tiny-openai.pt", "PeVL-tiny", seed=7)
    sha = read_clip_weights(archive).sha256
    said = []
    opts = {**small_options(data_cfg), "model.clip.pretrained_path": str(archive)}
    rep = run_sweep("ucmr_ablate", variants=["wo_ucmr"], dataset="demo", work_dir=tmp_path / "w", cfg_options=opts,
                    cache_root=str(cache), say=said.append)
    assert [o.status for o in rep.outcomes] == ["trained"], [o.error for o in rep.outcomes]
    row = rep.outcomes[0].row
    assert row["pretrained"] == str(archive) and row["pretrained_format"] == "torchscript"
    assert row["pretrained_sha256"] == sha and row["clip_activation"] == "QuickGELU"
    line = next(m for m in said if m.startswith("[weights]"))
    assert str(archive) in line and "torchscript" in line and sha[:16] in line and "QuickGELU" in line
    from stages.train.runner import checkpoint_safe_globals

    with checkpoint_safe_globals():
        ckpt = torch.load(rep.outcomes[0].work_dir / "epoch_1.pth", map_location="cpu", weights_only=True)
    assert ckpt["meta"]["backbone"]["weights_sha256"] == sha
    assert ckpt["meta"]["backbone"]["weights_format"] == "torchscript"


def test_an_entry_run_names_its_entry_and_its_checkpoint_evaluates_on_it(small_demo, tmp_path):
    """`train --entry KEY`: the run config (saved, and recorded in the checkpoint) names that entry, so
    looking it up again finds it; `eval` without --entry evaluates on the checkpoint's entry; a rerun
    with another config skips the finished variant and says, in the output and in the table, that
    its result is not this config's."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from stages.data.entry_lookup import find_entry
    from stages.train.checkpoints import read_checkpoint_meta
    from stages.train.sweep import run_sweep

    from cache import CacheEntry

    cache, entry_dir, _ = small_demo
    assert not CacheEntry(entry_dir).random_pose_weights  # the demo's own poses
    said = []
    rep = run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w", cfg_options=SMALL,
                    cache_root=str(cache), say=said.append)
    assert [o.status for o in rep.outcomes] == ["trained"], [o.error for o in rep.outcomes]
    ckpt = tmp_path / "w" / "demo" / "pevl" / "epoch_1.pth"
    run_config = read_checkpoint_meta(ckpt)["run_record"]["run_config"]
    assert find_entry(run_config["data"], cache_root=str(cache)).key == entry_dir.name
    opts = [x for k, v in SMALL.items() for x in ("--cfg-options", f"{k}={v}")]
    res = CliRunner().invoke(app, ["eval", "--exp", "demo", "--checkpoint", str(ckpt), "--cache-root", str(cache),
                                   "--out-dir", str(tmp_path / "ev"), *opts])
    assert res.exit_code == 0, res.output  # the demo's default settings name no entry of this cache
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["top1"] == rep.outcomes[0].row["top1"]
    assert "was trained as" not in res.output  # the same experiment: no note
    # another experiment's model (PGVT) for this PeVL checkpoint: said so, not "settings this version refuses"
    (tmp_path / "v.mp4").write_bytes(b"\0")  # found by extension; the run is resolved before any video is read
    for cmd in (["eval", "--out-dir", str(tmp_path / "ev2")], ["predict", str(tmp_path / "v.mp4")]):
        res = CliRunner().invoke(app, [cmd[0], "--exp", "pgvt_components", "--checkpoint", str(ckpt), "--cache-root",
                                       str(cache), *cmd[1:], *opts])
        assert res.exit_code != 0 and "holds a PeVL model (trained as demo/pevl); --exp pgvt_components builds a PGVT" \
            in " ".join(res.output.split()), res.output

    # settings that change nothing the run computes: skipped as this config's, the change named
    said.clear()
    again = run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w",
                      cfg_options={**SMALL, "train.val_interval": 3, "train.test_batch_size": 5},
                      cache_root=str(cache), say=said.append)
    assert [(o.status, o.other_config) for o in again.outcomes] == [("skipped", False)]
    assert any("train.test_batch_size: None -> 5; train.val_interval: 1 -> 3: settings that change nothing the run "
               "computes" in m for m in said), said
    again = run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w",
                      cfg_options={**SMALL, "train.lr": 1e-4}, cache_root=str(cache), say=said.append)
    assert [(o.status, o.other_config) for o in again.outcomes] == [("skipped", True)]
    assert any("finished before with another config than this run's (train.lr: 0.002 -> 0.0001)" in m for m in said), \
        said[-1]
    assert "pevl: finished before with another config" in (tmp_path / "w" / "demo" / "results.md").read_text()
    # the sweep's config_hash is in result.json from its one write (a kill between two writes left a
    # result without it, which a rerun of any config then skipped without a word)
    result = tmp_path / "w" / "demo" / "pevl" / "result.json"
    row = json.loads(result.read_text())
    assert row["config_hash"] and row["status"] == "done"
    row.pop("config_hash")  # as code before config_hash wrote it
    result.write_text(json.dumps(row))
    said.clear()
    run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w",
              cfg_options={**SMALL, "train.lr": 1e-4}, cache_root=str(cache), say=said.append)
    assert any("records no config_hash, so whether it had this run's config is not known" in m for m in said)
    assert not list((tmp_path / "w" / "demo").glob(".results.md*tmp*"))

    # the same config on another entry (a re-extraction answering the same request) was skipped as
    # done without a word: the config hash names a request, not an entry
    import shutil

    other = entry_dir.with_name("0ther0ther0ther0")
    shutil.copytree(entry_dir, other)
    meta = json.loads((other / "zarr.json").read_text())
    meta["attributes"]["key"] = other.name
    (other / "zarr.json").write_text(json.dumps(meta))
    said.clear()
    try:
        again = run_sweep("demo", variants=["pevl"], entry=str(other), work_dir=tmp_path / "w", cfg_options=SMALL,
                          cache_root=str(cache), say=said.append)
    finally:  # (the cache is the session's: a second demo entry there is what other tests' lookups would find)
        shutil.rmtree(other)
    assert [(o.status, o.other_config) for o in again.outcomes] == [("skipped", True)]
    assert any(f"on cache entry {entry_dir.name}; this run finds entry {other.name} for it" in m for m in said), said
    assert "another config or cache entry" in (tmp_path / "w" / "demo" / "results.md").read_text()


def test_resume_refuses_another_configs_checkpoints_and_starting_over_sets_them_aside(small_demo, tmp_path):
    """A run abandoned for a changed setting: --resume with the new setting is refused, naming what
    differs (it went on from the old run's weights and schedule under the new config's name), and
    a run that starts over moves the old checkpoints aside rather than leaving them to be resumed."""
    from stages.train.sweep import run_sweep

    cache, entry_dir, _ = small_demo
    first = run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w", cfg_options=SMALL,
                      cache_root=str(cache), say=lambda m: None)
    vdir = tmp_path / "w" / "demo" / "pevl"
    assert first.outcomes[0].status == "trained"
    (vdir / "result.json").unlink()  # as a run killed before it finished leaves it
    said = []
    other = {**SMALL, "train.lr": 1e-4}
    rep = run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w", cfg_options=other,
                    cache_root=str(cache), resume=True, say=said.append)
    (o,) = rep.outcomes
    assert o.status == "failed" and "was written by a run of another config" in o.error and "train.lr" in o.error
    rep = run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w", cfg_options=other,
                    cache_root=str(cache), say=said.append)
    assert rep.outcomes[0].status == "trained"
    (moved,) = (vdir / "abandoned").iterdir()
    assert (moved / "epoch_1.pth").is_file() and (moved / "last_checkpoint").is_file()
    assert any("starting over" in m and str(moved) in m for m in said)
    from stages.train.checkpoints import read_checkpoint_meta

    assert read_checkpoint_meta(vdir / "epoch_1.pth")["run_record"]["run_config"]["train"]["lr"] == 1e-4


def test_what_resume_compares(small_demo, tmp_path, caplog):
    """--resume refuses a checkpoint of another config or another cache entry; settings that change
    nothing the run computes may differ, and a setting newer than the code that wrote the checkpoint
    is taken as it is now, with a warning (before 2026-12-06 all of these were refused, and another
    entry went on with mmengine's metainfo warning only)."""
    import copy

    import torch
    from mmengine.config import Config

    from cache import CacheEntry
    from stages.train.hooks import run_record
    from stages.train.runner import check_resumes_this_run

    _, entry_dir, _ = small_demo
    entry = CacheEntry(entry_dir)
    base = dict(exp_name="demo", variant="pevl", train=dict(lr=1e-3, log_interval=1, max_keep_ckpts=1),
                data=dict(num_workers=0, root="/data/a", test_views="resize_three_crop"),
                model=dict(clip=dict(arch="ViT-B-16", pretrained_path="/lab/ViT-B-16.pt")))

    def ckpt(edit=lambda r: None):
        record = run_record(Config(copy.deepcopy(base)), entry)
        edit(record)
        path = tmp_path / "epoch_1.pth"
        torch.save({"meta": {"run_record": record}, "state_dict": {}}, path)
        return path

    def mine(**changes):
        cfg = copy.deepcopy(base)
        for key, value in changes.items():
            *head, last = key.split("__")
            d = cfg
            for h in head:
                d = d[h]
            d[last] = value
        return Config(cfg)

    check_resumes_this_run(ckpt(), mine(), entry)
    # fewer loader processes after an out-of-memory, other logging, the weights file moved: the same run
    check_resumes_this_run(ckpt(), mine(data__num_workers=4, data__root="/mnt/a", train__log_interval=50,
                                        train__max_keep_ckpts=3, model__clip__pretrained_path="/w/b.pt"), entry)
    with pytest.raises(ValueError, match=r"another config \(train.lr: 0.001 -> 0.01\)"):
        check_resumes_this_run(ckpt(), mine(train__lr=1e-2), entry)
    # written by code before data.test_views existed
    import logging

    with caplog.at_level(logging.WARNING, logger="stages.train.runner"):
        check_resumes_this_run(ckpt(lambda r: r["run_config"]["data"].pop("test_views")), mine(), entry)
    assert "without the settings data.test_views" in caplog.text and "'resize_three_crop'" in caplog.text
    # but a value that became a dict, and a free-form dict's keys, are changes (the review found them taken)
    base["init_from"], base["train"]["clip_grad"] = {}, None
    with pytest.raises(ValueError, match=r"init_from: \{\} -> '\(absent\)'; init_from.pose_only"):
        check_resumes_this_run(ckpt(), mine(init_from={"pose_only": ["pose_"]}), entry)
    with pytest.raises(ValueError, match=r"train.clip_grad: None -> '\(absent\)'; train.clip_grad.max_norm"):
        check_resumes_this_run(ckpt(), mine(train__clip_grad={"max_norm": 1.0}), entry)
    base["init_from"] = {"pose_only": ["pose_"]}
    with pytest.raises(ValueError, match=r"init_from.pose_only: \['pose_'\] -> '\(absent\)'"):
        check_resumes_this_run(ckpt(), mine(init_from={"video_only_16": ["video_"]}), entry)

    def other_entry(r):
        r["entry"]["key"] = "0123456789abcdef"

    with pytest.raises(ValueError, match=rf"trained on cache entry 0123456789abcdef, this run reads entry {entry.key}"):
        check_resumes_this_run(ckpt(other_entry), mine(), entry)
    # the clips trained on: an entry that lost clips, read with --allow-partial, kept the old
    # iterations per epoch and data order without a word
    from stages.train.hooks import train_clips_record

    rows = entry.clips("train")
    path = ckpt()
    saved = torch.load(path, weights_only=False)
    saved["meta"]["train_clips"] = train_clips_record(rows)
    torch.save(saved, path)
    check_resumes_this_run(path, mine(), entry, train_clips_record(rows))
    check_resumes_this_run(path, mine(), entry, None)  # (what is not known is not compared)
    with pytest.raises(ValueError, match=rf"trained on {len(rows)} clips, this run reads {len(rows) - 1} of entry"):
        check_resumes_this_run(path, mine(), entry, train_clips_record(rows[1:]))
    with pytest.raises(ValueError, match=r"\(other clips, as many\)"):
        check_resumes_this_run(path, mine(), entry, train_clips_record(rows[::-1]))
    # another process count: a 2-process run resumed in one ran twice the iterations per epoch and
    # left its cosine schedule's floor for its last epoch, without a word
    with pytest.raises(ValueError, match=r"was trained by 1 process\(es\), this run has 2: its iterations per epoch"):
        check_resumes_this_run(path, mine(), entry, train_clips_record(rows, processes=2))
    old = {k: v for k, v in train_clips_record(rows).items() if k != "processes"}  # (a record before it)
    saved["meta"]["train_clips"] = old
    torch.save(saved, path)
    check_resumes_this_run(path, mine(), entry, train_clips_record(rows, processes=2))


def test_changed_settings_names_the_differences_only_with_the_finished_runs_record(tmp_path):
    """A rerun's skip names the settings that differ from the config recorded beside the finished
    result, and names nothing where the record is another run's (a force retrain killed after
    writing it) or absent (a run of older code)."""
    from mmengine.config import Config

    from stages.train.sweep import config_hash, diff_text, differing_settings, write_hashed_config

    old = Config(dict(train=dict(lr=1e-3, seed=0), model=dict(arch="tiny"), data=dict(extra={})))
    new = Config(dict(train=dict(lr=2e-3, seed=0), model=dict(arch="tiny", drop=0.1), data=dict(extra={})))
    assert differing_settings(tmp_path, config_hash(old), new) is None  # nothing recorded
    write_hashed_config(tmp_path, old)
    assert diff_text(differing_settings(tmp_path, config_hash(old), new)) == \
        "model.drop: '(absent)' -> 0.1; train.lr: 0.001 -> 0.002"
    assert differing_settings(tmp_path, config_hash(new), old) is None  # the record is not the finished run's
    many = Config({"train": {f"k{i}": i + 1 for i in range(8)}})
    write_hashed_config(tmp_path, Config({"train": {f"k{i}": i for i in range(8)}}))
    said = diff_text(differing_settings(tmp_path, config_hash(Config({"train": {f"k{i}": i for i in range(8)}})), many),
                     most=3)
    assert said.startswith("train.k0: 0 -> 1; train.k1: 1 -> 2; train.k2: 2 -> 3") and said.endswith("; and 5 more")


def test_a_variant_folder_another_run_is_training_is_left_alone(small_demo, tmp_path):
    """Two runs into one variant folder deleted each other's checkpoints and left one's result
    under the other's name: the second is refused naming the first, and touches nothing there."""
    import os

    from stages.train.sweep import run_sweep
    from stages.train.work_dir_lock import hold_variant_dir

    cache, entry_dir, _ = small_demo
    vdir = tmp_path / "w" / "demo" / "pevl"
    vdir.mkdir(parents=True)
    (vdir / "epoch_3.pth").write_bytes(b"the first run's")
    with hold_variant_dir(vdir):
        rep = run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w", cfg_options=SMALL,
                        cache_root=str(cache), say=lambda m: None)
    (o,) = rep.outcomes
    assert o.status == "busy" and f"is being trained by another `pipeline train` (pid {os.getpid()} on" in o.error
    assert rep.unfinished == [o]  # (not finished by this run: exit status 1)
    assert (vdir / "epoch_3.pth").read_bytes() == b"the first run's" and not (vdir / "abandoned").exists()
    assert not (vdir / "hashed_config.json").exists()
    # its row is the other run's, not a failure: "being trained" until that run's result is on disk
    table = (tmp_path / "w" / "demo" / "results.md").read_text()
    assert "| pevl | being trained by another run |" in table and "failed" not in table
    # the lock went with the block (and goes with a killed process): the next run trains
    rep = run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w", cfg_options=SMALL,
                    cache_root=str(cache), say=lambda m: None)
    assert rep.outcomes[0].status == "trained"


def test_a_variant_another_run_finished_while_this_one_waited_is_skipped_not_redone(small_demo, tmp_path,
                                                                                     monkeypatch):
    """Two copies of one sweep: the second reached a variant the first had finished since the
    second started; it moved that finished run aside as "unfinished" and trained it again. The
    result is read again once the variant's lock is held."""
    import contextlib
    import json

    import stages.train.sweep as sweep

    cache, entry_dir, _ = small_demo
    other = {"variant": "pevl", "status": "done", "top1": 42.0, "config_hash": "x"}

    @contextlib.contextmanager
    def finished_meanwhile(vdir):  # the other run finished the variant while this one waited for it
        vdir.mkdir(parents=True, exist_ok=True)
        (vdir / "epoch_1.pth").write_bytes(b"the other run's")
        (vdir / "result.json").write_text(json.dumps(other))
        yield

    monkeypatch.setattr(sweep, "hold_variant_dir", finished_meanwhile)
    said = []
    rep = sweep.run_sweep("demo", variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w", cfg_options=SMALL,
                          cache_root=str(cache), say=said.append)
    (o,) = rep.outcomes
    assert o.status == "skipped" and o.row["top1"] == 42.0 and not rep.unfinished
    # (judged as a result found at the start is: its config_hash is not this run's config's)
    assert o.other_config
    assert any("finished by another run since this one started with another config than this run's" in m
               for m in said), said
    vdir = tmp_path / "w" / "demo" / "pevl"
    assert (vdir / "epoch_1.pth").read_bytes() == b"the other run's" and not (vdir / "abandoned").exists()
    assert json.loads((tmp_path / "w" / "demo" / "results.json").read_text())[0]["top1"] == 42.0


def test_a_setting_added_at_its_old_behaviour_keeps_earlier_runs_hashes_and_resumes(small_demo, tmp_path, caplog):
    """model.pose.score (added 2026-12-06, True: what the code before it computed) changed every
    finished run's config_hash, so each was reported as "another config"; at True it is left out
    of the hash, and a checkpoint recorded without it resumes without a warning."""
    import copy
    import logging

    import torch
    from mmengine.config import Config

    from cache import CacheEntry
    from stages.train.config import build_run_config
    from stages.train.hooks import run_record
    from stages.train.runner import check_resumes_this_run
    from stages.train.sweep import config_hash

    cfg = build_run_config("table2_gym99", "vit_b16")
    assert cfg.model.pose.score is True
    before = copy.deepcopy(cfg.to_dict())
    del before["model"]["pose"]["score"]  # as the code before the setting resolved it
    assert config_hash(Config(before)) == config_hash(cfg)
    off = build_run_config("table2_gym99", "vit_b16", cfg_options={"model.pose.score": False})
    assert config_hash(off) != config_hash(cfg)

    _, entry_dir, _ = small_demo
    entry = CacheEntry(entry_dir)
    ckpt = tmp_path / "epoch_1.pth"
    torch.save({"meta": {"run_record": run_record(Config(before), entry)}, "state_dict": {}}, ckpt)
    with caplog.at_level(logging.WARNING, logger="stages.train.runner"):
        check_resumes_this_run(ckpt, cfg, entry)
    assert "model.pose.score" not in caplog.text
    with pytest.raises(ValueError, match=r"model.pose.score"):  # the papers' reading is another run
        check_resumes_this_run(ckpt, off, entry)
    # a rerun's skip names the value, not "(absent)" (the neutral value is left out of the hashed form)
    from stages.train.sweep import diff_text, differing_settings, write_hashed_config

    write_hashed_config(tmp_path, off)
    assert diff_text(differing_settings(tmp_path, config_hash(off), cfg)) == "model.pose.score: False -> True"


def test_another_clip_weights_path_is_the_same_run_only_with_the_same_weights(tmp_path):
    """model.clip.pretrained_path changes nothing the run computes only when the file holds the
    weights the finished run recorded: a replaced file at another path was skipped as this config's."""
    import hashlib

    from mmengine.config import Config

    from stages.train.sweep import _same_weights

    (tmp_path / "a.pt").write_bytes(b"weights A")
    (tmp_path / "b.pt").write_bytes(b"weights B")
    sha_a = hashlib.sha256(b"weights A").hexdigest()
    cfg = Config(dict(model=dict(clip=dict(pretrained_path=str(tmp_path / "a.pt")))))
    assert _same_weights({"pretrained_sha256": sha_a}, cfg)
    cfg.model.clip.pretrained_path = str(tmp_path / "b.pt")
    assert not _same_weights({"pretrained_sha256": sha_a}, cfg)
    assert not _same_weights({"pretrained_sha256": None}, cfg)
    cfg.model.clip.pretrained_path = str(tmp_path / "gone.pt")
    assert not _same_weights({"pretrained_sha256": sha_a}, cfg)


def test_a_baseline_finished_before_its_switches_entered_the_config_is_this_configs(tmp_path):
    """Table 4's baseline config held the full PeVL's modalities, adapters and UCMR (its type
    overrode them when building); now the fixed switches are in the config, which changed its
    hash: a baseline finished before is the same run, not "another config"."""
    import json

    from mmengine.config import Config

    from stages.train.config import build_run_config, recorded_as_now
    from stages.train.sweep import config_hash, finished_outcome, write_hashed_config

    cfg = build_run_config("table4_components", "baseline")
    old = cfg.to_dict()
    old["model"] = {**old["model"], "modalities": ["video", "pose", "text"], "fusion": "sgmc",
                    "adapters": {**old["model"]["adapters"], "video": True, "pose": True, "text": True},
                    "ucmr": {**old["model"]["ucmr"], "num_blocks": 1}}
    old_cfg = Config(old)
    assert config_hash(old_cfg) != config_hash(cfg) and recorded_as_now(old)["model"] == cfg.to_dict()["model"]
    write_hashed_config(tmp_path, old_cfg)
    said = []
    o = finished_outcome("baseline", tmp_path, {"config_hash": config_hash(old_cfg), "top1": 50.0}, cfg, None,
                         "finished before", "table4_components", said.append)
    assert not o.other_config and "recorded as an earlier version wrote it: the same settings" in said[0]
    # another setting still differs
    other = Config({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "lr": 1.0}})
    o = finished_outcome("baseline", tmp_path, {"config_hash": config_hash(old_cfg)}, other, None, "finished before",
                         "table4_components", said.append)
    assert o.other_config and "train.lr: 8e-06 -> 1.0" in said[-1]
    assert json.loads((tmp_path / "hashed_config.json").read_text())["config_hash"] == config_hash(old_cfg)


def test_explain_draws_the_text_free_rows_parts(small_demo, tmp_path):
    """Table 7's text-free rows are PeVLs (LinearHeadPeVL): explain refused them by type name; it
    draws the pictures of the parts they have and says which it skips."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from stages.train.sweep import run_sweep

    cache, entry_dir, data_cfg = small_demo
    rep = run_sweep("table7_modalities", variants=["vp"], dataset="demo", work_dir=tmp_path / "w",
                    cfg_options=small_options(data_cfg), cache_root=str(cache), entry=str(entry_dir),
                    say=lambda m: None)
    assert [o.status for o in rep.outcomes] == ["trained"], [o.error for o in rep.outcomes]
    opts = [x for k, v in SMALL.items() for x in ("--cfg-options", f"{k}={v}")]
    res = CliRunner().invoke(app, ["explain", "--checkpoint", str(rep.outcomes[0].work_dir / "epoch_1.pth"),
                                   "--exp", "table7_modalities", "--variant", "vp", "--dataset", "demo",
                                   "--entry", str(entry_dir), "--clip", "demo_kick_right3_val_000",
                                   "--cache-root", str(cache), "--out", str(tmp_path / "pics"), *opts])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "pics" / "fig8_spatial.png").is_file() and (tmp_path / "pics" / "fig10_temporal.png").is_file()
    assert not (tmp_path / "pics" / "fig11_phrases.png").exists()


def test_resuming_an_optimiser_state_of_other_parameters_says_so(small_demo, tmp_path):
    """The same config, another version of the code (PGVT now keeps frozen what a pose-only row never
    reads): --resume failed in torch's words about parameter groups."""
    import torch

    from stages.train.sweep import run_sweep

    cache, entry_dir, data_cfg = small_demo
    kw = dict(variants=["pevl"], entry=str(entry_dir), work_dir=tmp_path / "w", cfg_options=small_options(data_cfg),
              cache_root=str(cache), say=lambda m: None)
    assert run_sweep("demo", **kw).outcomes[0].status == "trained"
    vdir = tmp_path / "w" / "demo" / "pevl"
    (vdir / "result.json").unlink()  # as a run killed before it finished leaves it
    ckpt = vdir / "epoch_1.pth"
    saved = torch.load(ckpt, weights_only=False)
    group = next(g for g in saved["optimizer"]["param_groups"] if len(g["params"]) > 1)
    group["params"] = group["params"][1:]  # one parameter fewer, as a model that froze it saved
    torch.save(saved, ckpt)
    (o,) = run_sweep("demo", resume=True, **kw).outcomes
    assert o.status == "failed" and f"--resume: {ckpt} holds the optimiser state of other tunable parameters" in \
        o.error and "Train without --resume" in o.error, o.error
