"""HRNet checkpoints load strictly or are refused by name, before any clip is decoded.

The files are mmpose's own models (random weights) saved in the layouts labs hold: mmpose 0.x (the
official hrnet_w32_coco_256x192-c78dce93_20200708.pth: ``keypoint_head.*`` names, 0.x module
versions, numpy objects in ``meta``), mmpose 1.x (``head.*``, ``dataset_meta``), a DDP ``module.``
prefix, HRNet-w48 384x288 for the configured w32, no keypoint head, a bare backbone."""
import collections
import warnings

import numpy as np
import pytest
import torch

from stages.extract.pose.checkpoint import PoseCheckpointMismatch, read_pose_checkpoint
from stages.extract.pose.hrnet import HRNET_CONFIG, HRNetPoseSource

W48_384 = "body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w48_8xb32-210e_coco-384x288.py"


def mmpose_model(config: str = HRNET_CONFIG, seed: int = 0):
    """mmpose's own top-down model of ``config`` with random weights (BatchNorm statistics too)."""
    from stages.compat import ensure_mmpose
    from stages.extract.pose.hrnet import mmpose_config_path

    ensure_mmpose()
    from mmengine.config import Config
    from mmpose.apis import init_model

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = init_model(Config.fromfile(mmpose_config_path(config)), None, device="cpu")
    with torch.no_grad():
        for n, b in model.named_buffers():
            if n.endswith("running_mean"):
                b.normal_(0, 0.1)
            elif n.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return model


def as_mmpose_0x(state: "collections.OrderedDict") -> "collections.OrderedDict":
    """The same weights as mmpose 0.x named and versioned them (``keypoint_head``, version 1)."""
    out = collections.OrderedDict((("keypoint_head." + k[5:]) if k.startswith("head.") else k, v)
                                  for k, v in state.items())
    meta = collections.OrderedDict()
    for k, v in state._metadata.items():
        k = ("keypoint_head" + k[4:]) if k == "head" or k.startswith("head.") else k
        meta[k] = {"version": 1} if k in ("", "keypoint_head") else dict(v)
    out._metadata = meta
    return out


MMCV_META = {"mmcv_version": "1.1.1", "time": "Wed Jul  8 01:05:40 2020", "epoch": 210, "iter": 68670,
             "hook_msgs": {"best_score": np.float64(0.7465), "best_epoch": np.int64(200),
                           "last_ckpt": "work_dirs/hrnet_w32_coco_256x192/epoch_210.pth"},
             "history": np.arange(4, dtype=np.float32)}


def save_as_release(obj, folder, name: str):
    """``torch.save`` under an OpenMMLab release name, ``{sha}`` replaced by the first 8 hex digits
    of the file's sha256 (what the zoos' names carry and the loader checks)."""
    import hashlib

    tmp = folder / "unnamed.pth"
    torch.save(obj, tmp)
    path = folder / name.format(sha=hashlib.sha256(tmp.read_bytes()).hexdigest()[:8])
    tmp.rename(path)
    return path


@pytest.fixture(scope="module")
def w32():
    model = mmpose_model()
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory, w32):
    model, state = w32
    d = tmp_path_factory.mktemp("pose_ckpt")
    sd = model.state_dict()
    out = {}
    out["0.x"] = save_as_release({"meta": MMCV_META, "state_dict": as_mmpose_0x(sd)}, d,
                                 "hrnet_w32_coco_256x192-{sha}_20200708.pth")
    out["1.x"] = save_as_release({"meta": {"dataset_meta": model.dataset_meta, "mmengine_version": "0.10.7",
                                           "epoch": 210, "cfg": model.cfg.pretty_text}, "state_dict": sd}, d,
                                 "td-hm_hrnet-w32_8xb64-210e_coco-256x192-{sha}_20220909.pth")
    ddp = collections.OrderedDict(("module." + k, v) for k, v in as_mmpose_0x(sd).items())
    ddp._metadata = collections.OrderedDict((("module." + k) if k else "module", v)
                                            for k, v in as_mmpose_0x(sd)._metadata.items())
    out["ddp"] = d / "ddp_epoch_210.pth"
    torch.save({"meta": MMCV_META, "state_dict": ddp}, out["ddp"])
    headless = as_mmpose_0x(sd)
    for k in [k for k in headless if k.startswith("keypoint_head.")]:
        del headless[k]
    out["no_head"] = d / "no_head.pth"
    torch.save({"meta": MMCV_META, "state_dict": headless}, out["no_head"])
    out["backbone"] = d / "hrnet_w32_imagenet.pth"  # an ImageNet file: the backbone's own names
    torch.save(model.backbone.state_dict(), out["backbone"])
    return out


@pytest.mark.parametrize("layout", ["0.x", "1.x", "ddp"])
def test_every_layout_loads_every_tensor(files, w32, layout):
    src = HRNetPoseSource(checkpoint=str(files[layout]), flip_test=False)
    ident = src.identity()
    assert ident["checkpoint_sha256"] == read_pose_checkpoint(files[layout]).sha256
    assert src.weights()["layout"] == ("mmpose 1.x" if layout == "1.x" else "mmpose 0.x")
    assert src.weights()["sha256"] == ident["checkpoint_sha256"] and src.weights()["tensors"] == 1754
    loaded = src.model.state_dict()
    _, expected = w32
    assert set(loaded) == set(expected) and len(loaded) == 1754
    for k, v in expected.items():
        assert torch.equal(loaded[k].cpu(), v), k
    if layout == "1.x":
        assert src.model.dataset_meta["dataset_name"] == "coco"
    # the key's part: the file's name and hash, nothing about its layout (entries keep their keys)
    assert set(ident) == {"name", "config", "checkpoint", "checkpoint_sha256", "random_init_seed", "flip_test"}


def test_a_checkpoint_without_keypoint_head_is_refused(files):
    with pytest.raises(PoseCheckpointMismatch) as e:
        HRNetPoseSource(checkpoint=str(files["no_head"]))
    msg = str(e.value)
    assert "1752 of 1754 tensors would be loaded" in msg and "missing from the file: 2 (head.final_layer (2))" in msg
    assert "It has no keypoint head (head.final_layer.weight, head.final_layer.bias)" in msg
    assert len(msg.splitlines()) <= 4


def test_a_bare_backbone_is_refused(files):
    with pytest.raises(PoseCheckpointMismatch) as e:
        HRNetPoseSource(checkpoint=str(files["backbone"]))
    msg = str(e.value)
    assert "0 of 1754 tensors would be loaded" in msg and "no 'backbone.' prefix" in msg
    assert len(msg.splitlines()) <= 4


def test_w48_for_w32_names_the_config_that_fits_and_loads_with_it(tmp_path):
    """HRNet-w48 384x288 (0.x layout, the official file name) where w32 is configured: refused,
    naming the w48 384x288 config and --pose-config; with that option it loads, every tensor."""
    model = mmpose_model(W48_384, seed=1)
    path = save_as_release({"meta": MMCV_META, "state_dict": as_mmpose_0x(model.state_dict())}, tmp_path,
                           "hrnet_w48_coco_384x288-{sha}_20200708.pth")
    with pytest.raises(PoseCheckpointMismatch) as e:
        HRNetPoseSource(checkpoint=str(path))
    msg = str(e.value)
    assert "368 of 1754 tensors would be loaded" in msg and "of another shape: 1386" in msg
    assert "HRNet-w48 (the configured model: HRNet-w32)" in msg
    assert f"--pose-config {W48_384}" in msg and len(msg.splitlines()) <= 4
    src = HRNetPoseSource(checkpoint=str(path), config=W48_384, flip_test=False)
    assert src.identity()["config"] == W48_384
    loaded = src.model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded[k], v), k
    assert src.spec.input_size == (288, 384)


WHOLEBODY = "wholebody_2d_keypoint/topdown_heatmap/coco-wholebody/td-hm_hrnet-w32_8xb64-210e_coco-wholebody-256x192.py"


def test_a_model_of_another_keypoint_count_is_refused_before_any_clip(tmp_path):
    """COCO-WholeBody's HRNet (133 keypoints) fits its own config strictly; before 2026-12-06 it
    was accepted at planning, every clip then decoded, posed and failed on "133 joints", and the
    run ended "complete"."""
    model = mmpose_model(WHOLEBODY, seed=2)
    path = save_as_release({"meta": {"dataset_meta": model.dataset_meta}, "state_dict": model.state_dict()}, tmp_path,
                           "td-hm_hrnet-w32_8xb64-210e_coco-wholebody-256x192-{sha}_20220913.pth")
    with pytest.raises(PoseCheckpointMismatch, match=r"--pose-config .*coco-wholebody-256x192.py: its head predicts "
                                                     r"133 keypoints, but the hrnet pose source stores coco17 \(17"):
        HRNetPoseSource(checkpoint=str(path), config=WHOLEBODY)
    with pytest.raises(PoseCheckpointMismatch, match="its head predicts 133 keypoints"):
        HRNetPoseSource(checkpoint="none", config=WHOLEBODY)  # the config alone decides it
    # the file for the default config: the refusal says what differs (not only "HRNet-w32, the model HRNet-w32")
    with pytest.raises(PoseCheckpointMismatch, match=r"The file's head predicts 133 keypoints, the configured "
                                                     r"model's 17 \(COCO-WholeBody's 133\?\)"):
        HRNetPoseSource(checkpoint=str(path))


def test_refused_at_planning_before_any_clip_is_decoded(files, tmp_path, monkeypatch):
    from pevl_testutils import make_video, write_custom_dataset
    from stages.extract import clip as clip_mod
    from stages.extract.plan import ExtractOptions, plan_entry

    root = tmp_path / "data"
    make_video(root / "v0.mp4", frames=4, size=(64, 48))
    write_custom_dataset(root, [("v0.mp4", 0, "train")], ["a", "b"])

    def boom(*a, **k):
        raise AssertionError("decoded a clip with a checkpoint that does not fit")

    monkeypatch.setattr(clip_mod, "read_frames", boom)
    monkeypatch.setattr(clip_mod, "probe", boom)
    opts = ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                          pose_options={"checkpoint": str(files["no_head"])})
    with pytest.raises(PoseCheckpointMismatch, match="no keypoint head"):
        plan_entry(opts)
    assert not any((tmp_path / "cache").rglob("zarr.json"))


def test_the_entry_records_the_weights_after_the_strict_load(files, tmp_path):
    """A real extraction with the 0.x file: the key holds its sha256, the manifest its layout."""
    from pevl_testutils import make_video, write_custom_dataset
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    root = tmp_path / "data"
    make_video(root / "v0.mp4", frames=3, size=(64, 48))
    write_custom_dataset(root, [("v0.mp4", 0, "train")], ["a", "b"])
    rep = run_extract(ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                                     pose_options={"checkpoint": str(files["0.x"]), "flip_test": False,
                                                   "batch_size": 4}))
    assert rep.complete
    m = rep.entry.manifest()
    sha = read_pose_checkpoint(files["0.x"]).sha256
    assert m["pose"]["checkpoint_sha256"] == sha and m["pose"]["random_init_seed"] is None
    assert m["pose_weights"] == {"file": files["0.x"].name, "sha256": sha, "layout": "mmpose 0.x", "tensors": 1754}


def test_a_file_changed_after_planning_is_not_loaded(files, tmp_path):
    import shutil

    from stages.extract.pose.base import PoseSourceError

    path = tmp_path / "w.pth"
    shutil.copy(files["1.x"], path)
    src = HRNetPoseSource(checkpoint=str(path), flip_test=False)
    shutil.copy(files["0.x"], path)
    with pytest.raises(PoseSourceError, match="changed since this extraction was planned"):
        src.model


def test_a_damaged_copy_is_refused_by_its_crc_or_its_release_name(files, tmp_path):
    """A bit flipped inside a tensor loaded as the official weights (only the sha256 in the entry
    changed); now the zip members' CRCs, and the sha256 prefix an OpenMMLab release name carries,
    catch it before the weights are used."""
    import shutil
    import zipfile

    data = bytearray(files["1.x"].read_bytes())
    with zipfile.ZipFile(files["1.x"]) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)  # the largest tensor
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2] ^= 0x10
    flipped = tmp_path / "td-hm_hrnet-w32_8xb64-210e_coco-256x192-81c58e40_20220909.pth"
    flipped.write_bytes(bytes(data))
    with pytest.raises(PoseCheckpointMismatch, match=r"damaged: the CRC of member .* is wrong\. Nothing was extracted"):
        HRNetPoseSource(checkpoint=str(flipped))
    # the older, non-zip format (no CRCs) under a release name that its sha256 does not begin with
    legacy = tmp_path / "hrnet_w32_coco_256x192-c78dce93_20200708.pth"
    torch.save({"state_dict": read_pose_checkpoint(files["0.x"]).state}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(PoseCheckpointMismatch, match=r"carries the sha256 prefix c78dce93 of the released file"):
        HRNetPoseSource(checkpoint=str(legacy))
    # under a name of no release, the same legacy file loads (nothing to check it against)
    shutil.copy(legacy, tmp_path / "mine.pth")
    assert HRNetPoseSource(checkpoint=str(tmp_path / "mine.pth"), flip_test=False).checkpoint_sha256


def test_a_labs_own_mmengine_training_checkpoint_loads_and_pickled_objects_are_named(files, w32, tmp_path):
    """A lab's own HRNet training run (mmengine: best_coco_AP_epoch_210.pth, with its message hub of
    HistoryBuffers) was refused with torch's "two options ... if you trust the source" line; a file
    pickling another object is refused naming it."""
    import argparse

    from mmengine.logging.history_buffer import HistoryBuffer

    _, state = w32
    hub = {"log_scalars": {"train/loss": HistoryBuffer([0.5, 0.4], [1, 1])}, "runtime_info": {"epoch": 210}}
    path = tmp_path / "best_coco_AP_epoch_210.pth"
    torch.save({"meta": {"epoch": 210}, "state_dict": state, "message_hub": hub}, path)
    assert HRNetPoseSource(checkpoint=str(path), flip_test=False).checkpoint_sha256
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1)}, tmp_path / "args.pth")
    with pytest.raises(PoseCheckpointMismatch, match=r"it pickles argparse.Namespace, which torch.load\(weights_only="
                                                     r"True\) does not build .*torch.save\(ckpt\['state_dict'\]"):
        HRNetPoseSource(checkpoint=str(tmp_path / "args.pth"))
