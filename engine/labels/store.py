"""The label store: the single writer of labels, an SQLite (WAL) database beside the dataset or per user."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import Dataset, Item, Label
from engine.labels import filekeys, recovery
from engine.labels.journal import Entry, Journal
from engine.labels.limits import LabelRefused, require_label  # noqa: F401 (callers catch it from here)
from engine.labels.location import (  # noqa: F401 (re-exported for callers of the store)
    DATA_DIR_ENV,
    DB_NAME,
    FORCE_USER_DATA_ENV,
    store_dir,
    user_data_dir_for,
    user_data_root,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SOURCES = ("original", "corrected", "prediction")
BUSY_TIMEOUT_MS = 10_000  # how long an edit waits for another writer before failing
LOCK_POLL_MS = 20  # SQLite's own wait per attempt; short so a busy writer cannot starve us (see _retry)

ItemRef = Item | str

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    item TEXT PRIMARY KEY,
    original TEXT,
    current TEXT,
    source TEXT NOT NULL DEFAULT 'original',
    verified INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item TEXT NOT NULL,
    old TEXT,
    new TEXT,
    old_source TEXT NOT NULL,
    new_source TEXT NOT NULL,
    verified INTEGER NOT NULL,
    time REAL NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_item ON history (item, id);
CREATE TABLE IF NOT EXISTS prediction_runs (run_id TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    run_id TEXT NOT NULL,
    item TEXT NOT NULL,
    pred TEXT NOT NULL,
    error REAL,
    spread REAL,
    score REAL,
    interval TEXT,
    coverage REAL,
    PRIMARY KEY (run_id, item)
);
"""


class StoreError(Exception):
    """The label store cannot be opened or used (e.g. a newer schema, no writable folder)."""


@dataclass(frozen=True)
class LabelRecord:
    """One item's labels: the source file's ``original``, the ``current`` correction, its source and flag."""

    item: str
    original: Label | None
    current: Label | None
    source: str
    verified: bool

    @property
    def effective(self) -> Label | None:
        """The label to use: the correction or accepted prediction when there is one, else the original."""
        return self.original if self.source == "original" else self.current


@dataclass(frozen=True)
class Change:
    """One history row: the effective label and source before and after an edit.

    For ``kind == 'sync'`` (the source file's original label changed) ``old``/``new`` are the originals.
    """

    item: str
    old: Label | None
    new: Label | None
    old_source: str
    new_source: str
    verified: bool
    time: float
    kind: str


@dataclass(frozen=True)
class PredictionRow:
    """A model's prediction for one item in original pixels, with its error, spread and label-quality score
    (``engine.labels.quality``: higher is more likely a wrong label) when known."""

    item: str
    pred: Label
    error: float | None = None
    spread: float | None = None
    score: float | None = None
    # calibrated region of ``coverage``: points one radius per point (original pixels), scalars (lo, hi)
    interval: tuple[float, ...] | None = None
    coverage: float | None = None


def encode_label(label: Iterable[float] | None) -> str | None:
    """Label as JSON text (``repr`` floats round-trip exactly); None stays None."""
    if label is None:
        return None
    return json.dumps([float(v) for v in label])


def decode_label(text: str | None) -> Label | None:
    """Inverse of ``encode_label``."""
    if text is None:
        return None
    return tuple(float(v) for v in json.loads(text))


def _check_label(label: Iterable[float]) -> Label:
    """Finite numbers only (predictions; edits also pass ``engine.labels.limits``); LabelRefused."""
    return require_label(None, "label", label)


def _name(item: ItemRef) -> str:
    return item.name if isinstance(item, Item) else str(item)


def _opt_float(v: float | None) -> float | None:
    return None if v is None else float(v)


def _add_score_column(conn: sqlite3.Connection) -> None:
    """Migration: older stores get NULL ``score``, ``interval`` and ``coverage`` columns on their predictions."""
    cols = [r[1] for r in conn.execute("PRAGMA table_info(predictions)")]
    if "score" not in cols:
        conn.execute("ALTER TABLE predictions ADD COLUMN score REAL")
    if "interval" not in cols:
        conn.execute("ALTER TABLE predictions ADD COLUMN interval TEXT")
        conn.execute("ALTER TABLE predictions ADD COLUMN coverage REAL")


def _is_busy(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


def _still_verified(old: LabelRecord, new: Label | None) -> bool:
    """The verified mark vouches for one label: a change of the effective label clears it."""
    return old.verified and old.effective == new


class LabelStore:
    """Labels of one dataset: originals, corrections, verified flags, history and predictions per run.

    Usable from any thread (one SQLite connection per thread) and by several processes at once; every edit is
    committed (``synchronous=FULL``) before it returns. Listeners run in the thread that made the edit.
    """

    def __init__(
        self, root: Path | str, db_dir: Path | str | None = None, *, force_user_data: bool | None = None
    ) -> None:
        self.root = Path(root)
        if db_dir is None and not self.root.is_dir():
            raise StoreError(f"dataset folder {self.root} does not exist")
        self.dir = Path(db_dir) if db_dir is not None else store_dir(self.root, force_user_data)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.dir / DB_NAME
        self._conns: dict[int, sqlite3.Connection] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._listeners: list[tuple[Callable[[Any], None], bool]] = []
        self._pid = os.getpid()
        self._closed = False
        self.journal = Journal(self.dir)  # every edit is also appended here (see engine/labels/journal.py)
        self.journal_error: str | None = None  # why the last journal append failed, if it did
        self.ds: Dataset | None = None  # set by ``open``: edits are then checked by engine.labels.limits
        try:
            with recovery.store_lock(self.dir):
                # One line saying what was recovered (None when the store was sound): the CLI and app show it.
                self.recovery_message = recovery.recover_if_needed(self.db_path, self.journal, _SCHEMA)
                self._init_schema()
                recovered = self.recovery_message is not None  # a rebuilt store gets a fresh backup at once
                self._retry(lambda conn: recovery.after_open(conn, self.journal, self.dir, recovered))
        except (recovery.RecoveryError, OSError, sqlite3.Error) as e:
            self.close()
            raise StoreError(f"cannot open label store {self.db_path}: {e}") from e

    @classmethod
    def open(
        cls, ds: Dataset, db_dir: Path | str | None = None, *, force_user_data: bool | None = None
    ) -> LabelStore:
        """Open the store of ``ds`` and sync its original labels in one transaction."""
        store = cls(ds.root, db_dir, force_user_data=force_user_data)
        try:
            store.sync(ds.items)
            store.ds = ds
        except BaseException:
            store.close()
            raise
        return store

    # -- connections -------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            # Switching a new database to WAL takes an exclusive lock and fails at once (no busy wait)
            # when another process is doing the same, hence the loop.
            deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
            while True:
                try:
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError as e:
                    if not _is_busy(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(random.uniform(0.001, 0.01))
            if str(mode).lower() != "wal":
                log.warning("label store %s: journal mode %s (WAL unavailable)", self.db_path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA busy_timeout = {LOCK_POLL_MS}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        if self._closed:
            raise StoreError("label store is closed")
        if os.getpid() != self._pid:  # forked child: never reuse the parent's connections
            self._pid, self._conns, self._local = os.getpid(), {}, threading.local()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                alive = {t.ident for t in threading.enumerate()}
                for ident in [i for i in self._conns if i not in alive]:
                    with contextlib.suppress(sqlite3.Error):
                        self._conns.pop(ident).close()
                # A dead thread's ident can be reused (worker threads come and go): close its connection, or
                # it stays open unseen and keeps the WAL from being checkpointed when the store closes.
                old = self._conns.get(threading.get_ident())
                if old is not None and old is not conn:
                    with contextlib.suppress(sqlite3.Error):
                        old.close()
                self._conns[threading.get_ident()] = conn
        return conn

    def _retry(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(conn)``, retrying for up to ``BUSY_TIMEOUT_MS`` while the database is locked."""
        conn = self._conn()
        # SQLite's busy handler sleeps longer and longer, so a waiter rarely hits the short gaps between
        # another process's back-to-back commits; polling every few ms with jitter keeps writers fair.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                return fn(conn)
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.0005, 0.004))

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction (committed before returning), retrying on locks."""

        def txn(conn: sqlite3.Connection) -> Any:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retry(txn)

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._retry(lambda conn: conn.execute(sql, args).fetchall())

    def _init_schema(self) -> None:
        def init(conn: sqlite3.Connection) -> None:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            _add_score_column(conn)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('root', ?)", (str(self.root.resolve()),))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (repr(time.time()),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.db_path} has schema version {row[0]}; this imgreg knows up to {SCHEMA_VERSION}"
                )

        try:
            self._write(init)
        except sqlite3.DatabaseError as e:
            self.close()
            raise StoreError(f"cannot open label store {self.db_path}: {e}") from e
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, {}
        for conn in conns.values():
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
        if hasattr(self, "journal"):
            self.journal.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        """The schema version recorded in the database's ``meta`` table."""
        return int(self._read("SELECT value FROM meta WHERE key = 'schema_version'")[0][0])

    # -- listeners -------------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Any], None], records: bool = False) -> None:
        """Call ``callback(names)`` after every edit made through this store (in the editing thread); with
        ``records=True``, ``callback(list[LabelRecord])`` with the records as written, so nobody reads them again."""
        with self._lock:
            self._listeners.append((callback, records))

    def unsubscribe(self, callback: Callable[[Any], None]) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        with self._lock:
            self._listeners = [(cb, r) for cb, r in self._listeners if cb != callback]

    def _notify(self, recs: list[LabelRecord]) -> None:
        if not recs:
            return
        with self._lock:
            listeners = list(self._listeners)
        for callback, records in listeners:
            try:
                callback(list(recs) if records else [r.item for r in recs])
            except Exception:
                log.exception("label store listener %r failed", callback)

    # -- sync ----------------------------------------------------------------------------------------------

    def sync(self, items: Iterable[Item]) -> list[str]:
        """Record the items' original labels, keeping corrections; returns the names added or changed."""
        wanted = {it.name: encode_label(it.label) for it in items}

        def work(conn: sqlite3.Connection) -> list[LabelRecord]:
            known = {
                r[0]: r[1:]
                for r in conn.execute("SELECT item, original, source, verified, current FROM labels")
            }
            now = time.time()
            new = [(n, o, now) for n, o in wanted.items() if n not in known]
            changed = [(o, now, n) for n, o in wanted.items() if n in known and known[n][0] != o]
            conn.executemany(
                "INSERT INTO labels (item, original, current, source, verified, updated) "
                "VALUES (?, ?, NULL, 'original', 0, ?)",
                new,
            )
            conn.executemany("UPDATE labels SET original = ?, updated = ? WHERE item = ?", changed)
            conn.executemany(
                "INSERT INTO history (item, old, new, old_source, new_source, verified, time, kind) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'sync')",
                [(n, known[n][0], o, known[n][1], known[n][1], known[n][2], now) for o, now, n in changed],
            )
            recs = [LabelRecord(n, decode_label(o), None, "original", False) for n, o, _ in new]
            recs += [
                LabelRecord(n, decode_label(o), decode_label(known[n][3]), known[n][1], bool(known[n][2]))
                for o, _, n in changed
            ]
            return recs

        # Fast path: reopening an unchanged dataset takes no write lock at all.
        known = dict(self._read("SELECT item, original FROM labels"))
        if all(n in known and known[n] == o for n, o in wanted.items()):
            return []
        recs = self._write(work)
        self._notify(recs)
        return [r.item for r in recs]

    # -- reads -----------------------------------------------------------------------------------------

    @staticmethod
    def _record(row: tuple) -> LabelRecord:
        name, original, current, source, verified = row
        return LabelRecord(name, decode_label(original), decode_label(current), source, bool(verified))

    def record(self, item: ItemRef) -> LabelRecord:
        """The item's labels; an unknown item gets an empty 'original' record (its own label if an Item)."""
        rows = self._read(
            "SELECT item, original, current, source, verified FROM labels WHERE item = ?", (_name(item),)
        )
        if rows:
            return self._record(rows[0])
        original = item.label if isinstance(item, Item) else None
        return LabelRecord(
            _name(item), None if original is None else tuple(map(float, original)), None, "original", False
        )

    def records(self) -> dict[str, LabelRecord]:
        """Every known item's record by name."""
        rows = self._read("SELECT item, original, current, source, verified FROM labels ORDER BY rowid")
        return {r[0]: self._record(r) for r in rows}

    def effective(self, item: ItemRef) -> Label | None:
        """The item's effective label (correction or accepted prediction, else original), None if none."""
        return self.record(item).effective

    def effective_labels(self) -> dict[str, Label]:
        """Effective labels of every item that has one."""
        rows = self._read(
            "SELECT item, CASE WHEN source = 'original' THEN original ELSE current END AS eff "
            "FROM labels WHERE eff IS NOT NULL ORDER BY rowid"
        )
        return {name: decode_label(text) for name, text in rows}  # type: ignore[misc]

    def counts(self) -> dict[str, int]:
        """Numbers of items, labelled items (with an effective label), corrected and verified items."""
        row = self._read(
            "SELECT COUNT(*), "
            "COALESCE(SUM(CASE WHEN source = 'original' THEN original ELSE current END IS NOT NULL), 0), "
            "COALESCE(SUM(source != 'original'), 0), COALESCE(SUM(verified != 0), 0) FROM labels"
        )[0]
        return {"items": row[0], "labelled": row[1], "corrected": row[2], "verified": row[3]}

    def history(self, item: ItemRef | None = None) -> list[Change]:
        """Every change to the item (to every item when None), oldest first."""
        sql = "SELECT item, old, new, old_source, new_source, verified, time, kind FROM history"
        rows = (
            self._read(sql + " ORDER BY id")
            if item is None
            else self._read(sql + " WHERE item = ? ORDER BY id", (_name(item),))
        )
        return [
            Change(r[0], decode_label(r[1]), decode_label(r[2]), r[3], r[4], bool(r[5]), r[6], r[7])
            for r in rows
        ]

    # -- edits ---------------------------------------------------------------------------------------------

    def _edit(
        self, item: ItemRef, kind: str, change: Callable[[LabelRecord], tuple[Label | None, str, bool]]
    ) -> LabelRecord:
        """Apply ``change(old record) -> (current, source, verified)`` and its history row in one transaction."""
        name = _name(item)

        def work(conn: sqlite3.Connection) -> tuple[LabelRecord, Entry]:
            rows = conn.execute(
                "SELECT item, original, current, source, verified FROM labels WHERE item = ?", (name,)
            ).fetchall()
            now = time.time()
            if rows:
                old = self._record(rows[0])
            else:
                original = item.label if isinstance(item, Item) else None
                conn.execute(
                    "INSERT INTO labels (item, original, current, source, verified, updated) "
                    "VALUES (?, ?, NULL, 'original', 0, ?)",
                    (name, encode_label(original), now),
                )
                old = LabelRecord(name, decode_label(encode_label(original)), None, "original", False)
            current, source, verified = change(old)
            new = LabelRecord(name, old.original, current, source, verified)
            conn.execute(
                "UPDATE labels SET current = ?, source = ?, verified = ?, updated = ? WHERE item = ?",
                (encode_label(current), source, int(verified), now, name),
            )
            hid = conn.execute(
                "INSERT INTO history (item, old, new, old_source, new_source, verified, time, kind) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    encode_label(old.effective),
                    encode_label(new.effective),
                    old.source,
                    source,
                    int(verified),
                    now,
                    kind,
                ),
            ).lastrowid
            assert hid is not None  # an INSERT sets lastrowid
            entry = Entry(
                hid, now, name, kind, old.effective, old.source, current, source, verified, old.original
            )
            return new, entry

        rec, entry = self._write(work)
        self._journal(entry)
        self._notify([rec])
        return rec

    def _journal(self, entry: Entry) -> None:
        """Append a committed edit to the journal (flushed to disk); a refusing disk is logged, not raised."""
        try:
            self.journal.append([entry])
            self.journal_error = None
        except OSError as e:
            self.journal_error = f"the edit of {entry.item} is saved but not journaled: {e}"
            log.error("label store %s: %s", self.db_path, self.journal_error)

    def correct(self, item: ItemRef, label: Iterable[float], source: str = "corrected") -> LabelRecord:
        """Set the item's label (a correction, or with ``source='prediction'`` an accepted prediction)."""
        if source not in ("corrected", "prediction"):
            raise ValueError(f"a correction's source is 'corrected' or 'prediction', not {source!r}")
        lbl = require_label(self.ds, item, label)
        return self._edit(item, "correct", lambda old: (lbl, source, _still_verified(old, lbl)))

    def revert(self, item: ItemRef) -> LabelRecord:
        """Drop the correction so the original label applies again (the history keeps the change)."""
        return self._edit(item, "revert", lambda old: (None, "original", _still_verified(old, old.original)))

    def set_verified(self, item: ItemRef, verified: bool = True) -> LabelRecord:
        """Mark the item's effective label as checked by a person (or clear the mark)."""
        return self._edit(item, "verify", lambda old: (old.current, old.source, bool(verified)))

    def set_state(
        self, item: ItemRef, current: Iterable[float] | None, source: str, verified: bool
    ) -> LabelRecord:
        """Restore an exact earlier state (current, source, verified), as GUI undo/redo does."""
        if source not in SOURCES:
            raise ValueError(f"unknown label source {source!r}; expected one of {SOURCES}")
        cur = None if current is None else require_label(self.ds, item, current)
        return self._edit(item, "set_state", lambda old: (cur, source, bool(verified)))

    # -- predictions ---------------------------------------------------------------------------------------

    def put_predictions(self, run_id: str, rows: Iterable[PredictionRow]) -> None:
        """Save a run's predictions (replacing that run's earlier rows for the same items; labels untouched)."""
        data = [
            (run_id, r.item, encode_label(_check_label(r.pred)), _opt_float(r.error), _opt_float(r.spread),
             _opt_float(r.score), encode_label(r.interval), _opt_float(r.coverage))
            for r in rows
        ]  # fmt: skip

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO prediction_runs VALUES (?, ?)", (run_id, time.time()))
            conn.executemany(
                "INSERT OR REPLACE INTO predictions (run_id, item, pred, error, spread, score, interval, coverage)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                data,
            )
            filekeys.record_file_keys(conn, self.root, run_id, [d[1] for d in data])

        self._write(work)

    def predictions(self, run_id: str) -> dict[str, PredictionRow]:
        """A run's predictions by item name (empty for an unknown run)."""
        rows = self._read(
            "SELECT item, pred, error, spread, score, interval, coverage FROM predictions WHERE run_id = ?"
            " ORDER BY rowid",
            (run_id,),
        )
        return {
            r[0]: PredictionRow(r[0], decode_label(r[1]), r[2], r[3], r[4], decode_label(r[5]), r[6])  # type: ignore[arg-type]
            for r in rows
        }

    def prediction_runs(self) -> list[str]:
        """Run ids that have predictions, oldest first."""
        return [r[0] for r in self._read("SELECT run_id FROM prediction_runs ORDER BY created, rowid")]

    def delete_predictions(self, run_id: str) -> None:
        """Forget a run's predictions."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM predictions WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM prediction_runs WHERE run_id = ?", (run_id,))
            filekeys.forget_file_keys(conn, run_id)

        self._write(work)

    def stale_predictions(self, run_id: str) -> set[str]:
        """Items of a run whose image changed on disk since it was predicted (show the image as it is now)."""
        return self._retry(lambda conn: filekeys.stale_items(conn, self.root, run_id))
