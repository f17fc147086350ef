"""Loading checkpoints safely: ``weights_only=True`` with exactly the types mmengine's own checkpoints
hold admitted, never a blanket unpickler."""
from __future__ import annotations

import torch


def checkpoint_safe_globals():
    """torch >= 2.6 loads with ``weights_only=True``; mmengine checkpoints also hold the message
    hub (``HistoryBuffer`` of numpy arrays). Admit exactly those types, not arbitrary pickles."""
    import builtins

    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    if int(np.__version__.split(".")[0]) >= 2:
        from numpy._core import multiarray as ma
    else:
        from numpy.core import multiarray as ma
    allowed = [HistoryBuffer, ma.scalar, ma._reconstruct, np.ndarray, np.dtype,
               builtins.getattr]
    allowed += list({type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64,
                                                  np.uint8, np.bool_)})
    return torch.serialization.safe_globals(allowed)
