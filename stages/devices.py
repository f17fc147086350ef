"""Which device a command runs on: the one check of a ``--device`` value, for every command."""
from __future__ import annotations

import re
from typing import Optional

_NAME = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def check_device(device: Optional[str], flag: str = "--device") -> None:
    """Refuse a ``device`` other than ``cpu``, ``cuda`` or ``cuda:N`` (a typo such as ``gpu`` ran
    on the CPU without a word), or a CUDA device torch cannot see. None, "" and "auto" pass: the
    command's default."""
    if device in (None, "", "auto"):
        return
    m = _NAME.match(str(device).strip())
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise ValueError(f"{flag} {device}: want cpu, cuda or cuda:N")
    if m.group(1) == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"{flag} {device}: torch sees no CUDA device (a CPU-only torch build, or "
                         "CUDA_VISIBLE_DEVICES hides the GPUs)")
    if m.group(2) is not None and int(m.group(2)) >= torch.cuda.device_count():
        raise ValueError(f"{flag} {device}: only {torch.cuda.device_count()} CUDA device(s) visible")


def resolve_device_name(device: Optional[str]) -> str:
    """The device a command uses: ``device`` checked (:func:`check_device`), or for None, "" and
    "auto" ``cuda`` when torch sees one, else ``cpu`` (torch itself takes no "auto")."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return str(device).strip()
