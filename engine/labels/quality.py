"""Label-quality scores from out-of-fold predictions: how far each label lies from what the model (and, when given,
the item's nearest neighbours in embedding space) expects, in units of the local error scale (torch-free).

The ``score`` is a doubt: about 1 for a typical label, 3 or more for a label worth a look; higher is more likely
wrong. Rows without a label (or without a prediction) get ``None``.

``method="local"`` (the default, chosen by ``benchmarks/bench_label_errors.py``): for each item, the residuals
``label - prediction`` of the ``k`` items the model sees most alike (nearest in prediction and uncertainty) give a
local bias (a weak model pulls towards the mean, so an old face predicted 60 is typically labelled older) and a
local robust scale (a residual of 15 years means more for a child than for an 80-year-old). The doubt is the
item's residual, less the bias, over that scale. ``method="cleanlab"`` is cleanlab's OUTRE regression label-quality
score (scalars only) on the same bias-corrected, scale-normalised residuals, as ``-log(quality)``; ``"residual"`` is
the raw ``|label - prediction|`` (today's ranking).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from engine.core import Label, label_distance
from engine.labels.store import PredictionRow

METHODS = ("local", "cleanlab", "residual")
# median of a chi-square with d degrees of freedom, for d = 1..4 (the robust scale of d-dimensional residuals)
_CHI2_MEDIAN = {1: 0.454936, 2: 1.386294, 3: 2.365974, 4: 3.356694}


def _chi2_median(d: int) -> float:
    return _CHI2_MEDIAN.get(d, d * (1 - 2 / (9 * d)) ** 3)


def knn_indices(feats: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of each row's ``k`` nearest other rows by Euclidean distance, nearest first (exact).

    Blocked matrix products, not scikit-learn's trees: with 1,280-d embeddings the trees fall back to brute force
    in float64, and importing scikit-learn alone took 4 s of a 6 s audit.
    """
    x: np.ndarray = np.asarray(feats, dtype=np.float64 if feats.shape[1] <= 32 else np.float32)
    n = len(x)
    k = max(1, min(k, n - 1))
    sq = (x * x).sum(1)
    out = np.empty((n, k), dtype=np.int64)
    step = max(1, (1 << 24) // max(n, 1))  # rows a block: about 64 MB of distances
    for s in range(0, n, step):
        e = min(n, s + step)
        d = sq[s:e, None] - 2 * (x[s:e] @ x.T) + sq[None, :]
        d[np.arange(e - s), np.arange(s, e)] = np.inf  # never a row's own neighbour, duplicates or not
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, 1), axis=1, kind="stable")
        out[s:e] = np.take_along_axis(part, order, 1)
    return out


def embedding_neighbours(names: Sequence[str], emb: np.ndarray, k: int = 10) -> dict[str, list[str]]:
    """Each item's ``k`` nearest other items by cosine similarity of its embedding row."""
    emb = np.asarray(emb, dtype=np.float64)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    idx = knn_indices(emb, k)
    return {n: [names[j] for j in row] for n, row in zip(names, idx, strict=True)}


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    med = np.median(x, 0)
    mad = np.median(np.abs(x - med), 0) * 1.4826
    scale = np.where(mad > 1e-12, mad, np.maximum(x.std(0), 1e-12))
    return (x - med) / scale


def _local_fit(res: np.ndarray, nbr: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Per item, the median residual (bias) and robust scale of its neighbours' residuals."""
    r = res[nbr]  # (n, k, d)
    bias = np.median(r, 1)
    d2 = ((r - bias[:, None, :]) ** 2).sum(-1)
    scale = np.sqrt(np.median(d2, 1) / _chi2_median(res.shape[1]))
    return bias, np.maximum(scale, floor)


def local_doubt(
    labels: np.ndarray, preds: np.ndarray, spread: np.ndarray | None = None, k: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Doubt per item, the expected label and its scale, from neighbours in (prediction, log spread) space.

    ``labels`` and ``preds`` are (n, d) arrays; ``spread`` the model's own uncertainty per item (heatmap spread,
    the spread of an ensemble) or None.
    """
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    p = np.asarray(preds, dtype=np.float64).reshape(len(preds), -1)
    res = y - p
    n = len(y)
    k = k or int(np.clip(n // 10, 8, 50))
    feats = (
        [_standardise(p)] if p.shape[1] == 1 else []
    )  # points: where the point is says little about its error
    if spread is not None and np.all(np.isfinite(spread)) and np.ptp(spread) > 0:
        feats.append(_standardise(np.log(np.maximum(spread, 1e-6)))[:, None])
    glob_bias = np.median(res, 0)
    glob = math.sqrt(float(np.median(((res - glob_bias) ** 2).sum(1))) / _chi2_median(y.shape[1]))
    floor = max(0.25 * glob, 1e-9)
    if feats and n > 3:
        bias, scale = _local_fit(res, knn_indices(np.concatenate(feats, 1), k), floor)
    else:
        bias, scale = np.repeat(glob_bias[None], n, 0), np.full(n, max(glob, floor))
    expect = p + bias
    return np.linalg.norm(y - expect, axis=1) / scale, expect, scale


def neighbour_estimate(
    labels: np.ndarray, nbr_labels: Sequence[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Per item, the median of its neighbours' labels and their robust spread (inf where it has none)."""
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    d = y.shape[1]
    est = np.full_like(y, np.nan)
    scale = np.full(len(y), np.inf)
    for i, nl in enumerate(nbr_labels):
        if nl is None or len(nl) < 3:
            continue
        nl = np.asarray(nl, dtype=np.float64).reshape(len(nl), d)
        est[i] = np.median(nl, 0)
        scale[i] = math.sqrt(float(np.median(((nl - est[i]) ** 2).sum(1))) / _chi2_median(d))
    ok = np.isfinite(scale)
    if ok.any():
        # neighbours that agree perfectly still say little more than the typical neighbourhood does
        scale[ok] = np.maximum(scale[ok], 0.25 * float(np.median(scale[ok])) + 1e-9)
    return est, scale


def combine(
    labels: np.ndarray, expect: np.ndarray, scale: np.ndarray, nbr_est: np.ndarray, nbr_scale: np.ndarray
) -> np.ndarray:
    """Doubt against the inverse-variance blend of the model's expectation and the neighbours' labels."""
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    w1 = 1 / scale**2
    w2 = np.where(np.isfinite(nbr_scale), 1 / nbr_scale**2, 0.0)
    est2 = np.where(np.isfinite(nbr_est), nbr_est, 0.0)
    mix = (expect * w1[:, None] + est2 * w2[:, None]) / (w1 + w2)[:, None]
    return np.linalg.norm(y - mix, axis=1) * np.sqrt(w1 + w2)


def cleanlab_doubt(labels: np.ndarray, z: np.ndarray) -> np.ndarray:
    """cleanlab's OUTRE label-quality score of scalars whose residuals are the signed doubts ``z``, as
    ``-log(quality)``."""
    from cleanlab.regression.rank import get_label_quality_scores  # pandas and sklearn: only when asked

    y = np.asarray(labels, dtype=np.float64).ravel()
    q = get_label_quality_scores(y, y - np.asarray(z, dtype=np.float64).ravel())
    return -np.log(np.clip(q, 1e-300, 1.0))


def doubt(
    labels: np.ndarray,
    preds: np.ndarray,
    spread: np.ndarray | None = None,
    nbr_labels: Sequence[np.ndarray | None] | None = None,
    method: str = "local",
) -> np.ndarray:
    """Doubt per labelled item (higher is more likely a wrong label); see the module docstring for ``method``."""
    if method not in METHODS:
        raise ValueError(f"unknown label-quality method {method!r}; use one of {', '.join(METHODS)}")
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    p = np.asarray(preds, dtype=np.float64).reshape(len(preds), -1)
    if method == "residual" or len(y) < 4:
        return np.linalg.norm(y - p, axis=1)
    z, expect, scale = local_doubt(y, p, spread)
    if nbr_labels is not None:
        z = combine(y, expect, scale, *neighbour_estimate(y, nbr_labels))
    if method == "cleanlab" and y.shape[1] == 1:
        return cleanlab_doubt(y, z * np.sign(y[:, 0] - expect[:, 0]))
    return z


def score_rows(
    rows: Iterable[PredictionRow],
    labels: Mapping[str, Label],
    neighbours: Mapping[str, Sequence[str]] | None = None,
    method: str = "local",
) -> list[PredictionRow]:
    """Rows with ``error`` against ``labels`` and ``score`` (doubt) set; unlabelled rows get ``None`` for both.

    ``neighbours`` maps an item to the names of its nearest items in embedding space (``embedding_neighbours``);
    their labels become a second opinion on the item's label.
    """
    rows = list(rows)
    idx = [i for i, r in enumerate(rows) if _fits(labels.get(r.item), r.pred)]
    out = list(rows)
    for i in set(range(len(rows))) - set(idx):
        out[i] = replace(rows[i], error=None, score=None)
    if not idx:
        return out
    y = np.array([labels[rows[i].item] for i in idx], dtype=np.float64)
    p = np.array([rows[i].pred for i in idx], dtype=np.float64)
    sp = [rows[i].spread for i in idx]
    spread = np.array(sp, dtype=np.float64) if all(s is not None for s in sp) else None
    nl: list[Any] | None = None
    if neighbours is not None:
        nl = []
        for i in idx:
            got = [labels[m] for m in neighbours.get(rows[i].item, ()) if _fits(labels.get(m), rows[i].pred)]
            nl.append(np.array(got, dtype=np.float64) if got else None)
    scores = doubt(y, p, spread, nl, method)
    for j, i in enumerate(idx):
        err = label_distance(rows[i].pred, labels[rows[i].item])
        out[i] = replace(rows[i], error=err, score=float(scores[j]))
    return out


def rank_rows(rows: Iterable[PredictionRow], by: str = "auto") -> list[PredictionRow]:
    """Rows sorted largest first by ``score`` (label doubt) or ``error``; ``auto`` uses the score when the rows have
    one. Rows without that value (unlabelled) go last, by name."""
    rows = list(rows)
    if by == "auto":
        by = "score" if any(r.score is not None for r in rows) else "error"
    if by not in ("score", "error"):
        raise ValueError(f"cannot rank by {by!r}; use score or error")

    def key(r: PredictionRow) -> tuple[bool, float, str]:
        v = getattr(r, by)
        return (v is None or not math.isfinite(v), -(v or 0.0), r.item)

    return sorted(rows, key=key)


def rank_run(
    store: Any, run_id: str, neighbours: Mapping[str, Sequence[str]] | None = None, by: str = "auto"
) -> list[PredictionRow]:
    """A run's stored predictions ranked by doubt about the current effective labels (largest first).

    Errors and scores are recomputed, so labels corrected since the prediction rank by their new disagreement;
    ``neighbours`` (item -> its nearest items in embedding space) adds their labels as a second opinion.
    """
    rows = score_rows(store.predictions(run_id).values(), store.effective_labels(), neighbours)
    return rank_rows(rows, by)


def _fits(label: Label | None, pred: Label) -> bool:
    return label is not None and len(label) == len(pred)


def mean_rows(rounds: Sequence[Sequence[PredictionRow]]) -> list[PredictionRow]:
    """One row per item from several rounds of predictions: the mean prediction, and as ``spread`` the root of the
    rounds' mean squared heatmap spread plus their variance (the ensemble's spread, in label units)."""
    by: dict[str, list[PredictionRow]] = {}
    for rows in rounds:
        for r in rows:
            by.setdefault(r.item, []).append(r)
    out = []
    for item, rs in by.items():
        p = np.array([r.pred for r in rs], dtype=np.float64)
        mean = p.mean(0)
        var = float(((p - mean) ** 2).sum(1).mean()) if len(rs) > 1 else None
        heat = [r.spread for r in rs if r.spread is not None]
        parts = ([float(np.mean(np.square(heat)))] if heat else []) + ([var] if var is not None else [])
        spread = math.sqrt(sum(parts)) if parts else None
        out.append(PredictionRow(item, tuple(float(v) for v in mean), None, spread))
    return out
