"""The batched top-down steps (stages/extract/pose/topdown.py) against mmpose's own, piece by piece.

These run the device code on CPU tensors: the warp is integer arithmetic and the decoding plain
tensor ops, so a GPU runs the same operations on the same numbers.
"""
import numpy as np
import pytest
import torch

from stages.extract.pose import topdown as T


@pytest.fixture(scope="module")
def hrnet_model():
    from stages.extract.pose.hrnet import HRNetPoseSource

    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        src = HRNetPoseSource(checkpoint="none", flip_test=True)
    return src.model, src.spec


def _frames(rng) -> list[np.ndarray]:
    """A smooth image (bilinear weights matter), pure noise (every tap matters), an odd size."""
    yy, xx = np.mgrid[0:90, 0:160]
    smooth = np.stack([xx * 1.6, yy * 2.8, (xx + yy) % 256], -1).astype(np.uint8)
    return [smooth, rng.integers(0, 256, (90, 160, 3), dtype=np.uint8),
            rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)]


def _boxes(rng, frames) -> tuple[np.ndarray, np.ndarray]:
    boxes, index = [], []
    for f, img in enumerate(frames):
        h, w = img.shape[:2]
        fixed = [[0, 0, w, h], [0.3 * w, 0.1 * h, 0.7 * w, 0.95 * h], [-0.2 * w, -0.3 * h, 0.4 * w, 0.5 * h],
                 [0.8 * w, 0.7 * h, 1.6 * w, 1.9 * h], [10.5, 5.25, 11.3, 6.1], [4, 4, 4, 4],
                 [0.1 * w, 0.45 * h, 0.9 * w, 0.55 * h], [-5 * w, -5 * h, -4 * w, -4 * h]]
        for _ in range(12):  # random sizes from sub-pixel to several frames
            x1, y1 = rng.uniform(-0.3 * w, w), rng.uniform(-0.3 * h, h)
            bw, bh = np.exp(rng.uniform(-1, np.log(3 * w))), np.exp(rng.uniform(-1, np.log(3 * h)))
            fixed.append([x1, y1, x1 + bw, y1 + bh])
        for _ in range(8):  # on a quarter-pixel grid: OpenCV's coordinates land on rounding ties
            x1, y1 = np.round(rng.uniform(-0.3 * w, w) * 4) / 4, np.round(rng.uniform(-0.3 * h, h) * 4) / 4
            fixed.append([x1, y1, x1 + np.round(rng.uniform(1, w) * 4) / 4, y1 + np.round(rng.uniform(1, h) * 4) / 4])
        boxes += fixed
        index += [f] * len(fixed)
    return np.asarray(boxes, np.float32), np.asarray(index)


def test_device_crops_equal_mmpose_pipeline_crops_bit_for_bit(hrnet_model, rng):
    """Every pixel of every crop equals what mmpose's test pipeline (cv2.warpAffine) makes, for
    boxes inside, across and outside the frame, fractional, sub-pixel and empty; and the model
    inputs equal its data preprocessor's."""
    from mmengine.dataset import Compose, pseudo_collate

    model, spec = hrnet_model
    pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
    frames = _frames(rng)
    boxes, index = _boxes(rng, frames)
    ref, ref_data = [], []
    for box, f in zip(boxes, index):
        info = dict(img=np.ascontiguousarray(frames[f][..., ::-1]), bbox=box[None],  # mmpose wants BGR
                    bbox_score=np.ones(1, np.float32), **model.dataset_meta)
        data = pipeline(info)
        ref_data.append(data)
        ref.append(data["inputs"].flip(0).permute(1, 2, 0))  # CHW BGR -> HWC RGB
    center, scale = T.boxes_to_center_scale(boxes, spec)
    meta = [d["data_samples"].metainfo for d in ref_data]
    np.testing.assert_array_equal(center, np.stack([m["input_center"] for m in meta]))
    np.testing.assert_array_equal(scale, np.stack([m["input_scale"] for m in meta]))
    tables = T.warp_tables(center, scale, spec)
    crops = []
    for f, frame in enumerate(frames):  # frames of different sizes go in separate batches
        sel = np.flatnonzero(index == f)
        crops.append(T.warp_crops(torch.from_numpy(frame[None]), torch.zeros(len(sel), dtype=torch.long),
                                  tuple(t[sel] for t in tables)))
    crops = torch.cat(crops)
    ref = torch.stack(ref)
    diff = crops.int() - ref.int()
    assert crops.shape == (len(boxes), 256, 192, 3)
    assert int((diff != 0).sum()) == 0, f"{int((diff != 0).sum())} pixels differ, up to {int(diff.abs().max())}"
    assert int(ref[:, :, :, :].float().std()) > 10  # the crops have content: the comparison is not of zeros
    # Several frames of one size in one batch: each box reads its own frame.
    same = np.flatnonzero(index < 2)
    both = T.warp_crops(torch.from_numpy(np.stack(frames[:2])), torch.from_numpy(index[same]),
                        tuple(t[same] for t in tables))
    assert torch.equal(both, ref[same])
    # Model inputs: float32 (x - mean) / std in RGB, as PoseDataPreprocessor makes them.
    pick = list(range(0, len(boxes), 7))
    pre = model.data_preprocessor(pseudo_collate([ref_data[i] for i in pick]), False)["inputs"]
    assert torch.equal(T.normalize_crops(crops[pick], spec), pre)


def test_float_bilinear_sampling_is_not_opencv(hrnet_model, rng):
    """Why the warp is fixed point: F.grid_sample at the same source positions (OpenCV's pixel-centre
    convention) differs from cv2.warpAffine on a noisy frame."""
    import cv2
    import torch.nn.functional as F

    _, spec = hrnet_model
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    box = np.array([[13.3, 7.1, 121.9, 83.4]], np.float32)
    center, scale = T.boxes_to_center_scale(box, spec)
    from mmpose.structures.bbox import get_warp_matrix

    ref = cv2.warpAffine(frame, get_warp_matrix(center[0], scale[0], 0.0, output_size=(192, 256)), (192, 256),
                         flags=cv2.INTER_LINEAR)
    k = scale[0, 0] / 192
    sx = center[0, 0] + (np.arange(192) - 96) * k
    sy = center[0, 1] + (np.arange(256) - 128) * k
    gx, gy = np.meshgrid((2 * sx + 1) / 160 - 1, (2 * sy + 1) / 90 - 1)
    grid = torch.from_numpy(np.stack([gx, gy], -1)[None]).float()
    out = F.grid_sample(torch.from_numpy(frame).permute(2, 0, 1)[None].float(), grid, "bilinear", "zeros",
                        align_corners=False).round()[0].permute(1, 2, 0).numpy()
    diff = np.abs(out - ref)
    assert diff.max() <= 8 and (diff > 0).mean() > 0.01  # close, but not OpenCV's bytes
    exact = T.warp_crops(torch.from_numpy(frame[None]), torch.zeros(1, dtype=torch.long),
                         T.warp_tables(center, scale, spec))[0].numpy()
    np.testing.assert_array_equal(exact, ref)


def _crafted_heatmaps(rng) -> np.ndarray:
    """(N, K, 64, 48) heatmaps that exercise every branch of MSRAHeatmap's decoding."""
    h, w = 64, 48
    yy, xx = np.mgrid[0:h, 0:w]
    maps = []
    centres = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 2), (w - 1, h - 1), (w - 2, h - 2), (w - 1, 5), (5, h - 1),
               (23.6, 31.2), (23.4, 31.7), (10.5, 40.5), (-3, 20), (30, h + 2), (17, 0), (0, 17)]
    for cx, cy in centres:
        maps.append(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8.0))
    maps.append(-np.ones((h, w)))  # no positive response: -1
    maps.append(np.zeros((h, w)))  # max exactly 0: -1
    tie = np.zeros((h, w))
    tie[10, 7] = tie[3, 30] = 0.5  # two equal maxima: the first in row-major order wins
    maps.append(tie)
    plateau = np.zeros((h, w))
    plateau[20:23, 10:13] = 0.7  # flat neighbours: no quarter step
    maps.append(plateau)
    maps += [rng.normal(0, 0.1, (h, w)) for _ in range(8)]
    maps += [rng.normal(0, 0.1, (h, w)) - 1.0 for _ in range(2)]  # all negative
    maps = np.stack(maps).astype(np.float32)
    pad = (-len(maps)) % 17
    maps = np.concatenate([maps, np.repeat(maps[:1], pad, 0)])
    return maps.reshape(-1, 17, h, w)


def test_decode_equals_msra_heatmap_decode(hrnet_model, rng):
    from mmpose.codecs import MSRAHeatmap

    _, spec = hrnet_model
    codec = MSRAHeatmap(input_size=(192, 256), heatmap_size=(48, 64), sigma=2)
    maps = _crafted_heatmaps(rng)
    kp, scores = T.decode_heatmaps(torch.from_numpy(maps), spec)
    for i in range(len(maps)):
        ref_kp, ref_scores = codec.decode(maps[i])
        np.testing.assert_array_equal(kp[i].numpy(), ref_kp[0])
        np.testing.assert_array_equal(scores[i].numpy(), ref_scores[0])
    assert (kp.numpy() == -4).any() and (np.abs(kp.numpy() % 4) == 1).any()  # -1 joints and quarter steps occurred


def test_refuses_configs_it_does_not_reproduce(hrnet_model):
    model, _ = hrnet_model
    model.head.decoder.unbiased = True
    try:
        with pytest.raises(T.UnsupportedTopdownConfig, match="DARK"):
            T.TopdownSpec.from_model(model)
    finally:
        model.head.decoder.unbiased = False
    affine = model.cfg.test_dataloader.dataset.pipeline[2]
    affine["use_udp"] = True
    try:
        with pytest.raises(T.UnsupportedTopdownConfig, match="UDP"):
            T.TopdownSpec.from_model(model)
    finally:
        affine.pop("use_udp")
    assert T.TopdownSpec.from_model(model).input_size == (192, 256)


@pytest.mark.parametrize("config, what", [
    ("topdown_heatmap/coco/td-hm_hrnet-w32_dark-8xb64-210e_coco-256x192.py", "DARK"),
    ("topdown_heatmap/coco/td-hm_hrnet-w32_udp-8xb64-210e_coco-256x192.py", "UDP"),
    ("simcc/coco/simcc_res50_8xb64-210e_coco-256x192.py", "SimCCLabel")])  # (a codec without DARK's flag)
def test_an_unreproduced_config_is_refused_before_any_clip_is_decoded(config, what):
    """Refused only inside the first clip's pose step, a DARK or UDP config failed every clip, each
    recorded as a failure that later runs skip."""
    import warnings

    from stages.extract.pose.hrnet import HRNetPoseSource

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (random weights: checkpoint none)
        with pytest.raises(T.UnsupportedTopdownConfig, match=rf"--pose-config .*{config[-25:]}.*{what}"):
            HRNetPoseSource(checkpoint="none", config=f"body_2d_keypoint/{config}")
