"""Label store commands: ``imgreg check`` (integrity and journal agreement) and ``imgreg recover`` (rebuild)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import CliError, open_with_store
from engine.data import DatasetError, open_dataset
from engine.labels import recovery
from engine.labels.journal import Journal
from engine.labels.store import _SCHEMA, DB_NAME, LabelStore, StoreError, store_dir


def _folder(path: str) -> tuple[Any, Path]:
    if not Path(path).exists():
        raise CliError(f"dataset {path} does not exist")
    try:
        ds = open_dataset(Path(path))
    except DatasetError as e:
        raise CliError(str(e)) from None
    return ds, store_dir(ds.root)


def store_report(folder: Path) -> dict[str, Any]:
    """Integrity of the store in ``folder`` and its agreement with the journal, without changing anything."""
    db, journal = folder / DB_NAME, Journal(folder)
    jr = journal.read()
    report: dict[str, Any] = {
        "store": str(db),
        "journal": str(journal.path),
        "journal_entries": len(jr.entries),
        "journal_bad_lines": jr.bad_lines,
        "backups": [b.name for b in recovery.backups(folder)],
        "integrity": recovery.diagnose(db, journal, full=True) or "ok",
        "missing_edits": None,
        "disagreeing_items": None,
    }
    if report["integrity"] == "ok" and db.exists():
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            fit = recovery.fitting(
                conn, jr
            )  # lines replay would refuse count as unreadable, as recovery skips them
            report["journal_bad_lines"], jr = fit.bad_lines, fit
            report["missing_edits"] = len(recovery.missing_edits(conn, jr))
            report["disagreeing_items"] = sorted(e.item for e in recovery.disagreements(conn, jr))
    report["ok"] = (
        report["integrity"] == "ok" and not report["missing_edits"] and not report["disagreeing_items"]
    )
    return report


def cmd_check(args: argparse.Namespace) -> int:
    """``imgreg check``: exit 0 when the store is sound and agrees with its journal, else 1."""
    _, folder = _folder(args.dataset)
    try:
        rep = store_report(folder)
    except (sqlite3.Error, OSError) as e:
        raise CliError(f"cannot check the label store in {folder}: {e}") from None
    if args.json:
        json.dump(rep, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0 if rep["ok"] else 1
    out = sys.stdout
    out.write(f"store     {rep['store']}\nintegrity {rep['integrity']}\n")
    out.write(f"journal   {rep['journal_entries']} entries, {rep['journal_bad_lines']} unreadable lines\n")
    newest = f" (newest {rep['backups'][0]})" if rep["backups"] else ""
    out.write(f"backups   {len(rep['backups'])}{newest}\n")
    if rep["disagreeing_items"] is not None:
        out.write(
            f"agreement {rep['missing_edits']} journaled edits missing from the store, "
            f"{len(rep['disagreeing_items'])} items whose state differs\n"
        )
        for name in rep["disagreeing_items"][:20]:
            out.write(f"  {name}\n")
    if not rep["ok"]:
        out.write(f"run `imgreg recover {args.dataset}` to rebuild the store from its backup and journal\n")
    return 0 if rep["ok"] else 1


def cmd_recover(args: argparse.Namespace) -> int:
    """``imgreg recover``: move the store aside and rebuild it from the newest good backup plus the journal."""
    ds, folder = _folder(args.dataset)
    db, journal = folder / DB_NAME, Journal(folder)
    try:
        with recovery.store_lock(folder):
            reason = recovery.diagnose(db, journal, full=True)
            if reason is None and db.exists():
                with contextlib.closing(sqlite3.connect(db)) as conn:
                    recovery.backup_now(conn, folder)  # a sound store is the newest backup: nothing is lost
            msg = recovery.rebuild(db, journal, _SCHEMA, reason or recovery.ON_REQUEST)
        LabelStore.open(ds).close()  # sync the originals into the rebuilt store
    except (recovery.RecoveryError, StoreError, sqlite3.Error, OSError) as e:
        raise CliError(f"cannot recover the label store in {folder}: {e}") from None
    print(msg)
    return 0


def cmd_orphans(args: argparse.Namespace) -> int:
    """``imgreg orphans``: corrections kept for items whose files are gone, as CSV."""
    from engine.labels.ondisk import orphans

    ds, store = open_with_store(args.dataset)
    with store:
        recs = orphans(store, ds)
    sys.stdout.write("item,label,source,verified\n")
    for r in recs:
        eff = "" if r.effective is None else " ".join(repr(v) for v in r.effective)
        sys.stdout.write(f"{r.item},{eff},{r.source},{int(r.verified)}\n")
    return 0


def register(sub: Any) -> None:
    """Add the store commands to the main CLI's subparsers."""
    s = sub.add_parser("check", help="check the label store's integrity and its agreement with the journal")
    s.add_argument("dataset")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("recover", help="rebuild the label store from its newest good backup plus the journal")
    s.add_argument("dataset")
    s.set_defaults(func=cmd_recover)

    s = sub.add_parser("orphans", help="corrections kept for items whose files are no longer in the dataset")
    s.add_argument("dataset")
    s.set_defaults(func=cmd_orphans)
