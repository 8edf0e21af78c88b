"""Age-model recipes for out-of-fold ranking, side by side on one fold of the planted UTKFace sample.

The ranking of ``bench_label_errors.py`` is only as good as the held-out model: this fits one fold (the first of
its 3-fold split, seed 0, with 5% of the ages moved 20-40 years as there) once per recipe through the product's
``engine.learn.train.fit``, and reports the held-out error on the clean faces (mean and median years), with and
without flip TTA, and the fit time. Recipes are JSON objects of ``TrainConfig`` fields over the base (MobileNetV2
from ImageNet weights when installed, 128 px, lr 5e-3, 10 epochs, bs 16). Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_accuracy import mobilenet_weights  # noqa: E402
from bench_label_errors import UTK, plant  # noqa: E402

from engine.data import open_dataset  # noqa: E402
from engine.labels.store import LabelStore  # noqa: E402
from engine.learn.feed import train_cache  # noqa: E402
from engine.learn.folds import fold_indices, train_indices  # noqa: E402
from engine.learn.predict import predict_model  # noqa: E402
from engine.learn.train import TrainConfig, fit, prepare  # noqa: E402

RECIPES = [
    {},
    {"size": [160, 160]},
    {"epochs": 16},
    {"freeze_epochs": 3},
    {"bs": 32, "lr": 1e-2},
    {"lr_ratio": 10},
    {"mixup": 0.4},
]


def one_recipe(ds, store, recipe: dict, base: dict, fold: int, bad: set[str]) -> dict:
    """Fit ``recipe`` on the fold's training items; errors of its clean held-out faces."""
    kw = {**base, **recipe}
    kw["size"] = tuple(kw["size"])
    cfg, samples, _ = prepare(ds, store, TrainConfig(**kw))
    valid = fold_indices(samples, 3, 0)[fold]
    labels = {s.name: s.label for s in samples}
    t0 = time.perf_counter()
    res = fit(samples, train_indices(len(samples), valid), valid, cfg)
    out = {"recipe": recipe, "fit_s": round(time.perf_counter() - t0, 1)}
    items = [ds.item(samples[i].name) for i in valid]
    for tta in (False, True):
        rows = predict_model(res.model, res.cfg, items, labels, tta, bs=32, cache=train_cache(res.cfg))
        errs = np.array([r.error for r in rows if r.item not in bad])
        out["tta" if tta else "plain"] = {
            "mae": round(float(errs.mean()), 2),
            "median": round(float(np.median(errs)), 2),
        }
    print(json.dumps(out), file=sys.stderr, flush=True)
    return out


def main() -> None:
    """Every recipe, one after another on the same fold; the JSON object last."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--recipes", type=json.loads, default=RECIPES, help="a JSON list of TrainConfig overrides"
    )
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--utk", type=Path, default=UTK)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    weights = mobilenet_weights()
    base = dict(
        arch="mobilenet_v2" if weights else "resnet18", pretrained=False, weights=weights, size=[128, 128], bs=16,
        lr=5e-3, epochs=args.epochs, device="cpu", seed=0,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IMGREG_FORCE_USER_DATA"] = "1"
        os.environ["IMGREG_DATA_DIR"] = tmp
        ds = open_dataset(args.utk)
        store = LabelStore.open(ds)
        try:
            bad = plant(store, "scalar", 0.05, 20, 40, 0)
            runs = [one_recipe(ds, store, r, base, args.fold, bad) for r in args.recipes]
        finally:
            store.close()
    arch = base["arch"] + (" (ImageNet)" if weights else " (random init)")
    print(
        json.dumps({"bench": "age_recipes", "device": "cpu", "arch": arch, "fold": args.fold, "runs": runs})
    )


if __name__ == "__main__":
    main()
