"""Coverage of ``predict --coverage`` on held-out groups: overall, for the hardest quarter, and how widths vary.

Each case trains one CPU model (the recipe is printed with the figures), then runs ``imgreg predict --coverage``
(``engine.learn.predict.predict``) on a second dataset the run never saw: generated groups of another seed, or a
held-out quarter of the real UTKFace faces. That dataset holds none of the run's validation items, so the
calibration set saved at training (those items' residuals and spreads) calibrates it, as for a user's folder of
new images. It counts how often the truth falls in the region: per point for points, per item for scalars. The
floor added to each spread is chosen by each calibration (``conformal.choose_floor``) and printed; that rule was
set on tests/test_conformal.py's synthetic residuals and real UTKFace seeds 1-2 (the sets quoted for it).

    python benchmarks/bench_coverage.py [--seeds 1 2] [--epochs 6] [--coverage 0.9]
    python benchmarks/bench_coverage.py --kinds utkface --utkface ../shared/data/utkface-sample --seeds 1 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.audit.conformal import calibrate, difficulties, residuals
from engine.data import open_dataset
from engine.data.synth import make_biwi, make_utkface
from engine.labels.store import LabelStore
from engine.learn.predict import predict
from engine.learn.train import TrainConfig, train
from engine.runs.calibration import read_calibration
from engine.runs.files import read_summary


def split_real(src: Path, root: Path, seed: int, held: float = 0.25) -> None:
    """Link a real folder's images into ``root/a`` (train + validation) and ``root/b`` (held out, never seen)."""
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    out = set(np.random.default_rng(seed).permutation(len(files))[: int(held * len(files))].tolist())
    for i, f in enumerate(files):
        d = root / ("b" if i in out else "a")
        d.mkdir(parents=True, exist_ok=True)
        (d / f.name).symlink_to(f.resolve())


def _case(
    kind: str,
    root: Path,
    seed: int,
    epochs: int,
    coverage: float,
    mondrian: int,
    groups: int,
    real: Path | None,
) -> dict:
    """Train on one set, calibrate on its validation items, measure on items the run never saw."""
    cfg = TrainConfig(
        arch="resnet18",
        pretrained=False,
        size=(48, 48),
        bs=16,
        epochs=epochs,
        lr=3e-3,
        device="cpu",
        seed=seed,
    )
    if (
        kind == "utkface" and real is not None
    ):  # real faces: the defaults a user gets (pretrained), on the CPU
        split_real(real, root, seed)
        cfg = TrainConfig(arch="mobilenet_v2", size=(96, 96), epochs=epochs, device="cpu", seed=seed)
    elif kind == "point":
        make_biwi(root / "a", groups=groups, frames=180 // groups, size=(96, 72), seed=seed)
        make_biwi(root / "b", groups=4, frames=30, size=(96, 72), seed=seed + 100)
        cfg.size = (48, 64)
    else:
        make_utkface(root / "a", n=240, size=64, seed=seed)
        make_utkface(root / "b", n=160, size=64, seed=seed + 100)
    a = open_dataset(root / "a")
    store = LabelStore.open(a)
    t0 = time.perf_counter()
    info = train(a, store, cfg)
    fit_s = time.perf_counter() - t0
    point = kind == "point"
    store.close()
    b = open_dataset(root / "b")
    labels_b = {it.name: it.label for it in b.items if it.label is not None}
    # imgreg predict RUN B --coverage: B holds none of the run's validation items, so the calibration set
    # saved at training (those items' residuals and spreads) calibrates it
    rows_b = predict(info.run_dir, b, None, coverage=coverage, mondrian=mondrian)
    n_cal = len(read_summary(info.run_dir)["valid_items"])
    res = np.stack([residuals(r.pred, labels_b[r.item], point) for r in rows_b])
    if point:
        width = np.array([r.interval for r in rows_b])  # radius per point
        inside = res <= width
    else:
        lo_hi = np.array([r.interval for r in rows_b])
        truth = np.array([labels_b[r.item][0] for r in rows_b])
        inside = ((truth >= lo_hi[:, 0]) & (truth <= lo_hi[:, 1]))[:, None]
        width = (lo_hi[:, 1] - lo_hi[:, 0])[:, None]
    sig = difficulties(rows_b)
    hard = sig >= np.quantile(sig, 0.75)
    w = width.mean(1)
    return {
        "kind": kind,
        "seed": seed,
        "n_calibration": n_cal,
        "n_test": len(rows_b),
        "coverage": round(float(inside.mean()), 3),
        "coverage_hardest_quarter": round(float(inside[hard].mean()), 3),
        "median_width": round(float(np.median(w)), 2),
        "width_p10_p90": [round(float(np.quantile(w, 0.1)), 2), round(float(np.quantile(w, 0.9)), 2)],
        "median_error": round(float(np.median(res)), 2),
        "floor": _floor(info.run_dir, coverage, mondrian),
        "fit_s": round(fit_s, 1),
    }


def _floor(run_dir: Path, coverage: float, mondrian: int) -> float | str | None:
    """The spread floor (in median spreads) the saved calibration chose; "plain" for unnormalised."""
    saved = read_calibration(run_dir)
    if saved is None:
        return None
    kind, rows, labels = saved
    floor = calibrate(rows, labels, kind == "point", coverage, mondrian).floor
    return "plain" if floor is None else floor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--coverage", type=float, default=0.9)
    ap.add_argument("--mondrian", type=int, default=0)
    ap.add_argument("--kinds", nargs="+", default=["point", "scalar"])
    ap.add_argument(
        "--groups", type=int, default=6, help="point sets: groups sharing 180 frames (valid: 20%%)"
    )
    ap.add_argument(
        "--utkface", type=Path, default=None, help="also the real UTKFace folder (kind 'utkface'; e.g. "
        "../shared/data/utkface-sample): 3/4 train + validation (calibration), 1/4 held out, linked not copied"
    )  # fmt: skip
    args = ap.parse_args()
    if args.utkface is not None and "utkface" not in args.kinds:
        args.kinds = [*args.kinds, "utkface"]
    if "utkface" in args.kinds and args.utkface is None:
        ap.error("--kinds utkface needs --utkface FOLDER")
    cases = []
    for kind in args.kinds:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                cases.append(
                    _case(
                        kind,
                        Path(tmp),
                        seed,
                        args.epochs,
                        args.coverage,
                        args.mondrian,
                        args.groups,
                        args.utkface,
                    )
                )
                print(json.dumps(cases[-1]), flush=True)
    recipe = (
        f"resnet18 random init, {args.epochs} epochs, lr 3e-3, bs 16, CPU; points: generated Biwi layout 96x72 "
        f"at 48x64, {args.groups} groups sharing 180 frames (valid = the run's 20% of groups = calibration), tested on 4 unseen groups "
        "of another seed; scalars: generated faces 64 px at 48x48, 240 train+valid, 160 unseen; difficulty = "
        "heatmap spread (spatial head) or flip disagreement (scalars) plus the floor each calibration chooses; utkface: the real "
        f"faces, mobilenet_v2 ImageNet (the defaults: fine_tune, lr 2e-3, bs 16) at 96x96, {args.epochs} epochs, "
        "calibrated on the run's 20% validation items, tested on a quarter of the faces held out"
    )
    summary: dict = {"asked": args.coverage, "mondrian": args.mondrian, "recipe": recipe, "cases": cases}
    for kind in args.kinds:
        ks = [c for c in cases if c["kind"] == kind]
        if ks:
            summary[kind] = {
                "coverage": round(float(np.mean([c["coverage"] for c in ks])), 3),
                "coverage_hardest_quarter": round(
                    float(np.mean([c["coverage_hardest_quarter"] for c in ks])), 3
                ),
            }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
