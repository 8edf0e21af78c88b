"""Training data: usable samples from a dataset and its store, group splits, and fastai DataLoaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastai.data.block import DataBlock, RegressionBlock
from fastai.data.transforms import IndexSplitter, Normalize
from fastai.vision.augment import Resize, ResizeMethod, aug_transforms
from fastai.vision.data import ImageBlock, PointBlock

from engine.core import Dataset, Label
from engine.data.images import ImageError, check_file, image_size, load_image
from engine.data.split import split_indices
from engine.labels.store import LabelStore


@dataclass(frozen=True)
class Sample:
    """One usable training item: its name, group, path, effective label and original size (w, h)."""

    name: str
    group: str
    path: Path
    label: Label
    size: tuple[int, int]


@dataclass
class Samples:
    """The usable samples of a dataset and why the others were skipped (name -> reason)."""

    samples: list[Sample]
    skipped: dict[str, str]


def effective_labels(ds: Dataset, store: LabelStore | None) -> dict[str, Label]:
    """Effective labels by item name: the store's (corrections applied) or the dataset's originals."""
    if store is not None:
        return dict(store.effective_labels())
    return {it.name: it.label for it in ds.items if it.label is not None}


def usable_samples(ds: Dataset, store: LabelStore | None = None, names: list[str] | None = None) -> Samples:
    """Items with no problem, a readable image and a label of the right length (others are skipped).

    An item whose source label was unusable (e.g. a malformed pose file) counts once a person has corrected it,
    provided its image file passes the cheap integrity check.
    """
    labels = effective_labels(ds, store)
    fixed = {n for n, r in store.records().items() if r.source != "original"} if store is not None else set()
    want = 2 * ds.n_points if ds.kind == "point" else 1
    keep = set(names) if names is not None else None
    samples, skipped = [], {}
    for it in ds.items:
        if keep is not None and it.name not in keep:
            continue
        if it.problem and (it.name not in fixed or check_file(it.path) is not None):
            skipped[it.name] = it.problem
            continue
        label = labels.get(it.name)
        if label is None:
            skipped[it.name] = "no label"
            continue
        if len(label) != want or not all(np.isfinite(v) for v in label):
            skipped[it.name] = f"label has {len(label)} values, expected {want}"
            continue
        try:
            size = image_size(it.path)
        except ImageError as e:
            skipped[it.name] = e.reason
            continue
        samples.append(Sample(it.name, it.group, Path(it.path), tuple(float(v) for v in label), size))
    return Samples(samples, skipped)


def split_groups(
    samples: list[Sample], valid_groups: list[str] | None = None, valid_pct: float = 0.2, seed: int = 42
) -> tuple[list[int], list[int], list[str]]:
    """(train indices, valid indices, valid group names): whole groups, or random items when only one group."""
    train, valid, vgroups = split_indices([s.group for s in samples], valid_groups, valid_pct, seed)
    if vgroups and (not train or not valid):
        raise ValueError("the split leaves no training or no validation items")
    return train, valid, vgroups


def sample_image(s: Sample) -> np.ndarray:
    """The sample's image as (H, W, 3) uint8 RGB (the same loader the GUI uses)."""
    return load_image(s.path)


def sample_points(s: Sample) -> np.ndarray:
    """The sample's points (n_points, 2) in original pixels."""
    return np.asarray(s.label, dtype=np.float32).reshape(-1, 2)


def sample_value(s: Sample) -> float:
    """The sample's scalar label."""
    return float(s.label[0])


def scalar_range(samples: list[Sample], margin: float = 0.1) -> tuple[float, float]:
    """``y_range`` for scalars: the label range widened by ``margin`` of its span on each side."""
    vals = np.array([s.label[0] for s in samples], dtype=np.float64)
    lo, hi = float(vals.min()), float(vals.max())
    pad = max(hi - lo, 1e-3) * margin
    return lo - pad, hi + pad


def make_dls(
    samples: list[Sample],
    valid_idx: list[int],
    kind: str,
    size: tuple[int, int],
    bs: int,
    device: torch.device,
    n_points: int = 1,
    augment: bool = True,
    num_workers: int = 0,
    seed: int = 42,
    stats: tuple[list[float], list[float]] | None = None,
):
    """fastai DataLoaders: squish-resize to ``size`` (h, w), augment (points move with the image), normalise."""
    yblock = PointBlock if kind == "point" else RegressionBlock(n_out=1)
    get_y = sample_points if kind == "point" else sample_value
    batch_tfms = []
    if augment:
        # Flipping swaps the meaning of ordered points (left/right eye), so only single points are flipped.
        batch_tfms += aug_transforms(size=size, do_flip=kind == "scalar" or n_points == 1)
    if stats is not None:
        batch_tfms.append(Normalize.from_stats(*stats))
    dblock = DataBlock(
        blocks=(ImageBlock, yblock),
        get_x=sample_image,
        get_y=get_y,
        splitter=IndexSplitter(valid_idx),
        item_tfms=Resize(size, method=ResizeMethod.Squish),
        batch_tfms=batch_tfms,
    )
    # a batch size above the training set would leave no full batch (fastai drops the last partial one)
    train_bs = max(1, min(bs, len(samples) - len(valid_idx)))
    return dblock.dataloaders(
        samples, bs=train_bs, val_bs=bs, device=device, num_workers=num_workers, seed=seed
    )
