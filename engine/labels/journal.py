"""The label journal: every committed edit appended as one JSON line (fsync'd) beside the store, for recovery."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.inputs import load_json
from engine.labels.location import JOURNAL_NAME  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot"  # kind of the entries that record a store's state when its journal starts

Lbl = tuple[float, ...]


def _lbl(v: Any) -> Lbl | None:
    """A label from a journal line: None, or a non-empty list of finite numbers (ValueError otherwise)."""
    if v is None:
        return None
    if (
        not isinstance(v, list)
        or not v
        or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)
    ):
        raise ValueError("a journaled label is a list of numbers")
    out = tuple(float(x) for x in v)
    if not all(math.isfinite(x) for x in out):
        raise ValueError("a journaled label holds a number that is not finite")
    return out


@dataclass(frozen=True)
class Entry:
    """One journaled edit: the item's full state after it (``new`` correction, ``source``, ``verified``)."""

    id: int  # the store's history row id (commit order); snapshot entries carry the newest id at that time
    time: float
    item: str
    kind: str
    old: Lbl | None  # effective label before the edit
    old_source: str
    new: Lbl | None  # the correction after the edit (None when the original applies)
    source: str
    verified: bool
    original: Lbl | None

    @property
    def effective(self) -> Lbl | None:
        """The effective label after the edit."""
        return self.original if self.source == "original" else self.new

    def to_json(self) -> str:
        """One line of the journal."""
        d = {
            "id": self.id,
            "time": self.time,
            "item": self.item,
            "kind": self.kind,
            "old": self.old,
            "old_source": self.old_source,
            "new": self.new,
            "source": self.source,
            "verified": self.verified,
            "original": self.original,
        }
        return json.dumps(d, ensure_ascii=False, separators=(", ", ": "))

    @classmethod
    def from_json(cls, line: str) -> Entry:
        """Parse one journal line (``ValueError``/``KeyError``/``TypeError`` when it is not one)."""
        d = load_json(line, allow_nan=False)
        if not isinstance(d, dict):
            raise ValueError("a journal line is a JSON object")
        if d.get("source") not in ("original", "corrected", "prediction"):
            raise ValueError("unknown label source")
        return cls(
            int(d["id"]),
            float(d["time"]),
            str(d["item"]),
            str(d["kind"]),
            _lbl(d.get("old")),
            str(d.get("old_source", "original")),
            _lbl(d.get("new")),
            str(d["source"]),
            bool(d["verified"]),
            _lbl(d.get("original")),
        )


@dataclass
class JournalRead:
    """A journal's entries in replay order (by id, file order among equal ids) and its unreadable lines."""

    entries: list[Entry]
    bad_lines: int

    @property
    def last_id(self) -> int:
        """The newest id in the journal (0 when empty)."""
        return max((e.id for e in self.entries), default=0)

    def final_states(self) -> dict[str, Entry]:
        """Each item's newest entry."""
        out: dict[str, Entry] = {}
        for e in self.entries:
            out[e.item] = e
        return out


def _parse(line: str) -> Entry | None:
    """One line's entry; a line glued onto the torn remains of another still yields its own entry."""
    for start in (0, line.rfind('{"id": ')):
        if start < 0:
            continue
        try:
            return Entry.from_json(line[start:])
        except (ValueError, KeyError, TypeError, OverflowError):
            continue
    return None


def _byte_at(fd: int, pos: int) -> bytes:
    """One byte of an open file (appends still go to the end: the file is opened with O_APPEND)."""
    if hasattr(os, "pread"):
        return os.pread(fd, 1, pos)
    os.lseek(fd, pos, os.SEEK_SET)
    return os.read(fd, 1)


def _sync_dir(folder: Path) -> None:
    """Make a new file's directory entry durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Journal:
    """Append-only JSON lines beside the store; each append is flushed to disk before it returns."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / JOURNAL_NAME
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = os.getpid()

    def exists(self) -> bool:
        """Whether the journal file exists and holds anything."""
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def _open(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            new = not self.path.exists()
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
            self._fd = os.open(self.path, flags, 0o644)
            self._pid = os.getpid()
            if new:
                _sync_dir(self.path.parent)
        return self._fd

    def append(self, entries: Iterable[Entry]) -> None:
        """Append entries in one write and flush them to disk (``OSError`` when the disk refuses)."""
        data = "".join(e.to_json() + "\n" for e in entries).encode("utf-8")
        if not data:
            return
        with self._lock:
            fd = self._open()
            # A line torn by a crash mid-write must not glue onto the next one: start on a fresh line.
            size = os.fstat(fd).st_size
            if size and _byte_at(fd, size - 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            (getattr(os, "fdatasync", None) or os.fsync)(fd)

    def close(self) -> None:
        """Close the file (appending again reopens it)."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def lines(self) -> Iterator[str]:
        """The journal's lines (none when it does not exist)."""
        try:
            f = open(self.path, encoding="utf-8", errors="replace")
        except OSError:
            return
        with f:
            yield from f

    def read(self) -> JournalRead:
        """Every readable entry in replay order; lines a crash or a sync client tore are counted and skipped."""
        entries: list[Entry] = []
        bad = 0
        for line in self.lines():
            if not line.strip():
                continue
            entry = _parse(line)
            if entry is None:
                bad += 1
            else:
                entries.append(entry)
        entries.sort(key=lambda e: e.id)  # stable: file order among equal ids, so the later line wins
        return JournalRead(entries, bad)
