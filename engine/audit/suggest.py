"""Which unlabelled items to label next (no torch): the most typical item of each cluster of the embeddings that
nothing labelled covers yet (TypiClust), clusters by size, or with a run by size x the model's uncertainty there;
near-duplicates skipped while others are left."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.core import Dataset, Kind
from engine.labels.quality import knn_indices
from engine.labels.store import LabelStore, PredictionRow
from engine.runs.duplicates import COPY_THRESHOLD, DEFAULT_THRESHOLD
from engine.runs.embeddings import Embeddings, normalised

PCA_DIMS = 32
"""Embeddings are clustered in their first principal components: k-means in 1,280 dimensions costs minutes."""
FAR = 2.0
"""Distance of unit vectors that are opposite: a candidate's distance when nothing is labelled or chosen yet."""
TYPICAL_K = 20
"""Typicality: the inverse mean distance to this many nearest items of the same cluster."""


@dataclass(frozen=True)
class Suggestion:
    """One item to label next, its 1-based rank and why, in words."""

    rank: int
    item: str
    reason: str

    def as_dict(self) -> dict:
        """``{rank, item, reason}`` (``imgreg suggest --json``'s ``items``; the app reads exactly this)."""
        return {"rank": self.rank, "item": self.item, "reason": self.reason}


def unlabelled(ds: Dataset, store: LabelStore | None) -> list[str]:
    """Items without a problem and without an effective label, in dataset order."""
    eff = store.effective_labels() if store is not None else {}
    return [it.name for it in ds.items if not it.problem and eff.get(it.name, it.label) is None]


def labelled(ds: Dataset, store: LabelStore | None) -> list[str]:
    """Items with an effective label (problem or not: a labelled image is known to the model either way)."""
    eff = store.effective_labels() if store is not None else {}
    return [it.name for it in ds.items if eff.get(it.name, it.label) is not None]


def uncertainty(row: PredictionRow, kind: Kind) -> float | None:
    """How unsure a prediction is: the largest radius (points) or the width ``hi - lo`` (scalars) of its
    calibrated interval, else its spread; None when it has neither."""
    if row.interval:
        return float(row.interval[1] - row.interval[0]) if kind == "scalar" else float(max(row.interval))
    return None if row.spread is None else float(row.spread)


def unsure_words(row: PredictionRow, kind: Kind) -> str:
    """``the model is unsure: 90% radius 14 px`` (or interval width, or spread) for a reason."""
    if row.interval:
        pct = f"{100 * row.coverage:.0f}% " if row.coverage else ""
        if kind == "scalar":
            lo, hi = row.interval[0], row.interval[1]
            return f"the model is unsure: {pct}interval {lo:.3g} to {hi:.3g} (width {hi - lo:.3g})"
        return f"the model is unsure: {pct}radius {max(row.interval):.0f} px"
    unit = " px" if kind == "point" else ""
    return f"the model is unsure: spread {row.spread:.3g}{unit}"


def _reduce(x: np.ndarray) -> np.ndarray:
    """``x`` projected on its first ``PCA_DIMS`` principal components (unchanged when it has fewer columns)."""
    if x.shape[1] <= PCA_DIMS or len(x) <= PCA_DIMS:
        return x
    c = x - x.mean(axis=0)
    _u, _s, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:PCA_DIMS].T


def _typicality(x: np.ndarray) -> np.ndarray:
    """Each row's inverse mean distance to its ``TYPICAL_K`` nearest rows (a dense spot scores high)."""
    if len(x) < 2:
        return np.ones(len(x))
    nbr = knn_indices(x, TYPICAL_K)
    # one neighbour column at a time: a (rows, k, dims) array of 1,280-d embeddings would take gigabytes
    dist = sum(np.linalg.norm(x - x[nbr[:, j]], axis=1) for j in range(nbr.shape[1]))
    return 1.0 / (np.asarray(dist) / nbr.shape[1] + 1e-9)


def _order(cl: np.ndarray, covered: set[int], weights: np.ndarray) -> list[int]:
    """Clusters best first: those nothing labelled covers, then by size x mean weight (ties: lower id)."""
    ids = sorted(set(cl.tolist()))
    worth = {c: float(weights[cl == c].sum()) for c in ids}
    return sorted(ids, key=lambda c: (c in covered, -worth[c], c))


def _pick(
    x: np.ndarray, seeds: np.ndarray, n: int, weights: np.ndarray, dup: float, copy: float
) -> list[tuple[int, float, bool]]:
    """Picks ``(row, distance to the labelled and earlier picks, alike)``: each cluster's most typical row in cluster
    order, then the second most typical of each, ...; rows nearer than ``dup`` to a seed or pick are skipped. When
    those run out before ``n``, the rows farthest from every seed and pick follow (``alike``), never one nearer
    than ``copy``: frames of one video are all near-duplicates by ``dup``, yet other poses in it teach the model."""
    from sklearn.cluster import KMeans  # only when suggesting: seconds to import

    both = _reduce(np.concatenate([x, seeds]))
    k = max(1, min(len(np.unique(both, axis=0)), len(seeds) + n))  # copies would leave clusters empty
    lab = KMeans(n_clusters=k, n_init=3, random_state=0).fit_predict(both)
    cl, covered = lab[: len(x)], set(lab[len(x) :].tolist())
    ranked = []
    for c in _order(cl, covered, weights):
        idx = np.nonzero(cl == c)[0]
        ranked.append(idx[np.argsort(-_typicality(x[idx]), kind="stable")])
    d = _min_dist(x, seeds) if len(seeds) else np.full(len(x), FAR)
    out: list[tuple[int, float, bool]] = []

    def take(i: int, alike: bool) -> None:
        nonlocal d
        out.append((i, float(min(d[i], FAR)), alike))
        d = np.minimum(d, np.linalg.norm(x - x[i], axis=1))

    for r in range(max(len(i) for i in ranked)):
        for idx in ranked:
            if len(out) == n:
                return out
            if r < len(idx) and d[idx[r]] >= dup:
                take(int(idx[r]), False)
    while len(out) < n and len(x) and d.max() >= copy:  # a pick's own distance is 0: never taken twice
        take(int(np.argmax(d)), True)
    return out


def _min_dist(x: np.ndarray, seeds: np.ndarray, block: int = 1024) -> np.ndarray:
    """Each row's distance to its nearest seed row (unit vectors, blocked)."""
    out = np.empty(len(x))
    for s in range(0, len(x), block):
        sim = x[s : s + block] @ seeds.T
        out[s : s + block] = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sim.max(axis=1)))
    return out


def suggest(
    ds: Dataset,
    store: LabelStore | None,
    emb: Embeddings,
    n: int,
    preds: dict[str, PredictionRow] | None = None,
    dup: float = DEFAULT_THRESHOLD,
    copy: float = COPY_THRESHOLD,
) -> tuple[list[Suggestion], list[str]]:
    """The ``n`` unlabelled items to label next, best first, and notes (items skipped and why).

    The embeddings (labelled and not) fall into as many k-means clusters as there are labelled items plus ``n``;
    each pick is the most typical unlabelled item of a cluster no labelled item is in, largest cluster first, or
    with a run's ``preds`` the cluster where size x the model's uncertainty is largest first. A batch thus never
    takes twenty copies of one hard pose, and never an outlier over a common pose the model has not seen (on
    generated Biwi pools this beat k-centre greedy, which picks outliers: bench_label_efficiency). Near-duplicates
    (closer than ``dup``) of labelled or picked items come only once nothing else is left, least alike first, and
    copies (closer than ``copy``) never.
    """
    todo = unlabelled(ds, store)
    notes: list[str] = []
    missing = [m for m in todo if m not in emb]
    if missing:
        notes.append(f"{len(missing)} unlabelled items have no embedding (unreadable image?): not suggested")
    cand = [m for m in todo if m in emb]
    if not cand:
        return [], notes + ["no unlabelled items to suggest"]
    seeds_names = [m for m in labelled(ds, store) if m in emb]
    x = normalised(emb.subset(cand).vecs).astype(np.float64)
    seeds = normalised(emb.subset(seeds_names).vecs).astype(np.float64)
    weights = np.ones(len(cand))
    rows: list[PredictionRow | None] = [None] * len(cand)
    if preds is not None:
        u = [uncertainty(preds[m], ds.kind) if m in preds else None for m in cand]
        known = [v for v in u if v is not None]
        if not known:
            raise ValueError("the run's predictions carry neither intervals nor spread: run predict again")
        fill = float(np.median(known))
        n_none = sum(v is None for v in u)
        if n_none:
            notes.append(
                f"{n_none} unlabelled items have no prediction from this run: median uncertainty used"
            )
        top = max(max(known), 1e-12)
        weights = np.array([(fill if v is None else v) / top for v in u]) + 1e-6
        rows = [preds.get(m) for m in cand]
    picks = _pick(x, seeds, n, weights, dup, copy)
    if n_alike := sum(alike for _i, _d, alike in picks):
        notes.append(
            f"{n_alike} of them are alike to labelled or chosen ones (distance under {dup:g}; frames of one video "
            "often are): the least alike left"
        )
    if len(picks) < n and len(picks) < len(cand):
        notes.append(
            f"only {len(picks)} of {len(cand)} unlabelled items are not copies (distance under {copy:g}) "
            "of labelled or chosen ones"
        )
    out = []
    for rank, (i, d, alike) in enumerate(picks, 1):
        row, dist = rows[i], min(d, FAR)
        if alike:
            reason = f"alike to a labelled or chosen image (distance {dist:.2f}, under {dup:g}): the least alike left"
        elif preds is None:
            reason = (
                f"the most typical image of a part nothing labelled covers (cold start): distance {dist:.2f}"
            )
        else:
            words = unsure_words(row, ds.kind) if row is not None else "no prediction from this run"
            reason = f"{words}; typical of its part, distance {dist:.2f} from the labelled and chosen items"
        out.append(Suggestion(rank, cand[i], reason))
    return out, notes
