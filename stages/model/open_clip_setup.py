"""open_clip, imported behind the torchvision guard, with the project's tiny config registered once.

A leaf of :mod:`stages.model`: :mod:`.clip_loader` (building CLIPs) and :mod:`.clip_weights`
(reading weight files) both need open_clip's model and pretrained tables.
"""
from __future__ import annotations

from pathlib import Path

from stages.compat import ensure_torchvision

TINY_ARCH = "PeVL-tiny"
_TINY_JSON = Path(__file__).with_name("PeVL-tiny.json")
_REGISTERED = False


def open_clip_module():
    """Import open_clip behind the torchvision guard and register the project's tiny config once."""
    global _REGISTERED
    ensure_torchvision()
    import open_clip

    if not _REGISTERED:
        if TINY_ARCH not in open_clip.list_models():
            open_clip.add_model_config(_TINY_JSON)  # registered under the file stem, "PeVL-tiny"
        _REGISTERED = True
    return open_clip
