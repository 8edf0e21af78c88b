"""Recovering a damaged label store: diagnose it, move it aside, rebuild it from a backup plus the journal."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from engine.labels.journal import SNAPSHOT, Entry, Journal, JournalRead, _sync_dir

log = logging.getLogger(__name__)

BACKUP_DIR = "backups"
BACKUP_KEEP = 5  # rotating backups kept per store
BACKUP_EVERY_S = 24 * 3600  # at most one backup a day (taken when the store is opened)
LOCK_NAME = ".labels.lock"
LOCK_TIMEOUT_S = 60.0
HEADER = b"SQLite format 3\x00"
_DAMAGE_WORDS = ("malformed", "not a database", "corrupt", "no such table", "file is encrypted", "decode")
ON_REQUEST = "rebuilt on request"


class RecoveryError(Exception):
    """Recovery itself could not run (e.g. another process held the store's lock for too long)."""


@contextlib.contextmanager
def store_lock(folder: Path) -> Iterator[None]:
    """Hold the store folder's lock, so only one process diagnoses or rebuilds at a time."""
    try:
        with FileLock(str(Path(folder) / LOCK_NAME), timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout:
        raise RecoveryError(
            f"another imgreg process has held {folder / LOCK_NAME} for {LOCK_TIMEOUT_S:.0f} s"
        ) from None


def _enc(label: tuple[float, ...] | None) -> str | None:
    """The store's label text (the same as ``store.encode_label``)."""
    return None if label is None else json.dumps([float(v) for v in label])


def _dec(text: str | None) -> tuple[float, ...] | None:
    return None if text is None else tuple(float(v) for v in json.loads(text))


def backups(folder: Path) -> list[Path]:
    """The store's backups, newest first."""
    return sorted((Path(folder) / BACKUP_DIR).glob("labels-*.sqlite"), reverse=True)


def _is_damage(e: sqlite3.Error) -> bool:
    msg = str(e).lower()
    return not isinstance(e, sqlite3.OperationalError) or any(w in msg for w in _DAMAGE_WORDS)


def diagnose(db: Path, journal: Journal, full: bool = False) -> str | None:
    """Why the store file cannot be trusted (one short phrase), or None when it looks sound.

    ``full`` runs SQLite's ``integrity_check`` instead of the cheaper ``quick_check``.
    """
    has_record = journal.exists() or bool(backups(db.parent))
    if not db.exists():
        return "the database file is gone" if has_record else None
    size = db.stat().st_size
    if size == 0:
        return "the database file is empty (zero bytes)" if has_record else None
    with open(db, "rb") as f:
        if f.read(len(HEADER)) != HEADER:
            return "the file has no SQLite header"
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
            # a damaged schema or page can put bytes that are not UTF-8 into the check's own messages
            conn.text_factory = lambda b: b.decode("utf-8", "replace")
            rows = conn.execute(f"PRAGMA {'integrity_check' if full else 'quick_check'}").fetchall()
            if [r[0] for r in rows] != ["ok"]:
                return f"{'integrity' if full else 'quick'} check failed: {rows[0][0]}"
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if has_record and not {"labels", "history"} <= tables:
                return "the database holds no labels table"
    except sqlite3.Error as e:
        if _is_damage(e):
            return str(e)
        raise
    except UnicodeDecodeError:  # SQLite's own error message quoted damaged bytes (e.g. a garbled schema)
        return "the database schema is damaged"
    return None


def _move_aside(db: Path) -> Path | None:
    """Rename the store and its WAL pieces with a timestamp (never deleted); the new name of the main file."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = db.with_name(f"{db.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = db.with_name(f"{db.name}.damaged-{stamp}-{n}")
    moved = None
    for suffix in ("", "-wal", "-shm", "-journal"):
        src = db.with_name(db.name + suffix)
        if src.exists():
            os.replace(src, aside.with_name(aside.name + suffix))
            moved = moved or aside.with_name(aside.name + suffix)
    _sync_dir(db.parent)
    return moved


@dataclass
class Replayed:
    """What a replay of the journal restored: history rows (edits) and item states."""

    edits: int = 0
    items: list[str] = field(default_factory=list)


def _last_edit_ids(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT item, MAX(id) FROM history WHERE kind != 'sync' GROUP BY item"))


def _history(conn: sqlite3.Connection, jr: JournalRead) -> dict[int, tuple]:
    """History rows the journal may name: id -> (item, new effective text, new source, verified)."""
    lo = min((e.id for e in jr.entries), default=0)
    rows = conn.execute("SELECT id, item, new, new_source, verified FROM history WHERE id >= ?", (lo,))
    return {r[0]: (r[1], _dec(r[2]), r[3], bool(r[4])) for r in rows}


def disagreements(conn: sqlite3.Connection, jr: JournalRead) -> list[Entry]:
    """Journal entries (each item's newest) whose state the store lacks and has no newer edit of its own.

    Where the store's row agrees with its own history row of that edit and the journal line does not, the
    journal line is the damaged one (a sync client garbled it) and the store is kept.
    """
    rows = conn.execute("SELECT item, original, current, source, verified FROM labels")
    states = {r[0]: (_dec(r[2]), r[3], bool(r[4]), _dec(r[1])) for r in rows}
    last, hist = _last_edit_ids(conn), _history(conn, jr)
    out = []
    for name, e in jr.final_states().items():
        st = states.get(name)
        if (st is not None and st[:3] == (e.new, e.source, e.verified)) or last.get(name, 0) > e.id:
            continue
        h = hist.get(e.id)
        if h is not None and e.kind != SNAPSHOT:
            if h[0] != name:  # that edit was another item's: this line's item name is garbled
                continue
            store_eff = None if st is None else (st[3] if st[1] == "original" else st[0])
            if (
                st is not None
                and h[1:] == (store_eff, st[1], st[2])
                and h[1:] != (e.effective, e.source, e.verified)
            ):
                continue
        out.append(e)
    return out


def missing_edits(conn: sqlite3.Connection, jr: JournalRead) -> list[Entry]:
    """Journaled edits whose history row the store lacks."""
    hist = _history(conn, jr)
    return [e for e in jr.entries if e.kind != SNAPSHOT and e.id not in hist]


def replay(conn: sqlite3.Connection, jr: JournalRead) -> Replayed:
    """Bring the store up to the journal in one transaction: missing history rows, then each item's state."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = Replayed()
        taken = {r[0] for r in conn.execute("SELECT id FROM history")}
        for e in missing_edits(conn, jr):
            row = (
                e.item,
                _enc(e.old),
                _enc(e.effective),
                e.old_source,
                e.source,
                int(e.verified),
                e.time,
                e.kind,
            )
            cols = "item, old, new, old_source, new_source, verified, time, kind"
            if e.id in taken:  # the id went to another row meanwhile: keep the edit under a new id
                conn.execute(f"INSERT INTO history ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            else:
                conn.execute(
                    f"INSERT INTO history (id, {cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (e.id, *row)
                )
                taken.add(e.id)
            done.edits += 1
        for e in disagreements(conn, jr):
            conn.execute(
                "INSERT INTO labels (item, original, current, source, verified, updated) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (item) DO UPDATE SET current = excluded.current, source = excluded.source, "
                "verified = excluded.verified, updated = excluded.updated",
                (e.item, _enc(e.original), _enc(e.new), e.source, int(e.verified), e.time),
            )
            done.items.append(e.item)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return done


def _good_backup(folder: Path) -> Path | None:
    """The newest backup that passes SQLite's quick check."""
    for b in backups(folder):
        with contextlib.suppress(sqlite3.Error):
            with contextlib.closing(sqlite3.connect(f"{b.resolve().as_uri()}?mode=ro", uri=True)) as c:
                if c.execute("PRAGMA quick_check").fetchone()[0] == "ok":
                    return b
    return None


def rebuild(db: Path, journal: Journal, schema: str, reason: str) -> str:
    """Move the store aside and rebuild it from the newest good backup plus the journal; one line saying so."""
    aside = _move_aside(db)
    tmp = db.with_name(db.name + ".rebuild")
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp.with_name(tmp.name + suffix))
    base = _good_backup(db.parent)
    jr = journal.read()
    with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as conn:
        if base is not None:
            with contextlib.closing(sqlite3.connect(f"{base.resolve().as_uri()}?mode=ro", uri=True)) as src:
                src.backup(conn)
        conn.executescript(schema)  # a store rebuilt from no backup gets its meta rows when it is opened
        done = replay(conn, jr)
        conn.execute("PRAGMA journal_mode = WAL")
        n_kept = conn.execute(
            "SELECT COUNT(*) FROM labels WHERE source != 'original' OR verified != 0"
        ).fetchone()[0]
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, db)
    _sync_dir(db.parent)
    moved = f"moved it to {aside.name}" if aside else "nothing was left to move aside"
    from_what = f"backup {base.name}" if base else "an empty store"
    bad = f" ({jr.bad_lines} unreadable journal lines skipped)" if jr.bad_lines else ""
    reason = " ".join(reason.split())[:200]  # SQLite's check reports span lines: the message stays one line
    what = "was rebuilt on request" if reason == ON_REQUEST else f"was damaged ({reason})"
    msg = (
        f"label store {db.name} {what}; {moved} and rebuilt it from {from_what} plus "
        f"{done.edits} journaled edits: {n_kept} corrected or verified items recovered{bad}"
    )
    log.info(msg)
    return msg


def catch_up(db: Path, journal: Journal) -> str | None:
    """Replay journaled edits a sound store lacks (e.g. its WAL was lost); one line saying so, or None."""
    if not journal.exists() or not db.exists():
        return None
    jr = journal.read()
    with contextlib.closing(sqlite3.connect(db, timeout=10, isolation_level=None)) as conn:
        if not missing_edits(conn, jr) and not disagreements(conn, jr):
            return None
        done = replay(conn, jr)  # checks again under the write lock
    if not done.edits and not done.items:
        return None
    msg = (
        f"label store {db.name} lacked {done.edits} journaled edits (a lost or damaged write-ahead log?); "
        f"restored them from {journal.path.name}: {len(done.items)} items recovered"
    )
    log.info(msg)
    return msg


def recover_if_needed(db: Path, journal: Journal, schema: str) -> str | None:
    """Rebuild a damaged store or catch a stale one up with its journal (under the folder lock by the caller)."""
    reason = diagnose(db, journal)
    if reason is not None:
        return rebuild(db, journal, schema, reason)
    try:
        return catch_up(db, journal)
    except sqlite3.Error as e:
        if not _is_damage(e):
            raise
        return rebuild(db, journal, schema, str(e))


def snapshot_entries(conn: sqlite3.Connection) -> list[Entry]:
    """The store's corrected or verified items as journal entries (what a new journal starts from)."""
    last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM history").fetchone()[0]
    now = time.time()
    rows = conn.execute(
        "SELECT item, original, current, source, verified FROM labels WHERE source != 'original' OR verified != 0"
    )
    return [
        Entry(last, now, r[0], SNAPSHOT, None, "original", _dec(r[2]), r[3], bool(r[4]), _dec(r[1]))
        for r in rows
    ]


def backup_now(conn: sqlite3.Connection, folder: Path) -> Path:
    """Copy the store with SQLite's online backup API into ``backups/`` and drop all but the newest few."""
    out = Path(folder) / BACKUP_DIR
    out.mkdir(exist_ok=True)
    dst = out / f"labels-{time.strftime('%Y%m%d-%H%M%S')}.sqlite"
    tmp = dst.with_name(dst.name + ".tmp")
    with contextlib.closing(sqlite3.connect(tmp)) as d:
        conn.backup(d)
        d.execute("PRAGMA journal_mode = DELETE")
    os.replace(tmp, dst)
    for old in backups(folder)[BACKUP_KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()
    return dst


def after_open(conn: sqlite3.Connection, journal: Journal, folder: Path, force_backup: bool = False) -> None:
    """Start a missing journal from the store's state, and take the day's backup when one is due (or forced)."""
    if not journal.exists():
        entries = snapshot_entries(conn)
        if entries:
            journal.append(entries)
    newest = backups(folder)
    due = force_backup or not newest or time.time() - newest[0].stat().st_mtime > BACKUP_EVERY_S
    if due and conn.execute("SELECT EXISTS (SELECT 1 FROM history)").fetchone()[0]:
        backup_now(conn, folder)
