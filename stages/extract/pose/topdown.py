"""mmpose's top-down heatmap inference for a batch of person boxes, as tensor operations on the
model's device: the crops, the data preprocessor, the flip test and the heatmap decoding.

mmpose prepares each crop on the CPU (``TopdownAffine``: ``cv2.warpAffine`` per box), runs the
flipped crops as a second forward pass and decodes each heatmap in numpy. Here the crops of all
boxes come from one batched gather on the device, the original and flipped crops go through one
forward pass, and the decoding is a handful of tensor ops; only boxes, keypoints and scores cross
to and from the host. The result equals ``mmpose.apis.inference_topdown`` on the same boxes:

- box -> centre and scale: mmpose's own ``bbox_xyxy2cs`` (padding) and
  ``TopdownAffine._fix_aspect_ratio``; the 2x3 matrix: mmpose's ``get_warp_matrix`` (CPU, float64).
- the crop: OpenCV's ``warpAffine`` (INTER_LINEAR, constant 0 border) on uint8 is fixed point. It
  inverts the matrix in double, rounds source coordinates to 1/1024 px per row and column
  (``cvRound``: half to even), reduces them to 1/32 px and blends the 4 taps with 15-bit integer
  weights. :func:`warp_tables` does the double-precision part on the host exactly as OpenCV does
  (a few hundred numbers per box) and :func:`warp_crops` the integer part on the device: the crops
  are OpenCV's bit for bit (tests check every pixel against mmpose's pipeline). A float
  ``grid_sample`` differs by 1-7 grey levels on 4-13 % of the pixels, which moves a joint by a
  heatmap cell (4 input pixels) wherever two heatmap cells are close.
- normalisation in float32 as mmpose's data preprocessor does it (frames are RGB here; mmpose is
  given BGR and swaps).
- flip test: the flipped copy of each normalised crop, heatmaps flipped back, joints swapped by
  ``flip_indices``, shifted one column right (``shift_heatmap``) and averaged.
- decoding: ``MSRAHeatmap.decode`` without DARK: first maximum, ``-1`` where the maximum is not
  positive, the quarter-cell step towards the higher neighbour (with mmpose's bounds), times the
  input/heatmap ratio; the map back to image pixels in float64 numpy as mmpose does.

Configs this does not reproduce (UDP, DARK, other flip modes or pipelines, rotated boxes) are
refused by :meth:`TopdownSpec.from_model` with the reason.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

# OpenCV imgwarp constants for INTER_LINEAR on uint8 (imgproc/src/imgwarp.cpp).
_AB_BITS = 10  # source coordinates in 1/1024 px
_INTER_BITS = 5  # reduced to 1/32 px
_ROUND_DELTA = (1 << _AB_BITS) // (1 << _INTER_BITS) // 2  # 16


class UnsupportedTopdownConfig(ValueError):
    """The pose model's config asks for something the batched top-down path does not reproduce."""


@dataclass(frozen=True)
class TopdownSpec:
    """What mmpose's test pipeline, data preprocessor, head and codec do, read from a built model."""

    input_size: tuple[int, int]  # (w, h) of the crop
    padding: float  # GetBBoxCenterScale
    mean: tuple[float, ...]  # in the model's channel order
    std: tuple[float, ...]
    model_wants_rgb: bool  # the model consumes RGB (mmpose: BGR images with bgr_to_rgb=True)
    flip_indices: tuple[int, ...]
    shift_heatmap: bool
    scale_factor: tuple[float, float]  # input size / heatmap size

    @classmethod
    def from_model(cls, model) -> "TopdownSpec":
        cls.check(model)
        pipeline = list(model.cfg.test_dataloader.dataset.pipeline)
        codec, test_cfg, pre = model.head.decoder, dict(model.test_cfg or {}), model.data_preprocessor
        return cls(
            input_size=(int(codec.input_size[0]), int(codec.input_size[1])),
            padding=float(pipeline[1].get("padding", 1.25)),
            mean=tuple(float(v) for v in pre.mean.flatten()),
            std=tuple(float(v) for v in pre.std.flatten()),
            model_wants_rgb=bool(pre._channel_conversion),
            flip_indices=tuple(int(i) for i in model.dataset_meta["flip_indices"]),
            shift_heatmap=bool(test_cfg.get("shift_heatmap", False)),
            scale_factor=(float(codec.scale_factor[0]), float(codec.scale_factor[1])),
        )

    @staticmethod
    def check(model) -> None:
        """Refuse (:class:`UnsupportedTopdownConfig`) a model whose config asks for what this path does
        not reproduce; reads only the config and the modules' settings, so a meta-device model
        (before any clip is decoded) will do."""
        from mmpose.codecs import MSRAHeatmap

        def refuse(what: str):
            raise UnsupportedTopdownConfig(f"the batched top-down path does not reproduce {what}; "
                                           "use mmpose's td-hm (MSRA heatmap, non-UDP) configs")

        pipeline = list(model.cfg.test_dataloader.dataset.pipeline)
        kinds = [t["type"].split(".")[-1] for t in pipeline]
        if kinds != ["LoadImage", "GetBBoxCenterScale", "TopdownAffine", "PackPoseInputs"]:
            refuse(f"the test pipeline {kinds}")
        affine = pipeline[2]
        if affine.get("use_udp", False):
            refuse("UDP (TopdownAffine use_udp=True)")
        codec = model.head.decoder
        dark = bool(getattr(codec, "unbiased", False))  # (a SimCC or regression codec has no such flag)
        if type(codec) is not MSRAHeatmap or dark:
            refuse(f"the codec {type(codec).__name__}{' with DARK (unbiased)' if dark else ''}")
        if tuple(affine["input_size"]) != tuple(codec.input_size):
            refuse(f"TopdownAffine input_size {affine['input_size']} != codec input_size {codec.input_size}")
        test_cfg = dict(model.test_cfg or {})
        if test_cfg.get("flip_test", False) and test_cfg.get("flip_mode", "heatmap") != "heatmap":
            refuse(f"flip_mode={test_cfg['flip_mode']!r}")
        if test_cfg.get("output_keypoint_indices") is not None:
            refuse("output_keypoint_indices")
        pre = model.data_preprocessor
        if not getattr(pre, "_enable_normalize", False):
            refuse("a data preprocessor without mean/std")


# -- boxes -> crops ---------------------------------------------------------------------------------
def boxes_to_center_scale(boxes: np.ndarray, spec: TopdownSpec) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xyxy float32 boxes -> centres and aspect-fixed scales (N, 2) float32, as mmpose's
    ``GetBBoxCenterScale`` then ``TopdownAffine`` make them."""
    from mmpose.datasets.transforms import TopdownAffine
    from mmpose.structures.bbox import bbox_xyxy2cs

    center, scale = bbox_xyxy2cs(np.asarray(boxes, np.float32).reshape(-1, 4), padding=spec.padding)
    w, h = spec.input_size
    return center, TopdownAffine._fix_aspect_ratio(scale, aspect_ratio=w / h)


def warp_tables(center: np.ndarray, scale: np.ndarray, spec: TopdownSpec) -> tuple[np.ndarray, ...]:
    """OpenCV's fixed-point source coordinates of each crop, from mmpose's warp matrices.

    Returns ``x0, y0`` (N, h): per output row, and ``adelta, bdelta`` (N, w): per output column,
    int64 in 1/1024 px; the source position of output pixel (row i, column j) is
    ``((x0[i] + adelta[j]) >> 5, (y0[i] + bdelta[j]) >> 5)`` in 1/32 px (cv::warpAffine's
    WarpAffineInvoker). Computed in float64 numpy with the same operations in the same order.
    """
    from mmpose.structures.bbox import get_warp_matrix

    w, h = spec.input_size
    n = len(center)
    m = np.empty((n, 2, 3), np.float64)
    for i in range(n):
        m[i] = get_warp_matrix(center[i], scale[i], 0.0, output_size=(w, h))
    m0, m1, m2, m3, m4, m5 = (m[:, r, c] for r, c in ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)))
    with np.errstate(divide="ignore"):
        det = m0 * m4 - m1 * m3
        d = np.where(det != 0, 1.0 / np.where(det != 0, det, 1.0), 0.0)
    i0, i1, i3, i4 = m4 * d, m1 * -d, m3 * -d, m0 * d
    b1 = -i0 * m2 - i1 * m5
    b2 = -i3 * m2 - i4 * m5
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    scale_ab = float(1 << _AB_BITS)

    def cv_round(v: np.ndarray) -> np.ndarray:  # saturate_cast<int>(double): round half to even
        return np.clip(np.rint(v), -(2 ** 31), 2 ** 31 - 1).astype(np.int64)

    adelta = cv_round(i0[:, None] * xs * scale_ab)
    bdelta = cv_round(i3[:, None] * xs * scale_ab)
    x0 = cv_round((i1[:, None] * ys + b1[:, None]) * scale_ab) + _ROUND_DELTA
    y0 = cv_round((i4[:, None] * ys + b2[:, None]) * scale_ab) + _ROUND_DELTA
    return x0, y0, adelta, bdelta


def warp_crops(frames, frame_index, tables: tuple[np.ndarray, ...]):
    """``cv2.warpAffine(frame, M, (w, h), flags=INTER_LINEAR)`` for every box, bit for bit, batched.

    ``frames``: (B, H, W, C) uint8 tensor on the device; ``frame_index``: (N,) int64 tensor, the
    frame of each box; ``tables``: :func:`warp_tables`. Returns (N, h, w, C) uint8 on the device.
    Integer arithmetic only, so every device gives the same bytes.
    """
    import torch

    dev = frames.device
    b, hs, ws, c = frames.shape
    x0, y0, adelta, bdelta = (torch.from_numpy(t).to(dev) for t in tables)
    shift = _AB_BITS - _INTER_BITS
    xq = (x0[:, :, None] + adelta[:, None, :]) >> shift  # (N, h, w) source x in 1/32 px
    yq = (y0[:, :, None] + bdelta[:, None, :]) >> shift
    one, mask = 1 << _INTER_BITS, (1 << _INTER_BITS) - 1
    ix, fx = xq >> _INTER_BITS, (xq & mask).to(torch.int32)
    iy, fy = yq >> _INTER_BITS, (yq & mask).to(torch.int32)
    n, h, w = ix.shape
    # A tap outside the frame reads 0 (BORDER_CONSTANT): its weight is zeroed, its index clamped.
    wx = ((one - fx) * ((ix >= 0) & (ix < ws)), fx * ((ix >= -1) & (ix < ws - 1)))
    wy = ((one - fy) * ((iy >= 0) & (iy < hs)), fy * ((iy >= -1) & (iy < hs - 1)))
    cols = (ix.clamp(0, ws - 1), (ix + 1).clamp(0, ws - 1))
    base = frame_index.to(dev).view(-1, 1, 1) * (hs * ws)
    rows = (base + iy.clamp(0, hs - 1) * ws, base + (iy + 1).clamp(0, hs - 1) * ws)
    pixels = frames.reshape(b * hs * ws, c)
    acc = None
    for dy in (0, 1):
        for dx in (0, 1):
            tap = pixels.index_select(0, (rows[dy] + cols[dx]).view(-1)).to(torch.int32)
            term = tap * (wy[dy] * wx[dx]).view(-1, 1)
            acc = term if acc is None else acc.add_(term)
    # OpenCV: (sum of tap * wy * wx * 32 + 2**14) >> 15, i.e. (sum of tap * wy * wx + 512) >> 10.
    bits = 2 * _INTER_BITS
    return ((acc + (1 << (bits - 1))) >> bits).to(torch.uint8).view(n, h, w, c)


def normalize_crops(crops, spec: TopdownSpec):
    """(N, h, w, 3) uint8 RGB crops -> (N, 3, h, w) float32 model inputs, as the data preprocessor."""
    import torch

    x = crops.permute(0, 3, 1, 2)
    if not spec.model_wants_rgb:
        x = x.flip(1)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=crops.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=crops.device).view(1, -1, 1, 1)
    return ((x.float() - mean) / std).contiguous()


# -- model -> heatmaps -> keypoints -------------------------------------------------------------------
def predict_heatmaps(model, inputs, spec: TopdownSpec, flip_test: bool, autocast_dtype=None):
    """Heatmaps (N, K, h, w) float32 of ``TopdownPoseEstimator.predict``; with the flip test the
    original and flipped crops share one forward pass of 2N."""
    import torch

    n = inputs.shape[0]
    x = torch.cat([inputs, inputs.flip(-1)]) if flip_test else inputs
    with torch.autocast(inputs.device.type, dtype=autocast_dtype or torch.float32,
                        enabled=autocast_dtype is not None):
        hm = model.head.forward(model.extract_feat(x))
    hm = hm.float()
    if not flip_test:
        return hm
    flipped = hm[n:].flip(-1)[:, list(spec.flip_indices)]
    if spec.shift_heatmap:
        flipped[..., 1:] = flipped[..., :-1].clone()
    return (hm[:n] + flipped) * 0.5


def decode_heatmaps(heatmaps, spec: TopdownSpec):
    """``MSRAHeatmap.decode`` (unbiased=False) for a batch: keypoints (N, K, 2) in crop pixels and
    scores (N, K), both float32 tensors on the heatmaps' device."""
    import torch

    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    idx = flat.argmax(-1)  # the first maximum, as np.argmax
    vals = flat.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    x, y = idx % w, idx // w
    unset = vals <= 0  # get_heatmap_maximum: no positive response -> location -1
    x = torch.where(unset, torch.full_like(x, -1), x)
    y = torch.where(unset, torch.full_like(y, -1), y)

    def at(yy, xx):
        return flat.gather(-1, (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).unsqueeze(-1)).squeeze(-1)

    # refine_keypoints' bounds, asymmetric as in mmpose: dx needs 1 < x < W-1 and 0 < y < H.
    dx = torch.where((x > 1) & (x < w - 1) & (y > 0) & (y < h), at(y, x + 1) - at(y, x - 1), 0.0)
    dy = torch.where((y > 1) & (y < h - 1) & (x > 0) & (x < w), at(y + 1, x) - at(y - 1, x), 0.0)
    kp = torch.stack([x.float() + torch.sign(dx) * 0.25, y.float() + torch.sign(dy) * 0.25], -1)
    kp = kp * torch.tensor(spec.scale_factor, dtype=torch.float32, device=kp.device)
    return kp, vals


def to_image_coordinates(kp_input: np.ndarray, center: np.ndarray, scale: np.ndarray,
                         spec: TopdownSpec) -> np.ndarray:
    """Crop pixels -> image pixels (``TopdownPoseEstimator.add_pred_to_datasample``), float32."""
    size = np.array(spec.input_size)
    c, s = center[:, None, :], scale[:, None, :]
    return (kp_input / size * s + c - 0.5 * s).astype(np.float32)


def topdown_keypoints(model, spec: TopdownSpec, frames, frame_index, boxes: np.ndarray, flip_test: bool,
                      autocast_dtype=None, pad_to: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, K, 2) in image pixels and raw scores (N, K) for ``boxes`` (N, 4) xyxy in
    ``frames`` (B, H, W, 3) uint8 RGB on the model's device, box n in frame ``frame_index[n]``.

    ``pad_to``: run the network on a multiple of this many crops (the pad crops are dropped), so a
    device that tunes kernels per input shape (cudnn.benchmark) sees few shapes.
    """
    import torch

    center, scale = boxes_to_center_scale(boxes, spec)
    crops = warp_crops(frames, frame_index, warp_tables(center, scale, spec))
    inputs = normalize_crops(crops, spec)
    n = inputs.shape[0]
    extra = -n % max(1, pad_to)
    if extra:
        inputs = torch.cat([inputs, inputs.new_zeros((extra,) + tuple(inputs.shape[1:]))])
    heatmaps = predict_heatmaps(model, inputs, spec, flip_test, autocast_dtype)[:n]
    kp, scores = decode_heatmaps(heatmaps, spec)
    kp_img = to_image_coordinates(kp.cpu().numpy(), center, scale, spec)
    return kp_img, scores.cpu().numpy()


def frames_on_device(images: list[np.ndarray], device) -> tuple[object, object]:
    """The distinct frames of ``images`` as one (B, H, W, 3) uint8 tensor on ``device``, and the
    frame index of each image. Frames are copied one by one (no host-side stacking of big frames)."""
    import torch

    if not images:
        raise ValueError("no frames")
    shape = images[0].shape
    for i, img in enumerate(images):
        if img.shape != shape or img.dtype != np.uint8:
            raise ValueError(f"frame {i}: {img.dtype} {img.shape}, expected uint8 {shape} like frame 0")
    dev = torch.device(device)
    if dev.type == "cpu":
        frames = torch.from_numpy(np.stack(images))
    else:
        with warnings.catch_warnings():  # frames straight from ffmpeg's pipe are read-only; only read here
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            frames = torch.stack([torch.from_numpy(np.ascontiguousarray(img)).to(dev, non_blocking=True)
                                  for img in images])
    return frames, torch.arange(len(images), device=dev)


def autocast_dtype_for(precision: str) -> Optional[object]:
    """``fp32`` -> None (no autocast), ``fp16`` / ``bf16`` -> the torch dtype."""
    import torch

    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
