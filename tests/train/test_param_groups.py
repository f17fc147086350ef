"""The optimiser's named groups: every tunable parameter in exactly one, with the lr and weight
decay each recipe (configs/_base_/schedules/) says; the kinds without decay."""
import pytest
import torch

from stages.model import build_model
from stages.nested_config import to_plain
from stages.train.config import build_run_config, configs_root
from stages.train.param_groups import GROUPS, build_param_groups, paramwise_cfg, tunable_parameter_table
from stages.train.runner_model import TunableOptimWrapperConstructor
from stages.train.schedule import ScheduleSettings

TINY = {"model.clip.arch": "PeVL-tiny", "model.clip.pretrained": None, "model.num_pose_frames": 8,
        "model.num_video_frames": 4}
#: recipe -> (base lr, lr multiplier of the new modules, betas, kinds without decay, label smoothing, mixup)
RECIPES = {
    "xclip": (8e-6, 10.0, (0.9, 0.98), {"norm", "bias", "embedding", "scalar"}, 0.1, 0.8),
    "paper_text": (8e-6, 1.0, (0.9, 0.999), {"norm", "bias", "embedding", "scalar"}, 0.0, 0.0),
    "aim": (3e-4, 1.0, (0.9, 0.999), {"norm", "embedding", "scalar"}, 0.0, 0.0),
}
EXPERIMENTS = [("ucmr_ablate", "pevl"), ("table7_modalities", None), ("pgvt_components", "pgvt"),
               ("pgvt_components", "late_fusion")]


def recipe_run_config(tmp_path, exp, variant, recipe, **over):
    """``exp``'s variant with the recipe file after it in ``_base_``, as a person would choose one."""
    root = configs_root()
    path = tmp_path / f"{exp}_{recipe}.py"
    path.write_text(f"_base_ = ['{root / 'experiments' / (exp + '.py')}', "
                    f"'{root / '_base_' / 'schedules' / (recipe + '.py')}']\n")
    from stages.train.config import list_variants, load_experiment

    v = variant or list_variants(load_experiment(path))[-1]
    return build_run_config(str(path), v, cfg_options={**TINY, **over})


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("exp,variant", EXPERIMENTS)
def test_every_tunable_parameter_is_in_one_group_with_the_recipes_lr(tmp_path, recipe, exp, variant):
    cfg = recipe_run_config(tmp_path, exp, variant, recipe)
    lr, mult, betas, no_decay, smoothing, mixup = RECIPES[recipe]
    t = ScheduleSettings.from_dict(to_plain(cfg.train))
    assert (t.lr, tuple(t.betas), set(t.no_decay), t.label_smoothing, t.mixup_alpha) == \
        (lr, betas, no_decay, smoothing, mixup)
    model = build_model(cfg.model.to_dict())
    # through the constructor the Runner uses, with the optim_wrapper runner_kwargs writes
    ctor = TunableOptimWrapperConstructor(
        dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=t.lr, betas=tuple(t.betas), eps=t.eps,
                                                 weight_decay=t.weight_decay)),
        paramwise_cfg(t.param_groups, t.no_decay))
    opt = ctor(model).optimizer
    assert opt.defaults["betas"] == betas
    seen = {}
    for g in opt.param_groups:
        group, _, nd = g["name"].partition(".")
        assert group in GROUPS and g["lr"] == pytest.approx(lr * (1.0 if group == "clip" else mult))
        assert g["weight_decay"] == (0.0 if nd else pytest.approx(0.05))
        for p, n in zip(g["params"], g["param_names"]):
            assert id(p) not in seen, f"{n} is in two groups"
            seen[id(p)] = (group, bool(nd))
    tunable = {id(p): (n, grp, kind) for n, grp, kind, p in tunable_parameter_table(model)}
    assert set(seen) == set(tunable) == {id(p) for p in model.parameters() if p.requires_grad}
    assert not any(id(p) in seen for p in model.parameters() if not p.requires_grad)
    for pid, (n, grp, kind) in tunable.items():
        assert seen[pid] == (grp, kind in no_decay), n


def test_groups_and_kinds_of_named_parameters():
    """Hand-checked names: where each goes and whether it decays (PeVL and PGVT, tiny)."""
    cfg = build_run_config("ucmr_ablate", "pevl", cfg_options=TINY)
    pevl = {n: (g, k) for n, g, k, _ in tunable_parameter_table(build_model(cfg.model.to_dict()))}
    want = {
        "video_encoder.attn_adapters.0.fc1.weight": ("video", "weight"),
        "video_encoder.attn_adapters.0.fc1.bias": ("video", "bias"),
        "video_proj": ("video", "weight"),
        "pose_encoder.embed.joint_pos": ("pose", "embedding"),
        "pose_encoder.embed.temporal_pos": ("pose", "embedding"),
        "pose_encoder.embed.cls.token": ("pose", "embedding"),
        "pose_proj": ("pose", "weight"),
        "ucmr.0.p2v.norm.weight": ("ucmr", "norm"),
        "ucmr.0.p2v.attn_gate": ("ucmr", "scalar"),
        "ucmr.0.v2p.background": ("ucmr", "embedding"),
        "ucmr.0.v2p.q.weight": ("ucmr", "weight"),
        "refine_logit_scale": ("ucmr", "scalar"),
        "logit_scale": ("sgmc", "scalar"),
        "text_encoder.proj": ("text", "weight"),
        "text_encoder.mlp_adapters.0.fc2.bias": ("text", "bias"),
    }
    for n, gk in want.items():
        assert pevl[n] == gk, n
    assert not any(g == "clip" for g, _ in pevl.values())  # the towers are frozen
    cfg = build_run_config("pgvt_components", "pgvt", cfg_options=TINY)
    pgvt = {n: (g, k) for n, g, k, _ in tunable_parameter_table(build_model(cfg.model.to_dict()))}
    for n, gk in {"blocks.0.t_adapter.fc1.weight": ("pose", "weight"),
                  "blocks.0.video_mlp_adapter.fc2.bias": ("video", "bias"),
                  "blocks.1.r_adapter.fc_down.weight": ("ucmr", "weight"),
                  "pose_embed.joint_embed.fc2.bias": ("pose", "bias"),
                  "video_embed.temporal_pos": ("video", "embedding"),
                  "pose_norm.weight": ("pose", "norm"), "head.fc.weight": ("head", "weight")}.items():
        assert pgvt[n] == gk, n


def test_a_parameter_no_rule_names_is_an_error_naming_it():
    cfg = build_run_config("ucmr_ablate", "pevl", cfg_options=TINY)
    model = build_model(cfg.model.to_dict())
    model.stray = torch.nn.Parameter(torch.zeros(3))
    groups = paramwise_cfg(cfg.train.param_groups.to_dict(), cfg.train.no_decay)
    with pytest.raises(KeyError, match="'stray' is in no optimiser group"):
        build_param_groups(model, 1e-3, 0.05, groups)
    with pytest.raises(KeyError, match="unknown group 'vidoe'"):
        build_param_groups(model, 1e-3, 0.05, {"custom_keys": {"vidoe": {"lr_mult": 2}}})
    with pytest.raises(KeyError, match="unknown kind"):
        build_param_groups(model, 1e-3, 0.05, {**groups, "no_decay": ["norms"]})
    # each group's multipliers come from the schedule's schema (one place): a config without them is refused
    with pytest.raises(KeyError, match="no group 'clip'"):
        build_param_groups(model, 1e-3, 0.05, {"custom_keys": {}})


def test_a_group_multiplier_from_the_command_line_keeps_the_others(tmp_path):
    cfg = build_run_config("ucmr_ablate", "pevl", cfg_options={**TINY, "train.param_groups.ucmr.lr_mult": 3.0})
    t = ScheduleSettings.from_dict(to_plain(cfg.train))
    assert t.param_groups.ucmr.lr_mult == 3.0 and t.param_groups.video.lr_mult == 10.0
    assert t.param_groups.clip.lr_mult == 1.0


def test_fractional_warmup_becomes_iterations(tmp_path):
    """AIM's 2.5 warm-up epochs: mmengine converts them to iterations (end = 2.5 x epoch length)."""
    from mmengine.optim.scheduler import LinearLR

    cfg = recipe_run_config(tmp_path, "ucmr_ablate", "pevl", "aim")
    t = ScheduleSettings.from_dict(to_plain(cfg.train))
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=t.lr)
    s = LinearLR.build_iter_from_epoch(opt, start_factor=t.warmup_start_factor, by_epoch=True, begin=0,
                                       end=t.warmup_epochs, epoch_length=10)
    assert s.end == 25 and opt.param_groups[0]["lr"] == pytest.approx(3e-5)
