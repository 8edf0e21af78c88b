"""One out-of-fold job, shared by the serial loop (``engine.learn.rank``) and the fold processes
(``engine.learn.parallel``): which items a fold holds out, fitting on the rest, predicting the held-out ones."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from engine.core import CancelToken, Item, Label, OnEvent
from engine.labels.store import PredictionRow
from engine.learn.dls import Sample
from engine.learn.feed import train_cache
from engine.learn.predict import predict_model
from engine.learn.train import TrainConfig, fit


def fold_indices(samples: list[Sample], folds: int, seed: int = 42) -> list[list[int]]:
    """Validation indices per fold: whole groups balanced by size, or items when there are fewer groups than folds."""
    if folds < 2:
        raise ValueError("out-of-fold ranking needs at least 2 folds")
    if len(samples) < folds:
        raise ValueError(f"{len(samples)} labelled items cannot make {folds} folds")
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_group.setdefault(s.group, []).append(i)
    out: list[list[int]] = [[] for _ in range(folds)]
    if len(by_group) >= folds:
        names = list(by_group)
        order = rng.permutation(len(names))
        # largest groups first, each to the currently smallest fold (ties broken by the shuffle)
        for k in sorted(order, key=lambda k: -len(by_group[names[k]])):
            min(out, key=len).extend(by_group[names[k]])
    else:
        for n, i in enumerate(rng.permutation(len(samples)).tolist()):
            out[n % folds].append(i)
    return [sorted(f) for f in out]


def train_indices(n: int, valid_idx: list[int]) -> list[int]:
    """The indices of ``n`` samples that a fold trains on: all but its held-out ones."""
    held = set(valid_idx)
    return [i for i in range(n) if i not in held]


def fit_fold(
    samples: list[Sample],
    valid_idx: list[int],
    cfg: TrainConfig,
    repeat: int,
    items: list[Item],
    labels: dict[str, Label],
    bs: int,
    on_event: OnEvent,
    cancel: CancelToken | None,
    tag: dict[str, Any],
) -> tuple[list[PredictionRow], dict[str, Any], bool]:
    """Fit on the other folds (repeat ``r`` trains with seed + r), predict the held-out ``items`` from the cache.

    Returns the rows, the best epoch's metrics and whether the fit was stopped early."""
    train_idx = train_indices(len(samples), valid_idx)
    res = fit(samples, train_idx, valid_idx, replace(cfg, seed=cfg.seed + repeat), on_event, cancel, tag)
    rows = predict_model(res.model, res.cfg, items, labels, bs=bs, cancel=cancel, cache=train_cache(res.cfg))
    return rows, res.state.best_metrics, res.state.cancelled


def fold_record(
    samples: list[Sample], valid_idx: list[int], by_groups: bool, fold: int, repeat: int, best: dict[str, Any]
) -> dict[str, Any]:
    """A fold's line in ``summary.json``: which groups it held out, how many items, its best metrics."""
    # with fewer groups than folds the folds hold out items, and no group is held out whole
    groups = list(dict.fromkeys(samples[i].group for i in valid_idx)) if by_groups else []
    return {"fold": fold + 1, "repeat": repeat + 1, "valid_groups": groups, "n_valid": len(valid_idx), **best}
