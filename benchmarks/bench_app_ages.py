"""The app's default training on ages: held-out MAE against predicting the training mean, and the time it took.

Runs exactly the child command the app's Train button runs with the default options (``TrainOptions()``: the
architecture is the preferred one whose ImageNet weights are on this machine, ``../shared/data/SOURCES.md``) on
``../shared/data/utkface-sample``, 80% training and 20% held out (the engine's random split, seed 42), in a fresh
data folder, so the image cache is built inside the timed run as a first training would. Prints one JSON object
as its last line; ``ratio`` = model MAE / mean-prediction MAE (issue 11 aims at <= 0.6 in about five minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_label_errors import UTK  # noqa: E402

from engine.data import open_dataset  # noqa: E402
from engine.weights import local_weights  # noqa: E402
from imgreg_gui.training.options import TrainOptions, train_command  # noqa: E402


def mean_baseline(root: Path) -> float:
    """Held-out MAE of predicting the training mean, on the split the engine makes."""
    from engine.learn.dls import split_groups, usable_samples

    samples = usable_samples(open_dataset(root)).samples
    train_idx, valid_idx, _ = split_groups(samples)
    y = np.array([s.label[0] for s in samples])
    return float(np.abs(y[valid_idx] - y[train_idx].mean()).mean())


def main() -> None:
    """Train with the app's defaults in a child, read its summary, compare with the mean."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--utk", type=Path, default=UTK, help="the UTKFace sample folder")
    args = ap.parse_args()
    opts = TrainOptions()
    cmd = train_command(args.utk, opts, kind="scalar")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "IMGREG_DATA_DIR": tmp, "IMGREG_FORCE_USER_DATA": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = next((e for e in reversed(events) if e.get("type") == "summary"), None)
    if summary is None:
        sys.exit(f"training failed: {proc.stderr.strip().splitlines()[-1:]}")
    prepared = next(e for e in events if e.get("type") == "prepared")
    base = mean_baseline(args.utk)
    mae = float(summary["metrics"]["mae"])
    out = {
        "bench": "app_ages",
        "arch": opts.arch,
        "imagenet_weights": local_weights(opts.arch) is not None,
        "args": cmd[cmd.index("train") + 2 :],
        "size": prepared["size"],
        "epochs": prepared["epochs"],
        "n_train": prepared["n_train"],
        "n_valid": prepared["n_valid"],
        "mae": round(mae, 2),
        "mean_prediction_mae": round(base, 2),
        "ratio": round(mae / base, 3),
        "train_s": round(summary["time_s"], 1),
        "wall_s": round(wall, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
