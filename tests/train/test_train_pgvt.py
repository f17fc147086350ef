"""PGVT through stage two: the two-stage late fusion (init from other variants of the same sweep),
the sweep's order, the 32-frame row's entry lookup, and a small sweep on a real demo entry."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from pevl_stage2_testutils import small_demo  # noqa: E402,F401  (session fixture)

import pytest
import torch

from stages.nested_config import to_plain
from stages.train.config import build_run_config, load_experiment, variant_config
from stages.train.warm_start import init_from_variants
from stages.train.sweep import order_by_init_sources

TINY = dict(clip=dict(arch="PeVL-tiny", pretrained=None), num_pose_frames=8, num_video_frames=4, num_classes=3)


def runner_model(variant: str, seed: int):
    from stages.train.runner_model import RunnerModel

    cfg = to_plain(variant_config(load_experiment("pgvt_components"), variant, **TINY).model)
    torch.manual_seed(seed)
    return RunnerModel(cfg, ["a", "b", "c"])


def finished_run(exp_dir: Path, variant: str, model) -> Path:
    """What a finished variant leaves behind: a checkpoint (mmengine's layout) and result.json."""
    vdir = exp_dir / variant
    vdir.mkdir(parents=True)
    ckpt = vdir / "epoch_1.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": model.state_dict()}, ckpt)
    (vdir / "result.json").write_text(json.dumps({"variant": variant, "checkpoint": str(ckpt)}))
    return ckpt


def test_late_fusion_starts_from_the_single_modality_runs(tmp_path):
    exp_dir = tmp_path / "pgvt_components-demo"
    pose, video = runner_model("pose_only", 1), runner_model("video_only_16", 2)
    ck_pose, ck_video = finished_run(exp_dir, "pose_only", pose), finished_run(exp_dir, "video_only_16", video)
    late = runner_model("late_fusion", 3)
    head_before = late.recognizer.head.fc.weight.detach().clone()
    init = to_plain(load_experiment("pgvt_components").variants.late_fusion.init_from)
    used = init_from_variants(late, init, exp_dir)
    assert used == {"pose_only": str(ck_pose), "video_only_16": str(ck_video)}
    got = late.state_dict()
    n_pose = n_video = 0
    for src, prefix in ((pose, "recognizer.pose_"), (video, "recognizer.video_")):
        for k, v in src.state_dict().items():
            if k.startswith(prefix):
                assert torch.equal(got[k], v), k
                n_pose += prefix == "recognizer.pose_"
                n_video += prefix == "recognizer.video_"
    assert n_pose > 10 and n_video > 10  # embeddings, every block's adapters, ln_post copies
    assert torch.equal(late.recognizer.head.fc.weight, head_before)  # the head over both is new
    # the frozen CLIP is the same random tiny CLIP only by seed; it is not copied
    assert not any(k.startswith("recognizer.clip.") for k in init["pose_only"] + init["video_only_16"])


def test_late_fusion_without_its_sources_says_what_to_train(tmp_path):
    exp_dir = tmp_path / "pgvt_components"
    late = runner_model("late_fusion", 0)
    with pytest.raises(FileNotFoundError, match="'pose_only', which has not finished.*train it first"):
        init_from_variants(late, {"pose_only": ["pose_"]}, exp_dir)
    finished_run(exp_dir, "video_only_16", runner_model("video_only_16", 0))
    with pytest.raises(ValueError, match="nothing under"):
        init_from_variants(late, {"video_only_16": ["nope_"]}, exp_dir)
    # a checkpoint of another model (PGVT blocks have no video_stream) is refused, not half-loaded
    finished_run(exp_dir, "pgvt", runner_model("pgvt", 0))
    before = {k: v.clone() for k, v in late.state_dict().items()}
    with pytest.raises(ValueError, match="weights missing"):
        init_from_variants(late, {"pgvt": ["video_"]}, exp_dir)
    assert all(torch.equal(v, late.state_dict()[k]) for k, v in before.items())


def test_sweep_order_puts_sources_first():
    cfg = load_experiment("pgvt_components")
    assert order_by_init_sources(cfg, ["late_fusion", "pgvt"]) == ["late_fusion", "pgvt"]
    paper = ["pose_only", "video_only_16", "late_fusion"]
    assert order_by_init_sources(cfg, paper) == paper  # the paper's order already has the sources first
    cfg.variants.pose_only.init_from = dict(late_fusion=["pose_"])
    with pytest.raises(ValueError, match="circle"):
        order_by_init_sources(cfg, ["pose_only", "late_fusion"])
    cfg.variants.pose_only.init_from = dict(nothing=["pose_"])
    with pytest.raises(KeyError, match="unknown variant"):
        order_by_init_sources(cfg, ["pose_only"])


def test_dependent_listed_first_trains_after_its_source():
    cfg = load_experiment("pgvt_components")
    variants = dict(cfg.variants)
    cfg.variants = {"late_fusion": variants["late_fusion"], "pose_only": variants["pose_only"],
                    "video_only_16": variants["video_only_16"]}
    assert order_by_init_sources(cfg, ["late_fusion", "pose_only", "video_only_16"]) == [
        "pose_only", "video_only_16", "late_fusion"]


def test_32_frame_row_looks_up_a_32_frame_entry():
    cfg = build_run_config("pgvt_components", "video_only_32")
    assert cfg.model.num_video_frames == 32 and cfg.data.extract.num_frames == 32
    assert cfg.data.dataset == "diving48" and cfg.data.test_split == "test"  # the rest of Diving48's config
    assert build_run_config("pgvt_components", "pgvt").data.extract.num_frames == 16
    gym = build_run_config("pgvt_components", "video_only_32", dataset="gym99")
    assert gym.data.dataset == "gym99" and gym.data.extract.num_frames == 32
    demo = build_run_config("pgvt_components", "video_only_32", dataset="demo")
    assert demo.data.dataset == "demo" and demo.model.num_video_frames == 16  # the demo caches 16
    assert cfg.train.lr == 8e-6 and cfg.train.weight_decay == 0.05 and cfg.train.max_epochs == 50


def test_pgvt_sweep_on_a_demo_entry(small_demo, tmp_path):
    """pose_only and video_only_16, then late fusion from their checkpoints, from the cache."""
    from stages.train.sweep import run_sweep

    cache, entry_dir, data_cfg = small_demo
    opts = {"train.max_epochs": 1, "train.warmup_epochs": 0, "train.batch_size": 4, "data.num_workers": 0,
            "train.val_interval": 1, "train.log_interval": 1, "model.num_video_frames": 4,
            "model.num_pose_frames": 8, "data.root": data_cfg["root"],
            "data.dataset_options": data_cfg["dataset_options"],
            "data.extract.frames_per_segment": data_cfg["extract"]["frames_per_segment"]}
    said = []
    only_late = run_sweep("pgvt_components", variants=["late_fusion"], dataset="demo", work_dir=tmp_path / "w",
                          cfg_options=opts, cache_root=str(cache), say=said.append)
    assert [o.status for o in only_late.outcomes] == ["failed"]
    assert "train it first" in only_late.outcomes[0].error
    rep = run_sweep("pgvt_components", variants=["late_fusion,pose_only,video_only_16"], dataset="demo",
                    work_dir=tmp_path / "w", cfg_options=opts, cache_root=str(cache), say=said.append)
    assert [(o.variant, o.status) for o in rep.outcomes] == [
        ("pose_only", "trained"), ("video_only_16", "trained"), ("late_fusion", "trained")], \
        [o.error for o in rep.outcomes]
    exp_dir = tmp_path / "w" / "pgvt_components-demo"
    rows = {r["variant"]: r for r in json.loads((exp_dir / "results.json").read_text())}
    assert set(rows["late_fusion"]["init_from"]) == {"pose_only", "video_only_16"}
    assert set(rows) == {"pose_only", "video_only_16", "late_fusion"}
    for r in rows.values():
        assert r["num_classes"] == 10 and r["gflops"] > 0 and r["tunable_params_m"] > 0
    assert rows["late_fusion"]["tunable_params_m"] > rows["pose_only"]["tunable_params_m"]
    assert "PGVT Table 4" in (exp_dir / "results.md").read_text()


def test_demo_runs_take_the_experiments_dataset_overrides():
    demo = build_run_config("pgvt_components", "pgvt", dataset="demo")
    assert demo.model.clip.arch == "PeVL-tiny" and demo.model.clip.frozen is False
    assert demo.model.head.dropout == 0.0 and "dataset_overrides" not in demo
    real = build_run_config("pgvt_components", "pgvt")
    assert real.model.clip.frozen is True and real.model.head.dropout == 0.5 and "dataset_overrides" not in real


def test_late_fusion_reads_its_sources_from_its_own_tree(tmp_path):
    """A copied work tree: result.json's absolute path names the original tree, whose pose_only may
    have been trained again since; the copy's own checkpoint is the one taken. A damaged or
    diverged source is refused, not copied in."""
    import shutil

    original = tmp_path / "a" / "pgvt_components-demo"
    pose = runner_model("pose_only", 1)
    finished_run(original, "pose_only", pose)
    copy = tmp_path / "b" / "pgvt_components-demo"
    shutil.copytree(original, copy)
    finished_run(tmp_path / "retrained", "pose_only", runner_model("pose_only", 9))
    shutil.copy(tmp_path / "retrained" / "pose_only" / "epoch_1.pth", original / "pose_only" / "epoch_1.pth")
    late = runner_model("late_fusion", 3)
    used = init_from_variants(late, {"pose_only": ["pose_"]}, copy)
    assert used == {"pose_only": str(copy / "pose_only" / "epoch_1.pth")}
    k = next(k for k in pose.state_dict() if k.startswith("recognizer.pose_"))
    assert torch.equal(late.state_dict()[k], pose.state_dict()[k])
    # a diverged source
    state = pose.state_dict()
    state[k] = torch.full_like(state[k], float("nan"))
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, copy / "pose_only" / "epoch_1.pth")
    with pytest.raises(ValueError, match="hold NaN or infinity .*that run diverged"):
        init_from_variants(runner_model("late_fusion", 3), {"pose_only": ["pose_"]}, copy)
    # a damaged one
    (copy / "pose_only" / "epoch_1.pth").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ValueError, match="epoch_1.pth cannot be used"):
        init_from_variants(runner_model("late_fusion", 3), {"pose_only": ["pose_"]}, copy)


def test_explain_says_it_draws_pevl_only():
    """A PGVT checkpoint failed with "'PGVT' object has no attribute 'record'"."""
    from stages.train.config import build_run_config
    from stages.train.explain import explain_clip

    cfg = build_run_config("pgvt_components", "pgvt", dataset="demo")
    with pytest.raises(ValueError, match="explain draws what PeVL's parts do .*this checkpoint's model is a PGVT"):
        explain_clip(cfg, "unused.pth", None, "c0", "out")


def test_a_classifiers_test_views_are_averaged_as_probabilities(monkeypatch):
    """AIM (whose test protocol the runs follow) averages the views' softmax (``average_clips='prob'``):
    logits [12, 0, 0], [0, 5, 0], [0, 5, 0] give class 1, where averaged logits gave class 0."""
    model = runner_model("pgvt", 0)
    assert model.recognizer.scores_are_logits
    logits = torch.tensor([[12.0, 0, 0], [0, 5, 0], [0, 5, 0]])
    monkeypatch.setattr(model.recognizer, "predict", lambda batch: logits)
    (out,) = model({"label": torch.tensor([1]), "frames": torch.zeros(1)}, num_views=3, mode="predict")
    assert int(out["scores"].argmax()) == 1 and float(out["scores"].sum()) == pytest.approx(1.0)
