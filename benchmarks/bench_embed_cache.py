"""Embeddings with and without the decoded-image cache, side by side: every item of a dataset embedded once decoding
each file and once reading the cache of the embedder's input size (the reps alternate the order), and the image
path alone (``squished_batches``, no model). ``--arch imagenet`` runs ``embed`` (MobileNetV2 when its weights are
installed), ``--arch tiny`` an untrained tiny body through ``embed_vectors``.

Prints one JSON object as the last line. Run with ``nice -n 10``; the cache is built once, outside the timings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.data import open_dataset  # noqa: E402
from engine.data.cache import cache_dir, ensure_cache, open_cache  # noqa: E402
from engine.data.shape import auto_size  # noqa: E402
from engine.data.squish import squished_batches  # noqa: E402
from engine.learn.backbones import IMAGENET_STATS, backbone  # noqa: E402
from engine.learn.embed import Embedder, embed, embed_vectors  # noqa: E402


def main() -> None:
    """Measure on ``--data``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data/utkface-sample")
    ap.add_argument("--arch", choices=("imagenet", "tiny"), default="imagenet")
    ap.add_argument(
        "--size", type=int, default=0, help="square input size (default: embed's, the data's shape)"
    )
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = open_dataset(args.data)
    items = [it for it in ds.items if not it.problem]
    size = (args.size, args.size) if args.size else auto_size(ds, 160, upscale=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_embed_cache-"))
    plain_dir, cached_dir = tmp / "plain", tmp / "cached"
    t = time.perf_counter()
    cache = ensure_cache(cache_dir(cached_dir, size), size, [(it.name, it.path) for it in items])
    build_s = time.perf_counter() - t
    tiny = None
    if args.arch == "tiny":
        body, _ = backbone("tiny", pretrained=False)
        tiny = Embedder(body.eval(), body, size, IMAGENET_STATS, "tiny", {}, pool="avg")

    def run(store: Path) -> float:
        t = time.perf_counter()
        if tiny is not None:
            embed_vectors(tiny, items, cache=open_cache(cache_dir(store, size), size))
        else:
            shutil.rmtree(store / "embeddings", ignore_errors=True)
            embed(ds, store, device="cpu", size=size)
        return time.perf_counter() - t

    def load(c: object) -> float:
        t = time.perf_counter()
        for _ in squished_batches(items, size, 32, 2, c):
            pass
        return time.perf_counter() - t

    run(plain_dir)  # warm-up: weights, page cache of the files and of the cache
    times: dict[str, list[float]] = {"plain": [], "cached": [], "load_plain": [], "load_cached": []}
    for r in range(args.reps):
        order = ("plain", "cached") if r % 2 == 0 else ("cached", "plain")
        for k in order:
            times[k].append(run(plain_dir if k == "plain" else cached_dir))
            times[f"load_{k}"].append(load(None if k == "plain" else cache))
    med = {k: statistics.median(v) for k, v in times.items()}
    shutil.rmtree(tmp, ignore_errors=True)
    out = {"bench": "embed_cache", "arch": args.arch, "n": len(items), "size": list(size),
           "threads": args.threads, "cache_build_s": round(build_s, 2),
           "embed_plain_s": round(med["plain"], 2), "embed_cached_s": round(med["cached"], 2),
           "speedup": round(med["plain"] / med["cached"], 2),
           "load_plain_s": round(med["load_plain"], 2), "load_cached_s": round(med["load_cached"], 2),
           "load_speedup": round(med["load_plain"] / med["load_cached"], 1)}  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
