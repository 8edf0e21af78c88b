"""Which unlabelled items to label next (no torch): k-centre greedy over embeddings for a cold start, the
model's uncertainty times the distance to the labelled set with a run; near-duplicates skipped, groups spread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.core import Dataset, Kind
from engine.labels.store import LabelStore, PredictionRow
from engine.runs.duplicates import DEFAULT_THRESHOLD
from engine.runs.embeddings import Embeddings, normalised

GROUP_DECAY = 0.7
"""Each item already chosen from a group this batch multiplies that group's scores by this: spread over groups."""
FAR = 2.0
"""Distance of unit vectors that are opposite: a candidate's distance when nothing is labelled or chosen yet."""


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


def _pick(
    x: np.ndarray,
    seeds: np.ndarray,
    groups: Sequence[str],
    n: int,
    weights: np.ndarray,
    dup: float,
) -> list[tuple[int, float]]:
    """Greedy picks ``(row, distance to the chosen/seed set)`` maximising ``weight x distance``, decayed per group
    already picked from; rows nearer than ``dup`` to a seed or pick are skipped (near-duplicates)."""
    taken = np.zeros(len(x), bool)
    per_group: dict[str, int] = {}
    out: list[tuple[int, float]] = []

    def take(i: int, dist: float) -> np.ndarray:
        out.append((i, dist))
        taken[i] = True
        per_group[groups[i]] = per_group.get(groups[i], 0) + 1
        return np.linalg.norm(x - x[i], axis=1)

    if len(seeds):
        d = _min_dist(x, seeds)
    elif n > 0 and len(x):
        # nothing labelled: start from the most unsure item, or (all alike) the most typical image, not an outlier
        typical = np.linalg.norm(x - x.mean(axis=0), axis=1)
        first = int(np.argmax(weights)) if np.ptp(weights) > 0 else int(np.argmin(typical))
        d = take(first, FAR)
    else:
        d = np.full(len(x), FAR)
    while len(out) < n:
        ok = ~taken & (d >= dup)
        if not ok.any():
            break
        decay = np.array([GROUP_DECAY ** per_group.get(g, 0) for g in groups])
        score = np.where(ok, weights * np.minimum(d, FAR) * decay, -np.inf)
        i = int(np.argmax(score))  # ties: the first row, i.e. dataset order (stable)
        d = np.minimum(d, take(i, float(d[i])))
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
) -> tuple[list[Suggestion], list[str]]:
    """The ``n`` unlabelled items to label next, best first, and notes (items skipped and why).

    Without ``preds``: k-centre greedy (each pick the item farthest from everything labelled or picked). With a
    run's ``preds``: each pick maximises the model's uncertainty x that distance, so one hard pose is not picked
    twenty times. Near-duplicates (closer than ``dup``) of labelled or picked items are never picked.
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
    group_of = {it.name: it.group for it in ds.items}
    groups = [group_of[m] for m in cand]
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
    picks = _pick(x, seeds, groups, n, weights, dup)
    if len(picks) < n and len(picks) < len(cand):
        notes.append(
            f"only {len(picks)} of {len(cand)} unlabelled items are not near-duplicates of labelled or chosen ones"
        )
    out = []
    for rank, (i, d) in enumerate(picks, 1):
        row, dist = rows[i], min(d, FAR)
        if preds is None:
            cold = not len(seeds) and rank == 1
            reason = (
                "the most typical image (cold start)"
                if cold
                else (f"far from everything labelled (cold start): distance {dist:.2f}")
            )
        else:
            words = unsure_words(row, ds.kind) if row is not None else "no prediction from this run"
            reason = f"{words}; distance {dist:.2f} from the labelled and chosen items"
        out.append(Suggestion(rank, cand[i], reason))
    return out, notes
