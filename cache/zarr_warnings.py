"""zarr-python's warnings about what it writes on purpose, silenced where it writes them."""
from __future__ import annotations

import contextlib
import warnings


@contextlib.contextmanager
def known_zarr_warnings_quiet():
    """zarr-python warns that consolidated metadata and variable-length bytes are not (yet) in the
    Zarr v3 spec; it writes and reads both, and docs/cache.md says what other readers need."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", module="zarr")
        warnings.filterwarnings("ignore", message="The data type .*VariableLengthBytes", module="zarr")
        yield
