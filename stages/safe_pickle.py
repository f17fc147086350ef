"""Reading pickles from shared places without running their code.

Pickle is code execution. Every pickle this project reads from a shared place (mmaction2/pyskl
skeleton files, FineGym box files) goes through :class:`RestrictedUnpickler`: it resolves nothing
but numpy's array/dtype/scalar reconstructors and a few plain builtin containers (see
:data:`ALLOWED_GLOBALS`). Any other global (``os.system``, ``builtins.eval``,
``subprocess.Popen``, a class of some package ...) raises :class:`pickle.UnpicklingError` before
anything is called, so a crafted file cannot run code.

Nor can it exhaust memory: a pickle may ask for far more than it holds (a ``BINBYTES8`` that
declares a terabyte, ``bytes(10**12)``, ``_reconstruct(ndarray, (10**12,), ...)``, an object
array's state of a billion slots). Before anything is built, the opcode stream is scanned and
every length it declares is checked against the bytes that follow; while loading, the callables
that allocate by a number (``bytes``/``bytearray`` of an int, numpy's array reconstructor) are
bounded by the pickle's own size (a real pickle's arrays are in its bytes); object arrays are
refused (numpy sizes them before reading their items, and data files have none); and an
``ndarray`` is never constructed directly. Each refusal is an :class:`pickle.UnpicklingError`
that says what was asked for.
"""
from __future__ import annotations

import _compat_pickle
import io
import math
import mmap
import pickle
import pickletools
import struct
from typing import Any

import numpy as np

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


MIN_ALLOCATION_LIMIT = 1 << 20  # what any pickle may allocate by a number, however small it is


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` inside a pickle: numpy's reconstructor takes it as an argument
    (and gets the real class), but calling it, i.e. building an array of any shape, is refused."""

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("refusing to construct a numpy array directly (numpy's own pickles never do)")


_NDARRAY = _NdarrayClass()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits numpy arrays and plain containers only, and bounds what they allocate
    by ``max_bytes`` (the pickle's size; see the module docstring)."""

    def __init__(self, file, max_bytes: int = MIN_ALLOCATION_LIMIT):
        super().__init__(file)
        self.max_bytes = max(int(max_bytes), MIN_ALLOCATION_LIMIT)

    def _too_big(self, what: str, nbytes: float) -> pickle.UnpicklingError:
        return pickle.UnpicklingError(
            f"refusing {what}: it would take {nbytes:,.0f} bytes, more than this pickle of at most "
            f"{self.max_bytes:,} bytes can hold (a crafted file?)")

    def _guard(self, name: str, obj: Any) -> Any:
        if obj is np.ndarray:
            return _NDARRAY
        if obj is np.dtype:
            def dtype(*args):
                dt = np.dtype(*args)
                if dt.hasobject:
                    raise pickle.UnpicklingError("refusing an object array (dtype 'O'): pickles from shared "
                                                 "places may hold numeric arrays only")
                return dt
            return dtype
        if name == "_reconstruct":
            def reconstruct(subtype, shape, dtype_code):
                shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
                if subtype is not _NDARRAY or not all(isinstance(d, int) and d >= 0 for d in shape):
                    raise pickle.UnpicklingError(f"refusing numpy._reconstruct({subtype!r}, {shape!r}, ...)")
                nbytes = math.prod(shape) * np.dtype(dtype_code).itemsize
                if nbytes > self.max_bytes:
                    raise self._too_big(f"an array of shape {shape}", nbytes)
                return obj(np.ndarray, shape, dtype_code)
            return reconstruct
        if obj in (bytes, bytearray):
            def sized(*args):
                if args and isinstance(args[0], int) and not isinstance(args[0], bool) and (
                        args[0] < 0 or args[0] > self.max_bytes):
                    raise self._too_big(f"{obj.__name__}({args[0]})", args[0])
                return obj(*args)
            return sized
        return obj

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
        return self._guard(name, super().find_class(module, name))

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in a pickle from a shared place")


def _has_module(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def _opcode_table() -> dict[int, tuple[str, int, int]]:
    """opcode byte -> (name, how its argument is laid out, fixed size) from :mod:`pickletools`."""
    table = {}
    for op in pickletools.opcodes:
        arg = op.arg
        if arg is None:
            kind, n = "none", 0
        elif arg.name == "stringnl_noescape_pair":
            kind, n = "lines", 2
        elif arg.n == pickletools.UP_TO_NEWLINE:
            kind, n = "lines", 1
        elif arg.n >= 0:
            kind, n = "fixed", arg.n
        else:  # a length prefix of 1, 4 (signed or not) or 8 bytes, then that many bytes
            kind, n = {pickletools.TAKEN_FROM_ARGUMENT1: ("<B", 1), pickletools.TAKEN_FROM_ARGUMENT4: ("<i", 4),
                       pickletools.TAKEN_FROM_ARGUMENT4U: ("<I", 4), pickletools.TAKEN_FROM_ARGUMENT8U: ("<Q", 8)}[arg.n]
        table[op.code.encode("latin-1")[0]] = (op.name, kind, n)
    return table


_OPCODES = _opcode_table()


def check_declared_lengths(buf, start: int = 0) -> None:
    """Walk one pickle's opcodes in ``buf`` (bytes or an mmap) from ``start`` without building
    anything; :class:`pickle.UnpicklingError` if a declared length (or a protocol-4 frame) runs past
    the end, i.e. asks for more memory than the file holds."""
    end, pos = len(buf), start
    while pos < end:
        op = _OPCODES.get(buf[pos])
        if op is None:
            raise pickle.UnpicklingError(f"not a well-formed pickle: unknown opcode {buf[pos]:#04x} at byte {pos}")
        name, kind, n = op
        pos += 1
        if kind == "fixed":
            if name == "FRAME" and pos + 8 <= end:
                (size,) = struct.unpack_from("<Q", buf, pos)
                if size > end - pos - 8:
                    raise pickle.UnpicklingError(
                        f"refusing a pickle frame of {size:,} bytes with {end - pos - 8:,} bytes left in the file")
            pos += n
        elif kind == "lines":
            for _ in range(n):
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    raise pickle.UnpicklingError(f"not a well-formed pickle: {name} at byte {pos - 1} has no end")
                pos = nl + 1
        elif kind != "none":
            if pos + n > end:
                break
            (size,) = struct.unpack_from(kind, buf, pos)
            pos += n
            if size < 0 or size > end - pos:
                raise pickle.UnpicklingError(
                    f"refusing a pickle that declares a {size:,}-byte object ({name}) with {end - pos:,} bytes "
                    "left in it (a truncated or crafted file)")
            pos += size
        if name == "STOP":
            return
    raise pickle.UnpicklingError("not a well-formed pickle: it ends before its STOP opcode (truncated?)")


def restricted_load(fileobj_or_bytes: Any) -> Any:
    """Unpickle from bytes or a binary file object through :class:`RestrictedUnpickler`, after
    :func:`check_declared_lengths` (a file is mapped for that scan, then read once)."""
    if isinstance(fileobj_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(fileobj_or_bytes)
        check_declared_lengths(data)
        return RestrictedUnpickler(io.BytesIO(data), max_bytes=len(data)).load()
    f = fileobj_or_bytes
    start = f.tell()
    size = f.seek(0, io.SEEK_END) - start
    f.seek(start)
    try:
        view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # not a real file: read it
        view = f.read()
        f.seek(start)
        start = 0
    try:
        check_declared_lengths(view, start)
    finally:
        if isinstance(view, mmap.mmap):
            view.close()
    return RestrictedUnpickler(f, max_bytes=size).load()


