"""Checkpoints hold the trainable state and name the backbone."""
import shutil
from types import SimpleNamespace

import pytest
import torch

from stages.compat import ensure_torchvision

ensure_torchvision()

from stages.train.checkpoints import load_checkpoint_into  # noqa: E402
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
    clip = dict(arch="PeVL-tiny", pretrained=None, pretrained_path=weights, quick_gelu=False)
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
    m = _model(dict(arch="PeVL-tiny", pretrained=None, pretrained_path=weights, quick_gelu=False, frozen=False))
    # trained towers are saved; only what the variant leaves frozen (the projections and the
    # temperature it does not use) comes back from the named weights
    sd = m.state_dict()
    assert any(k.startswith("recognizer.clip.visual.transformer.") for k in sd)
    assert m.frozen_backbone_keys() == {n for n, p in m.named_parameters() if not p.requires_grad}
    assert not any(k.startswith("recognizer.clip.visual.transformer.") for k in m.frozen_backbone_keys())


def test_backbone_is_named_and_a_mismatch_is_refused(weights):
    m = _model(dict(arch="PeVL-tiny", pretrained=None, pretrained_path=weights, quick_gelu=False))
    hook, runner = BackboneCheckpointHook(), SimpleNamespace(model=m)
    ckpt = {"meta": {}, "state_dict": m.state_dict()}
    hook.before_save_checkpoint(runner, ckpt)
    assert ckpt["meta"]["backbone"]["arch"] == "PeVL-tiny" and ckpt["meta"]["backbone"]["pretrained_path"] == weights
    hook.after_load_checkpoint(runner, ckpt)  # same backbone: fine
    assert ckpt["meta"]["backbone"]["weights_sha256"] == m.recognizer.clip.pretrained_identity["sha256"]
    assert ckpt["meta"]["backbone"]["weights_format"] == "state_dict"
    other = SimpleNamespace(model=_model(dict(arch="PeVL-tiny", pretrained=None)))
    with pytest.raises(ValueError, match="trained on other CLIP weights"):
        hook.after_load_checkpoint(other, ckpt)


def test_other_weights_of_the_same_size_are_refused_by_their_sha256(weights, tmp_path):
    """A file at the same path, of the same size, with other weights: the sha256 tells them apart."""
    from stages.model import load_clip

    m = _model(dict(arch="PeVL-tiny", pretrained=None, pretrained_path=weights, quick_gelu=False))
    hook = BackboneCheckpointHook()
    ckpt = {"meta": {}, "state_dict": m.state_dict()}
    hook.before_save_checkpoint(SimpleNamespace(model=m), ckpt)
    shutil.copyfile(weights, tmp_path / "copy.pt")
    torch.manual_seed(321)
    torch.save(load_clip("PeVL-tiny", pretrained=None).state_dict(), weights)  # same size, other values
    other = _model(dict(arch="PeVL-tiny", pretrained=None, pretrained_path=weights, quick_gelu=False))
    assert other.backbone_identity()["pretrained_size"] == ckpt["meta"]["backbone"]["pretrained_size"]
    with pytest.raises(ValueError, match="trained on other CLIP weights .*weights_sha256: '"):
        hook.after_load_checkpoint(SimpleNamespace(model=other), ckpt)
    # eval, explain and predict load through load_checkpoint_into: the same rule (before 2026-12-06
    # they compared the tag, None for a file, and took the other weights without a word)
    path = tmp_path / "epoch_1.pth"
    torch.save(ckpt, path)
    with pytest.raises(RuntimeError, match=r"epoch_1.pth was trained on other CLIP weights \(weights_sha256: "):
        load_checkpoint_into(other, path)
    # the first weights at another path are the same weights
    same = _model(dict(arch="PeVL-tiny", pretrained=None, pretrained_path=str(tmp_path / "copy.pt"), quick_gelu=False))
    load_checkpoint_into(same, path)
    assert other.pretrained_fields() == dict(pretrained=weights, pretrained_format="state_dict",
                                             pretrained_sha256=other.recognizer.clip.pretrained_identity["sha256"],
                                             clip_activation="GELU")


def test_random_weights_on_one_side_only_differ():
    """A checkpoint trained on a random CLIP loaded into a model built on a weight file (and back)
    without a difference named: neither recorded a tag, only the file side a sha256."""
    from stages.train.checkpoints import backbone_differences

    random = {"arch": "ViT-B-16", "frozen": True, "pretrained": None, "pretrained_path": None}
    file = {**random, "pretrained_path": "/w/ViT-B-16.pt", "pretrained_size": 5, "weights_sha256": "ab"}
    assert backbone_differences(random, file) == ["weights_sha256: None -> 'ab'"]
    assert backbone_differences(file, random) == ["weights_sha256: 'ab' -> None"]
    assert backbone_differences(random, dict(random)) == []
    old = {k: v for k, v in file.items() if k != "weights_sha256"}  # written before the sha256 was recorded
    assert backbone_differences(old, file) == []


def test_a_record_is_read_whole_where_the_file_cannot_be_mapped(tmp_path, monkeypatch):
    """read_checkpoint_meta maps the tensors it does not read; where the filesystem refuses to map
    files (FUSE with direct I/O), it reads the file whole, checked, as before."""
    from stages.train.checkpoints import read_checkpoint_meta

    path = tmp_path / "epoch_1.pth"
    torch.save({"state_dict": {"w": torch.ones(3)}, "meta": {"epoch": 1}}, path)
    real, calls = torch.load, []

    def no_mmap(*args, **kwargs):
        calls.append(bool(kwargs.get("mmap")))
        if kwargs.get("mmap"):
            raise RuntimeError(f"unable to mmap 1024 bytes from file <{path}>: Operation not supported (95)")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", no_mmap)
    assert read_checkpoint_meta(path) == {"epoch": 1} and calls == [True, False]


def test_starting_over_sets_aside_the_earlier_runs_result_reports_and_logs(tmp_path):
    """A --force retrain cut short left the old result.json (the next run then reported it as this
    one's) and the old launches' logs (plotted into this run's curves)."""
    from stages.train.checkpoints import set_aside_run
    from stages.train.report import read_scalars

    for name in ("epoch_3.pth", "last_checkpoint", "result.json", "predictions.json", "confusion.json",
                 "confusion.png", "curves.png", "20261206_100026.py", "hashed_config.json", "notes.txt"):
        (tmp_path / name).write_text("old")
    logs = tmp_path / "20261206_100026" / "vis_data"
    logs.mkdir(parents=True)
    (logs / "scalars.json").write_text('{"loss": 1.0, "iter": 1}\n')
    assert read_scalars(tmp_path)[0]
    dest = set_aside_run(tmp_path, "20261206_110000")
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["20261206_100026", "20261206_100026.py", "confusion.json", "confusion.png", "curves.png", "epoch_3.pth",
         "last_checkpoint", "predictions.json", "result.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abandoned", "hashed_config.json", "notes.txt"]
    assert read_scalars(tmp_path) == ([], [])
    assert set_aside_run(tmp_path, "20261206_120000") is None
