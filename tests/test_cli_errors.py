"""Errors through one handler: one ``error:`` line without quotes around the message, a "did you
mean" for misspelt names, exit 2, the traceback only at ``-v``."""
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app


def _one_error_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    assert lines[0][len("error: ")] not in "\"'", lines[0]  # the message itself, not its repr
    return lines[0]


@pytest.mark.parametrize("cmd", [
    ["train"], ["train", "--print-config"], ["eval", "--checkpoint", "CKPT"],
    ["explain", "--checkpoint", "CKPT", "--clip", "c0"], ["stats"],
])
def test_a_misspelt_experiment_in_each_command(cmd, tmp_path):
    ckpt = tmp_path / "epoch_1.pth"
    ckpt.write_bytes(b"")
    args = [str(ckpt) if a == "CKPT" else a for a in cmd]
    res = CliRunner().invoke(app, [*args, "--exp", "ucmr_ablat", "--cache-root", str(tmp_path)]
                             if cmd[0] != "stats" else [*args, "--exp", "ucmr_ablat"])
    line = _one_error_line(res)
    assert line.startswith("error: unknown experiment 'ucmr_ablat'; did you mean 'ucmr_ablate'?"), line


def test_misspelt_names_get_did_you_mean(tmp_path):
    res = CliRunner().invoke(app, ["train", "--exp", "ucmr_ablate", "--variant", "wo_ucrm", "--print-config"])
    assert "unknown variant 'wo_ucrm'; did you mean 'wo_ucmr'?" in _one_error_line(res)
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "dmeo"])
    assert "unknown dataset adapter 'dmeo'; did you mean 'demo'?" in _one_error_line(res)
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--dataset", "divng48", "--print-config"])
    assert "unknown dataset config 'divng48'; did you mean 'diving48'?" in _one_error_line(res)
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--print-config", "-c", "train.lrr=1"])
    assert "did you mean train.lr?" in _one_error_line(res)
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "demo", "--options", "--pose-source", "hrnte"])
    assert "did you mean 'hrnet'?" in _one_error_line(res)
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--tracker", "mlfow", "--cache-root", str(tmp_path)])
    assert res.exit_code == 2 and "unknown tracker 'mlfow'; did you mean 'mlflow'?" in res.output
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--resme"])  # an option: click's own hint
    assert res.exit_code == 2 and "No such option: --resme" in res.output and "--resume" in res.output


def test_the_traceback_only_at_verbose():
    res = CliRunner().invoke(app, ["stats", "--exp", "ucmr_ablat", "-v"])
    assert res.exit_code == 2
    assert "Traceback (most recent call last)" in res.output and "FileNotFoundError" in res.output
    assert res.output.strip().splitlines()[-1].startswith("error: unknown experiment 'ucmr_ablat'")
    quiet = CliRunner().invoke(app, ["stats", "--exp", "ucmr_ablat", "-q"])
    assert quiet.exit_code == 2 and quiet.output.startswith("error: unknown experiment")


def test_a_root_that_is_not_there_is_named(tmp_path):
    """`train --root` only names the raw dataset (for --check-sources and the extract command of a
    missing entry): a folder that is not there is said at once, not carried into those."""
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--root", str(tmp_path / "nope"),
                                   "--cache-root", str(tmp_path)])
    assert res.exit_code == 2 and "no such folder" in res.output and "--root" in res.output
    # `dataset info` looks without making anything: not even the demo, which it would generate there
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "demo", "--root", str(tmp_path / "typo")])
    assert res.exit_code == 2 and "no such folder" in res.output and not (tmp_path / "typo").exists(), res.output


@pytest.mark.parametrize("args, hint", [(["--window", "0"], "--window"), (["--window", "-1"], "--window"),
                                        (["--window", "2", "--stride", "0"], "--stride")])
def test_predict_windows_must_be_positive(tmp_path, args, hint):
    """A window of 0 s was ignored (a whole-video prediction), a stride of 0 taken as the window, and a
    negative window failed each video with an internal error."""
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    res = CliRunner().invoke(app, ["predict", str(video), "--checkpoint", str(tmp_path / "c.pth"), *args])
    assert res.exit_code == 2 and hint in res.output and "positive number of seconds" in " ".join(res.output.split())


@pytest.mark.parametrize("cmd", [["train", "--exp", "demo"], ["eval", "--exp", "demo", "--checkpoint", "x.pth"],
                                 ["extract", "--dataset", "demo"], ["predict", "--checkpoint", "x.pth", "--video", "v.mp4"],
                                 ["explain", "--exp", "demo", "--checkpoint", "x.pth", "--clip", "c0"]])
@pytest.mark.parametrize("device, says", [("gpu", "want cpu, cuda or cuda:N"), ("cuda:0", "torch sees no CUDA device"),
                                          ("cpu:1", "want cpu, cuda or cuda:N")])
def test_a_device_that_is_not_there_is_refused_before_any_work(cmd, device, says, monkeypatch):
    """`--device gpu` trained on the CPU, exit 0, and cuda:1 ran on GPU 0 (every name not starting
    with cuda became cpu, every cuda name plain cuda)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(app, [*cmd, "--device", device])
    assert res.exit_code == 2 and "Invalid value for '--device'" in res.output and says in res.output, res.output


def test_cuda_n_selects_gpu_n(monkeypatch):
    import torch

    from stages.train.distributed import resolve_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert resolve_device("cuda:1") == "cuda" and chosen == [1]
    with pytest.raises(ValueError, match=r"--device cuda:2: only 2 CUDA device\(s\) visible"):
        resolve_device("cuda:2")
    assert resolve_device("cpu") == "cpu"


def test_print_config_shows_what_the_run_would_use():
    """--seed 7 printed seed=0 (the flag reached only the run); --seed with another -c train.seed ran
    one and printed the other; a misspelt --tracker or --launcher passed --print-config."""
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--seed", "7", "--print-config"])
    assert res.exit_code == 0 and "seed=7" in res.output and "seed=0" not in res.output, res.output
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--seed", "1", "-c", "train.seed=2", "--print-config"])
    assert res.exit_code == 2 and "--seed 1 and -c train.seed=2 disagree" in res.output
    for bad in (["--tracker", "wandbb"], ["--launcher", "slurm"]):
        res = CliRunner().invoke(app, ["train", "--exp", "demo", *bad, "--print-config"])
        assert res.exit_code == 2, (bad, res.output)


@pytest.mark.parametrize("setting, says", [("train.seed=-5", "train.seed must be in [0, 2**32)"),
                                           ("data.num_workers=-1", "data.num_workers must be >= 0"),
                                           ("data.flip_prob=1.5", "data.flip_prob is a probability"),
                                           ("train.lr=-1", "train.lr must be positive")])
def test_settings_out_of_range_are_refused_with_the_config(setting, says):
    """They passed --print-config and failed each variant of a sweep apart once it started (or, the
    flip probability, never)."""
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "-c", setting, "--print-config"])
    assert _one_error_line(res).startswith(f"error: {says}"), res.output


@pytest.mark.parametrize("flag, value, says", [("--num-frames", "0", "--num-frames must be positive, got 0"),
                                               ("--short-side", "-4", "--short-side must be positive, got -4"),
                                               ("--jpeg-quality", "0", "--jpeg-quality must be in 1..100, got 0")])
def test_extract_errors_name_the_flag_given_and_start_nothing(flag, value, says, tmp_path):
    """`--num-frames 0` said "num_frames must be positive" (no flag of that name), after a note that
    a new cache was being started there."""
    res = CliRunner().invoke(app, ["extract", "--dataset", "demo", flag, value, "--cache-root", str(tmp_path / "c")])
    assert _one_error_line(res) == f"error: {says}"
    assert not (tmp_path / "c").exists()


def test_a_run_config_error_names_the_dotted_key():
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "-c", "data.extract.num_frames=0", "--print-config"])
    assert _one_error_line(res) == "error: data.extract.num_frames must be positive, got 0"


@pytest.mark.parametrize("flag", ["--video-frames", "--pose-frames"])
def test_stats_refuses_zero_frames(flag):
    """0 was read as "not given": the table showed each variant's own frames, exit 0."""
    res = CliRunner().invoke(app, ["stats", "--exp", "demo", flag, "0"])
    assert res.exit_code == 2 and f"Invalid value for '{flag}'" in res.output, res.output


def test_train_on_a_cache_root_that_is_not_there_says_so(tmp_path):
    """It said "no cache entry ... Make it with: pipeline extract ...": on a real dataset, hours of
    extraction for a mistyped path or a share that is not mounted."""
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--cache-root", str(tmp_path / "typo")])
    assert res.exit_code != 0 and f"no cache at {tmp_path / 'typo'} (--cache-root): the path is mistyped" in res.output
    assert "If the path is right, make the entry with:" in res.output
    (tmp_path / "file").write_text("")
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--cache-root", str(tmp_path / "file")])
    assert res.exit_code != 0 and "is not a folder: give the cache's folder" in res.output
    assert "make the entry" not in res.output


def test_experiment_paths_say_what_is_wrong_with_them(tmp_path):
    """A YAML file, a missing .py, a folder and a syntax error all said "unknown experiment" (or
    gave Python's message without the file)."""
    (tmp_path / "mine.yaml").write_text("a: 1\n")
    (tmp_path / "bad.py").write_text("x = [\n")
    for exp, says in ((tmp_path / "mine.yaml", "experiments are mmengine Python configs"),
                      (tmp_path / "nope.py", "nope.py: no such file"), (tmp_path, "a folder; give an experiment file"),
                      (tmp_path / "bad.py", "bad.py:1: not valid Python")):
        res = CliRunner().invoke(app, ["train", "--exp", str(exp), "--print-config"])
        assert says in _one_error_line(res), res.output


@pytest.mark.parametrize("cmd", [["eval", "--exp", "demo", "--checkpoint", "x.pth", "--out-dir"],
                                 ["explain", "--exp", "demo", "--checkpoint", "x.pth", "--clip", "c0", "--out"],
                                 ["predict", "v.mp4", "--checkpoint", "x.pth", "--out"]])
def test_an_output_folder_that_is_a_file_is_refused_up_front(cmd, tmp_path):
    """It failed after the work, as "[Errno 17] File exists"."""
    (tmp_path / "taken").write_text("")
    res = CliRunner().invoke(app, [*cmd, str(tmp_path / "taken")])
    assert res.exit_code == 2 and "is a file; give a folder" in res.output, res.output


@pytest.mark.parametrize("cmd", [["eval", "--exp", "demo", "--checkpoint", "x.pth", "-o"],
                                 ["explain", "--exp", "demo", "--checkpoint", "x.pth", "--clip", "c0", "-o"],
                                 ["predict", "v.mp4", "--checkpoint", "x.pth", "-o"]])
def test_an_output_folder_that_reads_as_a_setting_is_refused(cmd, tmp_path, monkeypatch):
    """``-o`` is a dataset option in extract and train: ``eval -o split=val`` wrote into a new folder
    named ``split=val``, the option never applied. A path with a folder before it still works."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, [*cmd, "split=val"])
    assert res.exit_code == 2 and "looks like a KEY=VALUE setting" in res.output, res.output
    assert not (tmp_path / "split=val").exists()
    from pipeline.commands.common import folder_option
    assert folder_option(tmp_path / "split=val") == tmp_path / "split=val"
    (tmp_path / "a=b").mkdir()  # an existing folder of that name is what the user means
    assert folder_option(Path("a=b")) == Path("a=b")


def test_eval_folders_differ_by_split_and_experiment(tmp_path):
    """eval --split train, then under another experiment, wrote into one eval_epoch_N/, each over the last."""
    from pathlib import Path

    from pipeline.commands.train import default_eval_dir

    ckpt = Path(tmp_path / "w" / "demo" / "pevl" / "epoch_3.pth")
    ckpt.parent.mkdir(parents=True)
    assert default_eval_dir(ckpt, "demo", None) == "eval_epoch_3"
    assert default_eval_dir(ckpt, "demo", "train") == "eval_epoch_3-train"
    assert default_eval_dir(ckpt, "ucmr_ablate-demo", None) == "eval_epoch_3-ucmr_ablate-demo"


def test_paths_of_the_wrong_kind_are_refused_before_the_work(tmp_path):
    """extract and dataset info on a --cache-root that is a file failed late ("[Errno 20] Not a
    directory"); cache export --h5 DIR copied the whole entry, then failed, leaving DIR.partial;
    cache show -o DIR reached OpenCV's "could not find a writer"."""
    (tmp_path / "afile").write_text("")
    for cmd in (["extract", "--dataset", "demo"], ["dataset", "info", "--dataset", "demo"]):
        res = CliRunner().invoke(app, [*cmd, "--cache-root", str(tmp_path / "afile")])
        assert res.exit_code == 2 and "(--cache-root) is not a folder" in res.output, res.output
    res = CliRunner().invoke(app, ["cache", "export", "abc", "--h5", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder; give the HDF5 file to write" in res.output, res.output
    assert not list(tmp_path.glob("*.partial"))
    res = CliRunner().invoke(app, ["cache", "show", "abc", "c0", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "give a .png file to write (this is a folder)" in res.output, res.output


def test_a_short_side_off_the_grid_is_said_with_the_side_cached(tmp_path):
    """--short-side 100 cached frames of short side 96 while the entry recorded 100, without a word."""
    res = CliRunner().invoke(app, ["extract", "--dataset", "custom", "--root", str(tmp_path), "--short-side", "100",
                                   "--cache-root", str(tmp_path / "c")])
    assert "short side 100 is not a multiple of the grid cell 16: frames are cached with a short side of 96" \
        in " ".join(res.output.split()), res.output


def test_several_cfg_options_after_one_c_as_mmengine_takes_them():
    """`-c a=1 b=2` was "Got unexpected extra argument(s) (b=2)"."""
    from pipeline.cli import spread_cfg_options

    assert spread_cfg_options(["train", "--exp", "demo", "-c", "train.lr=1", "train.seed=2", "--print-config"]) == [
        "train", "--exp", "demo", "-c", "train.lr=1", "-c", "train.seed=2", "--print-config"]
    # predict's positional videos are never taken for options; a value without "=" ends the list
    assert spread_cfg_options(["predict", "-c", "a=1", "v=1.mp4"]) == ["predict", "-c", "a=1", "v=1.mp4"]
    assert spread_cfg_options(["eval", "-c", "a=1", "extra"]) == ["eval", "-c", "a=1", "extra"]
    res = CliRunner().invoke(app, spread_cfg_options(["train", "--exp", "demo", "-c", "train.max_epochs=2",
                                                      "train.seed=3", "--print-config"]))
    assert res.exit_code == 0 and "max_epochs=2" in res.output and "seed=3" in res.output, res.output


def test_auto_device_is_resolved_before_torch_sees_it(monkeypatch):
    """--device auto passed the new check and reached torch in the pose model: every clip failed,
    recorded in the shared entry (the review found it)."""
    import torch

    from stages.devices import resolve_device_name
    from stages.extract.pose.hrnet import HRNetPoseSource

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device_name("auto") == resolve_device_name(None) == "cpu"
    assert HRNetPoseSource(checkpoint="none", device="auto", flip_test=False).device == "cpu"


def test_a_setting_given_twice_or_two_ways_that_disagree_is_refused(tmp_path):
    """-c train.lr twice, or -o seed twice, took the last one; --root X with -c data.root=Y took Y;
    and --seed 0 with -c train.seed=0.0 was refused as disagreeing."""
    (tmp_path / "a").mkdir()
    for args, says in ((["-c", "train.lr=1e-3", "-c", "train.lr=1e-4"], "--cfg-options sets train.lr twice ('1e-3' and '1e-4')"),
                       (["--root", str(tmp_path / "a"), "-c", f"data.root={tmp_path}"],
                        f"--root {tmp_path / 'a'} and -c data.root={tmp_path} disagree")):
        res = CliRunner().invoke(app, ["train", "--exp", "demo", "--print-config", *args])
        assert res.exit_code == 2 and says in " ".join(res.output.split()), res.output
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--print-config", "--seed", "0", "-c", "train.seed=0.0"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "demo", "-o", "seed=0", "-o", "seed=1"])
    assert res.exit_code == 2 and "seed given twice ('0' and '1')" in " ".join(res.output.split()), res.output


def test_export_takes_sigterm_as_an_interrupt_so_its_partial_file_goes(tmp_path, monkeypatch):
    """A scheduler's SIGTERM killed `cache export` outright and left its .partial file (Ctrl-C's
    KeyboardInterrupt removed it): in the export, SIGTERM raises KeyboardInterrupt; after it, the
    handler is the one before."""
    import os
    import signal

    import cache.store
    from pipeline.commands.cache import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    partial = tmp_path / "x.h5.partial"

    def killed_mid_write(entry, rows, tmp, progress=None):
        tmp.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cache.store, "_write_hdf5", killed_mid_write)
    monkeypatch.setattr(cache.store, "_check_room_for", lambda entry, out: None)

    class Entry:
        plan = []

        def done_uids(self):
            return set()

    with pytest.raises(KeyboardInterrupt), _sigterm_as_interrupt():
        cache.store.export_hdf5(Entry(), tmp_path / "x.h5")
    assert not partial.exists() and not (tmp_path / "x.h5").exists()
    assert signal.getsignal(signal.SIGTERM) == before


def test_launcher_pytorch_outside_torchrun_says_how_to_run_it(monkeypatch):
    """It said only 'environment variable RANK expected, but not set' (mmengine's words)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.delenv("RANK", raising=False)
    res = CliRunner().invoke(app, ["train", "--exp", "demo", "--launcher", "pytorch"])
    assert res.exit_code == 2 and "torchrun --nproc_per_node N -m pipeline train" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["eval", "--exp", "demo", "--checkpoint", "x.pth", "--launcher", "pytorch"])
    assert res.exit_code == 2 and "torchrun --nproc_per_node N -m pipeline eval" in " ".join(res.output.split())
