"""Run folders as files (no torch): names, ids, JSON and CSV readers, listing and resolving runs.

The GUI reads runs through this module; ``engine.learn.models`` adds saving and loading models on top of it.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write_text
from engine.labels.location import store_dir_of
from engine.labels.store import LabelStore

CONFIG = "config.json"
HISTORY = "history.csv"
WEIGHTS = "model.safetensors"
SUMMARY = "summary.json"
RUN_FORMAT = 1


class RunError(Exception):
    """A run folder is missing, incomplete or unreadable."""


def runs_dir(store_dir: Path) -> Path:
    """The folder holding the runs of a store (``<store.dir>/runs``)."""
    return Path(store_dir) / "runs"


def run_parent(root: Path | str, store: LabelStore | None = None) -> Path:
    """Where new runs of a dataset go: its store's ``runs`` folder (the per-user one when the data is read-only)."""
    return runs_dir(store_dir_of(root, store))


def new_run_id(parent: Path, prefix: str = "") -> str:
    """A fresh, sortable run id (``YYYYmmdd-HHMMSS`` plus a counter when taken) not yet used in ``parent``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{prefix}{stamp}"
    run_id, n = base, 1
    while (parent / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def _json_default(o: Any) -> Any:
    """JSON for paths, tuples and numpy scalars."""
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default, allow_nan=True))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` ({} when absent, unreadable or not an object)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_history(run_dir: Path) -> list[dict[str, str]]:
    """Rows of ``history.csv`` (strings, as written)."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's ``summary.json`` ({} when absent or unreadable)."""
    return read_json(Path(run_dir) / SUMMARY)


def is_run(path: Path) -> bool:
    """Whether ``path`` is a run folder (has config.json and weights)."""
    path = Path(path)
    return (path / CONFIG).is_file() and any((path / n).is_file() for n in (WEIGHTS, "model.pth"))


def list_runs(store_dir: Path) -> list[Path]:
    """Complete run folders of a store, oldest first."""
    parent = runs_dir(store_dir)
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and is_run(p))


def resolve_run(spec: str | Path, store_dir: Path | None = None) -> Path:
    """A run folder from a run id of the store or a path to any run folder (RunError otherwise)."""
    path = Path(spec)
    if is_run(path):
        return path
    if store_dir is not None and is_run(runs_dir(store_dir) / str(spec)):
        return runs_dir(store_dir) / str(spec)
    known = ", ".join(p.name for p in list_runs(store_dir)) if store_dir is not None else ""
    raise RunError(f"unknown run {spec!r}" + (f" (runs: {known})" if known else " (no runs yet)"))
