"""The array side of the sequence check: each frame's label against a robust local fit of the frames around it.

For every frame, the labels of the frames within ``half`` frame numbers on either side (never itself; gaps in the
numbering stay gaps, so a jump across a long gap is no one's error) are fitted with a local quadratic in time
(a line where the window is one-sided: sequence ends, gaps), weighted by a tricube kernel. The fit starts from the
best of a few that leave out a block of nearby frames (least median residual), then is reweighted with Tukey's
biweight, so a wrong neighbour, or a run of drifted ones, carries no weight. The fit at the frame's own time is
where its neighbours put it. The doubt is the distance from there to the label over the local scale: how far the
trusted neighbours sit from where their own neighbours put them (so fast motion, where labels are noisier, needs a
bigger miss), widened where the fit extrapolates. The whole check runs twice, each frame's weight as a neighbour
lowered by its first doubt, so a drifted run's frames stop vouching for each other.
``benchmarks/bench_audit.py`` chose this over the two-neighbour mean, a median filter, a Hampel filter, a Kalman
two-filter smoother and the plain reweighted local quadratic (``lms=False``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

HALF = 10  # frames on either side (bench_audit.py --tune, two passes: 6 0.957, 8 0.979, 10 0.979, 12 0.967)
TUKEY_C = 6.0  # Tukey's biweight cut in local scales (tuned: 3 and 4.685 reject good frames of fast motion)
ROUNDS = 2  # passes in which each frame's own doubt lowers its weight as a neighbour
INNER = 5  # reweighting steps of each local fit
FLOOR = 0.35  # the local scale never drops below this share of the sequence set's median scale
# the robust fit starts from the best (least median residual) of fits that leave out these frames on the
# (left, right) of the judged one; the ones with a block out outvote a drifted run (tuned on sequences 01-12)
STARTS = ((0, 0), (3, 3), (6, 6), (99, 0), (0, 99), (1, 5), (5, 1))
DEGREE = 2  # local quadratic (a cubic over 10 frames was worse on the tuning sequences: 0.953 against 0.976)
MIN_FRAMES = 5  # fewer neighbours than this: no judgement


@dataclass
class SeqFit:
    """Per frame: doubt (``score``, NaN where too few neighbours), the fit's position, the distance to it, the
    local scale, the local motion per frame and the first and last neighbouring frame numbers used."""

    score: np.ndarray  # (n,)
    expected: np.ndarray  # (n, d)
    dist: np.ndarray  # (n,)
    scale: np.ndarray  # (n,)
    motion: np.ndarray  # (n,)
    first: np.ndarray  # (n,) int frame numbers
    last: np.ndarray  # (n,) int


def _windows(seq: np.ndarray, t: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour indices (n, 2*half) of each frame (sorted by sequence then time) and which are within reach."""
    n = len(t)
    offs = np.concatenate([np.arange(-half, 0), np.arange(1, half + 1)])
    j = np.arange(n)[:, None] + offs[None, :]
    jc = np.clip(j, 0, n - 1)
    ok = (j >= 0) & (j < n) & (seq[jc] == seq[:, None]) & (np.abs(t[jc] - t[:, None]) <= half)
    return jc, ok


def _ridge(quad: np.ndarray, k: int) -> np.ndarray:
    """Per fit, the penalty on each coefficient: curvature terms vanish where a window is one-sided."""
    high = (np.arange(k) >= 2).astype(np.float64)
    low = np.array([1e-9, 1e-4] + [0.0] * (k - 2))
    return np.where(quad, 1e-6, 1e6)[:, None] * high + low


def _solve(
    Y: np.ndarray, X: np.ndarray, XX: np.ndarray, w: np.ndarray, quad: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted local fits (a line where ``quad`` is False): coefficients (n, k, d) and residual norms (n, m);
    ``XX`` (n, m, k * k) holds each row's outer products of ``X`` (batched matrix products: einsum is several
    times slower here)."""
    n, m, k = X.shape
    A = (w[:, None, :] @ XX).reshape(n, k, k)
    p = np.arange(k)
    A[:, p, p] += _ridge(quad, k) * np.maximum(w.sum(1, keepdims=True), 1e-9)
    b = (X * w[..., None]).transpose(0, 2, 1) @ Y
    beta = np.linalg.solve(A, b)
    return beta, np.linalg.norm(Y - X @ beta, axis=2)


def _leverage(X: np.ndarray, w: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Variance of each fit's value at dt = 0 relative to a weighted mean's: large where it extrapolates."""
    A = np.einsum("nmi,nm,nmj->nij", X, w, X)
    p = np.arange(X.shape[2])
    A[:, p, p] += _ridge(quad, X.shape[2]) * np.maximum(w.sum(1, keepdims=True), 1e-9)
    B = np.einsum("nmi,nm,nmj->nij", X, w * w, X)
    Ai = np.linalg.inv(A)
    v = np.einsum("ni,nij,nj->n", Ai[:, 0], B, Ai[:, 0])  # sandwich variance of beta_0 per unit noise
    return v * w.sum(1) ** 2 / np.maximum((w * w).sum(1), 1e-12)


def _rowmedian(e: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Row-wise median of ``e`` where ``on`` (1 where a row has none)."""
    c = on.sum(1)
    v = np.sort(np.where(on, e, np.inf), 1)
    r = np.arange(len(e))
    lo, hi = np.maximum(c - 1, 0) // 2, np.maximum(c, 1) // 2
    med = 0.5 * (v[r, lo] + v[r, np.minimum(hi, e.shape[1] - 1)])
    return np.where(c > 0, np.maximum(med, 1e-9), 1.0)


def _fit(
    Y: np.ndarray, dtf: np.ndarray, w0: np.ndarray, half: int, inner: int, lms: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Robust weighted local quadratic fits: the value at dt = 0 (n, d), the neighbours' residual norms (n, m),
    their final weights (n, m) and the fit's relative variance at dt = 0 (n,).

    The start is the least-median fit among a few: all neighbours, only those 3 or 5 frames away or more, only
    one side. A drifted run next to the frame is then outvoted before reweighting can bend the curve to it."""
    dt = dtf / half
    X = np.stack([dt**p for p in range(DEGREE + 1)], -1)  # (n, m, degree + 1)
    XX = (X[..., :, None] * X[..., None, :]).reshape(*X.shape[:2], -1)
    on = w0 > 0
    best_e = np.zeros(dtf.shape)
    best_med = np.full(len(dtf), np.inf)
    blocks = STARTS if lms else ((0, 0),)
    starts = [(dtf < -a) | (dtf > b) for a, b in blocks]
    for mask in starts:
        wc = np.where(mask, w0, 0.0)
        use = wc > 0
        quad = ((use & (dtf < 0)).sum(1) >= 2) & ((use & (dtf > 0)).sum(1) >= 2)
        _, e = _solve(Y, X, XX, wc, quad)
        med = np.where(use.sum(1) >= 3, _rowmedian(e, on), np.inf)
        better = (med < best_med) | ~np.isfinite(best_med)
        best_e = np.where(better[:, None], e, best_e)
        best_med = np.where(better, med, best_med)
    e = best_e
    w = w0
    quad_all = ((on & (dtf < 0)).sum(1) >= 2) & ((on & (dtf > 0)).sum(1) >= 2)
    for _ in range(inner):
        s = _rowmedian(e, on)
        u = e / (TUKEY_C * s[:, None])
        w = w0 * np.where(u < 1, (1 - u * u) ** 2, 0.0)
        dead = w.sum(1) <= 1e-12  # every neighbour rejected: keep the kernel weights
        w[dead] = w0[dead]
        use = w > 0
        quad = quad_all & ((use & (dtf < 0)).sum(1) >= 2) & ((use & (dtf > 0)).sum(1) >= 2)
        beta, e = _solve(Y, X, XX, w, quad)
    return beta[:, 0, :], e, w, _leverage(X, w, quad)


def fit_sequences(
    seq: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    half: int = HALF,
    rounds: int = ROUNDS,
    inner: int = INNER,
    lms: bool = True,
    min_scale: float = 0.0,
) -> SeqFit:
    """Doubt of each frame's label ``y`` (n, d) from its sequence's other frames: ``seq`` (n,) sequence ids and
    ``t`` (n,) frame numbers; frames sorted by sequence, then frame number, no repeats within a sequence.
    ``lms=False`` starts each fit from all neighbours (the plain reweighted fit, a benchmark baseline).
    ``min_scale``: the smallest local scale, in label units (labels are never more precise than that)."""
    seq = np.asarray(seq)
    t = np.asarray(t, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64).reshape(len(t), -1)
    n, d = y.shape
    nan = np.full(n, np.nan)
    if n == 0:
        z = np.zeros(0)
        return SeqFit(z, y.copy(), z, z, z, z.astype(np.int64), z.astype(np.int64))
    J, ok = _windows(seq, t, half)
    dtf = (t[J] - t[:, None]).astype(np.float64)
    dt = dtf / half
    kern = np.where(ok, (1 - np.abs(dt) ** 3) ** 3, 0.0)
    kern = np.where(ok, np.maximum(kern, 0.05), 0.0)
    enough = ok.sum(1) >= MIN_FRAMES
    Y = y[J]  # (n, m, d)
    prior = np.ones(n)
    for _ in range(rounds):
        w0 = kern * prior[J]
        est, e, w, lev = _fit(Y, dtf, w0, half, inner, lms)
        dist = np.linalg.norm(y - est, axis=1)
        # the local noise: how far the trusted neighbours sit from where their own neighbours put them
        # (out-of-sample, like the frame's own distance; in-sample residuals are smaller and noisier)
        s_loc = _weighted_median(np.nan_to_num(dist[J], nan=0.0), np.where(w > 0, ok * prior[J], 0.0))
        glob = float(np.nanmedian(s_loc[enough])) if enough.any() else 1.0
        s_loc = np.nan_to_num(s_loc, nan=glob)
        scale = np.maximum(s_loc, max(FLOOR * glob, min_scale) + 1e-9)
        # an extrapolating fit (sequence ends, gaps) misses by more: widen by its variance over the usual one's
        rel = lev / float(np.median(lev[enough])) if enough.any() else np.ones(n)
        scale = scale * np.sqrt(np.clip(rel, 1.0, 4.0))
        score = np.where(enough, dist / scale, np.nan)
        u = np.nan_to_num(score, nan=0.0) / TUKEY_C
        prior = np.where(u < 1, (1 - u * u) ** 2, 0.0) * 0.95 + 0.05
    motion = _motion(seq, y, t, J, ok)
    tj = np.where(ok, t[J], -1)
    first = np.where(ok.any(1), np.where(ok, t[J], np.iinfo(np.int64).max).min(1), t)
    last = np.where(ok.any(1), tj.max(1), t)
    return SeqFit(score, est, np.where(enough, dist, nan), scale, motion, first, last)


def _weighted_median(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise weighted median of ``v`` (n, m) with weights ``w`` (NaN where a row has no weight)."""
    order = np.argsort(v, 1)
    vs = np.take_along_axis(v, order, 1)
    ws = np.take_along_axis(w, order, 1)
    cw = np.cumsum(ws, 1)
    tot = cw[:, -1:]
    k = (cw < 0.5 * tot).sum(1)
    k = np.minimum(k, v.shape[1] - 1)
    out = vs[np.arange(len(v)), k]
    return np.where(tot[:, 0] > 0, out, np.nan)


def _motion(seq: np.ndarray, y: np.ndarray, t: np.ndarray, J: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Median movement per frame number between consecutive frames of each frame's window."""
    n = len(t)
    step = np.full(n, np.nan)
    if n > 1:
        moved = np.linalg.norm(np.diff(y, axis=0), axis=1) / np.maximum(np.diff(t), 1)
        step[1:] = np.where(seq[1:] == seq[:-1], moved, np.nan)
    s = np.where(ok, step[J], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without a step: 0 below
        m = np.nanmedian(s, 1)
    return np.nan_to_num(m, nan=0.0)
