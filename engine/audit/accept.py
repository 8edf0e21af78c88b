"""Bulk-accepting a run's proposals (no torch): the one rule of which unlabelled items' predictions are safe to
take as labels (calibrated interval within a bound), shared by ``imgreg accept`` and the app."""

from __future__ import annotations

from collections.abc import Callable

from engine.audit.suggest import unlabelled
from engine.core import Dataset, Kind
from engine.labels.store import LabelStore, PredictionRow


class AcceptError(ValueError):
    """The proposals cannot be judged: no predictions, no intervals, or the wrong bound for the kind."""


def within(row: PredictionRow, kind: Kind, max_radius: float | None, max_width: float | None) -> bool:
    """Whether a prediction's calibrated interval is inside the bound (points: every radius <= ``max_radius``;
    scalars: ``hi - lo <= max_width``); False without an interval."""
    if not row.interval:
        return False
    if kind == "point":
        return max_radius is not None and all(r <= max_radius for r in row.interval)
    return max_width is not None and row.interval[1] - row.interval[0] <= max_width


def split_proposals(
    ds: Dataset,
    store: LabelStore,
    run_id: str,
    max_radius: float | None = None,
    max_width: float | None = None,
) -> tuple[list[PredictionRow], list[PredictionRow]]:
    """(safe, too uncertain): the run's predictions of unlabelled items, in dataset order, by ``within``;
    AcceptError when the run has no predictions, they carry no intervals, or the bound does not fit the kind."""
    if ds.kind == "point" and (max_radius is None or max_width is not None):
        raise AcceptError("a point dataset takes --max-radius PX (every point's radius at most PX)")
    if ds.kind == "scalar" and (max_width is None or max_radius is not None):
        raise AcceptError("a scalar dataset takes --max-width V (interval hi - lo at most V)")
    bound = max_radius if max_radius is not None else max_width
    if bound is None or not bound >= 0:
        raise AcceptError("the bound must be a number >= 0")
    preds = store.predictions(run_id)
    if not preds:
        raise AcceptError(f"run {run_id} has no stored predictions: run predict first")
    if not any(r.interval for r in preds.values()):
        raise AcceptError(f"run {run_id}'s predictions carry no intervals: run predict --coverage 0.9 first")
    rows = [preds[m] for m in unlabelled(ds, store) if m in preds]
    safe = [r for r in rows if within(r, ds.kind, max_radius, max_width)]
    ok = {r.item for r in safe}
    return safe, [r for r in rows if r.item not in ok]


def safe_proposals(
    ds: Dataset,
    store: LabelStore,
    run_id: str,
    max_radius: float | None = None,
    max_width: float | None = None,
) -> list[PredictionRow]:
    """The predictions of unlabelled items whose calibrated interval is within the bound (``split_proposals``)."""
    return split_proposals(ds, store, run_id, max_radius, max_width)[0]


def accept(
    store: LabelStore, rows: list[PredictionRow], progress: Callable[[int, int], None] | None = None
) -> int:
    """Take each row's prediction as its item's label (source ``prediction``, one journal entry each) unless the
    item got a label meanwhile; returns how many were accepted."""
    done = 0
    for i, r in enumerate(rows):
        if store.effective(r.item) is None:  # labelled items are never touched
            store.correct(r.item, r.pred, source="prediction")
            done += 1
        if progress is not None:
            progress(i + 1, len(rows))
    return done
