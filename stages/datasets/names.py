"""File names and text files as the OS gives them: bytes, not always UTF-8.

On POSIX a file name is bytes. Python hands a name that is not valid UTF-8 (a latin-1 ``café``)
to us as a ``str`` holding lone surrogates (``'caf\\udce9'``, PEP 383): it opens the right file,
but it cannot be encoded as UTF-8, so a clip id, a JSON file or a hash made from it fails far from
where the name was read. The rules adapters follow:

* the video path keeps the OS's bytes (the surrogate ``str``, or ``os.fsencode`` of it);
* a clip id made from a name uses :func:`readable_name`: the name itself when it is UTF-8, else
  its bytes with each undecodable one written ``\\xNN`` (``caf\\xe9``), which is ASCII-safe,
  unique for each name, and says what the bytes were;
* a name that must be *text* (a class folder whose name becomes the class's label text) and is
  not UTF-8 cannot be represented: the adapter reports it with its folder
  (:func:`not_text_note`, in ``meta["skipped_names"]`` and the log) and skips it; the rest of
  the dataset is planned;
* text annotation files are read with :func:`read_text_lines`: a byte that is not UTF-8 raises
  :class:`DatasetLayoutError` naming the file and the line.
"""
from __future__ import annotations

import logging
import os
log = logging.getLogger(__name__)


def is_text(name: str) -> bool:
    """Whether ``name`` (as ``os.listdir`` gives it) is valid UTF-8 text."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def is_hidden(name: str) -> bool:
    """A dot file: macOS's AppleDouble ``._clip.mp4`` and ``.DS_Store`` that a zip or copy made on
    a Mac leaves beside every file, an editor's or rsync's temporary. Never a dataset's video."""
    return name.startswith(".")


def readable_name(name: str) -> str:
    """``name`` as text: itself when it is UTF-8, else the OS's bytes decoded with each byte that
    is not UTF-8 written ``\\xNN`` (``'caf\\udce9'`` -> ``'caf\\\\xe9'``)."""
    if is_text(name):
        return name
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def not_text_note(folder: os.PathLike | str, name: str, what: str) -> str:
    """The report of a name that cannot be represented: where it is and what was skipped."""
    return (f"{readable_name(os.fspath(folder))}/{readable_name(name)}: the name is not UTF-8 text, so it "
            f"cannot be {what}; skipped (rename it, e.g. convmv -f latin1 -t utf8)")


def report_skipped(notes: list[str], note: str) -> None:
    log.warning(note)
    notes.append(note)


def read_text_lines(path: os.PathLike | str, encoding: str = "utf-8-sig") -> list[str]:
    """The lines of a text annotation file; a byte that is not ``encoding`` raises
    :class:`~stages.datasets.base.DatasetLayoutError` naming the file, the line and the byte."""
    from stages.datasets.base import DatasetLayoutError

    raw = open(path, "rb").read()
    refuse_utf16(raw, path)
    try:
        return raw.decode(encoding).splitlines()
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DatasetLayoutError(
            f"{readable_name(os.fspath(path))}:{line}: not UTF-8 text (byte {raw[e.start]:#04x} at column {col}); "
            "save the file as UTF-8") from None


def refuse_utf16(raw: bytes, path: os.PathLike | str) -> None:
    """A UTF-16 file (Excel's "Unicode text", Windows' Notepad "Unicode") read as UTF-8 is a NUL
    between every two characters: said as what it is, by its byte-order mark."""
    from stages.datasets.base import DatasetLayoutError

    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DatasetLayoutError(f"{readable_name(os.fspath(path))}: UTF-16 text (its byte-order mark); save the file "
                                 "as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)")


def decode_field(value: bytes, where: str, what: str, as_path: bool) -> str:
    """One field of a text file read as bytes: a path keeps the OS's bytes (surrogateescape, so the
    file is found whatever its encoding); anything else must be UTF-8 (else
    :class:`~stages.datasets.base.DatasetLayoutError` naming ``where``)."""
    from stages.datasets.base import DatasetLayoutError

    if as_path:
        return os.fsdecode(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetLayoutError(f"{where}: the {what} is not UTF-8 text (byte {value[e.start]:#04x}); "
                                 "save the file as UTF-8") from None
