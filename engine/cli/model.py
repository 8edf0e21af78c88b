"""Model commands: ``imgreg train``, ``predict`` and ``rank`` (torch is imported only when one runs)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Any

import engine.cli.ddp as ddp
from engine import events
from engine.cli.common import (
    CliError,
    add_image_root,
    check_out,
    fmt_metrics,
    need_folders,
    num,
    open_with_store,
    parse_coverage,
    write_csv,
)
from engine.cli.reporter import Reporter, stdin_control
from engine.cli.train_options import PREDICT_BS, add_option, add_train_options, option_values, train_config
from engine.core import Cancelled
from engine.options import BY_NAME
from engine.runs.files import is_spatial


def register(subparsers: Any) -> None:
    """Add ``train``, ``predict`` and ``rank`` to the main CLI's subparsers."""
    s = subparsers.add_parser("train", help="train a model on a dataset's effective labels")
    s.add_argument("dataset")
    s.add_argument("--folds", type=int, help="train K out-of-fold models instead (predictions for ranking)")
    s.add_argument(
        "--lr-find", action="store_true", help="only run the LR finder (lr_find event, suggestion)"
    )
    add_train_options(s)
    ddp.add_options(s)
    s.set_defaults(func=cmd_train)

    s = subparsers.add_parser("predict", help="predict a dataset with a run (original-image pixels)")
    s.add_argument("run", help="run id of DATASET, path of a run folder, or an exported FILE.onnx (no torch)")
    s.add_argument("dataset")
    s.add_argument("--out", help="CSV file (default: standard output)")
    s.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    s.add_argument(
        "--coverage",
        type=parse_coverage,
        help="also write each item's calibrated region of this coverage, e.g. 0.9: a radius per point in pixels "
        "(radius, radius_1..) or lo,hi for scalars; calibrated on the run's validation items, on another dataset "
        "by the calibration set saved with the run (an ONNX file carries it) (implies --tta)",
    )
    s.add_argument(
        "--mondrian",
        type=int,
        default=0,
        metavar="BINS",
        help="scalars: calibrate each of BINS prediction ranges on its own (0: one calibration)",
    )
    add_option(s, PREDICT_BS, default=PREDICT_BS.default)
    add_option(s, BY_NAME["device"], default=BY_NAME["device"].default)
    s.add_argument("--json", action="store_true", help="JSON events on stdout and a summary line")
    s.add_argument(
        "--heatmaps",
        action="store_true",
        help="spatial runs: also write each item's heatmap as <run>/heatmaps/<item>.png (pooled runs: no-op)",
    )
    add_image_root(s)
    s.set_defaults(func=cmd_predict)

    s = subparsers.add_parser(
        "rank", help="items ordered by doubt about their label (score), or by raw error"
    )
    s.add_argument("dataset")
    s.add_argument("--run", help="rank by this run's predictions (predicting first when needed)")
    s.add_argument("--folds", type=int, default=5, help="out-of-fold models when no --run (default 5)")
    s.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="out-of-fold rounds with other seeds and splits, averaged (default 1)",
    )
    s.add_argument(
        "--model-neighbours",
        type=int,
        metavar="K",
        help="second opinion: the labels of each item's K nearest training items by the fold models' features "
        "(default: 10 for scalars with --repeats 2 or more, else off and stored embeddings instead); 0: off",
    )
    s.add_argument(
        "--no-tta",
        action="store_true",
        help="out-of-fold predictions without averaging each image with its mirror image",
    )
    s.add_argument(
        "--by",
        default="score",
        choices=["score", "error"],
        help="order by label doubt (default) or raw error",
    )
    s.add_argument(
        "--coverage",
        type=parse_coverage,
        default=0.9,
        help="out of fold: each item's CV+ region of this coverage; a label outside it is a reason (default 0.9)",
    )
    s.add_argument("--top", type=int, help="only the K most doubtful items")
    s.add_argument("--out", help="CSV file (default: standard output)")
    add_train_options(s, "rank")
    ddp.add_options(s, ranking=True)
    s.set_defaults(func=cmd_rank)


@contextmanager
def engine_errors(rep: Reporter | None = None):
    """Turn engine exceptions into one-line CLI errors (and a ``failed`` JSON event)."""
    from engine.learn.backbones import PretrainedUnavailable, WeightsError
    from engine.learn.train import TrainingError
    from engine.runs.files import RunError

    try:
        yield
    except (
        PretrainedUnavailable,
        WeightsError,
        RunError,
        TrainingError,
        ValueError,
        NotImplementedError,
    ) as e:
        if rep is not None and rep.as_json and not isinstance(e, TrainingError):
            rep(events.failed(str(e)))
        raise CliError(str(e)) from None


def cmd_train(args: argparse.Namespace) -> int:
    """``imgreg train``: train (or K out-of-fold models), report progress and a summary."""
    values = option_values(
        args
    )  # checked once, before anything starts (one line and exit 2 when one is wrong)
    if values["init_from"] and args.folds:
        raise CliError("--from with --folds: the run saw every item, so out-of-fold predictions would not be")
    if values["init_from"] and ddp.wanted(args):
        raise CliError("--from trains in one process: leave out --nproc and --nnodes")
    if ddp.wanted(args):  # data-parallel: torchrun starts the ranks (engine/cli/ddp.py)
        return ddp.run(args, train_config)
    rep = Reporter(args.json)
    ds, store = open_with_store(args.dataset, args.image_root)
    t0 = time.perf_counter()
    try:
        need_folders(store.dir, "runs", "cache")
        with engine_errors(rep), stdin_control(args.control_stdin) as token:
            cfg = train_config(args, rep, ds, store.dir)
            try:
                if getattr(args, "lr_find", False):
                    from engine.learn.train import lr_find

                    sugg = lr_find(ds, store, cfg, rep, token)
                    rep.summary({"suggestion": sugg}, f"suggested learning rate {sugg:.2e}")
                    return 0
                if args.folds:
                    from engine.learn.rank import out_of_fold

                    res = out_of_fold(ds, store, cfg, args.folds, rep, token, **ddp.fold_options(args))
                    data = {"run_id": res.run_id, "run_dir": str(res.run_dir), "metrics": res.metrics,
                            "cancelled": res.cancelled, "n_predicted": len(res.rows), "folds": args.folds}  # fmt: skip
                else:
                    from engine.learn.train import train

                    info = train(ds, store, cfg, rep, token)
                    data = {"run_id": info.run_id, "run_dir": str(info.run_dir), "metrics": info.metrics,
                            "best_epoch": info.best_epoch, "cancelled": info.cancelled}  # fmt: skip
            except Cancelled:
                rep.summary(
                    {"run_id": None, "run_dir": None, "metrics": {}, "cancelled": True},
                    "cancelled: no run saved",
                )
                return 1
        data["time_s"] = time.perf_counter() - t0
        rep.summary(data, f"run {data['run_id']} saved in {data['run_dir']}\n{fmt_metrics(data['metrics'])}")
        return 0
    finally:
        store.close()


def _pred_columns(kind: str, n_points: int) -> tuple[list[str], list[str]]:
    """Prediction and label column names."""
    if kind == "scalar":
        return ["pred_value"], ["label_value"]
    if n_points == 1:
        return ["pred_x", "pred_y"], ["label_x", "label_y"]
    names = [f"{c}{i}" for i in range(1, n_points + 1) for c in ("x", "y")]
    return [f"pred_{n}" for n in names], [f"label_{n}" for n in names]


def prediction_table(ds: Any, labels: dict[str, Any], rows: list[Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the predict CSV: item, predictions, labels, error (and spread when known)."""
    pcols, lcols = _pred_columns(ds.kind, ds.n_points)
    spread = any(r.spread is not None for r in rows)
    icols = interval_columns(ds.kind, ds.n_points) if any(r.interval is not None for r in rows) else []
    header = ["item", *pcols, *lcols, "error"] + (["spread"] if spread else []) + icols
    out = []
    for r in rows:
        lab = labels.get(r.item)
        lab_cells = [num(v) for v in lab] if lab is not None and len(lab) == len(lcols) else [""] * len(lcols)
        region = [num(v) for v in r.interval] if r.interval is not None else [""] * len(icols)
        out.append(
            [r.item, *[num(v) for v in r.pred], *lab_cells, num(r.error)]
            + ([num(r.spread)] if spread else [])
            + (region if icols else [])
        )
    return header, out


def interval_columns(kind: str, n_points: int) -> list[str]:
    """The calibrated region's columns: ``radius`` (``radius_1, ...`` for several points) or ``lo, hi``."""
    if kind == "scalar":
        return ["lo", "hi"]
    return ["radius"] if n_points == 1 else [f"radius_{i}" for i in range(1, n_points + 1)]


def cmd_predict(args: argparse.Namespace) -> int:
    """``imgreg predict RUN DATASET``: predict every item, store the rows, write the CSV."""
    from engine.runs.onnx_predict import is_onnx

    if is_onnx(args.run):
        return _predict_onnx(args)
    from engine.learn.dls import effective_labels
    from engine.learn.predict import predict
    from engine.runs.files import resolve_run
    from engine.runs.heatmaps import heatmap_dir

    rep = Reporter(args.json)
    ds, store = open_with_store(args.dataset, args.image_root)
    try:
        check_out(ds, args.out)
        with engine_errors(rep):
            run_dir = resolve_run(args.run, store.dir)
            maps = bool(getattr(args, "heatmaps", False)) and is_spatial(run_dir)
            if getattr(args, "heatmaps", False) and not maps:
                print(
                    f"note: run {run_dir.name} has no heatmap head (pooled): --heatmaps ignored",
                    file=sys.stderr,
                )
            rows = predict(
                run_dir, ds, store, tta=args.tta, on_event=rep, bs=args.bs, device=args.device, heatmaps=maps,
                coverage=args.coverage, mondrian=args.mondrian,
            )  # fmt: skip
        labels = effective_labels(ds, store)
        header, table = prediction_table(ds, labels, rows)
        if args.out or not args.json:
            write_csv(args.out, header, table)
        errs = [r.error for r in rows if r.error is not None]
        metrics = (
            {"mean_error": statistics.fmean(errs), "median_error": statistics.median(errs)} if errs else {}
        )
        data = {
            "run_id": run_dir.name,
            "run_dir": str(run_dir),
            "n": len(rows),
            "metrics": metrics,
            "out": args.out,
            "heatmaps": str(heatmap_dir(run_dir)) if maps else None,
            "coverage": args.coverage,
        }
        if args.json or args.out:
            rep.summary(data, f"{len(rows)} predictions from {run_dir.name} stored; {fmt_metrics(metrics)}")
        return 0
    finally:
        store.close()


def _predict_onnx(args: argparse.Namespace) -> int:
    """``imgreg predict FILE.onnx DATASET``: onnxruntime prediction that never imports torch."""
    from engine.runs.onnx_predict import OnnxError, predict_onnx

    if args.heatmaps:
        raise CliError("--heatmaps needs the run folder; an ONNX model gives coordinates and spread only")
    rep = Reporter(args.json)
    ds, store = open_with_store(args.dataset, args.image_root)
    try:
        check_out(ds, args.out)
        try:
            run_id, rows = predict_onnx(
                args.run, ds, store, tta=args.tta, on_event=rep, bs=args.bs, coverage=args.coverage,
                mondrian=args.mondrian,
            )  # fmt: skip
        except OnnxError as e:
            if rep.as_json:
                rep(events.failed(str(e)))
            raise CliError(str(e)) from None
        header, table = prediction_table(ds, dict(store.effective_labels()), rows)
        if args.out or not args.json:
            write_csv(args.out, header, table)
        errs = [r.error for r in rows if r.error is not None]
        metrics = (
            {"mean_error": statistics.fmean(errs), "median_error": statistics.median(errs)} if errs else {}
        )
        data = {
            "run_id": run_id, "run_dir": None, "n": len(rows), "metrics": metrics, "out": args.out,
            "coverage": args.coverage,
        }  # fmt: skip
        if args.json or args.out:
            rep.summary(data, f"{len(rows)} predictions from {run_id} stored; {fmt_metrics(metrics)}")
        return 0
    finally:
        store.close()


def second_opinion(rep: Reporter, store_dir: Any, names: list[str], run_id: str | None = None) -> Any:
    """Neighbours in the stored embeddings (the run's, else the backbone's) for the score, with a note; or None."""
    from engine.runs.neighbours import stored_neighbours

    nbrs, src = stored_neighbours(store_dir, names, run_id)
    if nbrs is not None:
        rep(events.note(f"neighbours' labels in the {src} embeddings are a second opinion"))
    return nbrs


def oof_intervals(
    rep: Reporter, ds: Any, store: Any, run_id: str, rows: list[Any], coverage: float
) -> list[Any]:
    """Out-of-fold rows with their CV+ regions (stored with the rank's predictions), or as they were with a note."""
    from engine.audit.conformal import CoverageError, out_of_fold_intervals

    try:
        rows = out_of_fold_intervals(rows, dict(store.effective_labels()), ds.kind == "point", coverage)
    except CoverageError as e:
        rep(events.note(f"no intervals: {e}"))
        return rows
    store.put_predictions(run_id, rows)
    return rows


def interval_doubts(ds: Any, store: Any, rows: list[Any]) -> list[Any]:
    """INTERVAL findings: labels outside their rows' calibrated regions (none when the rows have no regions)."""
    from engine.audit.conformal import interval_findings

    unit = "px" if ds.kind == "point" else "years" if ds.format == "utkface" else ""
    return interval_findings(rows, dict(store.effective_labels()), ds.kind == "point", unit)


def cmd_rank(args: argparse.Namespace) -> int:
    """``imgreg rank``: items by disagreement, from a run's predictions or out-of-fold models."""
    from engine.audit.run import with_audit
    from engine.cli.audit import reason_text
    from engine.labels.quality import rank_rows, rank_run
    from engine.learn.predict import predict
    from engine.learn.rank import default_model_neighbours, out_of_fold
    from engine.runs.files import resolve_run

    # before any training: --top -1 would silently drop the last row
    if args.top is not None and args.top < 1:
        raise CliError("--top must be at least 1")
    rep = Reporter(args.json)
    if not args.run:
        option_values(args)
    ds, store = open_with_store(args.dataset, args.image_root)
    try:
        need_folders(store.dir, "runs", "cache", "embeddings")
        check_out(ds, args.out)
        with engine_errors(rep), stdin_control(args.control_stdin) as token:
            names = [it.name for it in ds.items]
            if args.run:
                run_dir = resolve_run(args.run, store.dir)
                run_id = run_dir.name
                if run_id not in store.prediction_runs():
                    predict(run_dir, ds, store, on_event=rep, cancel=token)
                nbrs = second_opinion(rep, store.dir, names, run_id)
                rows = rank_run(store, run_id, nbrs, by=args.by)
                stale = set(store.stale_predictions(run_id))  # keep those marked stale: scores only
                store.put_predictions(run_id, [r for r in rows if r.item not in stale])
            else:
                try:
                    cfg = train_config(args, rep, ds)
                    k = args.model_neighbours
                    by_model = default_model_neighbours(ds.kind, args.repeats) if k is None else k
                    nbrs = None if by_model else second_opinion(rep, store.dir, names)
                    res = out_of_fold(
                        ds,
                        store,
                        cfg,
                        args.folds,
                        rep,
                        token,
                        repeats=args.repeats,
                        neighbours=nbrs,
                        tta=not args.no_tta,
                        model_neighbours=by_model,
                        **ddp.fold_options(args),
                    )
                except Cancelled:
                    raise CliError("cancelled before any fold finished") from None
                run_id, rows = res.run_id, rank_rows(res.rows, args.by)
                rows = oof_intervals(rep, ds, store, run_id, rows, args.coverage)
            outside = interval_doubts(ds, store, rows)
            rows = [r for r in rows if r.error is not None]
            # the model's doubt, the audit's and the intervals', merged: one queue
            rows, doubts = with_audit(ds, store, rows, args.by, rep, (outside,))
        if args.top:
            rows = rows[: args.top]
        why = {r.item: (reason_text(doubts[r.item]), doubts[r.item].why) if r.item in doubts else ("", "")
               for r in rows}  # fmt: skip
        score = {item: d.score for item, d in doubts.items()}
        table = [
            [i + 1, r.item, num(r.error), num(score.get(r.item)), *why[r.item]] for i, r in enumerate(rows)
        ]
        if args.out or not args.json:
            write_csv(args.out, ["rank", "item", "error", "score", "reason", "why"], table)
        top = [
            {"rank": i + 1, "item": r.item, "error": r.error, "score": score.get(r.item), "reason": why[r.item][0],
             "why": why[r.item][1]}
            for i, r in enumerate(rows[:20])
        ]  # fmt: skip
        data = {"run_id": run_id, "n": len(rows), "by": args.by, "top": top, "out": args.out,
                "outside_interval": len(outside)}  # fmt: skip
        if args.json or args.out:
            rep.summary(data, f"{len(rows)} items ranked by {args.by} from {run_id}")
        return 0
    finally:
        store.close()
