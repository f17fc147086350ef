"""Checkpoints hold the trainable state and name the backbone."""
from types import SimpleNamespace

import pytest
import torch

from stages.compat import ensure_torchvision

ensure_torchvision()

from stages.train.hooks import BackboneCheckpointHook  # noqa: E402
from stages.train.runner_model import RunnerModel  # noqa: E402

TINY = dict(clip=dict(arch="PeVL-tiny", pretrained=None), num_pose_frames=8, num_video_frames=4)


def _model(clip):
    torch.manual_seed(0)
    return RunnerModel(dict(TINY, clip=clip), ["walk", "run"], "gymnastic")


@pytest.fixture
def weights(tmp_path):
    """The tiny CLIP's weights as a local 'pretrained' file (the pretrained_path route)."""
    from stages.model import load_clip

    torch.manual_seed(123)
    path = tmp_path / "tiny-clip.pt"
    torch.save(load_clip("PeVL-tiny", pretrained=None).state_dict(), path)
    return str(path)


def test_checkpoint_leaves_out_a_frozen_pretrained_backbone_and_loads_back(weights):
    clip = dict(arch="PeVL-tiny", pretrained=None, pretrained_path=weights)
    m = _model(clip)
    sd = m.state_dict()
    frozen = m.frozen_backbone_keys()
    assert frozen and not frozen & set(sd)  # no frozen tower weight is saved
    assert {n for n, p in m.named_parameters() if p.requires_grad} <= set(sd)  # every trainable one is
    # a fresh model on the same weights takes the trainable state back; nothing reported missing
    fresh = _model(clip)
    with torch.no_grad():
        for p in fresh.parameters():
            if p.requires_grad:
                p.add_(1.0)
    res = fresh.load_state_dict(sd, strict=False)
    assert res.missing_keys == [] and res.unexpected_keys == []
    for k, v in m.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_random_or_trainable_backbones_are_saved_whole(weights):
    m = _model(dict(arch="PeVL-tiny", pretrained=None))  # random: nothing else could rebuild it
    assert not m.frozen_backbone_keys()
    assert any(k.startswith("recognizer.clip.") for k in m.state_dict())
    m = _model(dict(arch="PeVL-tiny", pretrained=None, pretrained_path=weights, frozen=False))
    # trained towers are saved; only what the variant leaves frozen (the projections and the
    # temperature it does not use) comes back from the named weights
    sd = m.state_dict()
    assert any(k.startswith("recognizer.clip.visual.transformer.") for k in sd)
    assert m.frozen_backbone_keys() == {n for n, p in m.named_parameters() if not p.requires_grad}
    assert not any(k.startswith("recognizer.clip.visual.transformer.") for k in m.frozen_backbone_keys())


def test_backbone_is_named_and_a_mismatch_is_refused(weights):
    m = _model(dict(arch="PeVL-tiny", pretrained=None, pretrained_path=weights))
    hook, runner = BackboneCheckpointHook(), SimpleNamespace(model=m)
    ckpt = {"meta": {}, "state_dict": m.state_dict()}
    hook.before_save_checkpoint(runner, ckpt)
    assert ckpt["meta"]["backbone"]["arch"] == "PeVL-tiny" and ckpt["meta"]["backbone"]["pretrained_path"] == weights
    hook.after_load_checkpoint(runner, ckpt)  # same backbone: fine
    other = SimpleNamespace(model=_model(dict(arch="PeVL-tiny", pretrained=None)))
    with pytest.raises(ValueError, match="trained on backbone"):
        hook.after_load_checkpoint(other, ckpt)
