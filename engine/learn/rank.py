"""Ranking items by label doubt: from a run's stored predictions, or out-of-fold with K group-wise models (repeated
R times with other seeds and splits, averaged: an ensemble whose spread the score uses)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import events
from engine.core import Cancelled, CancelToken, Dataset, OnEvent, no_event
from engine.labels.quality import mean_rows, rank_rows, score_rows
from engine.labels.store import PredictionRow
from engine.learn.folds import MODEL_NEIGHBOURS, fit_fold, fold_indices, fold_record, merge_neighbours
from engine.learn.train import TrainConfig, TrainingError, prepare
from engine.runs.files import new_run_id, run_parent, write_json


@dataclass
class OofResult:
    """Out-of-fold predictions: the run id they are stored under, rows sorted by doubt (largest first), metrics."""

    run_id: str
    run_dir: Path
    rows: list[PredictionRow]
    metrics: dict[str, float]
    cancelled: bool = False
    rounds: list[list[PredictionRow]] = field(default_factory=list)  # each repeat's own rows, unscored
    # each item's nearest training items by the fold models, every round's in round order
    neighbours: dict[str, list[str]] = field(default_factory=dict)


def default_model_neighbours(kind: str, repeats: int) -> int:
    """Fold-model neighbours per item: 10 for scalars ranked over several rounds, else none."""
    # bench_label_errors.py --rescore --pool (wrong ages, 5 folds, 20 plantings on 6 rounds' predictions): recall at
    # k 0.503 -> 0.530 over 2 rounds, 0.526 -> 0.565 over 3, 0.454 -> 0.417 from one round's 10 labels. A point's
    # position is not what they share.
    return MODEL_NEIGHBOURS if kind == "scalar" and repeats > 1 else 0


def out_of_fold(
    ds: Dataset,
    store: Any,
    cfg: TrainConfig,
    folds: int = 5,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    bs: int = 32,
    repeats: int = 1,
    neighbours: dict[str, list[str]] | None = None,
    parallel: int = 1,
    devices: list[str] | None = None,
    tta: bool = True,
    model_neighbours: int | None = None,
) -> OofResult:
    """Train ``folds`` models, each holding out a share of the groups, so each labelled item is predicted by a model
    that never saw it; ``repeats`` rounds with seeds ``seed, seed+1, ...`` (other splits, other inits) are averaged.
    Store the rows, scored by ``engine.labels.quality``, under ``oof-<stamp>``; return them sorted by doubt.

    ``parallel`` > 1 fits that many folds at a time, one process per device (``devices``, else from ``cfg.device``),
    with the serial loop's seeds, hence the same rows. ``tta`` averages each held-out image with its mirror image
    (scalars and single points; flip TTA lowers the out-of-fold error at the cost of one more forward pass).

    ``model_neighbours`` (default: ``default_model_neighbours``) nearest training items of each held-out one in its
    fold model's feature space give the score a second opinion: their labels, over every round. They replace
    ``neighbours`` (from stored embeddings) when found."""
    t0 = time.perf_counter()
    if repeats < 1:
        raise TrainingError("repeats must be at least 1")
    cfg, samples, skipped = prepare(ds, store, cfg)
    nbr_k = default_model_neighbours(cfg.kind, repeats) if model_neighbours is None else model_neighbours
    try:
        splits = [fold_indices(samples, folds, cfg.seed + r) for r in range(repeats)]
    except ValueError as e:
        raise TrainingError(str(e)) from None
    parent = run_parent(ds.root, store)
    parent.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(parent, "oof-")
    run_dir = parent / run_id
    labels = {s.name: s.label for s in samples}
    by_groups = len({s.group for s in samples}) >= folds
    rounds: list[list[PredictionRow]] = []
    fold_metrics: list[dict[str, Any]] = []
    cancelled = False
    total = folds * repeats
    jobs = [(rep, k, v) for rep in range(repeats) for k, v in enumerate(splits[rep])]
    items = {s.name: ds.item(s.name) for s in samples}
    model_nbrs: dict[str, list[str]] = {}
    if parallel > 1:  # one process per device instead of the loop below (engine/learn/parallel.py)
        from engine.learn.parallel import parallel_folds

        rounds, fold_metrics, cancelled, model_nbrs = parallel_folds(
            samples, jobs, cfg, items, labels, by_groups, bs, parallel, devices, on_event, cancel, tta, nbr_k
        )
        jobs = []
    for r, k, valid_idx in jobs:
        if cancelled:
            break
        n = r * folds + k + 1  # events count folds over all repeats
        on_event(events.fold(n, total))
        try:
            got = fit_fold(
                samples,
                valid_idx,
                cfg,
                r,
                items,
                labels,
                bs,
                on_event,
                cancel,
                {"fold": n, "folds": total},
                tta,
                nbr_k,
            )
        except Cancelled:
            cancelled = True
            break
        if k == 0:
            rounds.append([])
        rounds[r] += got.rows
        merge_neighbours(model_nbrs, got.neighbours)
        fold_metrics.append(fold_record(samples, valid_idx, by_groups, k, r, got.best))
        cancelled = got.stopped
    if model_nbrs:
        neighbours = model_nbrs
        msg = f"second opinion: the labels of each item's {nbr_k} nearest training items by the fold models"
        on_event(events.note(msg))
    rows = rank_rows(score_rows(mean_rows(rounds), labels, neighbours))
    errs = np.array([r.error for r in rows if r.error is not None], dtype=np.float64)
    metrics = {"mean_error": float(errs.mean()), "median_error": float(np.median(errs))} if len(errs) else {}
    if rows and store is not None:
        store.put_predictions(run_id, rows)
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "run_id": run_id,
        "kind": "oof",
        "dataset": str(ds.root),
        "folds": folds,
        "repeats": repeats,
        "tta": tta,
        "model_neighbours": nbr_k if model_nbrs else 0,
        "arch": cfg.arch,
        "n_predicted": len(rows),
        "n_skipped": len(skipped),
        "metrics": metrics,
        "fold_metrics": fold_metrics,
        "cancelled": cancelled,
        "time_s": time.perf_counter() - t0,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(run_dir / "summary.json", summary)
    if cancelled:
        msg = f"stopped after {len(fold_metrics)} of {total} folds"
        on_event(events.cancelled(msg, run_id, str(run_dir), metrics))
    else:
        on_event(events.finished(run_id, str(run_dir), metrics))
    return OofResult(run_id, run_dir, rows, metrics, cancelled, rounds, model_nbrs)
