"""Prediction rows from one batch of network outputs (torch-free): original pixels, spread, error.

Torch prediction (``engine.learn.predict``) and ONNX prediction (``engine.runs.onnx_predict``) both end a batch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from engine.core import Label, label_distance
from engine.data.squish import Loaded, spread_pixels, to_pixels
from engine.labels.store import PredictionRow


def flip_half(out: np.ndarray, out_f: np.ndarray, point: bool, size: tuple[int, int]) -> np.ndarray:
    """Half the disagreement between an image's outputs and its mirror's (already unflipped): the difficulty of a
    model without a spread of its own. Points: per point in input pixels (``size`` = (w, h)); scalars: label units.
    """
    half = np.abs(np.asarray(out, np.float64) - np.asarray(out_f, np.float64)) / 2
    if not point:
        return half
    xy = half.reshape(len(half), -1, 2) * np.array([size[0] / 2, size[1] / 2])
    return np.hypot(xy[..., 0], xy[..., 1])


def batch_rows(
    ok: Sequence[Loaded],
    out: np.ndarray,
    spread: np.ndarray | None,
    size: tuple[int, int],
    point: bool,
    labels: Mapping[str, Label],
) -> list[PredictionRow]:
    """One row per loaded item: outputs in original pixels (points) or as they are (scalars), the spread in
    original pixels when the model gives one, and the error against ``labels``."""
    sizes = np.array([b.size for b in ok], dtype=np.float64)
    preds = to_pixels(out, sizes) if point else np.asarray(out, dtype=np.float64)
    if spread is None:
        spreads: list[float | None] = [None] * len(ok)
    elif point:
        spreads = spread_pixels(spread, sizes, size)
    else:  # a scalar's spread is in label units already
        spreads = [float(v) for v in np.asarray(spread, dtype=np.float64).reshape(len(ok), -1).mean(-1)]
    rows = []
    for b, p, sp in zip(ok, preds, spreads, strict=True):
        pred = tuple(float(v) for v in p)
        rows.append(PredictionRow(b.item.name, pred, label_distance(pred, labels.get(b.item.name)), sp))
    return rows
