"""Which ffmpeg binary stage one runs: the static one inside the ``imageio-ffmpeg`` wheel unless
``$PEVL_FFMPEG`` names another, so a plain ``pip install`` brings everything needed."""
from __future__ import annotations

import os


def ffmpeg_exe() -> str:
    exe = os.environ.get("PEVL_FFMPEG")
    if exe:
        return exe
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
