"""Reading pickles from shared places without running their code.

Pickle is code execution. Every pickle this project reads from a shared place (mmaction2/pyskl
skeleton files, FineGym box files) goes through :class:`RestrictedUnpickler`: it resolves nothing
but numpy's array/dtype/scalar reconstructors and a few plain builtin containers (see
:data:`ALLOWED_GLOBALS`). Any other global (``os.system``, ``builtins.eval``,
``subprocess.Popen``, a class of some package ...) raises :class:`pickle.UnpicklingError` before
anything is called, so a crafted file cannot run code.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
from typing import Any

# (module, name) pairs a pickle may reference. numpy 2 writes ``numpy._core``; numpy 1
# writes ``numpy.core``; both spellings are admitted and resolved to what the installed numpy has.
_NUMPY_NAMES = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),  # protocol-5 arrays
}
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {(f"numpy.{core}.{mod}", name) for core in ("core", "_core") for mod, name in _NUMPY_NAMES}
    | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "ndarray"),
        ("numpy._core.multiarray", "ndarray"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how protocol<=2 pickles spell bytes (str -> latin-1 bytes)
    }
    | {
        ("builtins", n)
        for n in ("set", "frozenset", "slice", "complex", "list", "dict", "tuple",
                  "int", "float", "str", "bytes", "bytearray", "bool")
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits numpy arrays and plain containers only."""

    def find_class(self, module: str, name: str) -> Any:
        # Python-2 spellings (``__builtin__.set`` in protocol <= 2), mapped as pickle does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: pickles from shared places may contain only "
                "numpy arrays and plain containers (this file may try to run code)"
            )
        if module.startswith("numpy._core") and not _has_module(module):
            module = module.replace("numpy._core", "numpy.core", 1)  # numpy-2 pickle on numpy 1
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in a pickle from a shared place")


def _has_module(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def restricted_load(fileobj_or_bytes: Any) -> Any:
    """Unpickle from bytes or a binary file object through :class:`RestrictedUnpickler`."""
    if isinstance(fileobj_or_bytes, (bytes, bytearray, memoryview)):
        fileobj_or_bytes = io.BytesIO(bytes(fileobj_or_bytes))
    return RestrictedUnpickler(fileobj_or_bytes).load()


