"""CLIP weights from a local file, in every form a lab holds: placed exactly (every tensor equal to
the file's, in the tower's dtype) with the activation the weights were trained with, or refused in
a few lines that say what the file holds. The files are built from open_clip's own models with
random values (clip_weight_testutils)."""
import logging
import pickle
import zipfile

import pytest
import torch

from clip_weight_testutils import openai_archive, random_clip, save_hub_files, save_training_checkpoint
from stages.model.clip_loader import TINY_ARCH, load_clip, open_clip_module, tower_activations
from stages.model.clip_weights import ClipWeightsError, clip_shape, open_clip_names, read_clip_weights
from stages.model.torchscript_reader import TorchScriptReadError, read_torchscript_tensors


def assert_placed(model, expected: dict):
    """Every tensor of ``model`` equals the file's (cast to the model's dtype), and nothing is left over."""
    own = model.state_dict()
    assert set(own) == set(expected), set(own) ^ set(expected)
    for k, v in own.items():
        assert v.dtype == torch.float32 or not v.is_floating_point(), k
        assert torch.equal(v, expected[k].to(v.dtype)), k


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory):
    return openai_archive(tmp_path_factory.mktemp("clip") / "PeVL-tiny.pt", TINY_ARCH, seed=1)


@pytest.fixture(scope="module")
def tiny_archive_tensors(tiny_archive):
    # our own file: torch's loader may run it (what the reader must reproduce without running it)
    return torch.jit.load(str(tiny_archive)).state_dict()


def test_reader_returns_what_torch_jit_load_does_without_running_the_archive(tiny_archive, tiny_archive_tensors):
    got = read_torchscript_tensors(tiny_archive)
    assert set(got) == set(tiny_archive_tensors)
    for k, v in tiny_archive_tensors.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
    assert got["visual.conv1.weight"].dtype == torch.float16 and got["visual.proj"].dtype == torch.float16
    assert got["text_projection"].dtype == torch.float16 and got["token_embedding.weight"].dtype == torch.float32
    assert {k: int(got[k]) for k in ("input_resolution", "context_length", "vocab_size")} == {
        "input_resolution": 112, "context_length": 77, "vocab_size": 49408}


def test_reader_refuses_code_in_the_archive(tiny_archive, tmp_path):
    """A data.pkl that names any other global (here os.system) is refused before anything runs."""
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"

    class Boom:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    with zipfile.ZipFile(tiny_archive) as src, zipfile.ZipFile(evil, "w") as dst:
        for info in src.infolist():
            data = pickle.dumps(Boom(), protocol=2) if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info, data)
    with pytest.raises(TorchScriptReadError, match="refusing to load global (posix|os).system"):
        read_torchscript_tensors(evil)
    with pytest.raises(ClipWeightsError, match="refusing"):
        load_clip(TINY_ARCH, None, str(evil))
    assert not marker.exists()


@pytest.mark.slow
def test_openai_archive_at_full_vit_b16_structure(tmp_path, caplog):
    """OpenAI's ViT-B-16.pt form at its real size: 302/302 tensors placed, fp16 cast to fp32,
    QuickGELU with no tag at all, one log line with the format and sha256; a model of another
    architecture configured is refused in a few lines naming what the file holds."""
    path = openai_archive(tmp_path / "ViT-B-16.pt", "ViT-B-16", seed=0)
    expected = torch.jit.load(str(path)).state_dict()
    with caplog.at_level(logging.INFO, logger="stages.model.clip_loader"):
        model = load_clip("ViT-B-16", pretrained=None, pretrained_path=str(path))
    assert_placed(model, {k: v for k, v in expected.items()
                          if k not in ("input_resolution", "context_length", "vocab_size", "attn_mask")})
    assert len(model.state_dict()) == 302 and tower_activations(model) == {"QuickGELU"}
    ident = model.pretrained_identity
    assert ident["format"] == "torchscript" and ident["tensors"] == 302 and ident["activation"] == "QuickGELU"
    lines = [r.getMessage() for r in caplog.records if r.name == "stages.model.clip_loader"]
    assert len(lines) == 1 and "302/302 tensors placed" in lines[0] and ident["sha256"] in lines[0]
    assert "format torchscript" in lines[0] and "activation QuickGELU" in lines[0]
    with pytest.raises(ClipWeightsError) as e:
        load_clip("ViT-B-32", pretrained=None, pretrained_path=str(path))
    msg = str(e.value)
    assert "model.clip.arch='ViT-B-32'" in msg and "open_clip ViT-B-16" in msg and "patch 16, 224 px" in msg
    assert len(msg.splitlines()) <= 5


def test_vit_l14_file_where_vit_b16_is_configured_names_both(caplog):
    """The issue's case (a ViT-L-14 file, model.clip.arch ViT-B-16), on the meta device: a few lines
    naming the file's architecture from its shapes, not 1,821 size mismatches."""
    from stages.model.clip_weights import ClipWeightsFile, place_clip_weights

    oc = open_clip_module()
    with torch.device("meta"):
        large = oc.create_model("ViT-L-14", pretrained=None, device="meta")
        base = oc.create_model("ViT-B-16", pretrained=None, device="meta")
    shape = clip_shape(large.state_dict())
    assert (shape.width, shape.layers, shape.patch, shape.resolution) == (1024, 24, 14, 224)
    assert open_clip_names(shape, large.state_dict()) == ["ViT-L-14"]
    weights = ClipWeightsFile("/w/ViT-L-14.pt", "torchscript", "0" * 64, large.state_dict())
    with pytest.raises(ClipWeightsError) as e:
        place_clip_weights(base, weights, "ViT-B-16")
    msg = str(e.value)
    assert "model.clip.arch='ViT-B-16'" in msg and "ViT width 1024, 24 layers, patch 14, 224 px" in msg
    assert "(open_clip ViT-L-14)" in msg and "model.clip.arch=ViT-L-14" in msg and len(msg.splitlines()) == 4


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory, tiny_archive, tiny_archive_tensors):
    """Every other form, each with its expected tensors (plain CLIP names) and what the file says."""
    d = tmp_path_factory.mktemp("forms")
    files = {}
    # the state dict saved from the archive: fp16 parts and the three buffers
    torch.save(tiny_archive_tensors, d / "from_archive.pt")
    files["archive_state_dict"] = (d / "from_archive.pt", tiny_archive_tensors, "state_dict", True)
    # OpenAI's clip package, jit=False, on a GPU: its own keys, fp16 parts, no buffers
    from open_clip.model import convert_weights_to_lp

    half = random_clip(TINY_ARCH, seed=2, force_quick_gelu=True)
    convert_weights_to_lp(half, torch.float16)
    torch.save(half.state_dict(), d / "openai_keys_fp16.pt")
    files["openai_keys_fp16"] = (d / "openai_keys_fp16.pt", half.state_dict(), "state_dict", False)
    plain = random_clip(TINY_ARCH, seed=3)
    torch.save(plain.state_dict(), d / "open_clip_keys.pt")
    files["open_clip_keys"] = (d / "open_clip_keys.pt", plain.state_dict(), "state_dict", False)
    # open_clip's custom-text layout of the same kind of weights (text tower under text.*)
    custom = random_clip(TINY_ARCH, seed=4, force_custom_text=True)
    assert any(k.startswith("text.transformer.") for k in custom.state_dict())
    torch.save(custom.state_dict(), d / "custom_text.pt")
    files["custom_text"] = (d / "custom_text.pt", {k.removeprefix("text."): v for k, v in custom.state_dict().items()},
                            "state_dict", False)
    hub = random_clip(TINY_ARCH, seed=5)
    binary, safe = save_hub_files(hub, TINY_ARCH, d / "hub")
    files["hub_bin"] = (binary, hub.state_dict(), "state_dict", False)
    files["hub_safetensors"] = (safe, hub.state_dict(), "safetensors", False)
    trained = random_clip(TINY_ARCH, seed=6)
    expected = {k: v.clone() for k, v in trained.state_dict().items()}
    ckpt = save_training_checkpoint(trained, d / "epoch_3.pt")
    expected = {k.removeprefix("module."): v for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items()}
    files["training_checkpoint"] = (ckpt, expected, "checkpoint", False)
    return files


FORMS = ["archive_state_dict", "openai_keys_fp16", "open_clip_keys", "custom_text", "hub_bin", "hub_safetensors",
         "training_checkpoint"]


@pytest.mark.parametrize("form", FORMS)
def test_every_form_loads_exactly(tiny_files, form):
    path, expected, fmt, says_openai = tiny_files[form]
    expected = {k: v for k, v in expected.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    # with the tag that names them (the default config's 'openai'), every form loads, QuickGELU
    model = load_clip(TINY_ARCH, pretrained="openai", pretrained_path=str(path))
    assert_placed(model, {k: v for k, v in expected.items() if k in model.state_dict()})
    assert len(model.state_dict()) == len([k for k in expected if k != "attn_mask"])
    assert model.pretrained_identity["format"] == fmt and tower_activations(model) == {"QuickGELU"}
    # without a tag only the file can say whose weights they are
    if says_openai:
        assert tower_activations(load_clip(TINY_ARCH, pretrained=None, pretrained_path=str(path))) == {"QuickGELU"}
    else:
        with pytest.raises(ClipWeightsError, match="model.clip.quick_gelu=True / False"):
            load_clip(TINY_ARCH, pretrained=None, pretrained_path=str(path))
        gelu = load_clip(TINY_ARCH, pretrained=None, pretrained_path=str(path), quick_gelu=False)
        assert tower_activations(gelu) == {"GELU"} and gelu.pretrained_identity["activation"] == "GELU"


def test_training_checkpoint_notes_its_prefix_and_epoch(tiny_files):
    w = read_clip_weights(tiny_files["training_checkpoint"][0])
    assert w.format == "checkpoint" and not any(k.startswith("module.") for k in w.tensors)
    assert any("module." in n for n in w.notes) and any("epoch=3" in n for n in w.notes)


def test_the_openai_archive_keeps_quick_gelu_under_the_demo_settings(tiny_archive, tiny_archive_tensors):
    """`--dataset demo` sets model.clip.pretrained=None; OpenAI's weights still get QuickGELU."""
    from stages.model import build_model
    from stages.train.config import build_run_config

    cfg = build_run_config("ucmr_ablate", "pevl", dataset="demo",
                           cfg_options={"model.clip.pretrained_path": str(tiny_archive)})
    assert cfg.model.clip.pretrained is None and cfg.model.clip.arch == TINY_ARCH
    m = dict(cfg.model.to_dict(), num_classes=3)
    model = build_model(m)
    assert tower_activations(model.clip) == {"QuickGELU"}
    assert model.clip.pretrained_identity["format"] == "torchscript"
    own = model.clip.visual.state_dict()
    assert all(torch.equal(v, tiny_archive_tensors["visual." + k].float()) for k, v in own.items())


def test_a_tag_that_contradicts_the_file_is_refused(tiny_archive):
    with pytest.raises(ClipWeightsError, match="holds OpenAI's CLIP .* set model.clip.pretrained=openai"):
        load_clip(TINY_ARCH, pretrained="laion2b_s34b_b88k", pretrained_path=str(tiny_archive))


def test_missing_extra_and_misshapen_tensors_are_summarised(tiny_files, tmp_path):
    path, expected, _, _ = tiny_files["open_clip_keys"]
    sd = dict(torch.load(path, weights_only=True))
    del sd["visual.ln_post.weight"], sd["ln_final.bias"]
    sd["visual.head.weight"] = torch.zeros(3, 3)
    sd["logit_scale"] = torch.zeros(2)
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(ClipWeightsError) as e:
        load_clip(TINY_ARCH, pretrained="openai", pretrained_path=str(tmp_path / "broken.pt"))
    msg = str(e.value)
    assert "does not fit open_clip 'PeVL-tiny'" in msg and "59 of 62 tensors would be placed" in msg
    assert "missing from the file: 2" in msg and "in the file, not in the model: 1" in msg
    assert "logit_scale (2,) in the file, () in the model" in msg and len(msg.splitlines()) == 4


def test_files_that_are_no_clip_weights_are_refused_by_name(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ClipWeightsError, match="holds a list, not a state dict"):
        read_clip_weights(tmp_path / "list.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ClipWeightsError, match=r"weights_only=True.*Accepted: OpenAI's TorchScript archive"):
        read_clip_weights(tmp_path / "text.pt")
    import argparse  # older open_clip checkpoints kept their arguments: weights_only refuses them
    torch.save({"state_dict": {"a": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, tmp_path / "pickled.pt")
    with pytest.raises(ClipWeightsError, match="weights_only=True"):
        read_clip_weights(tmp_path / "pickled.pt")


@pytest.mark.parametrize("form", ["hub_bin", "archive"])
def test_a_copy_with_a_flipped_byte_is_refused_by_its_crc(tiny_files, tiny_archive, tmp_path, form):
    """A bit flipped inside a tensor of a hub .bin or OpenAI's archive loaded as other weights
    without a word (torch.load reads zip members without checking their CRCs)."""
    import zipfile

    src = tiny_files["hub_bin"][0] if form == "hub_bin" else tiny_archive
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2] ^= 0x10
    bad = tmp_path / src.name
    bad.write_bytes(bytes(data))
    with pytest.raises(ClipWeightsError, match=r"damaged: the CRC of member .* is wrong; copy the file again "
                                                r"\(model.clip.pretrained_path\)"):
        read_clip_weights(bad)


def test_a_model_built_from_a_file_is_not_said_to_be_random(tiny_files, caplog):
    """open_clip warns "No pretrained weights loaded ... initialized randomly" for every model it
    builds without a tag; printed beside our line naming the file, it read as if the file was ignored."""
    import logging

    with caplog.at_level(logging.INFO):
        load_clip(TINY_ARCH, pretrained="openai", pretrained_path=str(tiny_files["hub_bin"][0]))
    assert "placed from" in caplog.text and "initialized randomly" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_clip(TINY_ARCH, pretrained=None)  # random weights: the warning is true, and stays
    assert "initialized randomly" in caplog.text


def test_the_image_mean_and_std_are_the_releases_the_weights_are(tiny_files, monkeypatch):
    """The model is built without a tag (the architecture's defaults, OpenAI's mean/std) and the
    file's tensors placed after: the normalisation follows the release the tag names (LAION's
    ViT-L-14 releases use 0.5 / 0.5), not the architecture's defaults."""
    from stages.model.clip_loader import image_normalization

    oc = open_clip_module()
    real = oc.get_pretrained_cfg
    half = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "quick_gelu": False}
    monkeypatch.setattr(oc, "get_pretrained_cfg",
                        lambda arch, tag: half if (arch, tag) == (TINY_ARCH, "laion_like") else real(arch, tag))
    path = str(tiny_files["hub_bin"][0])
    laion = load_clip(TINY_ARCH, pretrained="laion_like", pretrained_path=path)
    assert image_normalization(laion.visual) == ((0.5,) * 3, (0.5,) * 3) and tower_activations(laion) == {"GELU"}
    openai = load_clip(TINY_ARCH, pretrained="openai", pretrained_path=path)
    assert image_normalization(openai.visual) == ((0.48145466, 0.4578275, 0.40821073),
                                                  (0.26862954, 0.26130258, 0.27577711))
