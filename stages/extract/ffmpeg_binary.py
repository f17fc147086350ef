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


def ffmpeg_path(path: "os.PathLike | str") -> str:
    """A file name as ffmpeg's command line takes it: absolute, so that neither a leading ``-``
    (read as an option: YouTube ids such as ``-2bEVO4ULvs``) nor a ``:`` before any ``/`` (read
    as a protocol: ``clip:1.mp4``) is misread. Not normalised: ``link/../x.mp4`` goes through the
    link's target, as the OS opens it."""
    path = os.fspath(path)
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
