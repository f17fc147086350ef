"""HRNet-w32 through mmpose (random weights, tiny frames): batching across frames changes nothing."""
import numpy as np
import pytest

from stages.datasets.base import ClipRecord
from stages.extract.pose.hrnet import HRNetPoseSource, PoseCheckpointMissing, find_checkpoint


@pytest.fixture(scope="module")
def hrnet():
    return HRNetPoseSource(checkpoint="none", batch_size=3, flip_test=False)


def test_batched_crops_equal_mmpose_inference_topdown(hrnet, rng):
    from mmpose.apis import inference_topdown

    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    boxes = np.array([[0, 0, 64, 48], [4, 2, 40, 46], [10, 0, 60, 30], [0, 0, 64, 48], [8, 8, 56, 40]], np.float32)
    track = hrnet.estimate(ClipRecord("c", "train", 0, None), iter(frames), boxes, dataset=None)
    assert track.keypoints.shape == (5, 17, 2) and track.scores.shape == (5, 17)
    assert track.frame_size == (48, 64)
    for i, f in enumerate(frames):
        # mmpose's own one-image path, fed BGR as it expects
        (ref,) = inference_topdown(hrnet.model, np.ascontiguousarray(f[..., ::-1]), boxes[i : i + 1])
        np.testing.assert_allclose(track.keypoints[i], ref.pred_instances.keypoints[0], atol=1e-3)
        np.testing.assert_allclose(track.scores[i], np.clip(ref.pred_instances.keypoint_scores[0], 0, 1), atol=1e-5)


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
