"""HRNet-w32 through mmpose (random weights, tiny frames): batching across frames changes nothing."""
import numpy as np
import pytest
import torch

from stages.datasets.base import ClipRecord
from stages.extract.pose.hrnet import HRNetPoseSource, PoseCheckpointMissing, find_checkpoint


@pytest.fixture(scope="module")
def hrnet():
    return HRNetPoseSource(checkpoint="none", batch_size=3, flip_test=True)


def test_batched_path_equals_mmpose_inference_topdown(hrnet, rng, monkeypatch):
    """HRNetPoseSource.estimate (crops, flip test and decoding batched on the device, across frames)
    gives every joint of every frame where ``mmpose.apis.inference_topdown`` puts it, one frame and
    box at a time, and the same heatmaps up to float rounding.

    Random weights give flat heatmaps, where a rounding difference could move a maximum to another
    cell. So the test first checks that in mmpose's heatmaps every maximum, and every neighbour
    difference the quarter-cell step looks at, is separated by more than twice the largest heatmap
    difference between the two paths: then equal joints are what correct code must give, and a
    wrong crop, flip, shift, decoding or map back shows up as a difference.
    """
    from mmpose.apis import inference_topdown

    from stages.extract.pose import topdown as T

    h, w = 48, 64
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(2)]
    frames += [np.clip(np.cumsum(rng.normal(0, 20, (h, w, 3)), 1), 0, 255).astype(np.uint8) for _ in range(2)]
    boxes = np.array([[0, 0, 64, 48], [4, 2, 40, 46], [-8, -6, 70, 52], [8.5, 8.25, 56.75, 40.5]], np.float32)
    heatmaps = []  # the product's own heatmaps, batch by batch (3 + 1 frames)

    def keep(*args, **kw):
        heatmaps.append(predict(*args, **kw))
        return heatmaps[-1]

    predict = T.predict_heatmaps
    monkeypatch.setattr(T, "predict_heatmaps", keep)
    track = hrnet.estimate(ClipRecord("c", "train", 0, None), iter(frames), boxes, dataset=None)
    assert [len(b) for b in heatmaps] == [3, 1]
    assert track.keypoints.shape == (4, 17, 2) and track.scores.shape == (4, 17)
    assert track.frame_size == (48, 64)

    model = hrnet.model
    model.test_cfg["output_heatmaps"] = True
    try:  # mmpose's own one-image path, fed BGR as it expects
        refs = [inference_topdown(model, np.ascontiguousarray(f[..., ::-1]), boxes[i:i + 1])[0]
                for i, f in enumerate(frames)]
    finally:
        model.test_cfg.pop("output_heatmaps")
    ref_hm = torch.stack([r.pred_fields.heatmaps for r in refs])
    diff = float((torch.cat(heatmaps) - ref_hm).abs().max())
    assert diff < 1e-5 * float(ref_hm.abs().max())

    flat = ref_hm.flatten(2)
    top2 = flat.topk(2, -1).values
    assert float((top2[..., 0] - top2[..., 1]).min()) > 2 * diff, "pick frames whose heatmap maxima are distinct"
    idx = flat.argmax(-1)
    y, x = idx // 48, idx % 48
    for n, k in np.ndindex(4, 17):
        hm, xi, yi = ref_hm[n, k], int(x[n, k]), int(y[n, k])
        if 1 < xi < 47 and 0 < yi:
            assert abs(float(hm[yi, xi + 1] - hm[yi, xi - 1])) > 2 * diff, "a quarter step rests on a near tie"
        if 1 < yi < 63 and 0 < xi:
            assert abs(float(hm[yi + 1, xi] - hm[yi - 1, xi])) > 2 * diff, "a quarter step rests on a near tie"

    ref_kp = np.stack([r.pred_instances.keypoints[0] for r in refs])
    ref_sc = np.stack([np.clip(r.pred_instances.keypoint_scores[0], 0, 1) for r in refs])
    assert np.abs(track.keypoints - ref_kp).max() <= 1.0  # the bound: within one pixel
    np.testing.assert_allclose(track.keypoints, ref_kp, atol=1e-3)  # in fact equal up to float rounding
    np.testing.assert_allclose(track.scores, ref_sc, atol=1e-5)
    assert np.ptp(ref_kp[..., 0]) > 20  # joints spread over the frames: not all in one corner


def test_autocast_precision_runs_and_stays_close(hrnet, rng):
    """bf16 autocast (on CPU here; fp16 is CUDA's default) goes through the same batched path."""
    from stages.extract.pose import topdown as T

    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)]
    boxes = np.array([[4, 2, 40, 46]], np.float32)
    model, spec = hrnet.model, hrnet.spec
    with torch.inference_mode():
        fr, fi = T.frames_on_device(frames, "cpu")
        c, s = T.boxes_to_center_scale(boxes, spec)
        x = T.normalize_crops(T.warp_crops(fr, fi, T.warp_tables(c, s, spec)), spec)
        fp32 = T.predict_heatmaps(model, x, spec, flip_test=False)
        bf16 = T.predict_heatmaps(model, x, spec, flip_test=False, autocast_dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    d = float((bf16 - fp32).abs().max())
    assert 0 < d < 0.05 * float(fp32.abs().max())  # autocast engaged (not bit-equal), and close


def test_precision_defaults_and_key(monkeypatch):
    from stages.devices import check_device
    from stages.extract.pose.hrnet import resolve_precision

    assert resolve_precision("auto", "cuda") == "fp16" and resolve_precision("auto", "cuda:1") == "fp16"
    assert resolve_precision("auto", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="bf16 or fp32"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="one of"):
        resolve_precision("fp8", "cuda")
    fp32 = HRNetPoseSource(checkpoint="none", flip_test=False)
    bf16 = HRNetPoseSource(checkpoint="none", flip_test=False, precision="bf16")
    assert "precision" not in fp32.identity()  # entries made before autocast keep their keys
    assert bf16.identity() == {**fp32.identity(), "precision": "bf16"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        check_device("cuda")


def test_random_weights_identity_is_loud_and_keyed(hrnet):
    ident = hrnet.identity()
    assert ident["checkpoint"].startswith("none") and ident["checkpoint_sha256"] is None
    assert ident["config"].endswith("td-hm_hrnet-w32_8xb64-210e_coco-256x192.py")


def test_missing_checkpoint_names_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("PEVL_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("PEVL_WEIGHTS", raising=False)
    with pytest.raises(PoseCheckpointMissing, match="--pose-checkpoint"):
        find_checkpoint(None)
    with pytest.raises(PoseCheckpointMissing, match="no such file"):
        find_checkpoint(str(tmp_path / "nope.pth"))


def test_the_official_file_is_found_where_torch_keeps_its_hub(tmp_path, monkeypatch):
    """torch's hub folder is $XDG_CACHE_HOME/torch/hub when TORCH_HOME is unset: a file put there
    (torch.hub.get_dir()/checkpoints, as the README says) was 'not on this machine'."""
    from stages.extract.pose.hrnet import HRNET_CHECKPOINT_URL

    monkeypatch.setenv("PEVL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PEVL_WEIGHTS", raising=False)
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    hub = tmp_path / "xdg" / "torch" / "hub" / "checkpoints"
    with pytest.raises(PoseCheckpointMissing, match=f"not in .*{hub}, and this tool never downloads"):
        find_checkpoint(None)
    hub.mkdir(parents=True)
    (hub / HRNET_CHECKPOINT_URL.rsplit("/", 1)[1]).write_bytes(b"x")
    assert find_checkpoint(None) == hub / HRNET_CHECKPOINT_URL.rsplit("/", 1)[1]


def test_local_checkpoint_loads_with_weights_only(hrnet, tmp_path):
    """A local checkpoint (with mmpose-style numpy in meta) loads through weights_only=True."""
    import torch

    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in hrnet.model.state_dict().items()}
    path = tmp_path / "hrnet.pth"
    torch.save({"state_dict": sd, "meta": {"hist": np.arange(3), "epoch": np.int64(210)}}, path)
    src = HRNetPoseSource(checkpoint=str(path), flip_test=False)
    assert src.identity()["checkpoint_sha256"] and src.identity()["random_init_seed"] is None
    k = next(iter(sd))
    torch.testing.assert_close(src.model.state_dict()[k].cpu(), sd[k])
