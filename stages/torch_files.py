"""Whether a weight file is whole, before ``torch.load`` trusts its bytes.

``torch.load`` reads a zip archive (``torch.save`` since torch 1.6, OpenAI's TorchScript CLIP
files, Hugging Face ``pytorch_model.bin``) without checking its members' CRCs, so a copy whose
bytes rotted inside a tensor, or one cut short past the archive's index, loads as other weights
without a word. Two checks, used by every loader of this project's weight files (checkpoints,
CLIP weights, pose and detector checkpoints):

* :func:`zip_problem`: every member's CRC (what ``unzip -t`` does); files of the older,
  non-zip ``torch.save`` format (mmpose 0.x's 2020 releases) have none to check;
* :func:`name_hash_problem`: OpenMMLab's release names carry the first 8 hex digits of the file's
  sha256 (``hrnet_w32_coco_256x192-c78dce93_20200708.pth``); a file under such a name whose
  sha256 does not begin with them is damaged or is not that release.

And what ``torch.load(weights_only=True)`` may build beyond tensors (:func:`safe_globals`: the
numpy arrays and scalars mmcv/mmengine put in a checkpoint's ``meta`` and message hub, nothing
else), and what to say when it refuses a file (:func:`weights_only_refusal`).
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import Callable, Optional, Union

#: OpenMMLab model zoos' names, the sha256 prefix beside a date: ``<name>-<sha8>_<yyyymmdd>.pth``
#: (mmpose: ``hrnet_w32_coco_256x192-c78dce93_20200708.pth``) or ``<name>_<yyyymmdd>[_<hhmmss>]-<sha8>.pth``
#: (mmdet: ``faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth``). Without the date a name such as
#: ``hrnet_finetuned-20240315.pth`` (a date of eight digits, all hex) would be taken for one.
RELEASE_NAME_RE = re.compile(r"(?:-(?P<sha>[0-9a-f]{8})_\d{8}|_\d{8}(?:_\d{6})?-(?P<sha2>[0-9a-f]{8}))\.pth$")


def zip_problem(source: Union[os.PathLike, str, bytes],
                members: Optional[Callable[[str], bool]] = None) -> Optional[str]:
    """None when ``source`` (a path, or the file's bytes) is not a zip archive (nothing to check)
    or is one whose every member's CRC is right; else what is wrong (a damaged member, an archive
    cut short). ``members``: check only the members whose names it accepts (the archive's index is
    read whole either way)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        f, starts = io.BytesIO(source), bytes(source[:4])
    else:
        f = Path(source)
        with open(f, "rb") as fh:
            starts = fh.read(4)
    if starts != b"PK\x03\x04":
        return None
    try:
        with zipfile.ZipFile(f) as z:
            bad = z.testzip() if members is None else _first_bad_member(z, members)
    except (zipfile.BadZipFile, EOFError) as e:
        return f"a zip archive cut short or damaged ({e})"
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError) as e:
        return f"a zip archive that cannot be checked ({e})"
    return f"damaged: the CRC of member {bad} is wrong" if bad is not None else None


def _first_bad_member(z: zipfile.ZipFile, members: Callable[[str], bool]) -> Optional[str]:
    """The first member ``members`` accepts whose CRC is wrong (read to its end: ``zipfile`` checks
    the CRC there), as :meth:`zipfile.ZipFile.testzip` does for all."""
    for info in z.infolist():
        if not members(info.filename):
            continue
        try:
            with z.open(info) as m:
                while m.read(1 << 20):
                    pass
        except zipfile.BadZipFile:
            return info.filename
    return None


def name_hash_problem(path: Union[os.PathLike, str], sha256: str) -> Optional[str]:
    """None unless ``path``'s name carries a release's sha256 prefix that ``sha256`` (the file's)
    does not begin with."""
    m = RELEASE_NAME_RE.search(Path(path).name)
    prefix = m and (m.group("sha") or m.group("sha2"))
    if prefix and not sha256.startswith(prefix):
        return (f"its name carries the sha256 prefix {prefix} of the released file, but its sha256 is "
                f"{sha256[:12]}...: the copy is damaged, or another file under the release's name")
    return None


def _history_buffer_method(owner, name: str):
    """What ``builtins.getattr`` may do in a checkpoint: name one of ``HistoryBuffer``'s own methods
    (its ``statistics_methods``, pickled at protocol 2 as ``getattr(HistoryBuffer, 'mean')``). A
    getattr that may name anything would hand any object reachable from the allowed types to
    whatever the file builds next."""
    import pickle

    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and not name.startswith("_") and callable(vars(HistoryBuffer).get(name)):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"getattr({getattr(owner, '__name__', type(owner).__name__)}, {name!r}) is not "
                                 "one of HistoryBuffer's methods: refused (what an mmengine checkpoint never holds)")


def safe_globals():
    """A context in which ``torch.load(weights_only=True)`` also builds what mmcv and mmengine
    checkpoints hold beside their tensors: numpy arrays, dtypes and scalars (mmcv 1.x ``meta``,
    e.g. mmpose 0.x's ``hook_msgs``) and mmengine's ``HistoryBuffer`` (the message hub of a
    training checkpoint, mmpose 1.x's included). Exactly those types, never arbitrary pickles."""
    import numpy as np
    import torch
    from mmengine.logging.history_buffer import HistoryBuffer

    if int(np.__version__.split(".")[0]) >= 2:
        from numpy._core import multiarray as ma
    else:
        from numpy.core import multiarray as ma
    allowed = [HistoryBuffer, ma.scalar, ma._reconstruct, np.ndarray, np.dtype,
               (_history_buffer_method, "builtins.getattr")]
    allowed += list({type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "b1", "U", "O")})
    return torch.serialization.safe_globals(allowed)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def weights_only_refusal(e: BaseException) -> str:
    """What ``torch.load(weights_only=True)``'s error says, in one line: the global it refused
    (``argparse.Namespace``, a training library's class), else its first line, without colour codes."""
    text = _ANSI.sub("", str(e)).strip()
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return (f"it pickles {m.group(1)}, which torch.load(weights_only=True) does not build (the weights may be "
                "saved beside a training run's objects: keep only its state_dict, torch.save(ckpt['state_dict'], ...))")
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
