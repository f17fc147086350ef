import pytest
import torch
import torch.nn.functional as F

from stages.model import build_model
from stages.model.clip_loader import TINY_ARCH, load_clip, open_clip_module


def _model(cfg, texts=("a", "b", "c")):
    m = build_model(cfg)
    m.set_class_texts(list(texts), "diving")
    return m


def test_frozen_get_no_gradient_tunable_do(tiny_cfg, batch):
    torch.manual_seed(0)
    m = _model(tiny_cfg)
    m.train()
    # make zero-initialised layers non-zero so every tunable tensor is reached by the gradient
    for mod in m.modules():
        if hasattr(mod, "fc2"):
            torch.nn.init.normal_(mod.fc2.weight, std=0.02)
        if hasattr(mod, "out") and isinstance(mod.out, torch.nn.Linear):
            torch.nn.init.normal_(mod.out.weight, std=0.02)
    m.loss(batch)["loss"].backward()
    for n, p in m.clip.named_parameters():
        assert not p.requires_grad and p.grad is None, n
    missing = [n for n, p in m.named_tunable_parameters() if p.grad is None]
    assert missing == []
    assert not m.clip.training and m.training


def test_loss_parts_and_predict_shape(tiny_cfg, batch):
    m = _model(tiny_cfg)
    out = m.loss(batch)
    assert set(out) >= {"loss", "loss_t", "loss_r"}
    assert torch.allclose(out["loss"], out["loss_t"] + 0.1 * out["loss_r"])
    m.eval()
    assert m.predict(batch).shape == (3, 3)


def test_same_seed_same_output(tiny_cfg, batch):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        m = _model(tiny_cfg)
        outs.append(m.loss(batch)["loss"].detach())
    assert torch.equal(outs[0], outs[1])


def test_duplicate_class_texts_tie_and_count_positive(tiny_cfg, batch):
    m = _model(tiny_cfg, texts=("salto", "turn", "salto"))
    assert m.duplicate_text_groups == [[0, 2]]
    assert m.class_text_id.tolist() == [0, 1, 0]
    m.eval()
    s = m.predict(batch)
    assert torch.equal(s[:, 0], s[:, 2])
    m.train()
    batch = dict(batch, label=torch.tensor([0, 2, 1]))  # 0 and 2 share a text: one positive pair
    assert torch.isfinite(m.loss(batch)["loss"])


def test_texts_equal_within_clips_context_are_one_text_target(tiny_cfg, caplog):
    """CLIP reads 77 tokens: two long label texts differing only past them were two targets of one
    text (their rows identical), trained against each other without a word."""
    import logging

    words = " ".join(["step"] * 80)
    with caplog.at_level(logging.WARNING, logger="stages.model.pevl"):
        m = _model(tiny_cfg, texts=(f"{words} left", "turn", f"{words} right"))
    assert m.duplicate_text_groups == [[0, 2]] and m.class_text_id.tolist() == [0, 1, 0]
    assert "2 class prompt(s) fill CLIP's 77-token context and are cut there" in caplog.text
    assert "[[0, 2]] differ only past CLIP's 77-token cut" in caplog.text
    short = _model(tiny_cfg, texts=("salto", "turn", "pike"))
    assert short.duplicate_text_groups == [] and short.class_text_id.tolist() == [0, 1, 2]


def test_a_set_coarse_type_wins_over_the_entrys(tiny_cfg):
    """model.text.coarse_type's help says "default: the cache entry's"; the entry's won even where it was set."""
    import copy

    cfg = copy.deepcopy(tiny_cfg)
    cfg.setdefault("text", {})["coarse_type"] = "trampoline"
    m = build_model(cfg)
    m.set_class_texts(["jump"], "gymnastic")
    assert m.class_texts == ["jump, a video of trampoline action"]
    m = build_model(tiny_cfg)
    m.set_class_texts(["jump"], "gymnastic")
    assert m.class_texts == ["jump, a video of gymnastic action"]


def test_offline_pretrained_fails_fast_naming_the_local_file_option(monkeypatch):
    import stages.model.clip_loader as cl

    monkeypatch.setattr(cl, "_hub_reachable", lambda *a, **k: False)
    oc = open_clip_module()
    monkeypatch.setattr(oc, "create_model", lambda *a, **k: pytest.fail("must not try to download"))
    with pytest.raises(RuntimeError, match="pretrained_path"):
        load_clip("ViT-B-16", pretrained="openai", cache_dir="/nonexistent-hf-cache")


def test_hf_hub_offline_tries_no_connection(monkeypatch):
    """HF_HUB_OFFLINE=1 (the tests set it): no socket is opened, and the refusal says why."""
    import socket

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("a connection was tried"))
    with pytest.raises(RuntimeError, match=r"may not be used \(HF_HUB_OFFLINE\). Download them \(e.g. timm/"
                                           r"vit_base_patch16_clip_224.openai\) and pass model.clip.pretrained_path"):
        load_clip("ViT-B-16", pretrained="openai", cache_dir="/nonexistent-hf-cache")


def test_failed_download_names_local_file_option(monkeypatch):
    import open_clip.pretrained as ocp

    import stages.model.clip_loader as cl

    monkeypatch.setattr(cl, "_hub_reachable", lambda *a, **k: True)  # pretend online; no real call

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(ocp, "download_pretrained", no_network)
    with pytest.raises(RuntimeError, match="could not download .*pretrained_path"):
        load_clip("ViT-B-16", pretrained="openai", cache_dir="/nonexistent-hf-cache")
    with pytest.raises(RuntimeError, match="no pretrained weights 'openai' for 'PeVL-tiny'.*pretrained_path"):
        load_clip(TINY_ARCH, pretrained="openai")


def test_pretrained_path_loads_local_state_dict(tmp_path):
    torch.manual_seed(5)
    a = load_clip(TINY_ARCH, pretrained=None)
    path = tmp_path / "w.pt"
    torch.save(a.state_dict(), path)
    torch.manual_seed(6)
    b = load_clip(TINY_ARCH, pretrained="openai", pretrained_path=str(path))  # the path wins
    assert torch.equal(a.visual.proj, b.visual.proj)


def test_linear_head_variant_uses_cross_entropy(tiny_cfg, batch):
    m = build_model(dict(tiny_cfg, type="LinearHeadPeVL", modalities=["video", "pose"], num_classes=5))
    m.eval()  # (no dropout: loss and predict see the same logits)
    logits = m.predict(batch)
    assert logits.shape == (3, 5)
    assert torch.allclose(m.loss(batch)["loss_t"], F.cross_entropy(logits, batch["label"]))


def test_towers_get_the_activation_the_weights_were_trained_with(monkeypatch, tmp_path):
    """open_clip's 'openai' weights were trained with QuickGELU: the towers are built with it on the
    tag route (the file found in the local cache) and on the local-file route, where the tag names
    what a plain state dict holds; nothing naming it is refused; clip.quick_gelu forces either.
    (OpenAI's archive and buffers say it themselves: tests/model/test_clip_weights.py.)"""
    import stages.model.clip_loader as cl
    from stages.model.clip_loader import tower_activations, weights_use_quick_gelu
    from stages.model.clip_weights import ClipWeightsError

    assert weights_use_quick_gelu("ViT-B-16", "openai") and weights_use_quick_gelu("ViT-L-14", "openai")
    assert not weights_use_quick_gelu("ViT-B-16", "laion2b_s34b_b88k") and not weights_use_quick_gelu(TINY_ARCH, None)
    oc = open_clip_module()
    assert tower_activations(oc.create_model("ViT-B-16", pretrained=None, device="meta")) == {"GELU"}
    torch.manual_seed(5)
    path = tmp_path / "w.pt"
    torch.save(load_clip(TINY_ARCH, pretrained=None).state_dict(), path)
    # the tag route: the tag's file from the local cache (no network), the tag's activation
    monkeypatch.setattr(cl, "_weights_file", lambda open_clip, arch, pretrained, cache_dir: str(path))
    tag = load_clip(TINY_ARCH, pretrained="openai")
    assert tower_activations(tag) == {"QuickGELU"} and tag.pretrained_identity["tag"] == "openai"
    # the local-file route
    assert tower_activations(load_clip(TINY_ARCH, pretrained="openai", pretrained_path=str(path))) == {"QuickGELU"}
    with pytest.raises(ClipWeightsError, match="nothing says which activation"):
        load_clip(TINY_ARCH, pretrained=None, pretrained_path=str(path))
    assert tower_activations(load_clip(TINY_ARCH, pretrained=None, pretrained_path=str(path),
                                       quick_gelu=False)) == {"GELU"}
    assert tower_activations(load_clip(TINY_ARCH, pretrained=None, pretrained_path=str(path),
                                       quick_gelu=True)) == {"QuickGELU"}
