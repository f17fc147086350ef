"""Run-config composition: paper defaults, the demo switch, --cfg-options, the mmengine pieces."""
from types import SimpleNamespace

import pytest
import torch

from stages.train.config import build_run_config, parse_cfg_options


def test_paper_defaults_for_an_experiment():
    cfg = build_run_config("ucmr_ablate", "wo_v2p")
    t = cfg.train
    assert (t.lr, t.weight_decay, t.max_epochs, t.warmup_epochs) == (8e-6, 0.05, 50, 3)
    assert cfg.data.dataset == "diving48" and cfg.data.test_split == "test"
    assert cfg.model.clip.arch == "ViT-B-16" and cfg.model.ucmr.v2p is False
    assert cfg.model.num_video_frames == 16 and cfg.model.num_pose_frames == 48
    assert cfg.paper_top1 == 90.4 and cfg.variant == "wo_v2p"


def test_dataset_demo_switches_to_the_tiny_model_and_keeps_the_variant():
    cfg = build_run_config("ucmr_ablate", "wo_p2v", dataset="demo")
    assert cfg.data.dataset == "demo" and cfg.model.clip.arch == "PeVL-tiny" and cfg.model.clip.pretrained is None
    assert cfg.model.ucmr.p2v is False
    assert cfg.train.lr == build_run_config("demo", "pevl").train.lr
    other = build_run_config("ucmr_ablate", "pevl", dataset="gym99")
    assert other.data.dataset == "gym99" and other.model.clip.arch == "ViT-B-16"


def test_cfg_options_override_everything():
    opts = parse_cfg_options(["train.lr=1e-4 train.betas=(0.9, 0.98)", "model.ucmr.num_blocks=2",
                              "data.root=/data/d48", "train.amp=None"])
    assert opts["train.betas"] == (0.9, 0.98)
    cfg = build_run_config("ucmr_ablate", "pevl", cfg_options=opts)
    assert cfg.train.lr == 1e-4 and cfg.model.ucmr.num_blocks == 2 and cfg.data.root == "/data/d48"
    assert cfg.train.betas == [0.9, 0.98]
    assert cfg.train.amp is None
    with pytest.raises(ValueError, match="--cfg-options wants key=value, got 'nonsense'"):
        parse_cfg_options(["nonsense"])


def test_cfg_options_keep_the_spaces_of_a_value():
    """mmengine's parser drops every space: 'floor exercise' trained as the prompt 'floorexercise',
    '/w/my weights/x.pt' loaded another path, unsaid (extract's -o kept them)."""
    opts = parse_cfg_options(["model.text.coarse_type=floor exercise", "data.root='/data/my videos'",
                              "train.betas=[0.9, 0.98] train.amp=None"])
    assert opts == {"model.text.coarse_type": "floor exercise", "data.root": "/data/my videos",
                    "train.betas": [0.9, 0.98], "train.amp": None}
    cfg = build_run_config("ucmr_ablate", "pevl", cfg_options=opts)
    assert cfg.model.text.coarse_type == "floor exercise" and cfg.data.root == "/data/my videos"
    with pytest.raises(ValueError, match=r"train.no_decay=.*a list's items cannot hold spaces"):
        parse_cfg_options(["train.no_decay=[layer norm, bias]"])
    # as mmengine read them: quoted lists, a one-item tuple; runs of spaces kept; a key given twice
    assert parse_cfg_options(["a='[1]'", 'b="(2)"', "c=a  b", "d=[1, 2]"]) == {"a": [1], "b": (2,), "c": "a  b",
                                                                             "d": [1, 2]}
    assert parse_cfg_options(["a=1", "a=1"]) == {"a": 1} == parse_cfg_options(["a=1e0", "a=1"])
    with pytest.raises(ValueError, match="a list's items cannot hold spaces"):
        parse_cfg_options(["a=[' x', 'y']"])
    with pytest.raises(ValueError, match=r"sets a twice \('1' and '2'\)"):
        parse_cfg_options(["a=1 a=2"])


def test_runner_pieces_warmup_cosine_amp_accumulation(tmp_path):
    from stages.train.schedule import runner_kwargs

    class DS(list):
        classes = ["a", "b"]
        rows = [{"uid": "c0"}]  # the plan rows of the clips trained on (meta.train_clips)
        # no dataset_meta: no fine pairs; what a checkpoint's run record names of the entry
        entry = SimpleNamespace(attrs={}, key="k", dataset="d", settings={}, skeleton="coco17", classes=["a", "b"],
                                coarse_type="")

    cfg = build_run_config("ucmr_ablate", "pevl", cfg_options={"train.accumulative_counts": 4})
    kw = runner_kwargs(cfg, object(), DS(range(64)), DS(range(8)), tmp_path, "none", "cuda")
    ow = kw["optim_wrapper"]
    # bf16 (the default) autocasts in the model: no GradScaler, no per-step inf check
    assert ow["type"] == "OptimWrapper" and ow["accumulative_counts"] == 4
    fp16 = build_run_config("ucmr_ablate", "pevl", cfg_options={"train.amp": "float16"})
    ow16 = runner_kwargs(fp16, object(), DS(range(64)), DS(range(8)), tmp_path, "none", "cuda")["optim_wrapper"]
    assert ow16["type"] == "AmpOptimWrapper" and ow16["dtype"] == "float16"  # fp16 needs loss scaling
    for leaves in (False, True):  # DDP looks for unused parameters only where the variant leaves some
        m = SimpleNamespace(recognizer=SimpleNamespace(leaves_unused_parameters=leaves))
        ddp = runner_kwargs(cfg, m, DS(range(64)), DS(range(8)), tmp_path, "pytorch", "cuda")["cfg"]
        assert ddp["model_wrapper_cfg"]["find_unused_parameters"] is leaves
    assert ow["optimizer"]["type"] == "AdamW" and ow["optimizer"]["lr"] == 8e-6
    warm, cos = kw["param_scheduler"]
    assert warm["type"] == "LinearLR" and warm["end"] == 3 and warm["convert_to_iter_based"]
    assert cos["type"] == "CosineAnnealingLR" and cos["begin"] == 3 and cos["end"] == 50 and cos["eta_min"] == 0
    assert kw["default_hooks"]["checkpoint"]["interval"] == 1
    assert {b["type"] for b in kw["visualizer"]["vis_backends"]} == {"LocalVisBackend", "TensorboardVisBackend"}
    assert kw["train_cfg"]["max_epochs"] == 50 and kw["randomness"]["seed"] == 0
    cpu = runner_kwargs(cfg, object(), DS(range(64)), DS(range(8)), tmp_path, "none", "cpu")
    assert cpu["optim_wrapper"]["type"] == "OptimWrapper"


def test_a_one_batch_epoch_still_warms_up_to_the_base_lr(tmp_path):
    """A tiny dataset (one batch an epoch, a one-epoch warm-up): mmengine's LinearLR reaches the
    base lr only on its last iteration, so a one-iteration warm-up stayed at start_factor and the
    chained cosine carried it through the run (lr 1000x too low). The schedulers mmengine builds
    from our config are stepped as its hook steps them."""
    from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR

    from stages.train.schedule import runner_kwargs

    class DS(list):
        classes = ["a", "b"]
        rows = [{"uid": "c0"}]  # the plan rows of the clips trained on (meta.train_clips)
        entry = SimpleNamespace(attrs={}, key="k", dataset="d", settings={}, skeleton="coco17", classes=["a", "b"],
                                coarse_type="")

    def lrs(clips):
        cfg = build_run_config("ucmr_ablate", "pevl", cfg_options={
            "train.max_epochs": 4, "train.warmup_epochs": 1, "train.batch_size": 16, "train.lr": 2e-3})
        kw = runner_kwargs(cfg, object(), DS(range(clips)), DS(range(8)), tmp_path, "none", "cpu")
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=2e-3)
        per_epoch = clips // 16 if clips >= 32 else -(-clips // 16)  # the loader drops a last short batch from 2 on
        built = []
        for c in kw["param_scheduler"]:
            c = dict(c)
            cls = {"LinearLR": LinearLR, "CosineAnnealingLR": CosineAnnealingLR}[c.pop("type")]
            if c.pop("convert_to_iter_based", False):
                built.append(cls.build_iter_from_epoch(opt, epoch_length=per_epoch, **c))
            else:
                built.append(cls(opt, **c))
        out = []
        for _ in range(4 * per_epoch):
            out.append(opt.param_groups[0]["lr"])
            for sch in built:
                sch.step()
        return out

    one = lrs(4)  # 4 clips, batch 16: one iteration an epoch
    assert one[0] == pytest.approx(2e-3 * 1e-3, rel=0.01) and one[1] == pytest.approx(2e-3)
    assert one[2] == pytest.approx(1.5e-3) and one[3] == pytest.approx(5e-4)
    two = lrs(40)  # two iterations an epoch: the warm-up as before, the base lr at its last iteration
    assert two[0] == pytest.approx(2e-6) and two[1] == pytest.approx(2e-3) and max(two) == pytest.approx(2e-3)


@pytest.mark.parametrize("key, value, match", [
    ("runner.default_hooks.checkpoint.intervl", 1, r"runner.default_hooks.checkpoint.intervl: unknown argument of "
                                                  r"AtomicCheckpointHook 'intervl'; did you mean 'interval'\?"),
    ("runner.env_cfg.cudnn_benchmrk", True, r"runner.env_cfg.cudnn_benchmrk: .*did you mean 'cudnn_benchmark'"),
    ("runner.defualt_hooks.logger.interval", 5, r"runner.defualt_hooks: .*did you mean 'default_hooks'"),
    ("runner.train_cfg.val_intervl", 2, r"runner.train_cfg.val_intervl: .*EpochBasedTrainLoop.*'val_interval'"),
    ("runner.optim_wrapper.optimizer.weight_decy", 0.1, r"optimizer.weight_decy: .*AdamW.*'weight_decay'"),
    ("runner.optim_wrapper.clip_gard", {"max_norm": 1}, r"optim_wrapper.clip_gard: .*OptimWrapper.*'clip_grad'"),
])
def test_a_misspelt_raw_runner_key_is_refused_before_anything_is_built(tmp_path, key, value, match):
    """`runner.*` passes the typed settings: a misspelt checkpoint key failed after a whole epoch, an
    env_cfg key was never read. Each is refused naming the key and the closest one."""
    from stages.settings import SettingsError
    from stages.train.schedule import runner_kwargs

    class DS(list):
        classes = ["a", "b"]
        rows = [{"uid": "c0"}]
        entry = SimpleNamespace(attrs={}, key="k", dataset="d", settings={}, skeleton="coco17", classes=["a", "b"],
                                coarse_type="")

    cfg = build_run_config("ucmr_ablate", "pevl", cfg_options={key: value})
    with pytest.raises(SettingsError, match=match):
        runner_kwargs(cfg, object(), DS(range(64)), DS(range(8)), tmp_path, "none", "cpu")
    # the keys spelt right pass, and reach the Runner's arguments
    good = {"runner.default_hooks.checkpoint.interval": 2, "runner.env_cfg.cudnn_benchmark": True,
            "runner.default_hooks.checkpoint.filename_tmpl": "e_{}.pth", "runner.log_level": "WARNING"}
    kw = runner_kwargs(build_run_config("ucmr_ablate", "pevl", cfg_options=good), object(), DS(range(64)),
                       DS(range(8)), tmp_path, "none", "cpu")
    assert kw["default_hooks"]["checkpoint"]["interval"] == 2 and kw["env_cfg"]["cudnn_benchmark"] is True


@pytest.mark.parametrize("key, value, typed", [
    ("runner.train_cfg.max_epochs", 1, "train.max_epochs"), ("runner.randomness.seed", 7, "train.seed"),
    ("runner.optim_wrapper.optimizer.lr", 0.5, "train.lr"), ("runner.train_cfg.val_interval", 2, "train.val_interval"),
    ("runner.optim_wrapper.optimizer.weight_decay", 0.1, "train.weight_decay"),
    ("runner.train_dataloader.batch_size", 4, "train.batch_size"), ("runner.param_scheduler", [], "train.warmup_epochs"),
])
def test_a_raw_runner_key_a_typed_setting_makes_is_refused(key, value, typed):
    """-c runner.train_cfg.max_epochs=1 runner.randomness.seed=7 trained 1 epoch on a cosine built for 40
    while the setup line said 40 epochs and the result recorded seed 0; runner.optim_wrapper.optimizer.lr
    went NaN with the message blaming train.lr. The typed setting is named instead."""
    from stages.settings import SettingsError

    with pytest.raises(SettingsError, match=f"{key}: set by the typed setting {typed}.*set that instead"):
        build_run_config("ucmr_ablate", "pevl", cfg_options={key: value})


def test_another_datasets_file_replacing_the_variants_backbone_is_said(caplog):
    """On --dataset demo every table's ViT-B/16 and ViT-L/14 rows train the demo's tiny CLIP: one run
    under two names, unsaid (frame counts replaced were said)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="stages.train.config"):
        cfg = build_run_config("table2_gym99", "vit_l14", dataset="demo")
    assert cfg.model.clip.arch == "PeVL-tiny"
    assert "vit_l14 on demo: model.clip.arch=PeVL-tiny (from configs/_base_/datasets/demo.py), not the variant's " \
           "ViT-L-14" in caplog.text
