"""Whether a run's predictions say anything: a degenerate model answers about the same for every image, or errs
as much as predicting the mean label would (torch-free; the app warns after training and prediction)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engine.core import Label, label_distance
from engine.labels.store import PredictionRow

FLAT = 0.15  # predictions' spread below this share of the labels' spread: "barely vary"
NO_BETTER = 0.9  # mean error above this share of the mean-label baseline's: "no better than the mean"
MIN_ITEMS = 5


def degenerate(rows: Mapping[str, PredictionRow], labels: Mapping[str, Label], kind: str) -> str | None:
    """One line saying why the predictions look degenerate (flat, or no better than the mean label), or None."""
    names = [n for n, r in rows.items() if n in labels and len(labels[n]) == len(r.pred)]
    if len(names) < MIN_ITEMS:
        return None
    pred = np.array([rows[n].pred for n in names], dtype=np.float64)
    true = np.array([labels[n] for n in names], dtype=np.float64)
    unit = "" if kind == "scalar" else " px"
    p_sd, t_sd = float(pred.std(axis=0).mean()), float(true.std(axis=0).mean())
    if t_sd > 0 and p_sd < FLAT * t_sd:
        mean = ", ".join(f"{v:.4g}" for v in pred.mean(axis=0))
        return (
            f"the model predicts about the same for every image (about ({mean}), varying {p_sd:.3g}{unit} "
            f"where the labels vary {t_sd:.3g}{unit}): train longer, or check the learning rate"
        )
    centre = tuple(float(v) for v in true.mean(axis=0))
    err = [label_distance(rows[n].pred, labels[n]) for n in names]
    base = [label_distance(centre, labels[n]) for n in names]
    m = float(np.mean([e for e in err if e is not None]))
    b = float(np.mean([e for e in base if e is not None]))
    if b > 0 and m >= NO_BETTER * b:
        return (
            f"its mean error {m:.3g}{unit} is no better than predicting the mean label for every image "
            f"({b:.3g}{unit}): train longer, or check the learning rate"
        )
    return None
