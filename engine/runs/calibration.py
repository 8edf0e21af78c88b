"""A run's calibration set on disk: its validation items' predictions, spreads and labels (``calibration.json``).

Training writes it, so ``predict --coverage`` can give calibrated intervals on any dataset (a folder of new
frames has no validation items of the run's) and an exported ONNX file can carry it in its metadata. The
residuals, not fitted quantiles, are kept: any coverage and Mondrian split can be asked later, and the fit is
the same code as on the run's own dataset (``engine.audit.conformal.calibrate``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.core import Label
from engine.labels.store import PredictionRow
from engine.runs.files import write_json
from engine.runs.schema import KINDS, SchemaError

CALIBRATION = "calibration.json"
VERSION = 1


def calibration_path(run_dir: Path | str) -> Path:
    """Where a run keeps its calibration set."""
    return Path(run_dir) / CALIBRATION


def calibration_data(rows: Sequence[PredictionRow], labels: Mapping[str, Label], kind: str) -> dict[str, Any]:
    """The JSON object of the labelled ``rows`` (prediction, spread, label), as ``read_calibration`` reads it."""
    keep = [r for r in rows if labels.get(r.item) is not None and len(labels[r.item]) == len(r.pred)]
    return {
        "version": VERSION,
        "kind": kind,
        "items": [
            {"item": r.item, "pred": list(r.pred), "spread": r.spread, "label": list(labels[r.item])}
            for r in keep
        ],
    }


def write_calibration(
    run_dir: Path | str, rows: Sequence[PredictionRow], labels: Mapping[str, Label], kind: str
) -> Path:
    """Save the calibration set beside the run's model (atomically); returns the path."""
    path = calibration_path(run_dir)
    write_json(path, calibration_data(rows, labels, kind))
    return path


def _nums(v: Any, what: str, n: int | None = None) -> tuple[float, ...]:
    ok = isinstance(v, list) and v and (n is None or len(v) == n)
    if not ok or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
    ):
        raise SchemaError(f"{what} must be a list of finite numbers, not {str(v)[:40]!r}")
    return tuple(float(x) for x in v)


def check_calibration(d: Any) -> tuple[str, list[PredictionRow], dict[str, Label]]:
    """``(kind, rows, labels)`` of a calibration object (from a file or ONNX metadata); SchemaError."""
    if not isinstance(d, dict) or d.get("version") != VERSION:
        raise SchemaError(f"calibration must be a JSON object of version {VERSION}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise SchemaError(f"calibration kind must be one of {', '.join(KINDS)}")
    items = d.get("items")
    if not isinstance(items, list):
        raise SchemaError("calibration items must be a list")
    rows, labels = [], {}
    for i, e in enumerate(items):
        if not isinstance(e, dict) or not isinstance(e.get("item"), str):
            raise SchemaError(f"calibration item {i} must be an object with an 'item' name")
        pred = _nums(e.get("pred"), f"calibration item {i} pred")
        label = _nums(e.get("label"), f"calibration item {i} label", len(pred))
        sp = e.get("spread")
        if sp is not None and not (
            isinstance(sp, (int, float)) and not isinstance(sp, bool) and math.isfinite(sp)
        ):
            raise SchemaError(f"calibration item {i} spread must be a finite number or null")
        rows.append(PredictionRow(e["item"], pred, None, None if sp is None else float(sp)))
        labels[e["item"]] = label
    return kind, rows, labels


def read_calibration(run_dir: Path | str) -> tuple[str, list[PredictionRow], dict[str, Label]] | None:
    """The run's saved calibration set, or None when it has none (runs saved before it was written); SchemaError."""
    path = calibration_path(run_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise SchemaError(f"{path.name}: unreadable ({type(e).__name__})") from None
    return check_calibration(data)
