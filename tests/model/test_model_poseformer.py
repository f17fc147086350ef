"""PoseFormer as the pose encoder (PeVL supp. Table 1, PGVT Table 5): the reference's layout, forward /
backward through PeVL and PGVT on the tiny config, what UCMR reads off it (joint weights, per-frame
tokens), adapters that start as the identity, strict checkpoint loading, and the settings it refuses."""
import pytest
import torch

from pevl_model_testutils import TINY, make_batch
from stages.model import build_model
from stages.model.poseformer import (REFERENCE_NAMES, Poseformer, PoseformerEncoder, load_poseformer_weights)
from stages.settings import SettingsError

POSEFORMER = dict(encoder="poseformer", cls_token=False)
REF = dict(embed_dim=32, depth=4, heads=8, mlp_ratio=2.0, drop_path=0.1, score=False, checkpoint=None, frozen=False)


def _block_params(d: int) -> int:
    """One pre-norm block of width d, MLP ratio 2: two LayerNorms, qkv, proj, fc1, fc2 (with biases)."""
    return 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * d + 2 * d) + (2 * d * d + d)


def test_the_reference_layout_and_size():
    """zczcwh/PoseFormer's PoseTransformer at its own setting (17 joints, 81 frames, (x, y) in): 32 per
    joint in 4 spatial blocks, 544 per frame in 4 temporal blocks, 8 heads, MLP ratio 2."""
    pf = Poseformer(num_joints=17, num_frames=81)
    assert [b.norm1.normalized_shape[0] for b in pf.spatial_blocks] == [32] * 4
    assert [b.norm1.normalized_shape[0] for b in pf.temporal_blocks] == [544] * 4
    assert all(b.attn.heads == 8 and b.mlp.fc1.out_features == 2 * b.mlp.fc1.in_features
               for b in [*pf.spatial_blocks, *pf.temporal_blocks])
    assert tuple(pf.joint_pos.shape) == (1, 17, 32) and tuple(pf.temporal_pos.shape) == (1, 81, 544)
    assert [b.drop_path for b in pf.temporal_blocks] == pytest.approx([0.0, 0.1 / 3, 0.2 / 3, 0.1])
    want = (2 * 32 + 32) + 17 * 32 + 4 * _block_params(32) + 2 * 32 + 81 * 544 + 4 * _block_params(544) + 2 * 544
    assert sum(p.numel() for p in pf.parameters()) == want  # 9.57M without the 3D head


@pytest.mark.parametrize("model_type", ["PeVL", "PGVT"])
def test_forward_backward_on_the_tiny_config(model_type):
    torch.manual_seed(0)
    model = build_model(dict(type=model_type, **TINY, pose=POSEFORMER))
    assert isinstance(model.pose_encoder, PoseformerEncoder)
    batch = make_batch(b=2, labels=[0, 1])
    if model.use_text:
        model.set_class_texts(["back dive", "forward dive", "inward dive"], "diving")
    out = model.loss(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    no_grad = [n for n, p in model.named_tunable_parameters() if p.grad is None]
    assert no_grad == [] and not model.leaves_unused_parameters
    pf_grads = [p.grad for p in model.pose_encoder.poseformer.parameters()]
    assert all(g is not None for g in pf_grads) and any(g.abs().sum() > 0 for g in pf_grads)  # trains from scratch
    assert not any(n.startswith("clip.") for n, _ in model.named_tunable_parameters())
    model.eval()
    assert model.predict(batch).shape[0] == 2


def test_what_ucmr_reads_off_poseformer():
    """P2V: joint weights (B, T, J) from the last spatial block, summing to 1 per frame; V2P: per-frame
    joint tokens at the ViT width, of which it refines the frames that coincide with video frames."""
    torch.manual_seed(0)
    model = build_model(dict(type="PeVL", **TINY, pose=POSEFORMER))
    model.set_class_texts(["a", "b", "c"], "x")
    model.eval()
    batch = make_batch(b=2)
    tokens, weights = model.pose_encoder(batch["joints"], need_joint_weights=True)
    assert tokens.shape == (2, 8, 17, model.clip.visual.conv1.out_channels)
    assert weights.shape == (2, 8, 17) and torch.allclose(weights.sum(-1), torch.ones(2, 8))
    with model.record() as maps:
        out = model.encode(batch)
    assert out["joint_weights"].shape == (2, 8, 17) and out["patch_mask"].shape == (2, 4, 49)
    assert maps["pose_temporal_attention"].shape == (2, 1, 8) and "v2p_attention" in maps
    v2p = model.ucmr[0].v2p
    torch.nn.init.normal_(v2p.out.weight)  # a fresh V2P is zero: give it an output
    frames = model.encode(batch)["frames"]
    before = model.pose_encoder.frame_features(tokens) @ model.pose_proj
    touched = torch.zeros(8, dtype=torch.bool)
    touched[batch["video_pose_index"][0]] = True
    assert not torch.allclose(frames[:, touched], before[:, touched])
    assert torch.allclose(frames[:, ~touched], before[:, ~touched], atol=1e-6)


def test_adapters_start_as_the_identity():
    torch.manual_seed(0)
    enc = PoseformerEncoder(64, 17, 8, REF, adapters=True).eval()
    joints = make_batch(b=2)["joints"]
    with_adapters = enc(joints)[0]
    enc.spatial_adapters = enc.temporal_adapters = None
    assert torch.allclose(with_adapters, enc(joints)[0])


def _reference_checkpoint(path, num_frames=8, extra=None, drop=None):
    """A checkpoint as the reference writes it: {'model_pos': DataParallel state dict} under its names,
    with its 3D regression head."""
    torch.manual_seed(3)
    pf = Poseformer(17, num_frames)
    sd = {}
    for k, v in pf.state_dict().items():
        for ref, own in REFERENCE_NAMES:
            if k.startswith(own):
                k = ref + k[len(own):]
                break
        sd["module." + k] = v.clone() + 0.01  # not the init values
    sd["module.weighted_mean.weight"] = torch.ones(1, num_frames, 1)
    sd["module.head.1.weight"] = torch.zeros(51, 544)
    for k in drop or ():
        sd.pop("module." + k)
    sd.update(extra or {})
    torch.save({"epoch": 80, "model_pos": sd}, path)
    return sd


def test_a_reference_checkpoint_loads_strictly_and_frozen(tmp_path):
    path = tmp_path / "poseformer.bin"
    sd = _reference_checkpoint(path)
    settings = dict(REF, checkpoint=str(path), frozen=True)
    enc = PoseformerEncoder(64, 17, 8, settings)
    assert torch.equal(enc.poseformer.temporal_blocks[2].attn.qkv.weight, sd["module.blocks.2.attn.qkv.weight"])
    assert torch.equal(enc.poseformer.joint_pos, sd["module.Spatial_pos_embed"])
    assert enc.weights_source["dropped"] == ["weighted_mean.weight", "head.1.weight"]  # the 3D head only
    assert not any(p.requires_grad for p in enc.poseformer.parameters())
    tunable = {n.split(".")[0] for n, p in enc.named_parameters() if p.requires_grad}
    assert tunable == {"spatial_adapters", "temporal_adapters", "token_weight", "token_bias", "ln_post"}
    enc.train()
    assert not enc.poseformer.training  # no stochastic depth on a frozen Poseformer


@pytest.mark.parametrize("case, match", [
    ("frames", r"temporal_pos \(1, 81, 544\) in the file, \(1, 8, 544\) in the model \(frames"),
    ("missing", r"missing \['temporal_norm.weight'\]"),
    ("unexpected", r"not in the model \['Spatial_extra'\]"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_by_name(tmp_path, case, match):
    path = tmp_path / "poseformer.bin"
    if case == "frames":  # the reference's 81-frame model against 8 pose frames
        _reference_checkpoint(path, num_frames=81)
    elif case == "missing":
        _reference_checkpoint(path, drop=["Temporal_norm.weight"])
    else:
        _reference_checkpoint(path, extra={"module.Spatial_extra": torch.zeros(1)})
    enc = PoseformerEncoder(64, 17, 8, REF)
    before = {k: v.clone() for k, v in enc.poseformer.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        load_poseformer_weights(enc.poseformer, path)
    assert all(torch.equal(before[k], v) for k, v in enc.poseformer.state_dict().items())  # nothing loaded


@pytest.mark.parametrize("over, match", [
    (dict(pose=dict(encoder="poseformer")), "cls_token=True"),
    (dict(pose=dict(POSEFORMER, form="heatmap")), "form='heatmap'"),
    (dict(pose=dict(POSEFORMER, temporal_attn=False)), "temporal_attn=False"),
    (dict(pose=dict(POSEFORMER, poseformer=dict(frozen=True))), "frozen=True needs model.pose.poseformer.checkpoint"),
    (dict(pose=dict(POSEFORMER, poseformer=dict(embed_dim=30))), "not a multiple of"),
    (dict(type="PGVT", pose=POSEFORMER, pgvt=dict(temporal=False)), "pgvt.temporal"),
])
def test_settings_poseformer_refuses(over, match):
    with pytest.raises(SettingsError, match=match):
        build_model({"type": "PeVL", **TINY, **over})


def test_poseformer_cost_is_counted_as_the_pose_encoders():
    from stages.model.flops import model_stats

    clip = model_stats(dict(type="PeVL", **TINY), arch="PeVL-tiny")
    pf = model_stats(dict(type="PeVL", **TINY, pose=POSEFORMER), arch="PeVL-tiny")
    assert pf["gflops_pose"] > 0 and pf["gflops_video"] == clip["gflops_video"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_one_step_under_autocast_is_finite_and_close_to_fp32(dtype):
    """As tests/model/test_model_precision.py for the CLIP encoder: the joint weights and what reads
    them stay float32, the rest runs in the autocast dtype (stochastic depth off: the same step twice)."""
    torch.manual_seed(0)
    model = build_model(dict(type="PeVL", **TINY, pose=dict(POSEFORMER, poseformer=dict(drop_path=0.0))))
    model.set_class_texts(["back dive", "forward dive pike", "inward dive"], "diving")
    for mod in model.modules():  # zero-initialised layers made non-zero: every path carries signal
        for name in ("fc2", "out"):
            lin = getattr(mod, name, None)
            if isinstance(lin, torch.nn.Linear) and not lin.weight.abs().sum():
                torch.nn.init.normal_(lin.weight, std=0.05)
    batch = make_batch()
    losses = []
    for ctx in (None, dtype):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=ctx) if ctx else torch.autocast("cpu", enabled=False):
            out = model.loss(batch)
            w = model.pose_encoder(batch["joints"], need_joint_weights=True)[1]
        out["loss"].backward()
        assert w.dtype == torch.float32
        assert all(torch.isfinite(p.grad).all() for _, p in model.named_tunable_parameters() if p.grad is not None)
        losses.append(float(out["loss"].detach()))
    assert losses[1] == pytest.approx(losses[0], rel=0.01)
