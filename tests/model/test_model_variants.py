"""Every ablation variant is what its table row says: built, read off the modules, trained one step."""
import pytest
import torch

from pevl_model_testutils import BACKBONE_TABLES, PGVT_EXPERIMENTS, TINY, make_batch
from stages.model import build_model
from stages.train.config import (configs_root, list_variants, load_experiment, resolve_config_path,
                                  variant_config)

PAPER_EXPERIMENTS = ["table4_components", "ucmr_ablate", "table6_similarity", "table7_modalities",
                     "table8_adapters", "table9_pose_form", "supp_tattn", "supp_prompt", "supp_num_ucmr",
                     "supp_pose_encoder"]
DEMO_EXPERIMENTS = ["demo", "demo_pose_rate"]

# The full PeVL as Table 5's first row (and every table's last) describes it.
PEVL = dict(encoders=("video", "pose", "text"), adapters=dict(video=True, pose=True, text=True),
            pose_encoder="clip", pose_form="coords", temporal_attn=True, pose_cls_token=True, pose_normalize="crop", pose_motion=False,
            pose_embedding="shared", ucmr_blocks=1, p2v=True, v2p=True,
            background="grouping", refine_terms=("video", "pose"), head="sgmc", sims=("vs", "ps", "fw"),
            loss="semantic", prompt="label_prompt_type", trainable_projections=True)
NO_UCMR = dict(ucmr_blocks=0, p2v=False, v2p=False, background=None, refine_terms=())
CONCAT = dict(head="concat", sims=(), loss="vanilla")
NO_TEXT = dict(head="linear", sims=(), loss="cross_entropy", prompt=None)
ADAPTERS_OFF = dict(adapters=dict(video=False, pose=False, text=False))
DEMO = dict(clip_frozen=False, pose_normalize="person", pose_motion=True, pose_embedding="per_joint")
POSE_ONLY = dict(encoders=("pose",), adapters=dict(video=None, pose=True, text=None), **NO_UCMR, **NO_TEXT)
NO_POSE = dict(pose_encoder=None, pose_form=None, temporal_attn=None, pose_cls_token=None, pose_normalize=None, pose_motion=None,
               pose_embedding=None)
VIDEO_ONLY = dict(encoders=("video",), adapters=dict(video=True, pose=None, text=None), **NO_POSE, **NO_UCMR,
                  **NO_TEXT)


def _ad(v, p, t):
    return dict(adapters=dict(video=v, pose=p, text=t))


# What each row of each table names, as switches on the built model (paper tables; docs/demo.md).
ROWS = {
    "table4_components": {
        "baseline": dict(encoders=("video", "text"), adapters=dict(video=False, pose=None, text=False),
                         **NO_POSE, **NO_UCMR, head="cosine",
                         sims=(), loss="vanilla", trainable_projections=True),
        "plus_pose": dict(**ADAPTERS_OFF, **NO_UCMR, **CONCAT),
        "plus_adapters": dict(**NO_UCMR, **CONCAT),
        "plus_ucmr": dict(**CONCAT),
        "plus_sgmc": {},
    },
    "ucmr_ablate": {
        "pevl": {},
        "wo_ucmr": NO_UCMR,
        "wo_p2v": dict(p2v=False, refine_terms=("pose",)),
        "wo_v2p": dict(v2p=False, background=None, refine_terms=("video",)),
        "wo_refine_sup": dict(refine_terms=()),
    },
    "table6_similarity": {
        "ps": dict(sims=("ps",)), "vs": dict(sims=("vs",)), "fw": dict(sims=("fw",)),
        "vs_fw": dict(sims=("vs", "fw")), "ps_vs": dict(sims=("vs", "ps")), "ps_fw": dict(sims=("ps", "fw")),
        "ps_vs_fw": {}, "vanilla_loss": dict(loss="vanilla"),
    },
    "table7_modalities": {
        "v": VIDEO_ONLY,
        "p": POSE_ONLY,
        "vp": dict(encoders=("video", "pose"), adapters=dict(video=True, pose=True, text=None), **NO_UCMR,
                   **NO_TEXT),
        "vt": dict(encoders=("video", "text"), adapters=dict(video=True, pose=None, text=True), **NO_POSE,
                   **NO_UCMR, head="cosine", sims=(), loss="vanilla"),
        "pt": dict(encoders=("pose", "text"), adapters=dict(video=None, pose=True, text=True), **NO_UCMR,
                   head="cosine", sims=(), loss="vanilla"),
        "vpt": dict(**NO_UCMR, **CONCAT),
        "pevl": {},
    },
    "table8_adapters": {
        "fff": _ad(False, False, False), "tff": _ad(True, False, False), "ftf": _ad(False, True, False),
        "fft": _ad(False, False, True), "ttf": _ad(True, True, False), "ttt": {},
    },
    "table9_pose_form": {
        "heatmaps": dict(POSE_ONLY, pose_form="heatmap", pose_normalize=None, pose_motion=None, pose_embedding=None),
        "coordinates": POSE_ONLY,
    },
    "supp_tattn": {"wo_tattn": dict(temporal_attn=False), "pevl": {}},
    "supp_prompt": {"label_only": dict(prompt="label"), "label_prompt": dict(prompt="label_prompt"),
                    "label_prompt_type": {}},
    "supp_num_ucmr": {f"ucmr{n}": dict(ucmr_blocks=n) for n in (1, 2, 3, 4)},
    # supp. Table 1: Poseformer (no CLS token: a frame is the mean of its joint tokens) vs CLIP
    "supp_pose_encoder": {"poseformer": dict(pose_encoder="poseformer", pose_cls_token=False), "clip": {}},
    # the demo trains its tiny random CLIP (clip.frozen=False) and reads pose relative to the person,
    # with the joints' motion (docs/demo.md)
    # and PeVL's text side with the vanilla loss and no refinement loss (what the tiny model learns from)
    "demo": {"pevl": dict(DEMO, pose_frames=48, loss="vanilla", refine_terms=())},
    "demo_pose_rate": {
        "v16": dict(VIDEO_ONLY, clip_frozen=False, pose_frames=None),
        "p16": dict(POSE_ONLY, **DEMO, pose_frames=16),
        "p48": dict(POSE_ONLY, **DEMO, pose_frames=48),
        "pevl": dict(DEMO, pose_frames=48, loss="vanilla", refine_terms=()),
    },
}


def test_experiment_files_have_contract():
    for name in PAPER_EXPERIMENTS:
        cfg = load_experiment(name)
        assert cfg.experiment.name == name and cfg.experiment.metric == "top1"
        assert cfg.experiment.paper_dataset == "Diving48"
        assert list_variants(cfg)
        assert resolve_config_path(name).name == f"{name}.py"
    assert list_variants(load_experiment("table7_modalities")) == ["v", "p", "vp", "vt", "pt", "vpt", "pevl"]
    assert list_variants(load_experiment("demo_pose_rate")) == ["v16", "p16", "p48", "pevl"]
    # every experiment file is covered: PeVL's by a row table here, PGVT's in test_model_pgvt.py, the
    # backbone tables in tests/train/test_backbone_tables.py
    assert sorted(p.stem for p in (configs_root() / "experiments").glob("*.py")) == sorted(
        [*ROWS, *PGVT_EXPERIMENTS, *BACKBONE_TABLES])


def _built(name, variant):
    cfg = load_experiment(name)
    tiny_already = variant_config(cfg, variant).model.clip.arch == "PeVL-tiny"  # the demo experiments
    vc = variant_config(cfg, variant, **({} if tiny_already else TINY))
    torch.manual_seed(0)
    model = build_model(vc.model)
    t = vc.model.num_pose_frames if tiny_already else TINY["num_pose_frames"]
    tv = vc.model.num_video_frames if tiny_already else TINY["num_video_frames"]
    return model, make_batch(b=2, tv=tv, t=max(t, tv), labels=[0, 1])


@pytest.mark.parametrize("name", PAPER_EXPERIMENTS + DEMO_EXPERIMENTS)
def test_every_variant_is_its_row_and_trains_one_step(name):
    """On the built modules: the switches each row names; no two variants of an experiment build the
    same model; one forward/backward; ``leaves_unused_parameters`` agrees with the real gradients."""
    cfg = load_experiment(name)
    assert list(ROWS[name]) == list_variants(cfg)
    seen = {}
    for variant in list_variants(cfg):
        model, batch = _built(name, variant)
        got = model.structure()
        got["pose_frames"] = None if model.pose_encoder is None else model.pose_encoder.num_frames
        want = dict(PEVL, clip_frozen=True)
        want.update(ROWS[name][variant])
        mismatch = {k: (got[k], v) for k, v in want.items() if got[k] != v}
        assert not mismatch, f"{name}/{variant}: (built, row) {mismatch}"
        key = repr(sorted(got.items()))
        assert key not in seen, f"{name}: {variant} builds the same model as {seen.get(key)}"
        seen[key] = variant
        if model.use_text:
            model.set_class_texts(["back dive", "forward dive", "inward dive"], "diving")
        out = model.loss(batch)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]), (name, variant)
        no_grad = [n for n, p in model.named_tunable_parameters() if p.grad is None]
        assert model.leaves_unused_parameters == bool(no_grad), (name, variant, no_grad)
        if not model.clip_frozen:
            assert any(p.requires_grad for p in model.clip.visual.transformer.parameters())
        model.eval()
        assert model.predict(batch).shape[0] == 2


def test_baseline_is_not_the_full_model():
    """Table 4's baseline: its switches win over the experiment's model config (the full PeVL's)."""
    model, batch = _built("table4_components", "baseline")
    assert model.pose_encoder is None and len(model.ucmr) == 0 and model.text_loss == "vanilla"
    full, _ = _built("table4_components", "plus_sgmc")
    n_base = sum(p.numel() for p in model.tunable_parameters())
    n_full = sum(p.numel() for p in full.tunable_parameters())
    assert n_base < n_full / 2
