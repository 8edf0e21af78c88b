"""Shared indexing machinery: errors, natural sort, safe folder walks, parallel file reads, batched output."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from engine.core import CancelToken, Dataset, Item, Kind, Problem
from engine.data.images import is_image_name

CHUNK = 256
"""Items per ``on_batch`` call (the first call comes after at most this many items)."""

T = TypeVar("T")
R = TypeVar("R")

OnBatch = Callable[[list[Item]], None]


class DatasetError(Exception):
    """The path does not exist or holds no recognised dataset (a one-line message)."""


class ParseError(ValueError):
    """A label file or CSV row is malformed; the indexer turns it into a Problem."""


_DIGITS = re.compile(r"(\d+)", re.ASCII)


def natural_key(s: str) -> list:
    """Sort key that orders embedded numbers by value (``2`` before ``10``)."""
    parts: list = _DIGITS.split(s)
    parts[1::2] = [int(p) for p in parts[1::2]]
    parts[0::2] = [p.casefold() for p in parts[0::2]]
    return parts


def posix_join(rel: str, name: str) -> str:
    """Join a relative POSIX folder (``""`` for the root) and a name."""
    return f"{rel}/{name}" if rel else name


def group_of(name: str) -> str:
    """The parent folder of a relative POSIX name, ``"."`` for the root."""
    i = name.rfind("/")
    return name[:i] if i > 0 else "."


def bad_name(name: str) -> bool:
    """Whether a file name cannot be encoded as UTF-8 (undecodable bytes on disk)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_pool: ThreadPoolExecutor | None = None
_WORKERS = min(8, 2 * (os.cpu_count() or 1))


def pmap(fn: Callable[[T], R], xs: list[T]) -> list[R]:
    """``map`` over a shared thread pool: file reads release the GIL, so their I/O waits overlap."""
    global _pool
    if len(xs) < 32:
        return [fn(x) for x in xs]
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="imgreg-index")
    n = max(16, -(-len(xs) // (2 * _WORKERS)))
    out: list[R] = []
    for part in _pool.map(
        _map_list, [fn] * len(range(0, len(xs), n)), [xs[i : i + n] for i in range(0, len(xs), n)]
    ):
        out.extend(part)
    return out


def _map_list(fn: Callable[[T], R], xs: list[T]) -> list[R]:
    """``[fn(x) for x in xs]`` (one pool task)."""
    return [fn(x) for x in xs]


@dataclass
class Builder:
    """Collects items, problems and notes, and hands items to ``on_batch`` in chunks as they come."""

    root: Path
    format: str
    kind: Kind
    on_batch: OnBatch | None = None
    cancel: CancelToken | None = None
    n_points: int = 1
    items: list[Item] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    point_names: list[str] = field(default_factory=list)
    _sent: int = 0

    def add(self, item: Item) -> None:
        """Add an item (its problem, if any, is recorded too)."""
        self.items.append(item)
        if item.problem:
            self.problems.append(Problem(item.name, item.problem))
        if len(self.items) - self._sent >= CHUNK:
            self.flush()

    def problem(self, name: str, reason: str) -> None:
        """Record a problem that has no item (e.g. a pose file without image)."""
        self.problems.append(Problem(name, reason))

    def flush(self) -> None:
        """Send the items not yet sent to ``on_batch``; raise Cancelled when asked to stop now."""
        if self.cancel is not None:
            self.cancel.raise_if_now()
        if self.on_batch and len(self.items) > self._sent:
            self.on_batch(self.items[self._sent :])
        self._sent = len(self.items)

    def dataset(self) -> Dataset:
        """Flush and return the finished dataset."""
        self.flush()
        ds = Dataset(self.root, self.format, self.kind, self.items, self.problems, self.notes, self.n_points)
        ds.point_names = self.point_names
        return ds


def scandir_sorted(folder: Path | str) -> list[os.DirEntry]:
    """Entries of a folder in natural order, hidden ones (``.name``) left out; raises OSError."""
    with os.scandir(folder) as it:
        entries = [e for e in it if not e.name.startswith(".")]
    entries.sort(key=lambda e: natural_key(e.name))
    return entries


def entry_kind(e: os.DirEntry) -> str:
    """``dir``, ``file`` or ``broken`` (a dangling or looping symlink, or unreadable entry)."""
    try:
        if e.is_dir():
            return "dir"
        if e.is_file():
            return "file"
    except OSError:
        pass
    return "broken"


def dir_key(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of a folder, following links; None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def walk_images(
    root: Path, report: Callable[[str, str], None], limit: int | None = None, seen: set | None = None
) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative POSIX name, path)`` of image files under ``root``, depth first in natural order.

    Hidden entries are skipped; folder symlinks are followed, but never into a folder already visited
    (symlink loops), and each such link, broken link or image-named folder is passed to ``report``.
    """
    seen = seen if seen is not None else set()
    key = dir_key(root)
    if key:
        seen.add(key)
    stack: list[tuple[Path, str]] = [(root, "")]
    n = 0
    while stack:
        folder, rel = stack.pop()
        try:
            entries = scandir_sorted(folder)
        except OSError as err:
            report(rel or ".", f"cannot read folder ({err.strerror or err})")
            continue
        subdirs: list[tuple[Path, str]] = []
        for e in entries:
            name = posix_join(rel, e.name)
            if bad_name(e.name):
                report(name.encode("utf-8", "replace").decode("utf-8"), "file name is not valid UTF-8")
                continue
            kind = entry_kind(e)
            if kind == "dir":
                if is_image_name(e.name):
                    report(name, "a folder named like an image")
                    continue
                key = dir_key(e.path)
                if key is None or key in seen:
                    if e.is_symlink():
                        report(name, "folder link to an already indexed folder (symlink loop), skipped")
                    continue
                seen.add(key)
                subdirs.append((Path(e.path), name))
            elif kind == "broken":
                if is_image_name(e.name) or e.is_symlink():
                    report(name, "broken or looping symlink")
            elif is_image_name(e.name):
                yield name, Path(e.path)
                n += 1
                if limit is not None and n >= limit:
                    return
        stack.extend(reversed(subdirs))
