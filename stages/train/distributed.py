"""Where a run executes: the device, and the process group under ``torchrun`` (NCCL on GPUs, gloo on CPU)."""
from __future__ import annotations

import os
from typing import Optional

import torch
from mmengine.dist import is_distributed

from stages.devices import resolve_device_name


def init_distributed(launcher: str) -> None:
    """Start the process group for ``launcher='pytorch'`` (torchrun): NCCL with CUDA, else gloo.

    mmengine would always pin a CUDA device first; on CPU machines that fails, so the group is
    started here and mmengine finds it already initialised."""
    if launcher == "none" or is_distributed():
        return
    import torch.distributed as dist

    if launcher != "pytorch":
        raise ValueError(f"launcher must be 'none' or 'pytorch', got {launcher!r}")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")


def resolve_device(device: Optional[str]) -> str:
    """``cpu`` or ``cuda`` for the runner (default: cuda when visible); ``cuda:N`` makes GPU N the
    current device, where mmengine places the model (:func:`stages.devices.resolve_device_name`
    refuses anything else)."""
    device = resolve_device_name(device)  # checked
    if device.startswith("cuda:"):
        torch.cuda.set_device(int(device.partition(":")[2]))
    return "cuda" if device.startswith("cuda") else "cpu"


def broadcast_from_rank0(value):
    """Rank 0's ``value`` (picklable) on every rank, so that all of them take the same branch."""
    from mmengine.dist import broadcast_object_list

    box = [value]
    broadcast_object_list(box, src=0)
    return box[0]
