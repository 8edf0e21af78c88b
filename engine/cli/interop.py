"""Interop commands: ``imgreg export RUN`` (ONNX plus metadata) and the COCO / YOLO-pose writers behind
``imgreg labels --format coco|yolo-pose``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine import events
from engine.cli.common import CliError, add_image_root, open_with_store
from engine.cli.reporter import Reporter
from engine.core import Dataset
from engine.labels.interop import ExportError, write_coco, write_yolo_pose
from engine.labels.store import LabelStore
from engine.runs.files import RunError, resolve_run
from engine.runs.onnx_predict import meta_path


def write_other(ds: Dataset, store: LabelStore, fmt: str, out: str | None) -> int:
    """``imgreg labels --format coco|yolo-pose --out PATH``: write the file or folder, report one line."""
    if not out:
        raise CliError(f"--format {fmt} needs --out ({'FILE.json' if fmt == 'coco' else 'a folder'})")
    try:
        res = write_coco(ds, store, Path(out)) if fmt == "coco" else write_yolo_pose(ds, store, Path(out))
    except ExportError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot write {out} ({e.strerror or e})") from None
    what = f"{res.n_labels} labels on {res.n_images} images"
    print(f"wrote {what} as {fmt} to {res.path}", file=sys.stderr)
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    for p in res.skipped:
        print(f"skipped {p.item}: {p.reason}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``imgreg export RUN [--out FILE.onnx]``: the run's model as ONNX with its metadata JSON beside it."""
    rep = Reporter(args.json)
    try:
        store_dir = None
        if args.dataset:
            _, store = open_with_store(args.dataset, args.image_root)
            store_dir = store.dir
            store.close()
        try:
            run_dir = resolve_run(args.run, store_dir)
        except RunError as e:
            raise CliError(str(e)) from None
        from engine.learn.onnx_export import ExportError as OnnxExportError
        from engine.learn.onnx_export import export_onnx

        try:
            out = export_onnx(run_dir, args.out)
        except (OnnxExportError, RunError, OSError) as e:
            raise CliError(str(e)) from None
    except CliError as e:
        if args.json:
            rep(events.failed(str(e)))
        raise
    data = {"run_id": run_dir.name, "onnx": str(out), "metadata": str(meta_path(out))}
    rep.summary(data, f"wrote {out} and {meta_path(out).name}")
    return 0


def register(sub: Any) -> None:
    """Add ``export`` to the main CLI's subparsers."""
    s = sub.add_parser("export", help="write a run's model as ONNX with a metadata JSON beside it")
    s.add_argument("run", help="path of a run folder, or a run id with --dataset")
    s.add_argument("--out", help="the .onnx file (default: <run>/model.onnx)")
    s.add_argument("--dataset", help="the dataset whose store holds RUN (when RUN is a run id)")
    s.add_argument("--json", action="store_true", help="print one JSON summary line (or a failed line)")
    add_image_root(s)
    s.set_defaults(func=cmd_export)
