"""Where a dataset's label store lives: ``<dataset>/.imgreg``, or the per-user data folder when read-only."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

DB_NAME = "labels.sqlite"
DATA_DIR_ENV = "IMGREG_DATA_DIR"
FORCE_USER_DATA_ENV = "IMGREG_FORCE_USER_DATA"


def user_data_root() -> Path:
    """Base of the per-user data folder: ``$IMGREG_DATA_DIR`` or platformdirs' ``user_data_dir('imgreg')``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("imgreg"))


def user_data_dir_for(root: Path | str) -> Path:
    """The per-user folder for a dataset root: ``datasets/<hash of resolved path>-<folder name>``."""
    resolved = Path(root).resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", resolved.name)[:60] or "root"
    return user_data_root() / "datasets" / f"{digest}-{safe}"


def _writable_dir(folder: Path) -> bool:
    """Whether ``folder`` can be created and a file written and removed in it (tried for real)."""
    try:
        folder.mkdir(parents=False, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}-{threading.get_ident()}"
        with open(probe, "wb") as f:
            f.write(b"ok")
        probe.unlink()
        db = folder / DB_NAME
        return not db.exists() or os.access(db, os.R_OK | os.W_OK)
    except OSError:
        return False


def _marked_read_only(root: Path | str) -> bool:
    """Whether the dataset folder has no write permission bits (honoured even when running as root)."""
    try:
        return os.stat(root).st_mode & 0o222 == 0
    except OSError:
        return False


def store_dir(root: Path | str, force_user_data: bool | None = None) -> Path:
    """Where the store of ``root`` lives: ``<root>/.imgreg`` if writable, else (or if already there) per user."""
    if force_user_data is None:
        force_user_data = os.environ.get(FORCE_USER_DATA_ENV, "") not in ("", "0")
    folder = user_data_dir_for(root)
    local = Path(root) / ".imgreg"
    # Once labels live in the user folder (the dataset was read-only), keep them there even if it no longer is.
    moved = (folder / DB_NAME).exists() and not (local / DB_NAME).exists()
    force_user_data = force_user_data or (_marked_read_only(root) and not (local / DB_NAME).exists())
    if not force_user_data and not moved and _writable_dir(local):
        return local
    folder.mkdir(parents=True, exist_ok=True)
    _seed(Path(root) / ".imgreg" / DB_NAME, folder / DB_NAME)
    return folder


class _HasDir(Protocol):
    dir: Path


def store_dir_of(root: Path | str, store: _HasDir | None = None) -> Path:
    """The open store's folder, or where the store of ``root`` lives when none is open (runs and caches go there)."""
    return Path(store.dir) if store is not None else store_dir(root)


def _seed(src: Path, dst: Path) -> None:
    """Copy a read-only dataset's existing store into a new per-user one so no labels are lost."""
    if dst.exists() or not src.is_file():
        return
    tmp = dst.with_name(f"{dst.name}.seed-{os.getpid()}")
    # immutable=1 is the last resort: a read-only folder may not allow the -shm file that WAL reads need.
    for query in ("mode=ro", "mode=ro&immutable=1"):
        try:
            with contextlib.closing(sqlite3.connect(f"{src.resolve().as_uri()}?{query}", uri=True)) as s:
                s.execute("SELECT COUNT(*) FROM labels").fetchone()
                with contextlib.closing(sqlite3.connect(tmp)) as d:
                    s.backup(d)
            os.replace(tmp, dst)
            return
        except (sqlite3.Error, OSError) as e:
            (log.warning if "immutable" in query else log.debug)("cannot copy labels from %s: %s", src, e)
            with contextlib.suppress(OSError):
                tmp.unlink()
