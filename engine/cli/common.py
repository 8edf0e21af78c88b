"""Helpers shared by the CLI's commands: the one-line error, opening a dataset, option parsers, CSV output."""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write_text
from engine.core import Dataset
from engine.data import DatasetError, open_dataset
from engine.labels.store import LabelStore, StoreError


class CliError(Exception):
    """A whole job cannot run: printed as one line, exit code 2."""


def open_with_store(path: str, image_root: str | None = None) -> tuple[Dataset, LabelStore]:
    """Index the dataset at ``path`` and open its label store (one-line errors when either fails)."""
    if not Path(path).exists():
        raise CliError(f"dataset {path} does not exist")
    try:
        ds = open_dataset(Path(path), image_root=image_root)
        store = LabelStore.open(ds)
    except (DatasetError, StoreError) as e:
        raise CliError(str(e)) from None
    if store.recovery_message:  # one line saying what was recovered, before the command's own output
        print(f"imgreg: {store.recovery_message}", file=sys.stderr)
    return ds, store


def add_image_root(s: argparse.ArgumentParser) -> None:
    """The ``--image-root`` option of commands that open a dataset (COCO files whose images live elsewhere)."""
    s.add_argument(
        "--image-root", help="COCO datasets: folder the image paths start from (default: the JSON's)"
    )


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (or a single number for a square) as (h, w)."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 240x320") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW with both sides >= 8")
    return parts[0], parts[1]


def parse_size_auto(text: str) -> tuple[int, int] | str:
    """``auto`` (follow the data's image shape) or ``HxW``."""
    return "auto" if text.strip().lower() == "auto" else parse_size(text)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """Comma-separated ``HxW`` sizes."""
    return [parse_size(p) for p in text.split(",")]


def parse_list(text: str) -> list[str]:
    """A comma-separated list (empty entries dropped)."""
    return [g for g in text.split(",") if g]


def parse_lr(text: str) -> float | None:
    """A learning rate, or ``find`` to run the LR finder first."""
    if text.lower() in ("find", "auto"):
        return None
    try:
        lr = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"learning rate {text!r} is not a number or 'find'") from None
    if not lr > 0:
        raise argparse.ArgumentTypeError("learning rate must be positive")
    return lr


def write_csv(path: str | None, header: list[str], rows: list[list[Any]]) -> None:
    """CSV to a file (written atomically) or standard output."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    if path is None:
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
    else:
        atomic_write_text(Path(path), buf.getvalue())


def parse_coverage(text: str) -> float:
    """A coverage strictly between 0 and 1 (``--coverage 0.9``)."""
    from engine.audit.conformal import CoverageError, check_coverage

    try:
        return check_coverage(float(text))
    except (ValueError, CoverageError) as e:
        msg = str(e) if isinstance(e, CoverageError) else f"coverage must be a number like 0.9, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def num(v: float | None) -> str:
    """A float cell of a CSV (empty for None)."""
    return "" if v is None else repr(float(v))


def fmt_metrics(m: dict[str, Any]) -> str:
    """Metrics as ``name value, ...`` for people."""
    return ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)) and math.isfinite(v))
