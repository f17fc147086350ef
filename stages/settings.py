"""Typed settings: one schema for everything a person can set, each default in one place.

A schema is a dataclass deriving from :class:`Settings`; its fields' type hints say how a value is
converted and its field defaults are *the* defaults (nothing else repeats them). Values arrive from
config files, ``--cfg-options`` and ``-o KEY=VALUE`` (text), and :meth:`Settings.from_dict` turns
them into typed values or refuses them:

* a key the schema does not know, at any depth, is an error that names the dotted key, where it
  came from (a config file, ``--cfg-options``, ``-o``) and the closest valid names;
* a value is converted by its declared type (:func:`convert`): a bool takes true/false/1/0/yes/no,
  a pair takes ``"480,640"``, a path is a :class:`~pathlib.Path`, a choice must be one of its
  values; a value that does not convert names the key, the value and the expected type.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Path``, ``Literal[...]``,
``Optional[T]``, ``tuple[T, T]`` (a fixed-length tuple), ``tuple[T, ...]`` / ``list[T]``, a nested
:class:`Settings`, :class:`Partial` of one (only the keys given, each checked and converted),
``dict`` / ``Any`` (taken as they are: raw mmengine arguments; checked where they are used).

A schema whose fields depend on another value (a model's config on its ``type``, a dataset's
options on its name) is resolved by the caller, which passes the concrete class.

This module is a leaf: it imports nothing of the project.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Literal, Mapping, Optional, Union, get_args, get_origin

_TRUE = ("true", "1", "yes", "on", "y")
_FALSE = ("false", "0", "no", "off", "n")
_NONE = ("none", "null", "~")


class SettingsError(ValueError):
    """A setting that is unknown, or whose value does not fit its type. ``key`` is the dotted key."""

    def __init__(self, message: str, key: str = "", source: str = ""):
        super().__init__(message)
        self.key = key
        self.source = source


#: where a dotted key came from: a function of the dotted key (None: not known)
SourceOf = Callable[[str], Optional[str]]


def _no_source(_key: str) -> Optional[str]:
    return None


#: what ``source_of`` says of a key set by ``-c`` / ``--cfg-options``
COMMAND_LINE = "--cfg-options"


def field(default: Any = dataclasses.MISSING, *, help: str = "", in_key: bool = True,
          default_factory: Any = dataclasses.MISSING, parse: Optional[Callable[[Any], Any]] = None) -> Any:
    """A schema field with its help text. ``in_key=False``: the setting says where or how, not what
    (it never enters a cache entry key). ``parse``: applied to a given value before its type's
    conversion (a spelling the field also accepts, e.g. Toyota's ``p10`` for subject 10)."""
    meta = {"help": help, "in_key": in_key, "parse": parse}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Partial:
    """``Partial[Schema]``: a mapping holding some of ``Schema``'s keys, each checked and converted
    (an override of settings whose defaults are resolved elsewhere, e.g. stage-one settings a
    dataset may default differently)."""

    def __class_getitem__(cls, schema: type) -> Any:
        return _PartialOf(schema)


@dataclasses.dataclass(frozen=True)
class _PartialOf:
    schema: type


class Settings:
    """Base of every schema dataclass (subclasses are ``@dataclasses.dataclass``)."""

    #: what the schema is, for messages ("model", "dataset option", ...)
    what: ClassVar[str] = "setting"

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]] = None, *, where: str = "",
                  source_of: SourceOf = _no_source, partial: bool = False) -> Any:
        """A checked, typed instance from a plain mapping (missing keys take their defaults).

        ``where``: the dotted prefix of ``data`` in the whole config (``"model"``), for messages;
        ``source_of(dotted_key)``: where a key came from. ``partial=True`` returns a dict of the
        given keys only, converted (:class:`Partial`)."""
        data = {} if data is None else data
        if isinstance(data, cls):
            return data.to_dict() if partial else data
        if not isinstance(data, Mapping):
            raise SettingsError(f"{where or cls.what}: expected a mapping of {cls.what} keys, got "
                                f"{type(data).__name__} {data!r}{_from(source_of, where)}", where,
                                source_of(where) or "")
        hints = schema_fields(cls)
        unknown = [k for k in data if k not in hints]
        if unknown:
            raise unknown_key_error(cls, unknown[0], where, source_of)
        values = {}
        for name, value in data.items():
            if hints[name].parse is not None and value is not None:
                value = hints[name].parse(value)
            values[name] = convert(value, hints[name].type, _join(where, name), source_of)
        if partial:
            return values
        missing = [n for n, f in hints.items() if f.required and n not in values]
        if missing:
            raise SettingsError(f"{_join(where, missing[0])}: required {cls.what} key is missing"
                                f"{_from(source_of, where)}", _join(where, missing[0]))
        try:
            obj = cls(**values)
        except SettingsError:
            raise
        except (TypeError, ValueError) as e:
            raise SettingsError(f"{where or cls.what}: {e}{_from(source_of, where)}", where,
                                source_of(where) or "") from None
        obj.check(where, source_of)
        return obj

    def check(self, where: str = "", source_of: SourceOf = _no_source) -> None:
        """Checks that involve several fields or other schemas (subclasses raise
        :class:`SettingsError`; a frozen subclass may store converted values with
        ``object.__setattr__``)."""

    # -- views -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain Python (nested settings as dicts, tuples as lists, paths as text): what configs hold."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    @classmethod
    def defaults(cls) -> dict:
        """Every key with its default (required keys omitted)."""
        return {n: _plain(f.default) for n, f in schema_fields(cls).items() if not f.required}

    @classmethod
    def keys(cls) -> list[str]:
        return list(schema_fields(cls))


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One key of a schema, as help texts and ``--options`` listings show it."""

    name: str
    type: Any
    default: Any
    required: bool
    help: str
    in_key: bool
    parse: Optional[Callable[[Any], Any]] = None

    @property
    def type_text(self) -> str:
        return type_text(self.type)


_FIELDS_CACHE: dict[type, dict[str, FieldInfo]] = {}


def schema_fields(cls: type) -> dict[str, FieldInfo]:
    """The fields of a schema class, their resolved types, defaults and help (cached)."""
    hit = _FIELDS_CACHE.get(cls)
    if hit is not None:
        return hit
    hints = typing.get_type_hints(cls)  # each class's annotations in its own module's names
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default, required = f.default, False
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default, required = f.default_factory(), False  # type: ignore[misc]
        else:
            default, required = None, True
        out[f.name] = FieldInfo(f.name, hints[f.name], default, required, f.metadata.get("help", ""),
                                f.metadata.get("in_key", True), f.metadata.get("parse"))
    _FIELDS_CACHE[cls] = out
    return out


# -- conversion -------------------------------------------------------------------------------------
def convert(value: Any, tp: Any, key: str = "", source_of: SourceOf = _no_source) -> Any:
    """``value`` as type ``tp`` (see the module docstring), or :class:`SettingsError` naming ``key``."""
    def bad(expected: str, extra: str = "") -> SettingsError:
        return SettingsError(f"{key or 'value'} = {value!r}{_from(source_of, key)}: expected {expected}{extra}",
                             key, source_of(key) or "")

    if tp is Any or tp is object:
        return value
    schema = tp.schema if isinstance(tp, _PartialOf) else tp if isinstance(tp, type) and issubclass(tp, Settings) else None
    if schema is not None and value is None:  # read as "the defaults", it threw away what a base or the variant set
        raise bad(f"a mapping of {schema.what} keys", " (None is not 'the defaults' nor 'off': set the keys, or "
                  "write dict(_delete_=True, ...) to replace what a base file sets)")
    if isinstance(tp, _PartialOf):
        return tp.schema.from_dict(value, where=key, source_of=source_of, partial=True)
    if schema is not None:
        return tp.from_dict(value, where=key, source_of=source_of)
    origin = get_origin(tp)
    if origin is Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        args = get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return convert(value, rest[0], key, source_of)
        errors = []
        for a in rest:
            try:
                return convert(value, a, key, source_of)
            except SettingsError as e:
                errors.append(e)
        raise bad(" or ".join(type_text(a) for a in rest))
    if origin is Literal:
        choices = get_args(tp)
        for c in choices:
            if value == c and type(value) is type(c):
                return c
        text = str(value).strip() if not isinstance(value, bool) else str(value).lower()
        for c in choices:
            if text == str(c) or (isinstance(c, str) and text.lower() == c.lower()):
                return c
        close = difflib.get_close_matches(text, [str(c) for c in choices], n=1, cutoff=0.6)
        raise bad(f"one of {', '.join(repr(c) for c in choices)}", f"; did you mean {close[0]!r}?" if close else "")
    if origin in (tuple, list, typing.Sequence) or tp in (tuple, list):
        args = get_args(tp)
        items = _split_sequence(value)
        fixed = origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis)
        if fixed:
            if items is None or len(items) != len(args):
                raise bad(type_text(tp), f" ({len(args)} values, got {len(items)})" if items is not None else "")
            try:
                return tuple(convert(v, a, key, source_of) for v, a in zip(items, args))
            except SettingsError:
                raise bad(type_text(tp)) from None
        if items is None and not isinstance(value, (Mapping, set)):
            items = [value]  # one value for a list of them
        elem = args[0] if args else Any
        if items is None:
            raise bad(type_text(tp))
        conv = [convert(v, elem, f"{key}[{i}]", source_of) for i, v in enumerate(items)]
        return tuple(conv) if (origin is tuple or tp is tuple) else conv
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise bad("a mapping (dict)")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise bad("a bool (true/false, 1/0, yes/no)")
    if tp in (int, float):
        # a number or its text; a bool is no number, and an int setting takes no fraction
        expected = "an integer" if tp is int else "a number"
        if isinstance(value, str):
            if "_" in value:  # Python's int("1_0") is 10
                raise bad(expected)
            try:
                value = float(value.strip()) if tp is float else int(value.strip())
            except ValueError:
                raise bad(expected) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(expected)
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise bad(expected)
        if isinstance(value, float) and not math.isfinite(value):  # (nan passes every range check)
            raise bad(f"{expected}, finite")
        return tp(value)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # a number given for a text setting (mmengine parses "1.0" as 1.0)
        raise bad("text")
    if tp is Path:
        if isinstance(value, (str, Path)) and str(value).strip():
            return Path(str(value).strip()).expanduser()
        raise bad("a path")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad(type_text(tp))


def _split_sequence(value: Any) -> Optional[list]:
    """A list/tuple as a list; text ``"a,b"``, ``"(a, b)"``, ``"[a, b]"`` or ``"480x640"`` split."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        s = value.strip()
        if s[:1] in "([" and s[-1:] in ")]":
            s = s[1:-1]
        if not s:
            return []
        sep = "," if "," in s else ("x" if "x" in s and s.replace("x", "").replace(".", "").isdigit() else None)
        parts = s.split(sep) if sep else s.split()
        return [p.strip().strip("'\"") for p in parts if p.strip()]
    return None


def type_text(tp: Any) -> str:
    """A type as a help text shows it: ``int``, ``bool``, ``one of 'a', 'b'``, ``int,int``."""
    if tp is Any:
        return "any"
    if isinstance(tp, _PartialOf):
        return f"{tp.schema.what} keys"
    if isinstance(tp, type) and issubclass(tp, Settings):
        return f"{tp.what} keys"
    origin = get_origin(tp)
    if origin is Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        rest = [a for a in get_args(tp) if a is not type(None)]
        text = " or ".join(type_text(a) for a in rest)
        return f"{text} or none" if len(rest) < len(get_args(tp)) else text
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in get_args(tp))
    if origin in (tuple, list) or tp in (tuple, list):
        args = get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return ",".join(type_text(a) for a in args)
        return f"list of {type_text(args[0]) if args else 'any'}"
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return "mapping"
    if tp is Path:
        return "path"
    return getattr(tp, "__name__", str(tp))


def _plain(x: Any) -> Any:
    if isinstance(x, Settings):
        return x.to_dict()
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def canonical_text(value: Any) -> str:
    """The one text form of a typed value (what a cache entry key hashes for an option): bools
    ``true``/``false``, sequences comma-joined, paths and the rest as ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(canonical_text(v) for v in value)
    if value is None:
        return "none"
    return str(value)


# -- messages ---------------------------------------------------------------------------------------
def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _from(source_of: SourceOf, key: str) -> str:
    src = source_of(key)
    return f" (from {src})" if src else ""


def unknown_key_error(cls: type, name: str, where: str, source_of: SourceOf = _no_source,
                      elsewhere: Iterable[str] = ()) -> SettingsError:
    """``where.name`` is not a key of schema ``cls``: name it, its source and the closest keys."""
    key = _join(where, name)
    known = list(schema_fields(cls))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = ""
    if close:
        hint = "; did you mean " + " or ".join(_join(where, c) for c in close) + "?"
    moved = [k for k in elsewhere if k.rsplit(".", 1)[-1] == name and k != key]
    if moved:
        hint += f" ({name} is a key of {', '.join(m.rsplit('.', 1)[0] or m for m in moved)})"
    if not close:
        hint += f"; known{' under ' + where if where else ''}: {', '.join(known) or 'none (it takes no option)'}"
    return SettingsError(f"unknown {cls.what} {key}{_from(source_of, key)}{hint}", key, source_of(key) or "")


def did_you_mean(name: str, known: Iterable[str], what: str) -> str:
    """``unknown <what> 'name'; did you mean 'x'? (known: ...)``: one message for names of things
    (experiments, variants, datasets, codecs)."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return (f"unknown {what} {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
            + f" (known: {', '.join(known)})")


def describe(cls: type, prefix: str = "") -> list[FieldInfo]:
    """Every key of a schema, nested schemas flattened to dotted names (help texts, ``--options``)."""
    out = []
    for f in schema_fields(cls).values():
        name = _join(prefix, f.name)
        if isinstance(f.type, type) and issubclass(f.type, Settings):
            out.extend(describe(f.type, name))
        else:
            out.append(dataclasses.replace(f, name=name))
    return out
