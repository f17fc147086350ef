"""What `pipeline train` prints at each log level, and the config it saves: the resolved one that
ran (the entry's class count), which `--exp SAVED.py` trains and evaluates again."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from pevl_stage2_testutils import small_demo  # noqa: E402,F401  (session fixture)

import json

from typer.testing import CliRunner

from pipeline.cli import app

#: a tiny schedule with the demo's logging (every iteration logged by mmengine, a validation each epoch)
TINY = {"train.max_epochs": 2, "train.warmup_epochs": 0, "train.batch_size": 4, "data.num_workers": 0,
        "train.val_interval": 1, "train.log_interval": 1, "model.num_video_frames": 4, "model.num_pose_frames": 8}


def _train(small_demo, work: Path, *extra: str, exp: str = "demo", opts: dict = TINY):
    cache, entry_dir, data_cfg = small_demo
    args = ["train", "--exp", exp, "--cache-root", str(cache), "--work-dir", str(work), "--device", "cpu",
            "-c", f"data.root={data_cfg['root']}",
            "-c", "data.dataset_options.clips_per_class=2,1", "-c", "data.dataset_options.num_frames=32",
            "-c", f"data.extract.frames_per_segment={data_cfg['extract']['frames_per_segment']}"]
    for k, v in opts.items():
        args += ["-c", f"{k}={v}"]
    res = CliRunner().invoke(app, args + list(extra))
    assert res.exit_code == 0, res.output
    return res


def _lines(res) -> list[str]:
    # pytest shows the DeprecationWarnings Python hides by default: not what a user sees
    return [ln for ln in res.output.splitlines() if ln.strip() and not ln.startswith("warning:")]


def test_default_level_train_output_is_short(small_demo, tmp_path):
    """Settings, one line per reported epoch, the result; under 40 lines for the demo's schedule
    (counted with a tiny schedule: the lines that do not depend on the epochs, plus the epoch lines
    the demo's 40 epochs report)."""
    from stages.train.config import build_run_config
    from stages.train.train_log import report_epochs

    lines = _lines(_train(small_demo, tmp_path / "w"))
    text = "\n".join(lines)
    for noise in ("System environment", "Hooks will be executed", "Config:", "FileClient", "Epoch(train)",
                  "Epoch(val)", "Saving checkpoint", "mmengine"):
        assert noise not in text, noise
    epoch_lines = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epoch_lines] == ["epoch 1/2", "epoch 2/2"]
    assert "loss " in epoch_lines[0] and "val top-1 " in epoch_lines[1]
    assert any(ln.startswith("[setup] demo/pevl: PeVL PeVL-tiny") for ln in lines)
    assert any(ln.startswith("[done] demo/pevl: top-1 ") for ln in lines)
    assert any(ln.startswith("pevl") and "trained" in ln for ln in lines)  # the table's row
    fixed = len(lines) - len(epoch_lines)
    demo = build_run_config("demo", "pevl").train
    demo_lines = fixed + len(report_epochs(demo.max_epochs, demo.val_interval))
    assert demo_lines < 40, (fixed, demo_lines)


def test_quiet_and_verbose(small_demo, tmp_path):
    quiet = _lines(_train(small_demo, tmp_path / "q", "-q"))
    # the results table alone (title, header, rule, row)
    assert len(quiet) == 4 and quiet[3].startswith("pevl") and "trained" in quiet[3], quiet
    loud = _train(small_demo, tmp_path / "v", "-v").output
    for dump in ("System environment", "Hooks will be executed in the following order", "Epoch(train) [1][1/5]",
                 "epoch 2/2: loss"):
        assert dump in loud, dump
    # the run's log file keeps mmengine's INFO whatever the console shows
    log = next((tmp_path / "q" / "demo" / "pevl").glob("*/*.log")).read_text()
    assert "System environment" in log and "Epoch(train) [1][1/5]" in log


def test_the_saved_config_is_the_one_that_ran_and_runs_again(small_demo, tmp_path):
    from stages.train.config import build_run_config

    # a training -c that changes no tensor shape: the demo's default is "person"
    _train(small_demo, tmp_path / "w", opts={**TINY, "model.pose.normalize": "crop"})
    vdir = tmp_path / "w" / "demo" / "pevl"
    saved = next(vdir.glob("2*.py"))  # mmengine's dump: <timestamp>.py
    row = json.loads((vdir / "result.json").read_text())
    cfg = build_run_config(str(saved), "pevl")  # what --exp SAVED.py builds
    assert cfg.model.num_classes == row["num_classes"] == 10 and cfg.model.num_joints == 17
    assert cfg.train.max_epochs == 2 and cfg.model.num_video_frames == 4 and cfg.data.dataset == "demo"
    # train it again (another work dir): the same run, the same numbers
    again = _train(small_demo, tmp_path / "again", "--json", exp=str(saved), opts={})
    rows = json.loads(again.stdout)
    assert rows[0]["variant"] == "pevl" and rows[0]["num_classes"] == 10 and rows[0]["epochs"] == 2
    assert rows[0]["top1"] == row["top1"] and rows[0]["mean_class_acc"] == row["mean_class_acc"]
    # and evaluate the first run's checkpoint with it, the entry found from the saved data settings
    cache, _, _ = small_demo
    ev = CliRunner().invoke(app, ["eval", "--exp", str(saved), "--checkpoint", str(vdir / "epoch_2.pth"),
                                  "--cache-root", str(cache), "--device", "cpu", "--out-dir", str(tmp_path / "ev"),
                                  "--json"])
    assert ev.exit_code == 0, ev.output
    m = json.loads(ev.stdout)
    assert m["top1"] == row["top1"] and m["num_classes"] == 10 and m["variant"] == "pevl"
    assert "was trained with" not in ev.output
    # evaluated with the experiment, not the saved config: the model is built as the checkpoint records
    # (its weights would load into the default "person" model and score something else)
    plain = ["eval", "--exp", "demo", "--checkpoint", str(vdir / "epoch_2.pth"), "--cache-root", str(cache),
             "--device", "cpu", "--json"] + [a for k, v in TINY.items() if k.startswith("model.")
                                             for a in ("-c", f"{k}={v}")]
    ev2 = CliRunner().invoke(app, plain + ["--out-dir", str(tmp_path / "ev2")])
    assert ev2.exit_code == 0, ev2.output
    assert "was trained with model.pose.normalize='crop'" in ev2.output, ev2.output[:700]
    assert json.loads(ev2.stdout)["top1"] == row["top1"]
    assert (json.loads((tmp_path / "ev2" / "predictions.json").read_text())
            == json.loads((tmp_path / "ev" / "predictions.json").read_text()))
    # and a -c that contradicts the trained model is refused, naming both values
    ev3 = CliRunner().invoke(app, plain + ["-c", "model.pose.normalize=person", "--out-dir", str(tmp_path / "ev3")])
    assert ev3.exit_code != 0 and "model.pose.normalize: trained 'crop', -c gives 'person'" in ev3.output


def test_a_saved_run_config_trains_into_its_runs_folder_name():
    """`--exp W/ucmr_ablate-demo/wo_ucmr/<time>.py`: a demo run trained again goes to
    ucmr_ablate-demo/, as it did, never beside the experiment's real runs in ucmr_ablate/."""
    from mmengine.config import Config

    from stages.train.sweep import experiment_dir_name

    saved = Config(dict(exp_name="ucmr_ablate-demo", experiment=dict(name="ucmr_ablate"), data=dict(dataset="demo")))
    assert experiment_dir_name(saved, "w/ucmr_ablate-demo/wo_ucmr/20261205_210758.py", None) == "ucmr_ablate-demo"
    assert experiment_dir_name(Config(dict(experiment=dict(name="ucmr_ablate"))), "ucmr_ablate", None) == "ucmr_ablate"


def test_the_setup_line_names_classes_a_split_has_no_clip_of():
    """A class whose only train video failed stage one trained without a word (its score only pushed
    down); one absent from val left the mean class accuracy over fewer classes, unsaid."""
    from types import SimpleNamespace

    from stages.train.train_log import classes_without_clips_note

    classes = ["walk", "run", "jump", "sit", "stand"]
    train = SimpleNamespace(split="train", rows=[{"label": 0}, {"label": 2}, {"label": 3}, {"label": 4}])
    val = SimpleNamespace(split="val", rows=[{"label": c} for c in range(5)])
    assert classes_without_clips_note(classes, train, val) == " (1 without a train clip: 1 'run')"
    val.rows = [{"label": 0}]
    assert classes_without_clips_note(classes, train, val) == (
        " (1 without a train clip: 1 'run'; 4 without a val clip: 1 'run', 2 'jump', 3 'sit' ...)")
    train.rows = [{"label": c} for c in range(5)]
    val.rows = train.rows
    assert classes_without_clips_note(classes, train, val) == ""


def test_the_setup_line_says_what_an_epoch_leaves_out():
    """Under torchrun each process drops its last partial batch (240 clips, batch 16, 2 processes:
    224 an epoch) and the sampler pads the shares to one size (40 clips, batch 8, 3 processes: 42),
    unsaid. Counted here with mmengine's own sampler, as the training loader draws."""
    from collections import Counter
    from unittest import mock

    import mmengine.dataset.sampler as sampler

    from stages.train.schedule import drops_last_batch, epoch_coverage_note

    cases = ((240, 16, 1), (240, 16, 2), (240, 16, 4), (40, 8, 3), (20, 4, 2), (10, 16, 1), (63, 4, 2), (10, 1, 3),
             (25, 4, 3), (241, 16, 2), (100, 8, 3))
    for clips, batch, world in cases:
        seen = Counter()
        for rank in range(world):
            with mock.patch.object(sampler, "get_dist_info", return_value=(rank, world)):
                idx = list(sampler.DefaultSampler(list(range(clips)), shuffle=True, seed=0, round_up=True))
            seen.update(idx[:len(idx) // batch * batch] if drops_last_batch(clips, batch, world) else idx)
        left, twice = clips - len(seen), sum(seen.values()) - len(seen)
        assert not (left and twice), (clips, batch, world)
        want = (f" ({left} an epoch left out at random: each process's last partial batch)" if left else
                f" ({twice} an epoch seen twice: the sampler pads the processes' shares)" if twice else "")
        assert epoch_coverage_note(clips, batch, world) == want, (clips, batch, world)
