"""One out-of-fold job, shared by the serial loop (``engine.learn.rank``) and the fold processes
(``engine.learn.parallel``): which items a fold holds out, fitting on the rest, predicting the held-out ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from engine import events
from engine.core import CancelToken, Item, Label, OnEvent
from engine.data.cache import ImageCache
from engine.labels.store import PredictionRow
from engine.learn.dls import Sample
from engine.learn.embed import Embedder, embed_vectors, model_body
from engine.learn.feed import train_cache
from engine.learn.predict import predict_model
from engine.learn.train import TrainConfig, fit

MODEL_NEIGHBOURS = 10
"""Nearest training items per held-out scalar item whose labels are the score's second opinion."""


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


class FoldResult(NamedTuple):
    """A fitted fold: its held-out rows, best epoch's metrics, whether it stopped early, and (when asked) each
    held-out item's nearest training items in the fold model's feature space."""

    rows: list[PredictionRow]
    best: dict[str, Any]
    stopped: bool
    neighbours: dict[str, list[str]]


def fit_fold(
    samples: list[Sample],
    valid_idx: list[int],
    cfg: TrainConfig,
    repeat: int,
    items: Mapping[str, Item],
    labels: dict[str, Label],
    bs: int,
    on_event: OnEvent,
    cancel: CancelToken | None,
    tag: events.PreparedExtra,
    tta: bool = True,
    neighbours: int = 0,
) -> FoldResult:
    """Fit on the other folds (repeat ``r`` trains with seed + r), predict the held-out items (``items`` maps names
    to items) from the cache, with their mirror images averaged in when ``tta`` (where flipping is safe: scalars and
    single points, and the model trained on mirrored images); with ``neighbours`` > 0, also find that many nearest
    training items of each held-out one by the model's own pooled features."""
    train_idx = train_indices(len(samples), valid_idx)
    res = fit(samples, train_idx, valid_idx, replace(cfg, seed=cfg.seed + repeat), on_event, cancel, tag)
    held = [items[samples[i].name] for i in valid_idx]
    device = next(res.model.parameters()).device
    cache = train_cache(res.cfg)
    tta = tta and cfg.augment
    rows = predict_model(
        res.model, res.cfg, held, labels, tta, bs=bs, cancel=cancel, device=device, cache=cache
    )
    nbrs: dict[str, list[str]] = {}
    if neighbours > 0 and not res.state.cancelled:
        train = [items[samples[i].name] for i in train_idx]

        def tagged(e: events.Event) -> None:  # the fold's progress bar shows the embedding
            on_event(events.tagged(e, tag["fold"], tag["folds"]))

        nbrs = model_neighbours(
            res.model, res.cfg, held, train, neighbours, tagged, cancel, device, bs, cache
        )
    return FoldResult(rows, res.state.best_metrics, res.state.cancelled, nbrs)


def model_neighbours(
    model: nn.Module,
    cfg: TrainConfig,
    held: list[Item],
    train: list[Item],
    k: int,
    on_event: OnEvent,
    cancel: CancelToken | None,
    device: torch.device,
    bs: int,
    cache: ImageCache | None,
) -> dict[str, list[str]]:
    """Each ``held`` item's ``k`` nearest ``train`` items by cosine similarity of the model's pooled features:
    images the model sees alike, whose labels are a second opinion that never saw the held-out label."""
    emb = Embedder(model, model_body(model), (cfg.size[0], cfg.size[1]), cfg.normalize, "fold", {})
    names, vecs, _ = embed_vectors(emb, held + train, on_event, cancel, device, bs, cache=cache)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    held_names = {it.name for it in held}
    hi = [i for i, n in enumerate(names) if n in held_names]
    ti = np.array([i for i, n in enumerate(names) if n not in held_names])
    if not hi or len(ti) == 0:
        return {}
    k = min(k, len(ti))
    sim = vecs[hi] @ vecs[ti].T
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return {names[i]: [names[ti[j]] for j in row] for i, row in zip(hi, top, strict=True)}


def fold_record(
    samples: list[Sample], valid_idx: list[int], by_groups: bool, fold: int, repeat: int, best: dict[str, Any]
) -> dict[str, Any]:
    """A fold's line in ``summary.json``: which groups it held out, how many items, its best metrics."""
    # with fewer groups than folds the folds hold out items, and no group is held out whole
    groups = list(dict.fromkeys(samples[i].group for i in valid_idx)) if by_groups else []
    return {"fold": fold + 1, "repeat": repeat + 1, "valid_groups": groups, "n_valid": len(valid_idx), **best}


def merge_neighbours(into: dict[str, list[str]], more: dict[str, list[str]]) -> None:
    """Add a fold's neighbour lists to those of earlier rounds (an item keeps every round's neighbours)."""
    for name, nbrs in more.items():
        into.setdefault(name, []).extend(nbrs)
