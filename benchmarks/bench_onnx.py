"""ONNX prediction (onnxruntime, no torch) against the torch run on the same images: agreement and speed.

Builds a synthetic Biwi-layout dataset, a run folder with untrained weights (agreement does not need training),
exports it with ``engine.learn.onnx_export.export_onnx``, then times ``engine.learn.predict.predict`` and
``engine.runs.onnx_predict.predict_onnx`` side by side (each once as warm-up, then timed; one torch thread).
Prints one JSON object as the last line: max difference in pixels, items per second of each, their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import open_dataset  # noqa: E402
from engine.data.synth import make_biwi  # noqa: E402
from engine.learn.arch import ModelConfig, build_model  # noqa: E402
from engine.learn.models import save_run  # noqa: E402
from engine.learn.onnx_export import export_onnx  # noqa: E402
from engine.learn.predict import predict  # noqa: E402
from engine.runs.onnx_predict import predict_onnx  # noqa: E402


def main() -> None:
    """Run the comparison and print the JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=64, help="images")
    p.add_argument("--arch", default="tiny")
    p.add_argument("--head", default="spatial", choices=["spatial", "pooled"])
    p.add_argument("--size", type=int, nargs=2, default=(120, 160), metavar=("H", "W"))
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "biwi"
        make_biwi(root, groups=2, frames=args.n // 2)
        ds = open_dataset(root)
        cfg = ModelConfig(args.arch, "point", 1, args.head, size=tuple(args.size), pretrained=False)
        torch.manual_seed(0)
        model, _ = build_model(cfg)
        run = Path(tmp) / "run"
        save_run(run, cfg, model.state_dict(), [], {"run_id": "run"})
        t0 = time.perf_counter()
        onnx = export_onnx(run)
        export_s = time.perf_counter() - t0
        times: dict[str, float] = {}
        rows: dict[str, list] = {}
        for name, fn in (("torch", lambda: predict(run, ds)), ("onnx", lambda: predict_onnx(onnx, ds)[1])):
            fn()
            t0 = time.perf_counter()
            rows[name] = fn()
            times[name] = time.perf_counter() - t0
        diff = max(
            float(np.abs(np.subtract(a.pred, b.pred)).max())
            for a, b in zip(rows["torch"], rows["onnx"], strict=True)
        )
        n = len(rows["torch"])
        print(
            json.dumps(
                {
                    "bench": "onnx",
                    "n": n,
                    "arch": args.arch,
                    "head": args.head,
                    "size": list(args.size),
                    "export_s": round(export_s, 2),
                    "max_diff_px": diff,
                    "torch_items_per_s": round(n / times["torch"], 1),
                    "onnx_items_per_s": round(n / times["onnx"], 1),
                    "onnx_over_torch": round(times["torch"] / times["onnx"], 2),
                }
            )
        )


if __name__ == "__main__":
    main()
