"""Near-duplicate pairs from item embeddings (no torch): closest first, flagged when they leak across groups or
disagree in their labels; and which pairs leak across a chosen validation split (the train panel's warning)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from engine.core import Label, label_distance
from engine.runs.embeddings import Embeddings, normalised

DEFAULT_THRESHOLD = 0.35
"""Distance between unit embeddings under which two images count as near-duplicates.

Planted re-encoded, resized, brightened and cropped copies sit under 0.1 with the ImageNet MobileNetV2 while
distinct faces of the UTKFace sample sit above 0.3 (``benchmarks/bench_similar.py``, ``tests/test_similar.py``)."""
COPY_THRESHOLD = 0.1
"""Distance under which an image is a copy of another (those planted copies), not merely alike: real Biwi frames of
one person sit at 0.04 (consecutive) to 0.15 (150 frames apart), other poses of a person at 0.24-0.28."""


@dataclass
class Pair:
    """Two near-duplicate items, their distance, groups and labels, and what is wrong with them."""

    a: str
    b: str
    distance: float
    groups: tuple[str, str]
    labels: tuple[Label | None, Label | None]
    cross_group: bool
    label_disagree: bool

    def as_dict(self) -> dict:
        """A JSON-able dict (``imgreg duplicates --json``)."""
        return {
            "a": self.a,
            "b": self.b,
            "distance": self.distance,
            "groups": list(self.groups),
            "labels": [list(v) if v is not None else None for v in self.labels],
            "cross_group": self.cross_group,
            "label_disagree": self.label_disagree,
        }


def close_pairs(emb: Embeddings, threshold: float, block: int = 2048) -> list[tuple[int, int, float]]:
    """Row pairs ``(i, j, distance)`` with ``i < j`` closer than ``threshold``, closest first (blocked, exact)."""
    x = normalised(emb.vecs)
    n = len(x)
    min_sim = 1.0 - threshold * threshold / 2.0
    out: list[tuple[int, int, float]] = []
    for s in range(0, n, block):
        sim = x[s : s + block] @ x[s:].T
        ii, jj = np.nonzero(sim >= min_sim)
        keep = jj > ii
        for i, j in zip(ii[keep], jj[keep], strict=True):
            d = float(np.sqrt(max(0.0, 2.0 - 2.0 * float(sim[i, j]))))
            out.append((s + int(i), s + int(j), d))
    out.sort(key=lambda p: (p[2], p[0], p[1]))
    return out


def find_duplicates(
    emb: Embeddings,
    groups: dict[str, str],
    labels: dict[str, Label],
    threshold: float = DEFAULT_THRESHOLD,
    label_tol: float = 0.0,
) -> list[Pair]:
    """Near-duplicate pairs closer than ``threshold``, closest first.

    ``cross_group``: the two items fall in different groups (a group split can put one in training and the other
    in validation). ``label_disagree``: both are labelled and their labels differ by more than ``label_tol``
    (pixels for points, label units for scalars).
    """
    pairs = []
    for i, j, d in close_pairs(emb, threshold):
        a, b = emb.names[i], emb.names[j]
        la, lb = labels.get(a), labels.get(b)
        diff = label_distance(la, lb) if la is not None and lb is not None else None
        ga, gb = groups.get(a, "."), groups.get(b, ".")
        pairs.append(Pair(a, b, d, (ga, gb), (la, lb), ga != gb, diff is not None and diff > label_tol))
    return pairs


def split_leaks(pairs: Iterable[Pair], valid_groups: Iterable[str]) -> list[Pair]:
    """The pairs with one item in the validation groups and the other in training: they inflate validation scores."""
    valid = set(valid_groups)
    return [p for p in pairs if (p.groups[0] in valid) != (p.groups[1] in valid)]
