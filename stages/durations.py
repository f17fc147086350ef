"""A duration as a person reads it in a progress or epoch line (``45s``, ``3m07s``, ``2h05m``): the one
spelling the CLI's progress lines and the training log share. Light: no imports beyond the standard library."""
from __future__ import annotations

import math


def duration_text(seconds: float) -> str:
    """``seconds`` rounded to whole seconds, in the largest two units; ``?`` when not finite."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
