"""The train/validation split rule, torch-free: one place for training and the app's leak check."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.options import SEED, VALID_PCT


def split_indices(
    groups: Sequence[str],
    valid_groups: Sequence[str] | None = None,
    valid_pct: float = VALID_PCT,
    seed: int = SEED,
) -> tuple[list[int], list[int], list[str]]:
    """(train indices, valid indices, valid group names) of items in ``groups`` (one group name per item).

    The ticked ``valid_groups``; else a seeded random ``valid_pct`` of the groups; with a single group a seeded
    random ``valid_pct`` of the items (and no group names).
    """
    names = list(dict.fromkeys(groups))
    rng = np.random.default_rng(seed)
    if valid_groups:
        missing = [g for g in valid_groups if g not in names]
        if missing:
            raise ValueError(
                f"validation groups not in the data: {', '.join(missing)} (groups: {', '.join(names)})"
            )
        vg = set(valid_groups)
    elif len(names) >= 2:
        n = min(len(names) - 1, max(1, round(valid_pct * len(names))))
        vg = set(rng.permutation(np.array(names, dtype=object))[:n].tolist())
    else:
        n = min(len(groups) - 1, max(1, round(valid_pct * len(groups))))
        valid = sorted(rng.permutation(len(groups))[:n].tolist())
        vset = set(valid)
        return [i for i in range(len(groups)) if i not in vset], valid, []
    train = [i for i, g in enumerate(groups) if g not in vg]
    valid = [i for i, g in enumerate(groups) if g in vg]
    return train, valid, [g for g in names if g in vg]


MIN_TRAIN_ITEMS = 2  # one to fit, one to validate


def too_few(labelled: int, folds: int = 1) -> str | None:
    """Why training on ``labelled`` items (``folds`` >= 2: out-of-fold ranking) cannot run, or None when it can."""
    if labelled < MIN_TRAIN_ITEMS:
        return (
            f"needs at least {MIN_TRAIN_ITEMS} labelled items, found {labelled}: label items by clicking on the "
            "image in imgreg-gui or with `imgreg correct`"
        )
    if folds >= 2 and labelled < folds:
        return f"{labelled} labelled items cannot make {folds} folds: choose fewer folds or label more items"
    return None
