"""Where PeVL leaves the autocast dtype: small tensors whose precision matters (issue: fp16/bf16).

Under ``torch.autocast`` (``train.amp`` = 'bfloat16' or 'float16') the encoders run in the low
dtype. The P2V pose mask, the V2P grouping, the similarities of eq. (4), the strength
coefficients of eq. (5) and every loss are computed in float32 with autocast off: they are small,
and in bf16 the logits are quantised and the coefficients err by 1-3 %; in fp16 a frame's mask
maximum can underflow.
"""
from __future__ import annotations

import contextlib

import torch

_AUTOCAST_DEVICES = ("cuda", "cpu", "xpu", "mps")


def float32_region(like: torch.Tensor):
    """A context in which autocast is off for ``like``'s device (a no-op on other devices, e.g. the
    ``meta`` device of the FLOP counter). Cast the inputs with ``.float()`` inside it."""
    dev = like.device.type
    if dev in _AUTOCAST_DEVICES:
        return torch.autocast(device_type=dev, enabled=False)
    return contextlib.nullcontext()
