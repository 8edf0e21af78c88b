"""Calibrated intervals (torch-free): split conformal prediction, normalised by each item's difficulty.

crepes' ``ConformalRegressor`` does the conformal part (finite-sample quantile, normalised by ``sigmas``,
Mondrian ``bins``). A point's nonconformity is its distance to the prediction, so the interval of a distance
around 0 is ``[-r, r]`` and ``r`` is the point's radius. ``calibrate`` fits on labelled items (a run's
validation items, or out of fold every item but the one judged); ``intervals`` gives each row its region.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from engine.audit.findings import INTERVAL, Finding
from engine.core import Label
from engine.labels.store import PredictionRow

if TYPE_CHECKING:
    from crepes import ConformalRegressor

MIN_CALIBRATION = 10  # fewer labelled items than this calibrate nothing worth a stated coverage
TOO_FEW = "too few calibration items"  # in every such error: the app retries without intervals on seeing it


class CoverageError(ValueError):
    """Intervals cannot be calibrated here (too few labelled items, a coverage outside (0, 1))."""


def check_coverage(coverage: float) -> float:
    """The coverage as a float in (0, 1), or a ``CoverageError`` saying why."""
    c = float(coverage)
    if not (math.isfinite(c) and 0 < c < 1):
        raise CoverageError(f"coverage must lie strictly between 0 and 1 (e.g. 0.9), got {coverage}")
    return c


def residuals(pred: Label, label: Label, point: bool) -> np.ndarray:
    """Nonconformity before scaling: each point's distance in pixels, or a scalar's absolute error."""
    p, y = np.asarray(pred, dtype=np.float64), np.asarray(label, dtype=np.float64)
    if point:
        return np.hypot(*(p - y).reshape(-1, 2).T)
    return np.abs(p - y)


def median_spread(rows: Sequence[PredictionRow]) -> float | None:
    """The median of the rows' finite spreads (None when none has one): the scale difficulties are floored by."""
    ok = [r.spread for r in rows if r.spread is not None and math.isfinite(r.spread)]
    return float(np.median(ok)) if ok else None


FLOORS = (0.1, 0.5, 1.0, 2.0, 5.0)  # the spread floors tried, in calibration median spreads
MIN_GAIN = 0.1  # a larger floor is taken only when it narrows the mean interval by this fraction or more


def difficulties(
    rows: Sequence[PredictionRow], med: float | None = None, floor: float | None = FLOORS[0]
) -> np.ndarray:
    """Each row's own difficulty (heatmap, flip or repeat spread), floored so no item gets a zero width.

    ``med``: the calibration's median spread, so items judged later are scaled like the calibration items
    (default: the rows' own). Rows without a spread get it. ``floor`` (in medians) is added to every spread;
    None, or no spread anywhere, gives all ones: plain split conformal.
    """
    sp = np.array([r.spread if r.spread is not None and math.isfinite(r.spread) else np.nan for r in rows])
    med = median_spread(rows) if med is None else med
    if med is None or floor is None:
        return np.ones(len(rows))
    # The floor keeps a model that is confidently wrong about one item from shrinking its interval to
    # nothing. Capped at 20x the median: an untrained or exploding model's flip disagreement must not make
    # one interval a billion wide (seen on a one-epoch age model).
    return np.minimum(np.where(np.isfinite(sp), sp, med), 20 * med) + max(med, 1e-6) * floor


def _fit_in_sample(res: np.ndarray, sig: np.ndarray, coverage: float) -> tuple[float, np.ndarray]:
    """The calibration items' mean interval size and which of them their own interval covers, under ``sig``."""
    from crepes import ConformalRegressor

    radii = np.stack([
        ConformalRegressor().fit(res[:, j], sigmas=sig).predict_int(np.zeros(len(sig)), sig, confidence=coverage)[:, 1]
        for j in range(res.shape[1])
    ], axis=1)  # fmt: skip
    inside: np.ndarray = np.all(res <= radii, axis=1)
    return float(radii.mean()), inside


def choose_floor(
    cal: Sequence[PredictionRow], res: np.ndarray, med: float | None, coverage: float
) -> float | None:
    """The spread floor: the smallest, unless a larger one narrows the intervals by a tenth or more while still
    covering the hardest quarter (None when no item has a spread: plain intervals).

    How much a spread says differs by model: a heatmap's spread follows its error closely, a weak age model's
    flip disagreement hardly does (real UTKFace: the tenth-median floor gave 224-year intervals at the median).
    Any fixed floor keeps the overall coverage, but the narrowest on average moves coverage from hard items
    to easy ones, so a floor must cover the hardest quarter of the calibration items (by spread) at the asked
    rate. Every floor keeps the order of the spreads (which items are surest: accept, suggest); the smallest is
    kept unless the gain is clear, because on a few dozen items the widths differ by noise.
    """
    if med is None:
        return None
    sp = difficulties(cal, med, 0.0)
    hard = sp >= np.quantile(sp, 0.75)
    first = _fit_in_sample(res, difficulties(cal, med, FLOORS[0]), coverage)[0]
    best: tuple[float, float] = (first * (1 - MIN_GAIN), FLOORS[0])
    for f in FLOORS[1:]:
        width, inside = _fit_in_sample(res, difficulties(cal, med, f), coverage)
        if inside[hard].mean() >= coverage and width < best[0]:
            best = (width, f)
    return best[1]


def label_bins(preds: np.ndarray, edges: np.ndarray | None) -> np.ndarray | None:
    """Mondrian bins of scalar predictions by the calibration's quantile edges (None: one bin)."""
    return None if edges is None else np.searchsorted(edges, preds, side="right")


@dataclass
class Calibration:
    """Fitted conformal regressors, one per point (scalars: one), with the difficulty scale of their rows."""

    regs: list[ConformalRegressor]
    point: bool
    coverage: float
    edges: np.ndarray | None  # Mondrian bin edges of scalar predictions
    n: int
    med: float | None  # the calibration items' median spread: later items' difficulties are floored by it
    floor: float | None = FLOORS[0]  # the chosen floor in medians (None: plain split conformal)

    def region(self, pred: Label, sigma: float) -> tuple[float, ...]:
        """Points: a radius per point; scalars: (lo, hi)."""
        s = np.array([sigma])
        if self.point:
            return tuple(
                float(reg.predict_int(np.zeros(1), s, confidence=self.coverage)[0, 1]) for reg in self.regs
            )
        bins = label_bins(np.array([pred[0]]), self.edges)
        lo, hi = self.regs[0].predict_int(np.array([pred[0]]), s, bins=bins, confidence=self.coverage)[0]
        return (float(lo), float(hi))


def calibrate(
    rows: Sequence[PredictionRow],
    labels: Mapping[str, Label],
    point: bool,
    coverage: float,
    mondrian: int = 0,
) -> Calibration:
    """Fit on the rows whose item has a label; ``mondrian`` > 1 splits scalars into that many prediction bins."""
    coverage = check_coverage(coverage)
    cal = [r for r in rows if labels.get(r.item) is not None and len(labels[r.item]) == len(r.pred)]
    if len(cal) < MIN_CALIBRATION:
        raise CoverageError(
            f"{TOO_FEW}: intervals need at least {MIN_CALIBRATION} labelled ones (the run's validation items), "
            f"found {len(cal)}"
        )
    res = np.stack([residuals(r.pred, labels[r.item], point) for r in cal])
    med = median_spread(cal)
    floor = choose_floor(cal, res, med, coverage)
    sig = difficulties(cal, med, floor)
    edges = None
    if not point and mondrian > 1:
        preds = np.array([r.pred[0] for r in cal])
        # Each bin keeps enough items for its own quantile; fewer bins when the calibration set is small.
        k = max(1, min(mondrian, len(cal) // MIN_CALIBRATION))
        edges = np.unique(np.quantile(preds, np.linspace(0, 1, k + 1)[1:-1])) if k > 1 else None
    bins = label_bins(np.array([r.pred[0] for r in cal]), edges) if edges is not None else None
    from crepes import ConformalRegressor  # seconds to import: only when calibrating, not when the app reads

    regs = [ConformalRegressor().fit(res[:, j], sigmas=sig, bins=bins) for j in range(res.shape[1])]
    return Calibration(regs, point, coverage, edges, len(cal), med, floor)


def with_intervals(rows: Sequence[PredictionRow], cal: Calibration) -> list[PredictionRow]:
    """The rows with their calibrated region and its coverage (difficulty scaled like the calibration's)."""
    sig = difficulties(rows, cal.med, cal.floor)
    return [
        replace(r, interval=cal.region(r.pred, float(s)), coverage=cal.coverage) for r, s in zip(rows, sig)
    ]


def out_of_fold_intervals(
    rows: Sequence[PredictionRow],
    labels: Mapping[str, Label],
    point: bool,
    coverage: float,
    mondrian: int = 0,
) -> list[PredictionRow]:
    """CV+-style intervals for out-of-fold rows: each item's region from every other item's residuals.

    A held-out prediction never saw its own item, so the other items' out-of-fold residuals are exchangeable
    with it; leaving the item out of its own calibration keeps a wrong label from widening its own interval.
    """
    out: list[tuple[PredictionRow, PredictionRow]] = []
    labelled = [r for r in rows if labels.get(r.item) is not None]
    if len(labelled) <= MIN_CALIBRATION:
        raise CoverageError(f"out-of-fold intervals need more than {MIN_CALIBRATION} labelled items")
    # Items are judged in a few blocks, each calibrated on the others: the same guarantee as leave-one-out
    # (a jackknife+ over blocks) at the cost of a handful of fits instead of one per item.
    blocks = np.arange(len(rows)) % 5
    for b in range(5):
        rest = [r for r, k in zip(rows, blocks) if k != b]
        cal = calibrate(rest, labels, point, coverage, mondrian)
        judged = [r for r, k in zip(rows, blocks) if k == b]
        out += zip(judged, with_intervals(judged, cal))
    order = {r.item: i for i, r in enumerate(rows)}
    return [new for _, new in sorted(out, key=lambda t: order[t[0].item])]


def outside(row: PredictionRow, label: Label, point: bool) -> float:
    """How far the label lies outside the row's region, in the region's own widths (0 inside)."""
    if row.interval is None:
        return 0.0
    if point:
        d = residuals(row.pred, label, True)
        r = np.maximum(np.asarray(row.interval), 1e-9)
        return float(np.max(np.maximum(d - r, 0) / r))
    lo, hi = row.interval
    v = label[0]
    gap = lo - v if v < lo else v - hi if v > hi else 0.0
    return float(gap / max((hi - lo) / 2, 1e-9))


def _num(v: float) -> str:
    return f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"


def interval_findings(
    rows: Sequence[PredictionRow], labels: Mapping[str, Label], point: bool, unit: str = "px"
) -> list[Finding]:
    """A finding for each label outside its calibrated region, scored by how far outside (1 = one width)."""
    found = []
    for r in rows:
        y = labels.get(r.item)
        if y is None or r.interval is None or len(y) != len(r.pred):
            continue
        by = outside(r, y, point)
        if by <= 0:
            continue
        pct = f"{round(100 * (r.coverage or 0))}%"
        if point:
            d = residuals(r.pred, y, True)
            j = int(np.argmax(d - np.asarray(r.interval)))
            which = f"point {j + 1} " if len(d) > 1 else ""
            why = (
                f"{which}{_num(float(d[j] - r.interval[j]))} px outside the {pct} radius of "
                f"{_num(r.interval[j])} px around the prediction"
            )
        else:
            lo, hi = r.interval
            gap = lo - y[0] if y[0] < lo else y[0] - hi
            why = f"the label {_num(y[0])} is outside the {pct} interval [{_num(lo)}, {_num(hi)}] by {_num(gap)}"
            why += f" {unit}" if unit else ""
        found.append(Finding(r.item, 1.0 + by, INTERVAL, why, r.pred))
    return sorted(found, key=lambda f: -f.score)
