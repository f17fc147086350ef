"""PGVT (and AIM's baseline) on the tiny config: FC_down / FC_up and the R-Adapter by hand, a fresh
PGVT equals plain CLIP on video, frozen parameters, every Table 4 / Table 6 variant, determinism,
and the ViT-B/16 cost of Table 4 within 10% of the paper."""
import math

import pytest
import torch
import torch.nn.functional as F

from pevl_model_testutils import PGVT_EXPERIMENTS, TINY, make_batch
from stages.model import PGVT, build_model, load_clip
from stages.model.refining_adapter import CrossModalAttention, RefiningAdapter, TemporalProjection
from stages.train.config import list_variants, load_experiment, variant_config



def tiny_pgvt(**over):
    return build_model({"type": "PGVT", **TINY, **over})


def randomise(module: torch.nn.Module, seed: int = 1) -> None:
    """Give every parameter random values (zero-initialised output layers would hide the streams)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))


# ---------------------------------------------------------------------------- FC_down / FC_up
def test_fc_down_averages_segments_and_fc_up_copies_them():
    x = torch.arange(6, dtype=torch.float32).view(1, 6, 1, 1).expand(2, 6, 3, 4)  # frame i holds i
    down = TemporalProjection(6, 2)
    assert down.weight.shape == (2, 6)
    y = down(x)
    assert y.shape == (2, 2, 3, 4)
    assert torch.allclose(y[:, 0], torch.full((2, 3, 4), 1.0)) and torch.allclose(y[:, 1], torch.full((2, 3, 4), 4.0))
    up = TemporalProjection(2, 6)
    z = up(torch.tensor([10.0, 20.0]).view(1, 2, 1, 1))
    assert z.flatten().tolist() == [10.0, 10.0, 10.0, 20.0, 20.0, 20.0]
    # uneven segments: 5 -> 2 frames are {0, 1, 2} and {3, 4}
    uneven = TemporalProjection(5, 2)(torch.arange(5, dtype=torch.float32).view(1, 5, 1, 1))
    assert uneven.flatten().tolist() == pytest.approx([1.0, 3.5])
    # a learned projection is a plain linear map over frames
    with torch.no_grad():
        down.weight.copy_(torch.tensor([[1.0, -1, 0, 0, 0, 2], [0, 0, 0.5, 0, 0, 0]]))
    y = down(x)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([0.0 - 1.0 + 10.0, 1.0]))
    with pytest.raises(ValueError, match="expected 6 frames"):
        down(torch.zeros(1, 5, 1, 1))


# ---------------------------------------------------------------------------- R-Adapter
def _attend(xq, xkv, att: CrossModalAttention):
    """eqs. 2-3 by hand: per frame and head, softmax(Q K^T / sqrt(d_k)) V, then W^O."""
    b, t, nq, d = xq.shape
    h = att.attn.num_heads
    w, bias = att.attn.in_proj_weight, att.attn.in_proj_bias
    q = xq @ w[:d].T + bias[:d]                # W^Q of the querying modality
    k = xkv @ w[d:2 * d].T + bias[d:2 * d]     # W^K, W^V of the other
    v = xkv @ w[2 * d:].T + bias[2 * d:]
    out = torch.zeros_like(q)
    for bi in range(b):
        for ti in range(t):
            for hi in range(h):
                s = slice(hi * d // h, (hi + 1) * d // h)
                logits = q[bi, ti, :, s] @ k[bi, ti, :, s].T / math.sqrt(d // h)
                out[bi, ti, :, s] = logits.softmax(-1) @ v[bi, ti, :, s]
    return att.attn.out_proj(out)  # W^O


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 6, 3, 8, generator=gen), torch.randn(2, 2, 5, 8, generator=gen)  # x_P, x_Z


def test_refining_adapter_shapes_skips_and_eq3_by_hand():
    x_p, x_z = _inputs()
    ra = RefiningAdapter(8, 2, pose_frames=6, video_frames=2, ratio=0.5)
    p, z = ra(x_p, x_z)
    assert p.shape == x_p.shape and z.shape == x_z.shape
    # fresh: W^O and the adapters' last layers are zero, so only the skip connections remain
    assert torch.equal(p, x_p) and torch.equal(z, x_z)
    randomise(ra)
    p, z = ra(x_p, x_z)
    with torch.no_grad():
        low = ra.fc_down(x_p)
        want_p = x_p + ra.pose_adapter(x_p) + ra.fc_up(_attend(low, x_z, ra.pose_from_video))
        want_z = x_z + ra.video_adapter(x_z) + _attend(x_z, low, ra.video_from_pose)
    assert torch.allclose(p, want_p, atol=1e-5) and torch.allclose(z, want_z, atol=1e-5)
    # the cross terms are real: the pose output depends on the video and vice versa
    p2, z2 = ra(x_p, x_z + 1.0)
    assert not torch.allclose(p2, p)
    _, z3 = ra(x_p + 1.0, x_z)
    assert not torch.allclose(z3, z)


def test_each_stream_off_gives_the_ablation_rows_exactly():
    x_p, x_z = _inputs()
    full = RefiningAdapter(8, 2, 6, 2, ratio=0.5)
    randomise(full)
    p_full, z_full = full(x_p, x_z)

    def like_full(**switches):
        ra = RefiningAdapter(8, 2, 6, 2, ratio=0.5, **switches)
        missing, unexpected = ra.load_state_dict(full.state_dict(), strict=False)
        assert not missing  # every part it has, the full one has too
        return ra, {k.split(".")[0] for k in unexpected}

    # (6i) w/o refined pose: the left stream (pose queries video, FC_up) is gone
    ra, dropped = like_full(refine_pose=False)
    assert dropped == {"pose_from_video", "fc_up"}
    p, z = ra(x_p, x_z)
    assert torch.equal(p, x_p + full.pose_adapter(x_p)) and torch.equal(z, z_full)
    # (6ii) w/o refined video: the right stream is gone
    ra, dropped = like_full(refine_video=False)
    assert dropped == {"video_from_pose"}
    p, z = ra(x_p, x_z)
    assert torch.equal(p, p_full) and torch.equal(z, x_z + full.video_adapter(x_z))
    # (5) both off: two parallel adapters, no cross-modal part at all
    ra, dropped = like_full(refine_pose=False, refine_video=False)
    assert dropped == {"pose_from_video", "fc_up", "video_from_pose", "fc_down"}
    p, z = ra(x_p, x_z)
    assert torch.equal(p, x_p + full.pose_adapter(x_p)) and torch.equal(z, x_z + full.video_adapter(x_z))
    # without the bottleneck adapters eq. 3 is the skip plus the cross term only
    bare = RefiningAdapter(8, 2, 6, 2, bottleneck=False)
    assert bare.pose_adapter is None and bare.video_adapter is None
    assert all(torch.equal(a, b) for a, b in zip(bare(x_p, x_z), (x_p, x_z)))


# ---------------------------------------------------------------------------- the model
def test_fresh_pgvt_video_stream_is_plain_clip():
    batch = make_batch(b=2)
    torch.manual_seed(0)
    ref = load_clip("PeVL-tiny", None)
    torch.manual_seed(0)
    model = tiny_pgvt()
    model.eval()
    for (n, a), (_, b) in zip(model.clip.visual.transformer.named_parameters(),
                              ref.visual.transformer.named_parameters()):
        assert torch.equal(a, b), n  # the same random CLIP
    ref.visual.proj = None  # the CLS token after ln_post, before CLIP's projection
    with torch.no_grad():
        want = ref.visual(batch["frames"].flatten(0, 1)).view(2, 4, -1)
        got = model.encode(batch)
    assert torch.allclose(got["video_frames"], want, atol=1e-5)
    assert torch.allclose(got["video"], want.mean(1), atol=1e-5)
    assert got["pose_frames"].shape == (2, 8, 64) and got["pose"].shape == (2, 64)


def test_frozen_clip_gets_no_gradient_and_everything_tunable_does():
    model = tiny_pgvt()
    model.train()
    assert not model.clip.training  # frozen towers stay in eval mode
    model.loss(make_batch(b=2))["loss"].backward()
    for n, p in model.clip.named_parameters():
        assert not p.requires_grad and p.grad is None, n
    tunable = dict(model.named_tunable_parameters())
    assert tunable and all(not n.startswith("clip.") for n in tunable)
    assert [n for n, p in tunable.items() if p.grad is None] == []
    # no text tower, no projection: nothing PGVT never runs is kept
    assert model.clip.visual.proj is None and not list(model.clip.transformer.parameters())
    thawed = tiny_pgvt(clip=dict(arch="PeVL-tiny", pretrained=None, frozen=False))
    thawed.loss(make_batch(b=2))["loss"].backward()
    grads = [p.grad for n, p in thawed.named_parameters() if n.startswith("clip.visual.transformer")]
    assert grads and all(g is not None for g in grads)


def test_same_seed_same_output():
    batch = make_batch(b=2)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = tiny_pgvt()
        m.train()
        torch.manual_seed(1)  # dropout
        loss = m.loss(batch)["loss"]
        m.eval()
        outs.append((loss, m.predict(batch)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    torch.manual_seed(5)
    assert not torch.equal(tiny_pgvt().eval().predict(batch), outs[0][1])


def test_clip_quick_gelu_reaches_the_towers():
    """model.clip.quick_gelu is PGVT's too (None: the weights' own activation, as for PeVL)."""
    from stages.model.clip_loader import tower_activations

    def built(qg):
        return PGVT(dict(TINY, type="PGVT", num_classes=3, clip=dict(TINY["clip"], quick_gelu=qg))).clip

    assert tower_activations(built(True)) == {"QuickGELU"}
    assert tower_activations(built(None)) == tower_activations(built(False)) == {"GELU"}


def test_config_checks():
    with pytest.raises(ValueError, match="needs both modalities"):
        tiny_pgvt(modalities=["pose"])
    with pytest.raises(ValueError, match="unknown model setting model.ucmr"):
        tiny_pgvt(ucmr=dict(num_blocks=1))
    with pytest.raises(ValueError, match="modalities"):
        tiny_pgvt(modalities=["text"], blocks="aim")
    with pytest.raises(ValueError, match="expected 8 frames"):  # FC_down is built for T_h frames
        tiny_pgvt().loss(make_batch(b=2, t=6))


@pytest.mark.parametrize("name", PGVT_EXPERIMENTS)
def test_with_a_trainable_tower_every_tunable_parameter_trains(name):
    """The demo trains CLIP's tower (random weights): a pose-only row counted the CLS token, the
    patch embedding and its positions (all of the tower with Poseformer) as tunable, though no
    forward reads them, and DDP, told that no parameter goes unused, failed."""
    cfg = load_experiment(name)
    batch = make_batch(b=2, labels=[0, 1])
    for variant in list_variants(cfg):
        vc = variant_config(cfg, variant, **{**TINY, "clip": dict(TINY["clip"], frozen=False)})
        torch.manual_seed(0)
        m = build_model(vc.model)
        m.train()
        m.loss(batch)["loss"].backward()
        dead = [n for n, p in m.named_tunable_parameters() if p.grad is None]
        assert dead == [] and not m.leaves_unused_parameters, (variant, dead)


@pytest.mark.parametrize("name", PGVT_EXPERIMENTS)
def test_every_variant_builds_and_trains_one_step(name):
    cfg = load_experiment(name)
    assert cfg.experiment.name == name and cfg.experiment.paper_dataset == "Diving48"
    batch = make_batch(b=2, labels=[0, 1])
    built = {}
    for variant in list_variants(cfg):
        vc = variant_config(cfg, variant, **TINY)
        torch.manual_seed(0)
        m = build_model(vc.model)
        assert isinstance(m, PGVT) and not m.use_text
        out = m.loss(batch)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]), variant
        dead = [n for n, p in m.named_tunable_parameters() if p.grad is None]
        assert dead == [] and not m.leaves_unused_parameters, (variant, dead)
        m.eval()
        assert m.predict(batch).shape == (2, 48)
        own = variant_config(cfg, variant).model  # the row's own frame counts (TINY replaces them)
        built[variant] = (sorted(n for n, _ in m.named_tunable_parameters()), vc.model.get("pose"),
                          own.num_video_frames, own.num_pose_frames)
    assert len({repr(v) for v in built.values()}) == len(built)  # no two rows build the same model
    if name == "pgvt_components":
        assert list(built) == ["pose_only", "video_only_16", "video_only_32", "late_fusion", "no_tattn",
                               "two_adapters", "no_refined_pose", "no_refined_video", "pgvt"]
        names = {v: set(b[0]) for v, b in built.items()}
        assert not any("video" in n for n in names["pose_only"])
        assert not any("pose" in n for n in names["video_only_16"])
        assert not any(".t_adapter." in n for n in names["no_tattn"])
        assert not any("pose_from_video" in n or "video_from_pose" in n for n in names["two_adapters"])
        assert any("video_from_pose" in n for n in names["no_refined_pose"])
        assert not any("pose_from_video" in n for n in names["no_refined_pose"])


def test_table4_cost_within_ten_percent_of_the_paper():
    """The issue's acceptance rows at ViT-B/16, 48 + 16 frames (32 for video_only_32), on meta."""
    from stages.model.flops import model_stats

    cfg = load_experiment("pgvt_components")
    for variant in ("pose_only", "video_only_16", "video_only_32", "late_fusion", "pgvt"):
        vc = variant_config(cfg, variant)
        r = model_stats(vc.model, num_video_frames=vc.model.num_video_frames,
                        num_pose_frames=vc.model.num_pose_frames)
        assert abs(r["gflops"] / vc.paper_gflops - 1) < 0.10, (variant, r)
        assert abs(r["tunable_params_m"] / vc.paper_params_m - 1) < 0.10, (variant, r)


def test_cross_entropy_is_the_loss():
    m = tiny_pgvt()
    m.eval()
    batch = make_batch(b=3, labels=[2, 0, 1])
    assert torch.allclose(m.loss(batch)["loss"], F.cross_entropy(m.predict(batch), batch["label"]))


def test_other_pose_keys_go_to_the_shared_pose_embedding():
    """pose.* options PGVT does not read itself are the shared PoseEmbedding's; one it does not
    take is an error naming it, never ignored."""
    with pytest.raises(ValueError, match="unknown model setting model.pose.no_such_option"):
        tiny_pgvt(pose=dict(no_such_option=True))
