"""Effective labels as rows and files (CSV, JSON): what ``imgreg labels`` and the app's File > Export write."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from engine.core import Dataset
from engine.labels.store import LabelStore


def point_columns(n_points: int) -> list[str]:
    """Column names of a point label: ``x, y`` or ``x1, y1, x2, y2, ...``."""
    if n_points == 1:
        return ["x", "y"]
    return [f"{c}{i}" for i in range(1, n_points + 1) for c in ("x", "y")]


def label_columns(ds: Dataset) -> list[str]:
    """Column names of this dataset's labels."""
    return point_columns(ds.n_points) if ds.kind == "point" else ["value"]


def label_rows(ds: Dataset, store: LabelStore) -> list[dict[str, Any]]:
    """Effective labels as rows: item, group, label columns, source, verified (items without a label skipped)."""
    records = store.records()
    cols = label_columns(ds)
    rows = []
    for it in ds.items:
        rec = records.get(it.name)
        if rec is None or rec.effective is None:
            continue
        row: dict[str, Any] = {"item": it.name, "group": it.group}
        row.update(dict(zip(cols, rec.effective)))
        row.update({"source": rec.source, "verified": bool(rec.verified)})
        rows.append(row)
    return rows


def write_labels(rows: list[dict[str, Any]], cols: list[str], fmt: str, out: io.TextIOBase) -> None:
    """Write label rows as CSV or JSON."""
    if fmt == "json":
        json.dump(rows, out, indent=1)
        out.write("\n")
        return
    writer = csv.DictWriter(
        out, fieldnames=["item", "group", *cols, "source", "verified"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)


def labels_text(ds: Dataset, store: LabelStore, fmt: str) -> tuple[str, int]:
    """The effective labels of ``ds`` as CSV or JSON text, and how many rows it holds."""
    rows = label_rows(ds, store)
    buf = io.StringIO()
    write_labels(rows, label_columns(ds), fmt, buf)
    return buf.getvalue(), len(rows)
