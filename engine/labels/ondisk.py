"""Data that changes on disk: orphaned corrections (their file vanished) and reloading a dataset in place."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.core import CancelToken, Dataset
from engine.data import open_dataset
from engine.labels.store import LabelRecord, LabelStore


def orphans(store: LabelStore, ds: Dataset) -> list[LabelRecord]:
    """Corrected or verified records whose item is no longer in the dataset (kept; they return with the file)."""
    names = {it.name for it in ds.items}
    return [
        rec
        for name, rec in store.records().items()
        if name not in names and (rec.source != "original" or rec.verified)
    ]


@dataclass
class Reloaded:
    """A re-indexed dataset and how its items changed since the previous index."""

    ds: Dataset
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    relabelled: list[str] = field(default_factory=list)  # original labels changed in the source files
    orphans: list[LabelRecord] = field(default_factory=list)


def reload(ds: Dataset, store: LabelStore, cancel: CancelToken | None = None) -> Reloaded:
    """Index ``ds.root`` again and sync the store: new files appear, vanished ones leave orphans (File > Reload)."""
    new = open_dataset(ds.root, cancel=cancel)
    before = {it.name for it in ds.items}
    after = {it.name for it in new.items}
    changed = set(store.sync(new.items))
    store.ds = new
    return Reloaded(
        new,
        added=[it.name for it in new.items if it.name not in before],
        removed=[it.name for it in ds.items if it.name not in after],
        relabelled=sorted(n for n in changed if n in before),
        orphans=orphans(store, new),
    )
