"""Similarity search: the index (exact numpy against Annoy) and whether neighbours share labels and groups.

index: recall@10 against exact search and the median query time, at 15k and 150k clustered vectors.
generated, utk: per dataset and embedding, the mean absolute label difference between an item and its 10 nearest
neighbours against random pairs (scalars), and the share of neighbours from the same group against random pairs
(Biwi layout): the ImageNet backbone's embedding against a run's trained on the labels.
duplicates: planted near-duplicate copies in a copy of some UTKFace faces: the planted pairs' distances and the
closest distinct pair.
Prints one JSON object as the last line. Run with ``nice -n 10``; ``--quick`` for a small smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import open_dataset  # noqa: E402
from engine.data.plant import plant_duplicates, utk_copy_name  # noqa: E402
from engine.data.synth import make_biwi, make_utkface  # noqa: E402
from engine.runs.embeddings import Embeddings, ExactIndex  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
SHARED = next(
    (p / "shared" / "data" for p in (_ROOT.parent, _ROOT.parent.parent) if (p / "shared" / "data").is_dir()),
    _ROOT.parent / "shared" / "data",
)
"""The sample data (``../shared/data`` of the main checkout, or two levels up from a worktree)."""
K = 10


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` float16 vectors around ``n // 50`` centres (like embeddings of many similar images)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 50), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return np.maximum(x, 0).astype(np.float16)  # ReLU features are non-negative


def bench_index(n: int, dim: int, queries: int, trees: list[int]) -> dict:
    """Exact search against Annoy (angular) at ``n`` items: recall@10, median query ms, build seconds."""
    x = clustered(n, dim)
    names = [str(i) for i in range(n)]
    t0 = time.perf_counter()
    idx = ExactIndex(Embeddings(names, x, [""] * n))
    out: dict = {"n": n, "dim": dim, "exact": {"build_s": time.perf_counter() - t0}}
    rng = np.random.default_rng(1)
    qs = rng.choice(n, queries, replace=False)
    truth, times = [], []
    for q in qs:
        t = time.perf_counter()
        rows, _ = idx.query_vec(idx.x[q], K, exclude=int(q))
        times.append(time.perf_counter() - t)
        truth.append(set(rows.tolist()))
    out["exact"].update(recall_at_10=1.0, query_ms=1000 * statistics.median(times))
    try:
        from annoy import AnnoyIndex
    except ImportError:
        out["annoy"] = "not installed"
        return out
    for nt in trees:
        t0 = time.perf_counter()
        ann = AnnoyIndex(dim, "angular")
        for i, v in enumerate(idx.x):
            ann.add_item(i, v)
        ann.build(nt, n_jobs=1)
        build = time.perf_counter() - t0
        rec, times = [], []
        for q, tr in zip(qs, truth, strict=True):
            t = time.perf_counter()
            got = ann.get_nns_by_item(int(q), K + 1)
            times.append(time.perf_counter() - t)
            rec.append(len(set([g for g in got if g != q][:K]) & tr) / K)
        out[f"annoy_{nt}_trees"] = {
            "build_s": build,
            "recall_at_10": float(np.mean(rec)),
            "query_ms": 1000 * statistics.median(times),
        }
    return out


def agreement(
    emb: Embeddings, labels: dict, groups: dict, among: list[str] | None = None, seed: int = 0
) -> dict:
    """Neighbour label difference and same-group share against random pairs (queries: ``among`` or all)."""
    idx = ExactIndex(emb)
    qnames = [n for n in (among or emb.names) if n in emb]
    rng = np.random.default_rng(seed)
    nd, ng, rd, rg = [], [], [], []
    for q in qnames:
        nb = [n for n, _ in idx.neighbours(q, K)]
        rnd = [emb.names[i] for i in rng.choice(len(emb), K + 1, replace=False) if emb.names[i] != q][:K]
        for lst, d_out, g_out in ((nb, nd, ng), (rnd, rd, rg)):
            for n in lst:
                a, b = labels.get(q), labels.get(n)
                if a is not None and b is not None and len(a) == 1:
                    d_out.append(abs(a[0] - b[0]))
                g_out.append(groups.get(q) == groups.get(n))
    res: dict = {"queries": len(qnames)}
    if nd:
        res.update(
            neighbour_label_diff=float(np.mean(nd)),
            random_label_diff=float(np.mean(rd)),
            ratio=float(np.mean(nd) / max(np.mean(rd), 1e-9)),
        )
    if len(set(groups.values())) > 1:
        res.update(neighbour_same_group=float(np.mean(ng)), random_same_group=float(np.mean(rg)))
    return res


def embeddings_of(root: Path, store: Path, run: Path | None = None) -> Embeddings:
    """Embeddings of the dataset at ``root`` (ImageNet backbone, or ``run``), stored under ``store``."""
    from engine.learn.embed import embed

    emb, _ = embed(open_dataset(root), store, run, device="cpu")
    return emb


def labels_groups(root: Path) -> tuple[dict, dict]:
    """Labels and groups of a dataset's items."""
    ds = open_dataset(root)
    return {it.name: it.label for it in ds.items if it.label}, {it.name: it.group for it in ds.items}


def tiny_run(root: Path, out: Path, size: tuple[int, int], epochs: int) -> Path:
    """A small run trained on ``root`` (tiny CNN, random start) for the generated sets."""
    from engine.learn.train import TrainConfig, train

    cfg = TrainConfig(arch="tiny", pretrained=False, size=size, epochs=epochs, bs=16, device="cpu", lr=1e-2)
    return train(open_dataset(root), None, cfg, out_dir=out).run_dir


def bench_generated(tmp: Path, quick: bool) -> dict:
    """Label and group agreement of neighbours on generated data and the Biwi sample, ImageNet against a run."""
    out: dict = {}
    gen = tmp / "gen-utk"
    make_utkface(gen, n=80 if quick else 300, size=64, seed=4)
    lab, grp = labels_groups(gen)
    run = tiny_run(gen, tmp / "runs", (64, 64), 2 if quick else 8)
    valid = json.loads((run / "summary.json").read_text())["valid_items"]
    out["generated_ages"] = {
        "imagenet": agreement(embeddings_of(gen, tmp / "s-gen"), lab, grp, valid),
        "run": agreement(embeddings_of(gen, tmp / "s-gen", run), lab, grp, valid),
        "queries": "validation items of the run",
    }
    gb = tmp / "gen-biwi"
    make_biwi(gb, groups=4 if quick else 6, frames=10 if quick else 25, size=(128, 96), seed=2)
    lab, grp = labels_groups(gb)
    out["generated_biwi"] = {"imagenet": agreement(embeddings_of(gb, tmp / "s-gb"), lab, grp)}
    biwi = SHARED / "biwi-sample"
    if biwi.is_dir():
        lab, grp = labels_groups(biwi)
        out["biwi_sample"] = {"imagenet": agreement(embeddings_of(biwi, tmp / "s-biwi"), lab, grp)}
    return out


def bench_utk(tmp: Path, utk_run: Path | None) -> dict:
    """Label agreement of neighbours on the UTKFace sample: ImageNet against a run trained on its ages."""
    out: dict = {}
    utk = SHARED / "utkface-sample"
    if utk.is_dir():
        lab, grp = labels_groups(utk)
        res: dict = {"imagenet": agreement(embeddings_of(utk, tmp / "s-utk"), lab, grp)}
        if utk_run is not None:
            valid = json.loads((utk_run / "summary.json").read_text())["valid_items"]
            res["imagenet_on_valid"] = agreement(embeddings_of(utk, tmp / "s-utk"), lab, grp, valid)
            res["run"] = agreement(embeddings_of(utk, tmp / "s-utk", utk_run), lab, grp, valid)
            res["run_id"] = utk_run.name
        out["utkface_sample"] = res
    return out


def bench_duplicates(tmp: Path, n: int) -> dict:
    """Planted copies among ``n`` real faces: each planted pair's distance and the closest distinct pair."""
    utk = SHARED / "utkface-sample"
    if not utk.is_dir():
        return {"skipped": "no utkface-sample"}
    root = tmp / "dups"
    root.mkdir()
    src = sorted(p for p in utk.glob("*.jpg") if len(p.name.split("_")) >= 4)
    for p in src[:: max(1, len(src) // n)][:n]:
        shutil.copy(p, root / p.name)
    names = sorted(p.name for p in root.glob("*.jpg"))
    planted = plant_duplicates(
        root, [(names[i], ("copies/" if i % 2 else "") + utk_copy_name(names[i])) for i in range(12)]
    )
    emb = embeddings_of(root, tmp / "s-dups")
    idx = ExactIndex(emb)
    pairs = {frozenset((s, d)) for s, d, _ in planted}
    dist = {k: [] for _, _, k in planted}
    for s, d, k in planted:
        dist[k].append(dict(idx.neighbours(s, len(emb)))[d])
    rows, nn = idx.knn_all(1)
    distinct = sorted(
        float(nn[i, 0])
        for i in range(len(emb))
        if frozenset((emb.names[i], emb.names[rows[i, 0]])) not in pairs
    )
    from engine.runs.duplicates import DEFAULT_THRESHOLD, find_duplicates

    lab, grp = labels_groups(root)
    found = {frozenset((p.a, p.b)) for p in find_duplicates(emb, grp, lab)}
    return {
        "items": len(emb),
        "planted_distance": {k: [round(v, 3) for v in vs] for k, vs in dist.items()},
        "closest_distinct": [round(v, 3) for v in distinct[:3]],
        "threshold": DEFAULT_THRESHOLD,
        "planted_found": len(pairs & found),
        "planted": len(pairs),
        "false_pairs": len(found - pairs),
    }


def main() -> None:
    """Run the sections and print one JSON object."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sections", default="index,generated,utk,duplicates")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--utk-run", type=Path, help="a run trained on ../shared/data/utkface-sample")
    a = ap.parse_args()
    os.environ.setdefault("IMGREG_FORCE_USER_DATA", "1")
    res: dict = {"bench": "similar"}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ.setdefault("IMGREG_DATA_DIR", str(tmp / "userdata"))
        sections = a.sections.split(",")
        if "index" in sections:
            sizes = [1500, 15000] if a.quick else [15000, 150000]
            res["index"] = [bench_index(n, a.dim, 50 if a.quick else 200, [10, 50]) for n in sizes]
        if "generated" in sections:
            res["generated"] = bench_generated(tmp, a.quick)
        if "utk" in sections:
            res["utk"] = bench_utk(tmp, a.utk_run)
        if "duplicates" in sections:
            res["duplicates"] = bench_duplicates(tmp, 40 if a.quick else 300)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
