"""The rules for files and text that come from outside: regular files only, bounded JSON, terminal-safe text.

Every reader of a dataset, journal, run or model file opens it through ``open_regular`` / ``read_regular``
(a FIFO, device or socket named like an image or a label file would otherwise block a read forever) and parses
JSON with ``load_json`` (deep nesting and huge numbers become a one-line ``ValueError``, never a traceback).
Names printed to a terminal go through ``screen`` so a file name cannot send escape sequences.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from typing import Any

READ_FLAGS = (
    os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
)
"""Flags for raw reads: O_NONBLOCK so opening a FIFO returns at once instead of waiting for a writer."""

NOT_REGULAR = "not a regular file (a pipe, device or socket)"
MAX_INT_DIGITS = 300
"""Longer integers in JSON are read as floats (then infinite, and refused by the finite checks)."""


def open_regular(path: str | os.PathLike) -> int:
    """A read-only descriptor of a regular file (links followed); OSError for anything else."""
    try:
        fd = os.open(path, READ_FLAGS)
    except ValueError:  # an embedded NUL byte
        raise OSError(errno.EINVAL, "file name contains a NUL character") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL, NOT_REGULAR)
    return fd


def read_regular(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of a regular file (its first ``limit`` when given); OSError for a missing or special file."""
    fd = open_regular(path)
    try:
        chunks: list[bytes] = []
        left = limit if limit is not None else -1
        while left != 0:
            part = os.read(fd, 1 << 20 if left < 0 else min(left, 1 << 20))
            if not part:
                break
            chunks.append(part)
            left = left - len(part) if left > 0 else left
        return b"".join(chunks)
    finally:
        os.close(fd)


def is_regular(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (links followed)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _big_int(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else float(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(data: bytes | str, allow_nan: bool = True) -> Any:
    """Parsed JSON; ``ValueError`` with a one-line reason for text that is not UTF-8, not JSON or too deep."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    kw: dict[str, Any] = {"parse_int": _big_int}
    if not allow_nan:
        kw["parse_constant"] = _no_constant
    try:
        return json.loads(text, **kw)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def screen(text: object) -> str:
    """``text`` with control and bidi characters escaped (``\\x1b``), safe to print to a terminal."""
    s = str(text)
    if not _CONTROL.search(s):
        return s
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)


def leaves_root(name: str) -> bool:
    """Whether a listed image path points outside the dataset folder (absolute, a drive, or ``..`` parts)."""
    n = name.replace("\\", "/")
    return n.startswith("/") or bool(re.match(r"^[A-Za-z]:", n)) or ".." in n.split("/")
