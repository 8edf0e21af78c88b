"""``imgreg rank --folds K`` serial against ``--parallel P``: wall time of the whole command, and the same ranking.

Both commands run side by side on the same synthetic Biwi-like dataset (tiny CNN, CPU unless ``--device``), as a
user runs them (process start, imports and spawning included). Serial uses torch's default threads; the parallel
run splits them between its P fold processes. On the CPU the rankings are equal only with as many threads per
fold process in both runs (``--threads 1``): float sums depend on the thread count, and training amplifies that. Prints one JSON object as its last line: ``serial_s``,
``parallel_s``, ``ratio`` = parallel / serial (lower is better), whether the rankings list the items in the same
order, and the largest difference of an item's error between them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.data import synth  # noqa: E402


def rank(ds: Path, out: Path, extra: list[str], args: argparse.Namespace) -> float:
    """Run ``imgreg rank`` once; its wall time in seconds."""
    cmd = [sys.executable, "-m", "engine.cli", "rank", str(ds), "--folds", str(args.folds), "--arch", "tiny",
           "--no-pretrained", "--size", "48x64", "--epochs", str(args.epochs), "--bs", "8",
           "--device", args.device, "--out", str(out), *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
    return time.perf_counter() - t0


def read(path: Path) -> list[tuple[str, float]]:
    """(item, error) rows of a rank CSV, in rank order."""
    with open(path, newline="") as f:
        return [(r["item"], float(r["error"])) for r in csv.DictReader(f)]


def main() -> None:
    """Time serial and parallel out-of-fold ranking and print the JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads", type=int, help="torch threads per fold process (OMP_NUM_THREADS) in both runs"
    )
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp) / "biwi"
        synth.make_biwi(ds, groups=8, frames=12, size=(64, 48), distractors=0, seed=3)
        serial_s = rank(ds, Path(tmp) / "serial.csv", [], args)
        parallel_s = rank(ds, Path(tmp) / "parallel.csv", ["--parallel", str(args.parallel)], args)
        a, b = read(Path(tmp) / "serial.csv"), read(Path(tmp) / "parallel.csv")
    errs = dict(b)
    res = {
        "bench": "parallel_folds",
        "folds": args.folds,
        "parallel": args.parallel,
        "device": args.device,
        "cores": os.cpu_count(),
        "items": len(a),
        "epochs": args.epochs,
        "threads": args.threads,
        "serial_s": round(serial_s, 2),
        "parallel_s": round(parallel_s, 2),
        "ratio": round(parallel_s / serial_s, 3),
        "same_order": [i for i, _ in a] == [i for i, _ in b],
        "max_error_diff": max(abs(e - errs[i]) for i, e in a),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
