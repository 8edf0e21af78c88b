"""Degenerate predictions are named: flat ones, and ones no better than the mean label; good ones pass."""

from __future__ import annotations

import numpy as np

from engine.labels.store import PredictionRow
from engine.runs.sanity import degenerate


def _rows(preds: dict) -> dict:
    return {n: PredictionRow(n, p, None, None) for n, p in preds.items()}


def test_flat_and_mean_like_predictions_are_flagged():
    rng = np.random.default_rng(0)
    labels = {f"i{k}": (float(x), float(y)) for k, (x, y) in enumerate(rng.uniform(100, 500, (40, 2)))}
    flat = _rows({n: (320.0 + rng.normal(0, 1), 240.0) for n in labels})
    assert "about the same for every image" in degenerate(flat, labels, "point")
    shuffled = dict(zip(labels, rng.permutation(list(labels.values())), strict=True))
    noise = _rows({n: tuple(map(float, v)) for n, v in shuffled.items()})
    assert "no better than predicting the mean" in degenerate(noise, labels, "point")
    good = _rows({n: (x + rng.normal(0, 5), y + rng.normal(0, 5)) for n, (x, y) in labels.items()})
    assert degenerate(good, labels, "point") is None


def test_scalars_and_too_few_items():
    labels = {f"i{k}": (float(k),) for k in range(30)}
    assert "about the same" in degenerate(_rows({n: (14.5,) for n in labels}), labels, "scalar")
    assert degenerate(_rows({n: (14.5,) for n in list(labels)[:3]}), labels, "scalar") is None
