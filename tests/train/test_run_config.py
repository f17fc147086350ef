"""Every setting typed and checked: run configs refuse unknown keys by name, at any depth, naming the
layer they came from; every experiment builds through the schema; defaults live in one place; the
demo is a config overlay."""
import json
from pathlib import Path

import pytest

from stages.settings import SettingsError
from stages.train.config import (build_run_config, configs_root, experiment_names, list_variants, load_experiment,
                                 parse_cfg_options)

HERE = Path(__file__).parent


def _refused(exp, variant, option, dataset=None):
    with pytest.raises(SettingsError) as e:
        build_run_config(exp, variant, dataset=dataset, cfg_options=parse_cfg_options([option]))
    return str(e.value)


# (experiment, variant, dataset) of a PeVL, a PGVT and an AIM model
MODELS = [("ucmr_ablate", "pevl", None), ("pgvt_components", "pgvt", None), ("pgvt_components", "pose_only", "demo")]


@pytest.mark.parametrize("exp, variant, dataset", MODELS)
@pytest.mark.parametrize("key, close", [
    ("model.num_pose_frame", "model.num_pose_frames"),            # depth 1
    ("model.clip.pretraned_path", "model.clip.pretrained_path"),  # depth 2
    ("model.pose.cls_tokn", "model.pose.cls_token"),              # depth 2, a switch both families have
    ("model.adapters.ratoi", "model.adapters.ratio"),
])
def test_a_misspelt_model_key_is_refused_by_name(exp, variant, dataset, key, close):
    msg = _refused(exp, variant, f"{key}=1", dataset)
    assert f"unknown model setting {key} (from --cfg-options); did you mean {close}" in msg


@pytest.mark.parametrize("key, close", [("model.fusoin=concat", "model.fusion"),
                                        ("model.ucmr.num_block=2", "model.ucmr.num_blocks"),
                                        ("model.pose.embeding=per_joint", "model.pose.embedding"),
                                        ("model.sgmc.los=vanilla", "model.sgmc.loss")])
def test_the_issues_misspellings_train_nothing(key, close):
    assert f"did you mean {close}?" in _refused("demo", "pevl", key)


def test_pgvt_refuses_nested_keys_of_its_own_and_of_pevl():
    assert "did you mean model.pgvt.temporal" in _refused("pgvt_components", "pgvt", "model.pgvt.temporl=false")
    # a PeVL switch on a PGVT model is no PGVT key either
    assert "unknown model setting model.ucmr" in _refused("pgvt_components", "pgvt", "model.ucmr.num_blocks=0")


@pytest.mark.parametrize("key, close", [("train.lrr", "train.lr"), ("train.clip_grad.max_nrom", "train.clip_grad.max_norm"),
                                        ("trian.lr", "train")])
def test_a_misspelt_schedule_key_is_refused_at_each_depth(key, close):
    msg = _refused("ucmr_ablate", "pevl", f"{key}=1")
    assert "(from --cfg-options)" in msg and f"did you mean {close}" in msg


def test_a_moved_key_says_where_it_lives_now():
    msg = _refused("ucmr_ablate", "pevl", "train.flip_prob=0.5")
    assert "unknown schedule setting train.flip_prob" in msg and "flip_prob is a key of data" in msg


def test_wrong_values_name_key_value_and_type():
    assert "model.ucmr.num_blocks = 'two' (from --cfg-options): expected an integer" in \
        _refused("ucmr_ablate", "pevl", "model.ucmr.num_blocks=two")
    assert "expected one of 'sgmc', 'concat'" in _refused("ucmr_ablate", "pevl", "model.fusion=cat")
    assert "data.dataset_options.frame_range = 'maybe'" in _refused("ucmr_ablate", "pevl",
                                                                   "data.dataset_options.frame_range=maybe")
    assert "unknown dataset option data.dataset_options.frame_rnge" in _refused(
        "ucmr_ablate", "pevl", "data.dataset_options.frame_rnge=1")
    assert "unknown pose source option data.pose_options.checkpont" in _refused(
        "ucmr_ablate", "pevl", "data.pose_options.checkpont=/w/h.pth")
    msg = _refused("ucmr_ablate", "pevl", "data.dataset=dving48")
    assert "did you mean 'diving48'" in msg


def test_a_key_in_a_config_file_is_refused_naming_the_file(tmp_path):
    exp = tmp_path / "mine.py"
    exp.write_text(f"_base_ = ['{configs_root()}/_base_/models/pevl_vit_b16.py']\n"
                   "experiment = dict(name='mine', paper_dataset='Diving48')\n"
                   "model = dict(ucmr=dict(num_block=2))\n"
                   "variants = dict(a=dict(model=dict()), b=dict(model=dict(pose=dict(temporal_atn=False))))\n")
    with pytest.raises(SettingsError, match=r"model\.ucmr\.num_block \(from .*mine\.py\)"):
        build_run_config(str(exp), "a")
    exp.write_text(exp.read_text().replace("num_block=2", "num_blocks=2"))
    assert build_run_config(str(exp), "a").model.ucmr.num_blocks == 2
    with pytest.raises(SettingsError, match=r"model\.pose\.temporal_atn \(from .*mine\.py, variant b\); "
                                            r"did you mean model\.pose\.temporal_attn"):
        build_run_config(str(exp), "b")
    exp.write_text(exp.read_text().replace("model=dict(pose", "modle=dict(pose"))
    with pytest.raises(SettingsError, match="variant b: unknown variant key 'modle'; did you mean 'model'"):
        build_run_config(str(exp), "b")


@pytest.mark.parametrize("exp", experiment_names())
def test_every_variant_of_every_experiment_builds_through_the_schema(exp):
    """No unknown key anywhere, on the experiment's own dataset and on the demo; the model config
    is complete (every key of its type's schema) and builds on the meta device."""
    from stages.model import model_settings

    cfg = load_experiment(exp)
    for v in list_variants(cfg):
        for dataset in (None, "demo"):
            run = build_run_config(exp, v, dataset=dataset)
            s = model_settings(run.model)
            assert s.to_dict() == run.model.to_dict()  # resolved: every default filled in
            assert run.data.dataset and run.data.extract["num_frames"] >= 1


def _leaves(d, p=""):
    if not isinstance(d, dict) or (not d and p):
        return {p: d}
    out = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{p}.{k}" if p else k))
    return out


#: keys moved by the typed settings (the loader's and augmentation's keys are data settings now)
MOVED = {"train.flip_prob": "data.flip_prob", "train.random_pose_offsets": "data.random_pose_offsets",
         "train.num_workers": "data.num_workers"}
#: keys gone: the code path's marker, the HRNet checkpoint (a pose option, unset = the official file)
GONE = {"demo_switch", "data.pose_checkpoint"}


@pytest.mark.parametrize("case", sorted(json.loads((HERE / "run_configs_before_typed_settings.json").read_text())))
def test_the_demo_overlay_gives_the_run_configs_the_demo_code_path_gave(case):
    """Run configs resolved by the code before the typed settings (commit 81b9c9a: the demo as special
    cases in code), kept in run_configs_before_typed_settings.json: every value is the same now."""
    before = json.loads((HERE / "run_configs_before_typed_settings.json").read_text())[case]
    exp, variant, dataset = case.split("/")
    now = _leaves(build_run_config(exp, variant, dataset=None if dataset == "None" else dataset).to_dict())
    for k, v in _leaves(before).items():
        if k in GONE:
            continue
        assert now[MOVED.get(k, k)] == v, (k, v, now.get(MOVED.get(k, k)))


def test_base_configs_state_only_what_differs_from_the_schemas():
    """One place for each default: a base config restating a schema default fails here."""
    from stages.data.settings import DataSettings
    from stages.extract.settings import ExtractSettings
    from stages.model.settings import PeVLSettings, PGVTSettings
    from stages.train.config import load_config_file
    from stages.train.schedule import ScheduleSettings

    defaults = {"train": _leaves(ScheduleSettings().to_dict()), "data": _leaves(DataSettings().to_dict())}
    defaults["data"].update({f"extract.{k}": v for k, v in ExtractSettings().to_dict().items()})
    model = {"PeVL": _leaves(PeVLSettings().to_dict()), "PGVT": _leaves(PGVTSettings().to_dict())}
    base = configs_root() / "_base_"
    checked = 0
    for path in sorted(base.rglob("*.py")):
        d, prov = load_config_file(path)
        mtype = (d.get("model") or {}).get("type", "PeVL")
        for k, v in _leaves(d).items():
            if prov.get(k) != str(path.relative_to(configs_root().parent)):
                continue  # inherited from another base file, checked there
            section, _, rest = k.partition(".")
            table = model[mtype] if section == "model" else defaults.get(section, {})
            if rest in ("type", "dataset"):
                continue
            # a dataset file's other sections are an overlay over the variants (`--dataset demo`): they
            # state the demo's frame counts on purpose, so a variant's own do not win; and the demo's
            # entry (16 frames on a 16-pixel grid) for the same reason
            if path.parent.name == "datasets" and (section != "data" or k.startswith("data.extract.")):
                continue
            checked += 1
            assert table.get(rest, object()) != v, f"{path.name}: {k} = {v!r} restates the schema's default"
    assert checked > 10


def test_a_saved_run_config_runs_again(tmp_path):
    """The resolved config is what is saved beside a run; --exp SAVED.py builds the same run."""
    from mmengine.config import Config

    cfg = build_run_config("ucmr_ablate", "wo_p2v", dataset="demo", cfg_options={"train.lr": 3e-4})
    saved = tmp_path / "saved.py"
    Config(cfg.to_dict()).dump(str(saved))
    again = build_run_config(str(saved), "wo_p2v")
    assert again.to_dict() == cfg.to_dict()
    assert list_variants(load_experiment(str(saved))) == ["wo_p2v"]
    # a run saved before runner.* keys a typed setting makes were refused still runs (and evaluates) again
    old = {**cfg.to_dict(), "runner": {"train_cfg": {"val_interval": 1}}}
    Config(old).dump(str(saved))
    assert build_run_config(str(saved), "wo_p2v").runner == {"train_cfg": {"val_interval": 1}}
    with pytest.raises(SettingsError, match="runner.train_cfg.max_epochs: set by the typed setting"):
        build_run_config(str(saved), "wo_p2v", cfg_options={"runner.train_cfg.max_epochs": 2})


def test_stats_reads_frame_counts_from_the_variant_it_builds():
    from pipeline.commands.stats import stats

    rows = {r["variant"]: r for r in stats(exp="demo_pose_rate", json_out=True, arch="PeVL-tiny", video_frames=None,
                                            pose_frames=None, texts_per_clip=1)}
    assert rows["p16"]["frames"] == "16+-" and rows["p48"]["frames"] == "48+-"  # (pose-only rows)
    assert rows["pevl"]["frames"] == "48+16"


# -- -c keys that change nothing --------------------------------------------------------------------------
def test_a_c_key_idle_in_some_variants_is_said_for_those_and_refused_when_idle_in_all():
    from stages.train.config import refuse_idle_overrides
    from stages.train.sweep import say_idle_overrides

    opts = {"model.ucmr.num_blocks": 2}
    cfgs = {v: build_run_config("table4_components", v, cfg_options=opts)
            for v in list_variants(load_experiment("table4_components"))}
    assert cfgs["baseline"].model.ucmr.num_blocks == 0 and cfgs["plus_ucmr"].model.ucmr.num_blocks == 2
    said = []
    say_idle_overrides(cfgs, opts, "table4_components", said.append)
    assert said and all(s.endswith("(on this variant; the others take it)") for s in said)
    assert "[warn] table4_components/baseline: -c model.ucmr.num_blocks is overridden by model.type='CLIPBaseline' " \
           "(Table 4's baseline: frozen CLIP, video and text, a trainable projection, the vanilla loss): the model " \
           "gets 0 (on this variant; the others take it)" in said
    assert not any("/plus_ucmr:" in s for s in said)
    with pytest.raises(SettingsError, match=r"-c model.ucmr.num_blocks is overridden by model.type='CLIPBaseline' "
                                            r".*: the model gets 0$"):
        say_idle_overrides({"baseline": cfgs["baseline"]}, opts, "table4_components", said.append)
    sgmc = {"model.sgmc.loss": "vanilla"}  # concatenation in the baseline, the default (SGMC) in the others
    two = {v: build_run_config("table4_components", v, cfg_options=sgmc) for v in ("baseline", "plus_pose")}
    with pytest.raises(SettingsError, match=r"-c model.sgmc.loss has no effect, with model.fusion='concat' .* \(on "
                                            r"baseline; and on every other variant trained: plus_pose\)"):
        say_idle_overrides(two, sgmc, "table4_components", said.append)
    with pytest.raises(SettingsError, match=r"-c model.ucmr.num_blocks is overridden .* \(the model of x.pth\)"):
        refuse_idle_overrides(cfgs["baseline"], opts, "the model of x.pth")
    refuse_idle_overrides(cfgs["plus_ucmr"], opts)  # acts there: nothing to say


@pytest.mark.parametrize("exp", ["supp_table2_kinetics400", "pgvt_table3_kinetics400"])
def test_an_experiments_own_data_amendment_holds_under_another_dataset(exp):
    """Both Kinetics tables state ``data = dict(extract=dict(num_frames=32))`` at the experiment's
    level: under ``--dataset diving48`` the model ran at 32 frames and looked up a 16-frame entry
    (extracting one did not help)."""
    v = list_variants(load_experiment(exp))[0]
    for ds in (None, "diving48"):
        cfg = build_run_config(exp, v, dataset=ds)
        assert cfg.data.extract.num_frames == 32 == cfg.model.num_video_frames
    assert build_run_config(exp, v, dataset="diving48").data.dataset == "diving48"
    demo = build_run_config("demo", "pevl", dataset="diving48")  # a data config naming its dataset stays its own
    assert demo.data.dataset == "diving48" and demo.data.flip_prob == 0.5


@pytest.mark.parametrize("key", ["exp_name", "variant", "experiment.name", "model_wrapper_cfg.type"])
def test_names_the_command_sets_are_no_c_settings(key):
    """``-c exp_name=mine variant=other`` was accepted and overwritten (the run kept its names)."""
    with pytest.raises(SettingsError, match=rf"-c {key}: not a setting: .* come from --exp and --variant"):
        build_run_config("demo", "pevl", cfg_options={key: "x"})
    assert build_run_config("demo", "pevl", cfg_options={"experiment.table": "mine"}).experiment.table == "mine"


def test_the_demo_schedule_replaces_an_experiments_recipe_whole(tmp_path, caplog):
    """An experiment bringing AIM's schedule, run with --dataset demo, trained at the demo's lr with
    AIM's warm-up start and no-decay kinds: a recipe neither file states."""
    import logging

    from stages.train.schedule import ScheduleSettings

    exp = tmp_path / "mine.py"
    exp.write_text(f"_base_ = ['{configs_root() / 'experiments' / 'ucmr_ablate.py'}', "
                   f"'{configs_root() / '_base_' / 'schedules' / 'aim.py'}']\n")
    own = build_run_config(str(exp), "pevl")
    assert own.train.lr == 3e-4 and own.train.warmup_start_factor == 0.1
    with caplog.at_level(logging.WARNING, logger="stages.train.config"):
        demo = build_run_config(str(exp), "pevl", dataset="demo")
    assert demo.train.lr == 2e-3 and demo.train.max_epochs == 40
    assert demo.train.warmup_start_factor == ScheduleSettings().warmup_start_factor
    assert list(demo.train.no_decay) == list(ScheduleSettings().no_decay)
    assert "the dataset's schedule replaces the experiment's; train.no_decay, train.warmup_start_factor dropped" \
        in caplog.text


def _write_exp(path: Path, body: str, dataset: str = "Diving48") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"_base_ = ['{configs_root()}/_base_/models/pevl_vit_b16.py']\n"
                    f"experiment = dict(name='mine', paper_dataset='{dataset}')\n" + body)
    return path


def test_a_mistyped_path_is_not_taken_for_the_built_in_experiment_of_its_name(tmp_path, monkeypatch):
    """An edited copy's path mistyped (exps/ucmr_ablate.py for exps/mine/ucmr_ablate.py) trained the
    repository's ucmr_ablate without a word; a bare name still finds the built-in one."""
    monkeypatch.chdir(tmp_path)
    for given in ("exps/ucmr_ablate.py", "ucmr_ablate.py"):
        with pytest.raises(FileNotFoundError, match=f"--exp {given}: no such file .*--exp ucmr_ablate"):
            build_run_config(given, "pevl")
    assert build_run_config("ucmr_ablate", "pevl").variant == "pevl"


def test_dataset_overrides_apply_on_the_experiments_own_dataset_and_refuse_names_of_none(tmp_path):
    """dataset_overrides.diving48 of a Diving48 experiment was never applied (lr 8e-06 trained), nor
    a misspelt dmeo=..."""
    exp = _write_exp(tmp_path / "e.py", "variants = dict(a=dict())\n"
                     "dataset_overrides = dict(diving48=dict(train=dict(lr=1e-3)), demo=dict(train=dict(lr=2e-2)))\n")
    assert build_run_config(str(exp), "a").train.lr == 1e-3
    assert build_run_config(str(exp), "a", dataset="diving48").train.lr == 1e-3
    assert build_run_config(str(exp), "a", dataset="demo").train.lr == 2e-2
    exp.write_text(exp.read_text().replace("demo=dict", "dmeo=dict"))
    with pytest.raises(SettingsError, match="dataset_overrides.dmeo: unknown dataset 'dmeo'; did you mean 'demo'"):
        build_run_config(str(exp), "a")


@pytest.mark.parametrize("key", ["model.ucmr", "model.pose", "train", "data.extract"])
def test_none_for_a_whole_section_is_refused_not_read_as_its_defaults(key):
    """-c model.ucmr=None on a variant without UCMR trained one UCMR block (the schema's default)."""
    with pytest.raises(SettingsError, match=rf"{key} = None.*expected a mapping.*_delete_=True"):
        build_run_config("ucmr_ablate", "wo_ucmr", cfg_options={key: None})
    assert build_run_config("ucmr_ablate", "pevl", cfg_options={"train.clip_grad": None}).train.clip_grad is None


def test_c_keys_that_fight_or_that_others_set_are_refused():
    """-c model.ucmr.num_blocks=2 model.ucmr=... : the order decided; -c train.betas.1=0.99 failed
    with "'float' object has no attribute 'copy'"; -c model.num_classes=5 was replaced by the entry's."""
    from stages.train.config import parse_cfg_options

    with pytest.raises(ValueError, match="sets model.ucmr and model.ucmr.num_blocks inside it"):
        parse_cfg_options(["model.ucmr.num_blocks=2", "model.ucmr={}"])
    with pytest.raises(ValueError, match=r"train.betas.1: list items are not set one by one.*train.betas=\[...\]"):
        parse_cfg_options(["train.betas.1=0.99"])
    with pytest.raises(SettingsError, match="-c model.num_classes: set from the cache entry"):
        parse_cfg_options(["model.num_classes=5"])


def test_a_misspelt_base_and_unsafe_or_malformed_variants_are_refused(tmp_path):
    """_bases_ = [...] dropped the schedule it named (a helper name) and trained the default recipe;
    a variant named '..' trained into the work dir's parent; variants=dict(a=None) said
    "'NoneType' object is not iterable"."""
    exp = _write_exp(tmp_path / "e.py", "variants = dict(a=dict())\n")
    exp.write_text(exp.read_text().replace("_base_ =", "_bases_ ="))
    with pytest.raises(SettingsError, match=r"e.py:1: _bases_ = ...: did you mean _base_\?"):
        build_run_config(str(exp), "a")
    exp.write_text(exp.read_text().replace("_bases_ =", "_base_ =") + "_base_lr = 1e-5\n_bases_ = ['x.py']\n")
    assert build_run_config(str(exp), "a").variant == "a"  # with a _base_, helper names stay the file's own
    for variants, says in (("dict(a=None)", "variants.a = None: expected a dict"), ("dict()", "one variant at least"),
                           ("{'..': dict()}", "variant name '..'"), ("{'a/b': dict()}", "variant name 'a/b'"),
                           ("{'a,b': dict()}", "variant name 'a,b'")):
        _write_exp(exp, f"variants = {variants}\n")
        with pytest.raises(ValueError, match=says):
            load_experiment(str(exp))
    _write_exp(exp, "variants = {'Zürich run 2': dict()}\n")  # any folder name
    assert build_run_config(str(exp), "Zürich run 2").variant == "Zürich run 2"
    _write_exp(exp, "variants = dict(a=dict())\n").write_text(exp.read_text().replace("name='mine'", "name='../up'"))
    with pytest.raises(SettingsError, match="experiment.name '../up'"):
        build_run_config(str(exp), "a")
