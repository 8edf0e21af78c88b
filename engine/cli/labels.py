"""Label commands: ``imgreg info``, ``labels``, ``correct``, ``revert``, ``verify``."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from engine.atomic import atomic_write_text
from engine.cli.common import CliError, add_image_root, open_with_store
from engine.core import Dataset, Label
from engine.data.cache import list_caches
from engine.labels.export import label_columns, labels_text
from engine.labels.ondisk import orphans
from engine.labels.store import LabelStore


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "min": min(values),
        "max": max(values),
    }


def dataset_info(ds: Dataset, store: LabelStore) -> dict[str, Any]:
    """Format, counts, label statistics, notes and problems of a dataset, as a JSON-able dict."""
    records = store.records()
    eff = {name: rec.effective for name, rec in records.items() if rec.effective is not None}
    names = {it.name for it in ds.items}
    labels = [lab for name, lab in eff.items() if name in names]
    cols = label_columns(ds)
    label_stats = {c: _stats([lab[i] for lab in labels if len(lab) > i]) for i, c in enumerate(cols)}
    counts = {
        "items": len(ds.items),
        "groups": len(ds.groups),
        "labelled": sum(1 for it in ds.items if it.name in eff),
        "corrected": sum(
            1 for it in ds.items if it.name in records and records[it.name].source != "original"
        ),
        "verified": sum(1 for it in ds.items if it.name in records and records[it.name].verified),
        "problems": len(ds.problems),
        "orphans": 0,
    }
    orphaned = orphans(store, ds)
    counts["orphans"] = len(orphaned)
    return {
        "dataset": str(ds.root),
        "format": ds.format,
        "kind": ds.kind,
        "n_points": ds.n_points,
        "store": str(store.dir),
        "counts": counts,
        "label_stats": label_stats,
        "notes": list(ds.notes),
        "problems": [{"item": p.item, "reason": p.reason} for p in ds.problems],
        "orphans": [
            {"item": r.item, "label": r.effective, "source": r.source, "verified": r.verified}
            for r in orphaned
        ],
        "recovered": store.recovery_message,
        "caches": list_caches(store.dir),
    }


def print_info(info: dict[str, Any], out: TextIO) -> None:
    """Print ``dataset_info`` for people."""
    c = info["counts"]
    out.write(f"dataset   {info['dataset']}\nformat    {info['format']} ({info['kind']})\n")
    out.write(f"store     {info['store']}\n")
    out.write(
        f"items     {c['items']} in {c['groups']} groups; {c['labelled']} labelled, {c['corrected']} corrected, "
        f"{c['verified']} verified, {c['problems']} problems\n"
    )
    for col, s in info["label_stats"].items():
        if s:
            out.write(
                f"label {col:<6}mean {s['mean']:.2f}  std {s['std']:.2f}  min {s['min']:.2f}  max {s['max']:.2f}\n"
            )
    for c in info.get("caches", []):
        out.write(
            f"cache     {c['size']}: {c['items']} images, {c['bytes'] / 2**20:.1f} MiB ({c['state']})\n"
        )
    for note in info["notes"]:
        out.write(f"note      {note}\n")
    if info["problems"]:
        out.write(f"problems ({len(info['problems'])}):\n")
        for p in info["problems"]:
            out.write(f"  {p['item']}: {p['reason']}\n")
    if info.get("orphans"):
        out.write(f"orphans ({len(info['orphans'])}, corrections kept for files no longer in the dataset):\n")
        for o in info["orphans"]:
            lbl = "none" if o["label"] is None else " ".join(f"{v:g}" for v in o["label"])
            out.write(f"  {o['item']}: {lbl} ({o['source']}{', verified' if o['verified'] else ''})\n")


def _require_item(ds: Dataset, name: str) -> None:
    names = {it.name for it in ds.items}
    if name not in names:
        raise CliError(f"no item {name!r} in {ds.root} (names are paths relative to the dataset root)")


def _parse_label(ds: Dataset, args: argparse.Namespace) -> Label:
    if args.value is not None:
        if ds.kind != "scalar":
            raise CliError("--value is for scalar datasets; give X Y for points")
        vals = [args.value]
    else:
        if ds.kind != "point" or len(args.coords) != 2 * ds.n_points:
            want = "X Y" * ds.n_points if ds.kind == "point" else "--value V"
            raise CliError(f"this {ds.kind} dataset takes {want}")
        vals = args.coords
    if not all(math.isfinite(v) for v in vals):
        raise CliError("labels must be finite numbers")
    return tuple(float(v) for v in vals)


def cmd_info(args: argparse.Namespace) -> int:
    """``imgreg info``."""
    ds, store = open_with_store(args.dataset, args.image_root)
    with store:
        info = dataset_info(ds, store)
    if args.json:
        json.dump(info, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_info(info, sys.stdout)
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """``imgreg labels``."""
    ds, store = open_with_store(args.dataset, args.image_root)
    fmt = args.format or ("json" if args.out and args.out.endswith(".json") else "csv")
    if fmt in ("coco", "yolo-pose"):
        from engine.cli.interop import write_other

        with store:
            return write_other(ds, store, fmt, args.out)
    with store:
        text, n = labels_text(ds, store, fmt)
    if args.out:
        atomic_write_text(Path(args.out), text)
        print(f"wrote {n} labels to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _edit(args: argparse.Namespace, action: str) -> int:
    """``imgreg correct | revert | verify``."""
    ds, store = open_with_store(args.dataset)
    with store:
        _require_item(ds, args.item)
        if action == "correct":
            store.correct(args.item, _parse_label(ds, args))
        elif action == "revert":
            store.revert(args.item)
        else:
            store.set_verified(args.item, not args.unset)
        rec = store.record(args.item)
    eff = "none" if rec.effective is None else " ".join(f"{v:g}" for v in rec.effective)
    print(f"{args.item}: {eff} ({rec.source}{', verified' if rec.verified else ''})")
    return 0


def register(sub: Any) -> None:
    """Add the label commands to the main CLI's subparsers."""
    s = sub.add_parser("info", help="format, counts, label statistics and problems of a dataset")
    s.add_argument("dataset")
    add_image_root(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("labels", help="effective labels (corrections applied): CSV, JSON, COCO or YOLO-pose")
    s.add_argument("dataset")
    s.add_argument("--out", help="write to this file (a folder for yolo-pose) instead of standard output")
    s.add_argument("--format", choices=["csv", "json", "coco", "yolo-pose"])
    add_image_root(s)
    s.set_defaults(func=cmd_labels)

    s = sub.add_parser("correct", help="set an item's label: X Y in original-image pixels, or --value V")
    s.add_argument("dataset")
    s.add_argument("item")
    s.add_argument("coords", nargs="*", type=float, metavar="X Y")
    s.add_argument("--value", type=float)
    s.set_defaults(func=partial(_edit, action="correct"))

    s = sub.add_parser("revert", help="restore an item's original label")
    s.add_argument("dataset")
    s.add_argument("item")
    s.set_defaults(func=partial(_edit, action="revert"))

    s = sub.add_parser("verify", help="mark an item's label as verified")
    s.add_argument("dataset")
    s.add_argument("item")
    s.add_argument("--unset", action="store_true", help="clear the verified flag")
    s.set_defaults(func=partial(_edit, action="verify"))
