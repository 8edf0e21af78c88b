"""``imgreg audit``: label checks that need no model (sequences, look-alike images, duplicates), one row per item,
most doubtful first (torch-free); and the review-queue columns that ``imgreg rank`` shares."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from engine.audit.findings import Doubt
from engine.audit.run import audit, merge
from engine.cli.common import CliError, add_image_root, num, open_with_store, write_csv
from engine.cli.reporter import Reporter, stdin_control
from engine.core import Cancelled, Dataset


def register(subparsers: Any) -> None:
    """Add ``audit`` to the ``imgreg`` parser."""
    s = subparsers.add_parser(
        "audit", help="doubtful labels without a model: sequences, look-alike images, duplicates"
    )
    s.add_argument("dataset")
    s.add_argument("--out", help="CSV file (default: standard output)")
    s.add_argument("--top", type=int, help="only the K most doubtful items")
    s.add_argument("--json", action="store_true", help="JSON events on stdout and a summary line")
    s.add_argument("--control-stdin", action="store_true", help="read a 'cancel' line on stdin")
    add_image_root(s)
    s.set_defaults(func=cmd_audit)


def expected_header(ds: Dataset) -> list[str]:
    """The expected-label columns: ``expected_x, expected_y`` (then ``expected_x2, ...``), or ``expected``."""
    if ds.kind != "point":
        return ["expected"]
    cols = []
    for p in range(max(1, ds.n_points)):
        tail = "" if p == 0 else str(p + 1)
        cols += [f"expected_x{tail}", f"expected_y{tail}"]
    return cols


def reason_text(d: Doubt) -> str:
    """The item's reasons, strongest first, ``;``-joined."""
    return ";".join(d.reasons)


def expected_cells(d: Doubt, width: int) -> list[str]:
    """The expected label as ``width`` cells (empty where no check expects one, or its length differs)."""
    e = d.expected
    return [num(v) for v in e] if e is not None and len(e) == width else [""] * width


def as_dict(rank: int, d: Doubt) -> dict[str, Any]:
    """One queue row as JSON."""
    e = d.expected
    return {"rank": rank, "item": d.item, "score": d.score, "reason": reason_text(d), "why": d.why,
            "expected": list(e) if e is not None else None}  # fmt: skip


def check_top(top: int | None) -> None:
    """``--top`` must be positive."""
    if top is not None and top < 1:
        raise CliError("--top must be at least 1")


def cmd_audit(args: argparse.Namespace) -> int:
    """``imgreg audit DATASET``: findings of every model-free check, merged per item, most doubtful first."""
    check_top(args.top)
    rep = Reporter(args.json)
    ds, store = open_with_store(args.dataset, args.image_root)
    try:
        with stdin_control(args.control_stdin) as token:
            try:
                rows = merge(audit(ds, store, rep, token))
            except Cancelled:
                raise CliError("audit cancelled") from None
    finally:
        store.close()
    if args.top:
        rows = rows[: args.top]
    header = expected_header(ds)
    if args.out or not args.json:
        table = [
            [i + 1, d.item, num(d.score), reason_text(d), d.why, *expected_cells(d, len(header))]
            for i, d in enumerate(rows)
        ]
        write_csv(args.out, ["rank", "item", "score", "reason", "why", *header], table)
    counts = Counter(f.reason for d in rows for f in d.findings)
    data = {"n": len(rows), "reasons": dict(counts), "top": [as_dict(i + 1, d) for i, d in enumerate(rows[:20])],
            "out": args.out}  # fmt: skip
    if args.json or args.out:
        worst = sum(1 for d in rows if d.score >= 3)
        rep.summary(data, f"{len(rows)} items audited, {worst} with a doubt of 3 or more")
    return 0
