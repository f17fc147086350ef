"""The parameters and buffers of a TorchScript archive, read without running anything in it.

OpenAI's CLIP releases (``ViT-B-16.pt``, ``ViT-L-14.pt``) are TorchScript archives: what
``torch.jit.save`` writes. ``torch.jit.load`` would compile and run the archive's code, and
``torch.load(weights_only=True)`` refuses it (its pickle names the archive's own classes). This
module reads what ``torch.jit.load(path).state_dict()`` would return, from the archive's parts:

* ``<root>/data.pkl``: the module tree, pickled. Each module is an object of a class named
  ``__torch__.<module path>.<Class>`` whose state is a dict of its attributes: tensors, submodules,
  plain values. A tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
  over a storage the pickle names by a persistent id ``('storage', torch.HalfStorage, '7', 'cpu',
  numel)``, stored raw (little-endian) in ``<root>/data/7``.
* ``<root>/code/__torch__/<module path>.py``: each class's TorchScript source. Its
  ``__parameters__`` and ``__buffers__`` lists say which tensor attributes ``state_dict`` holds;
  they are read with :func:`ast.literal_eval`, never executed.
* ``<root>/constants.pkl`` (tensor constants the tracer baked into the code, e.g. a causal mask):
  not weights, not read.

The unpickler resolves only the names above (the tensor rebuild, ``OrderedDict``, storage types,
the archive's own ``__torch__`` classes, which become inert records) and bounds what it reads by
the archive's sizes; anything else raises :class:`TorchScriptReadError` before it is called.
"""
from __future__ import annotations

import ast
import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

import torch

from stages.safe_pickle import check_declared_lengths

MAX_DATA_PKL_BYTES = 64 << 20  # a ViT-L/14 archive's module tree pickles to ~100 kB

# the storage classes a TorchScript pickle names, and the dtype of each
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}


class TorchScriptReadError(ValueError):
    """The file is not a TorchScript archive this reader can take apart safely."""


def torchscript_root(path: Path) -> Optional[str]:
    """The archive's top folder if ``path`` is a TorchScript archive (a zip with ``data.pkl`` beside
    ``code/`` or ``constants.pkl``), else None (a ``torch.save`` zip has no code)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    roots = {n.split("/", 1)[0] for n in names if n.count("/") == 1 and n.endswith("/data.pkl")}
    for root in roots:
        if any(n.startswith(f"{root}/code/") or n == f"{root}/constants.pkl" for n in names):
            return root
    return None


class _StorageType:
    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype


class _ScriptObject:
    """An object of one of the archive's ``__torch__`` classes: its pickled state, nothing callable."""

    qualified = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.root = archive, root
        self.storages: dict[str, tuple[torch.dtype, torch.UntypedStorage]] = {}
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            q = f"{module}.{name}"
            if q not in self.classes:
                self.classes[q] = type(name, (_ScriptObject,), {"qualified": q})
            return self.classes[q]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, requires_grad=False, hooks=None: data
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch.jit._pickle" and name in ("restore_type_tag", "build_intlist", "build_doublelist",
                                                       "build_boollist", "build_tensorlist"):
            return lambda value, *rest: value  # type annotations of lists and dicts: the value itself
        raise TorchScriptReadError(f"refusing to load global {module}.{name} from a TorchScript archive's "
                                   "data.pkl: only tensors, module records and plain values are read")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise TorchScriptReadError(f"unexpected persistent id {pid!r} in data.pkl")
        _, stype, key, _location, numel = pid
        if key not in self.storages:
            if not key.isalnum() or numel < 0:
                raise TorchScriptReadError(f"bad storage record {key!r} / {numel}")
            name = f"{self.root}/data/{key}"
            try:
                info = self.archive.getinfo(name)
            except KeyError:
                raise TorchScriptReadError(f"data.pkl names storage {name}, which the archive does not hold") from None
            nbytes = numel * torch.empty((), dtype=stype.dtype).element_size()
            if info.file_size != nbytes:
                raise TorchScriptReadError(f"storage {name} holds {info.file_size} bytes, data.pkl says "
                                           f"{numel} x {stype.name} = {nbytes}")
            with self.archive.open(info) as f:
                raw = bytearray(f.read(nbytes))
            storage = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if nbytes else torch.UntypedStorage(0)
            self.storages[key] = (stype.dtype, storage)
        dtype, storage = self.storages[key]
        if dtype != stype.dtype:
            raise TorchScriptReadError(f"storage {key} is read both as {dtype} and as {stype.dtype}")
        return self.storages[key]

    @staticmethod
    def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if not (isinstance(storage, tuple) and len(storage) == 2 and isinstance(storage[1], torch.UntypedStorage)):
            raise TorchScriptReadError("a tensor in data.pkl is not built on one of the archive's storages")
        dtype, raw = storage
        ints = [offset, *size, *stride]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints) or len(size) != len(stride):
            raise TorchScriptReadError(f"bad tensor layout: offset {offset}, size {size}, stride {stride}")
        item = torch.empty((), dtype=dtype).element_size()
        need = 0 if 0 in size else offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
        if need * item > raw.nbytes():
            raise TorchScriptReadError(f"a tensor of size {tuple(size)} / stride {tuple(stride)} at {offset} runs past "
                                       f"its storage of {raw.nbytes()} bytes")
        return torch.empty((0,), dtype=dtype).set_(raw, offset, tuple(size), tuple(stride))


def _declared_names(archive: zipfile.ZipFile, root: str, qualified: str, cache: dict) -> Optional[set[str]]:
    """``__parameters__`` + ``__buffers__`` of class ``qualified`` from the archive's TorchScript
    source (parsed, not run); None when the source does not say."""
    module, _, cls = qualified.rpartition(".")
    src_name = f"{root}/code/{module.replace('.', '/')}.py"
    if src_name not in cache:
        try:
            cache[src_name] = ast.parse(archive.read(src_name).decode("utf-8"))
        except (KeyError, SyntaxError, UnicodeDecodeError):
            cache[src_name] = None
    tree = cache[src_name]
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            names: set[str] = set()
            found = False
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                        and stmt.targets[0].id in ("__parameters__", "__buffers__"):
                    try:
                        value = ast.literal_eval(stmt.value)
                    except ValueError:
                        return None
                    names.update(str(v) for v in value)
                    found = True
            return names if found else None
    return None


def read_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """What ``torch.jit.load(path).state_dict()`` holds (parameters and buffers by dotted name, in
    the archive's dtypes), read as the module docstring says. :class:`TorchScriptReadError` if
    ``path`` is not such an archive or anything in it is not what this reader admits."""
    path = Path(path)
    root = torchscript_root(path)
    if root is None:
        raise TorchScriptReadError(f"{path} is not a TorchScript archive (a zip with data.pkl and code/)")
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{root}/data.pkl")
        if info.file_size > MAX_DATA_PKL_BYTES:
            raise TorchScriptReadError(f"{root}/data.pkl is {info.file_size:,} bytes; a module tree takes far less")
        data = z.read(info)
        try:
            check_declared_lengths(data)
            top = _ArchiveUnpickler(data, z, root).load()
        except pickle.UnpicklingError as e:
            raise TorchScriptReadError(f"{path}: {root}/data.pkl: {e}") from None
        if not isinstance(top, _ScriptObject):
            raise TorchScriptReadError(f"{path}: data.pkl holds {type(top).__name__}, not a TorchScript module")
        out: dict[str, torch.Tensor] = {}
        sources: dict = {}
        seen: set[int] = set()

        def walk(obj: _ScriptObject, prefix: str) -> None:
            if id(obj) in seen:  # a module shared under two names: torch names its tensors once
                return
            seen.add(id(obj))
            state = obj.state if isinstance(getattr(obj, "state", None), dict) else {}
            declared = _declared_names(z, root, obj.qualified, sources)
            for name, value in state.items():
                if isinstance(value, torch.Tensor):
                    if declared is None or name in declared:
                        out[prefix + name] = value
                elif isinstance(value, _ScriptObject):
                    walk(value, f"{prefix}{name}.")

        walk(top, "")
    if not out:
        raise TorchScriptReadError(f"{path}: the TorchScript archive holds no parameters or buffers")
    return out
