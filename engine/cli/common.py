"""Helpers shared by the CLI's commands: the one-line error, opening a dataset, option parsers, CSV output."""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from engine import options
from engine.atomic import atomic_write_text
from engine.core import Dataset
from engine.data import DatasetError, open_dataset
from engine.labels.destination import ExportError, check_file_out
from engine.labels.store import LabelStore, StoreError


class Parser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line (the reason, no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE`` as one line and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def check_out(ds: Dataset, out: str | None) -> None:
    """CliError now, before any work, when ``--out`` may not be written (a source file, a folder, a path below
    a file: ``engine.labels.destination``)."""
    if out:
        try:
            check_file_out(ds, out)
        except ExportError as e:
            raise CliError(str(e)) from None


def need_folders(store_dir: Path | str, *names: str) -> None:
    """CliError now, before any work, when a folder a job will write into (``runs``, ``embeddings``, ``cache``
    under the store) is a file or cannot be created."""
    for name in names:
        path = Path(store_dir) / name
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = "it is a file" if path.exists() and not path.is_dir() else (e.strerror or str(e))
            raise CliError(f"cannot use {path} ({why}): move it aside and run again") from None


def add_image_root(s: argparse.ArgumentParser) -> None:
    """The ``--image-root`` option of commands that open a dataset (COCO files whose images live elsewhere)."""
    s.add_argument(
        "--image-root", help="COCO datasets: folder the image paths start from (default: the JSON's)"
    )


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (or a single number for a square) as (h, w), by the option declarations' rule."""
    try:
        return options.parse_size(text)
    except options.OptionError as e:
        raise argparse.ArgumentTypeError(f"size {text!r} {e}") from None


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """Comma-separated ``HxW`` sizes."""
    return [parse_size(p) for p in text.split(",")]


def parse_list(text: str) -> list[str]:
    """A comma-separated list (empty entries dropped)."""
    return [g for g in text.split(",") if g]


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
