"""File keys (size, modification time) of predicted images, so predictions of a since-changed image read as stale."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from engine.data.images import file_stamp

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS prediction_files "
    "(run_id TEXT NOT NULL, item TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, PRIMARY KEY (run_id, item))"
)


def record_file_keys(conn: sqlite3.Connection, root: Path, run_id: str, names: Iterable[str]) -> None:
    """Remember each predicted image's file key (inside the caller's transaction)."""
    conn.execute(_SCHEMA)
    rows = []
    for name in names:
        key = file_stamp(Path(root) / name)
        rows.append((run_id, name, *(key or (None, None))))
    conn.executemany("INSERT OR REPLACE INTO prediction_files VALUES (?, ?, ?, ?)", rows)


def stale_items(conn: sqlite3.Connection, root: Path, run_id: str) -> set[str]:
    """Items of a run whose image changed (or vanished) on disk since it was predicted."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'prediction_files'").fetchone()
    if not exists:
        return set()
    rows = conn.execute("SELECT item, size, mtime_ns FROM prediction_files WHERE run_id = ?", (run_id,))
    return {name for name, size, mtime in rows if file_stamp(Path(root) / name) != (size, mtime)}


def forget_file_keys(conn: sqlite3.Connection, run_id: str) -> None:
    """Drop a run's file keys (inside the caller's transaction)."""
    conn.execute(_SCHEMA)
    conn.execute("DELETE FROM prediction_files WHERE run_id = ?", (run_id,))
