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
refused (numpy sizes them before reading their items, and data files have none); an
``ndarray`` is never constructed directly; and text conversions (``str``, ``bytes``,
``bytearray``, ``_codecs.encode``) take only the forms that give no more characters or bytes than
they are given (a chain of ``_codecs.encode(x, 'hex_codec')``, or of ``bytes(str(b, 'latin-1'),
'utf-32')``, doubles or quadruples at each step: 849 bytes asked for 4 GiB). Each refusal is an
:class:`pickle.UnpicklingError` that says what was asked for.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import io
import math
import mmap
import pickle
import pickletools
import struct
from typing import Any, Optional

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

#: text codecs that give one byte per character and back: the only ones a pickle's str -> bytes
#: conversions may use (protocol <= 2 writes bytes as ``_codecs.encode(text, 'latin1')``)
_ONE_BYTE_CODECS = frozenset({"iso8859-1", "ascii"})
#: ... and for bytes -> str, codecs that give at most one character per byte
_DECODING_CODECS = _ONE_BYTE_CODECS | {"utf-8"}
#: error handlers that put at most one character or byte where one was
_SAME_SIZE_ERRORS = ("strict", "ignore", "replace", "surrogateescape")
#: what ``str(x)`` may be given alone (a container's text can be far larger than the pickle)
_SCALARS = (str, int, float, bool, complex, type(None))


def _codec_name(encoding: Any) -> Optional[str]:
    try:
        return codecs.lookup(encoding).name if isinstance(encoding, str) else None
    except LookupError:
        return None


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
        # latin-1 for Python 2's str (numpy arrays' data in Python-2 pickles), as numpy advises: one
        # character per byte, so no text grows
        super().__init__(file, encoding="latin1")
        self.max_bytes = max(int(max_bytes), MIN_ALLOCATION_LIMIT)

    def _too_big(self, what: str, nbytes: float) -> pickle.UnpicklingError:
        return pickle.UnpicklingError(
            f"refusing {what}: it would take {nbytes:,.0f} bytes, more than this pickle of at most "
            f"{self.max_bytes:,} bytes can hold (a crafted file?)")

    def _guard(self, module: str, name: str, obj: Any) -> Any:
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
                if np.dtype(dtype_code).hasobject:
                    raise pickle.UnpicklingError("refusing an object array (dtype 'O'): pickles from shared "
                                                 "places may hold numeric arrays only")
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
                if len(args) > 1 or (args and isinstance(args[0], str)):
                    _text_conversion(f"{obj.__name__}(str, ...)", args[1:], _ONE_BYTE_CODECS)
                return obj(*args)
            return sized
        if obj is str:
            def text(*args):
                if len(args) > 1:
                    _text_conversion("str(bytes, ...)", args[1:], _DECODING_CODECS)
                elif args and not isinstance(args[0], _SCALARS):
                    raise pickle.UnpicklingError(f"refusing str() of a {type(args[0]).__name__} (a pickle's "
                                                 "data spells its text; a container's can be far larger)")
                return obj(*args)
            return text
        if name == "encode" and module == "_codecs":
            def encode(text, *args):
                if not isinstance(text, str):
                    raise pickle.UnpicklingError(f"refusing _codecs.encode of a {type(text).__name__} (pickles "
                                                 "encode text into bytes only)")
                _text_conversion("_codecs.encode", args, _ONE_BYTE_CODECS)
                return obj(text, *args)
            return encode
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
        return self._guard(module, name, super().find_class(module, name))

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in a pickle from a shared place")


def _text_conversion(what: str, args: tuple, allowed: frozenset) -> None:
    """Refuse a text conversion (``args``: encoding and errors, as given) by a codec outside
    ``allowed`` or an error handler that writes more than it replaces (``backslashreplace``):
    either may give more than it is given."""
    encoding = args[0] if args else "utf-8"
    if _codec_name(encoding) not in allowed:
        raise pickle.UnpicklingError(f"refusing {what} with encoding {encoding!r}: pickles from shared places may "
                                     f"convert text only by {', '.join(sorted(allowed))} (another codec can "
                                     "multiply what a small file holds)")
    if len(args) > 1 and args[1] not in _SAME_SIZE_ERRORS:
        raise pickle.UnpicklingError(f"refusing {what} with errors={args[1]!r} (one of {', '.join(_SAME_SIZE_ERRORS)})")


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


#: deepest nesting of containers a pickle from a shared place may hold (data files: about 8)
MAX_DEPTH = 100
#: objects any pickle may expand to, however small it is (see :func:`expansion_limit`)
MIN_EXPANSION_LIMIT = 1 << 20


def expansion_limit(nbytes: int) -> int:
    """How many objects a pickle of ``nbytes`` may expand to, counting an object once per
    reference to it. A pickle without shared references holds at most one object per opcode, so
    at most one per byte; shared small objects (a dtype, an ``img_shape`` tuple) add a little."""
    return max(MIN_EXPANSION_LIMIT, 4 * int(nbytes))


# What each opcode does to the unpickler's stack, for the structure check of
# :func:`check_declared_lengths`: the pickle machine run on shapes, nothing built.
(_LEAF, _NODE, _PUT, _MEMOIZE, _GET, _MARK, _SEQ, _TUPLE1, _TUPLE2, _TUPLE3, _DICT, _FROZENSET, _APPEND,
 _APPENDS, _SETITEM, _SETITEMS, _ADDITEMS, _BUILD, _CALL, _CALL_EX, _CALL_MARK, _STACK_GLOBAL, _BINPERSID,
 _POP, _POP_MARK, _DUP, _NOOP, _STOP) = range(28)
_ACTIONS = {
    **dict.fromkeys(("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
                     "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "NEXT_BUFFER",
                     "NONE", "NEWTRUE", "NEWFALSE", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
                     "FLOAT", "BINFLOAT", "EMPTY_TUPLE", "EXT1", "EXT2", "EXT4", "PERSID"), _LEAF),
    # objects later opcodes may fill (a GLOBAL too: BUILD may be applied to what it names)
    **dict.fromkeys(("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "GLOBAL"), _NODE),
    **dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT"), _PUT), "MEMOIZE": _MEMOIZE,
    **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), _GET), "MARK": _MARK,
    "TUPLE": _SEQ, "LIST": _SEQ, "TUPLE1": _TUPLE1, "TUPLE2": _TUPLE2, "TUPLE3": _TUPLE3, "DICT": _DICT,
    "FROZENSET": _FROZENSET, "APPEND": _APPEND, "APPENDS": _APPENDS, "SETITEM": _SETITEM, "SETITEMS": _SETITEMS,
    "ADDITEMS": _ADDITEMS, "BUILD": _BUILD, "REDUCE": _CALL, "NEWOBJ": _CALL, "NEWOBJ_EX": _CALL_EX,
    "OBJ": _CALL_MARK, "INST": _CALL_MARK, "STACK_GLOBAL": _STACK_GLOBAL, "BINPERSID": _BINPERSID, "POP": _POP,
    "POP_MARK": _POP_MARK, "DUP": _DUP, "PROTO": _NOOP, "FRAME": _NOOP, "READONLY_BUFFER": _NOOP, "STOP": _STOP,
}
_MEMO_ARG = {"BINPUT": "<B", "LONG_BINPUT": "<I", "BINGET": "<B", "LONG_BINGET": "<I"}
# opcode byte -> (name, argument layout, its size, action, memo index format or None); None: unknown
_TABLE = [None] * 256
for _code, (_name, _kind, _n) in _OPCODES.items():
    _TABLE[_code] = (_name, _kind, _n, _ACTIONS[_name], _MEMO_ARG.get(_name))


def _malformed(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"not a well-formed pickle: {what}")


def _expanded(obj, limit: int) -> int:
    """Objects in ``obj`` counted as a tree (a shared object once per reference), stopping past
    ``limit``; :class:`pickle.UnpicklingError` past :data:`MAX_DEPTH`. Shapes are
    ``[leaf count, child, ...]`` lists; a scalar is None."""
    if obj is None:
        return 1
    count, todo = 0, [(obj, 1)]
    while todo and count <= limit:
        node, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise pickle.UnpicklingError(
                f"refusing a pickle nested more than {MAX_DEPTH} containers deep (a crafted file?)")
        count += 1 + node[0]
        if len(node) > 1:
            todo.extend([(c, depth + 1) for c in node[1:]])
    return count


def check_declared_lengths(buf, start: int = 0, max_objects: Optional[int] = None) -> None:
    """Walk one pickle's opcodes in ``buf`` (bytes or an mmap) from ``start`` without building
    anything; :class:`pickle.UnpicklingError` if a declared length (or a protocol-4 frame) runs past
    the end, i.e. asks for more memory than the file holds, or if its structure is a bomb.

    The structure check runs the pickle machine on shapes: every container or call result is a
    list ``[leaf count, child, ...]`` whose identity memo references share, every scalar is None.
    Refused: a loaded object, or the dict keys, set items and call arguments hashed or walked
    while loading, that expand to more than ``max_objects`` (default :func:`expansion_limit` of
    the pickle's size) when every reference to a shared object counts (a list whose levels
    reference the one below twice doubles with each level; ``str()``, hashing and numpy's
    conversion walk every reference); nesting deeper than :data:`MAX_DEPTH`; a self-reference."""
    end, pos = len(buf), start
    limit = expansion_limit(end - start) if max_objects is None else max_objects
    charged = 0  # objects walked by the keys, set items and arguments met so far
    stack: list = []
    marks: list[int] = []
    floor = 0  # where the stack above the last MARK starts
    memo: dict[int, Any] = {}

    def charge(items) -> int:
        nonlocal charged
        for it in items:
            charged += 1 if it is None else _expanded(it, limit - charged)
        if charged > limit:
            raise pickle.UnpicklingError(
                f"refusing a pickle whose dict keys, set items and call arguments expand to more than "
                f"{limit:,} objects (the same objects referenced again and again: a crafted file?)")
        return charged

    def pop():
        if len(stack) <= floor:
            raise _malformed("it pops an empty stack")
        return stack.pop()

    def pop_mark() -> list:
        nonlocal floor
        if not marks:
            raise _malformed("no MARK before an opcode that needs one")
        i = marks.pop()
        floor = marks[-1] if marks else 0
        items = stack[i:]
        del stack[i:]
        return items

    def fill(node, items) -> None:
        if type(node) is not list:
            raise _malformed("items added to a scalar")
        for it in items:
            if it is None:
                node[0] += 1
            else:
                node.append(it)

    def new(items) -> list:
        node = [0]
        fill(node, items)
        return node

    while pos < end:
        op = _TABLE[buf[pos]]
        if op is None:
            raise _malformed(f"unknown opcode {buf[pos]:#04x} at byte {pos}")
        name, kind, n, action, memo_fmt = op
        pos += 1
        arg = None
        if kind == "fixed":
            if pos + n > end:
                break
            if memo_fmt is not None:
                (arg,) = struct.unpack_from(memo_fmt, buf, pos)
            elif name == "FRAME":
                (size,) = struct.unpack_from("<Q", buf, pos)
                if size > end - pos - 8:
                    raise pickle.UnpicklingError(
                        f"refusing a pickle frame of {size:,} bytes with {end - pos - 8:,} bytes left in the file")
            pos += n
        elif kind == "lines":
            for _ in range(n):
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    raise _malformed(f"{name} at byte {pos - 1} has no end")
                if action in (_PUT, _GET):
                    try:
                        arg = int(buf[pos:nl])
                    except ValueError:
                        raise _malformed(f"{name} at byte {pos - 1}") from None
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
        # the structure, most frequent opcodes first
        if action == _LEAF:
            stack.append(None)
        elif action == _MEMOIZE or action == _PUT:
            if len(stack) <= floor:
                raise _malformed(f"{name} with an empty stack")
            memo[len(memo) if action == _MEMOIZE else arg] = stack[-1]
        elif action == _GET:
            if arg not in memo:
                raise _malformed(f"memo entry {arg} read before it is written")
            stack.append(memo[arg])
        elif action == _NODE:
            stack.append([0])
        elif action == _MARK:
            marks.append(len(stack))
            floor = len(stack)
        elif action == _SETITEMS or action == _APPENDS or action == _ADDITEMS:
            items = pop_mark()
            if action != _APPENDS:
                charge(items[0::2] if action == _SETITEMS else items)
            if len(stack) <= floor:
                raise _malformed(f"{name} without a container")
            fill(stack[-1], items)
        elif action == _SEQ:
            stack.append(new(pop_mark()))
        elif action == _TUPLE1 or action == _TUPLE2 or action == _TUPLE3:
            k = action - _TUPLE1 + 1
            if len(stack) - k < floor:
                raise _malformed(f"{name} pops an empty stack")
            items = stack[-k:]
            del stack[-k:]
            stack.append(new(items))
        elif action == _CALL or action == _CALL_EX:
            args = [pop() for _ in range(1 if action == _CALL else 2)]
            charge(args)  # what the callable walks (its arguments), not the callable
            stack.append(new(args + [pop()]))
        elif action == _BUILD or action == _APPEND:
            child = pop()
            if len(stack) <= floor:
                raise _malformed(f"{name} without an object")
            fill(stack[-1], (child,))
        elif action == _SETITEM:
            v, k = pop(), pop()
            charge((k,))
            if len(stack) <= floor:
                raise _malformed("SETITEM without a dict")
            fill(stack[-1], (k, v))
        elif action == _DICT or action == _FROZENSET:
            items = pop_mark()
            charge(items[0::2] if action == _DICT else items)
            stack.append(new(items))
        elif action == _CALL_MARK:
            items = pop_mark()
            charge(items)
            stack.append(new(items))
        elif action == _STACK_GLOBAL:
            pop(), pop()
            stack.append([0])
        elif action == _BINPERSID:
            pop()
            stack.append(None)
        elif action == _POP:
            if marks and len(stack) == floor:  # as pickle does: POP on an empty stack drops the mark
                pop_mark()
            else:
                pop()
        elif action == _POP_MARK:
            pop_mark()
        elif action == _DUP:
            if len(stack) <= floor:
                raise _malformed("DUP with an empty stack")
            stack.append(stack[-1])
        elif action == _STOP:
            if _expanded(pop(), limit) > limit:
                raise pickle.UnpicklingError(
                    f"refusing a pickle that expands to more than {limit:,} objects when each reference to a "
                    "shared object is counted (nested containers that reference one another level by level: "
                    "a crafted file?)")
            return
    raise _malformed("it ends before its STOP opcode (truncated?)")


def restricted_load(fileobj_or_bytes: Any) -> Any:
    """Unpickle from bytes or a binary file object through :class:`RestrictedUnpickler`, after
    :func:`check_declared_lengths` (a file is mapped for that scan, then read once). Running out of
    memory on the way, or any error of the admitted callables, is an :class:`pickle.UnpicklingError`
    too, which callers name the file in."""
    try:
        return _restricted_load(fileobj_or_bytes)
    except (pickle.UnpicklingError, OSError):  # (reading the file: its own error says what)
        raise
    except MemoryError:
        raise pickle.UnpicklingError("ran out of memory unpickling it (a crafted file, or one far larger than "
                                     "this machine's memory)") from None
    except Exception as e:  # what the admitted callables or BUILD raise on arguments no real file has
        raise pickle.UnpicklingError(f"not a pickle of data ({type(e).__name__}: {e})") from None


def _restricted_load(fileobj_or_bytes: Any) -> Any:
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


