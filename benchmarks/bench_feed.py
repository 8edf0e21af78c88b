"""Training throughput from the decoded-image cache against today's decode-every-epoch path, side by side in one run.

On the same generated Biwi-layout frames (640x480 files) it measures:
``limit_img_s`` (the same model, optimiser and augmentation stepping on one batch already in device memory: the most
this machine can do), ``engine_img_s`` (engine ``fit`` from the cache, epochs after the first, validation included),
``uncached_img_s`` (the same ``fit`` with ``cache=False``), ``feed_cached_img_s`` / ``feed_uncached_img_s`` (the
training loader alone, augmentation and normalisation included, no model), ``cache_build_s`` and the ratios.
Defaults: ResNet34 at 240x320 on a GPU, the tiny model at 60x80 on a CPU. Prints one JSON object as the last line.

    python benchmarks/bench_feed.py --device cuda          # H100: aim engine_img_s / limit_img_s >= 0.7
    nice -n 10 python benchmarks/bench_feed.py --device cpu --n 96
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import open_dataset  # noqa: E402
from engine.data.cache import cache_dir, ensure_cache, file_key  # noqa: E402
from engine.data.synth import make_biwi  # noqa: E402
from engine.learn.arch import build_model  # noqa: E402
from engine.learn.device import resolve_device  # noqa: E402
from engine.learn.dls import make_dls, split_groups  # noqa: E402
from engine.learn.feed import feed_dls, fill_bs  # noqa: E402
from engine.learn.train import TrainConfig, _loss, fit, prepare  # noqa: E402


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_img_s(dl, device: torch.device) -> float:
    """Images/s of one epoch of a training loader (after one warm-up epoch), batches consumed on the device."""
    for _ in dl:
        pass
    sync(device)
    t0, n = time.perf_counter(), 0
    for x, _y in dl:
        n += len(x)
    sync(device)
    return n / (time.perf_counter() - t0)


def limit_img_s(cfg: TrainConfig, dls, device: torch.device, iters: int) -> float:
    """Images/s of the bare step: model, Adam, loss, augmentation and normalisation on one resident batch."""
    torch.manual_seed(cfg.seed)
    model, _ = build_model(cfg)
    model.to(device)
    amp_dtype = None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model.to(memory_format=torch.channels_last)
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    loss_fn = _loss(cfg)
    dl = dls.train
    idx = torch.arange(dl.bs)
    xb = dl.imgs.fetch(idx, idx.to(device))
    idx = idx.to(device)
    model.train()

    def step() -> None:
        x, y = (t.as_subclass(torch.Tensor) for t in dl.finish(xb, idx))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    for _ in range(max(3, iters // 5)):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return iters * dl.bs / (time.perf_counter() - t0)


def engine_img_s(samples, train_idx, valid_idx, cfg: TrainConfig) -> tuple[float, list[str]]:
    """Images/s of engine ``fit`` over the epochs after the first (validation included), and its notes."""
    stamps: list[float] = []
    notes: list[str] = []
    n_batches = [0]

    def on_event(e: dict) -> None:
        if e["type"] == "epoch":
            stamps.append(time.perf_counter())
        elif e["type"] == "prepared":
            n_batches[0] = e["n_batches"]
        elif e["type"] == "note":
            notes.append(e["message"])

    res = fit(samples, train_idx, valid_idx, cfg, on_event)
    per_epoch = n_batches[0] * res.cfg.bs
    return per_epoch * (len(stamps) - 1) / (stamps[-1] - stamps[0]), notes


def main() -> None:
    """Run every measurement on one generated dataset and print the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--arch")
    p.add_argument("--size", help="HxW (default 240x320 on a GPU, 60x80 on a CPU)")
    p.add_argument("--n", type=int, help="frames (default 3200 on a GPU, 96 on a CPU)")
    p.add_argument("--bs", type=int, help="batch size (default: the engine's GPU default, 16 on a CPU)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--iters", type=int, default=30, help="steps timed for limit_img_s")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default; 1 on a busy shared machine)",
    )
    a = p.parse_args()
    device = resolve_device(a.device)
    gpu = device.type == "cuda"
    arch = a.arch or ("resnet34" if gpu else "tiny")
    size = tuple(int(v) for v in (a.size or ("240x320" if gpu else "60x80")).split("x"))
    n = a.n or (3200 if gpu else 96)
    if a.threads:
        torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        groups = 4
        make_biwi(Path(tmp) / "biwi", groups=groups, frames=max(2, n // groups), size=(640, 480), ext="jpg")
        ds = open_dataset(Path(tmp) / "biwi")
        base = TrainConfig(
            arch=arch, pretrained=False, size=size, epochs=a.epochs, lr=1e-3, schedule="one_cycle",
            device=str(device), bs=a.bs,
        )  # fmt: skip
        cfg, samples, _ = prepare(ds, None, base)
        cfg = fill_bs(cfg, device)
        train_idx, valid_idx, _ = split_groups(samples, valid_pct=0.25)
        d = cache_dir(cfg.cache_dir, size)
        t0 = time.perf_counter()
        cache = ensure_cache(d, size, [(s.name, s.path) for s in samples])
        build_s = time.perf_counter() - t0
        slots = np.array([cache.slot(s.name, file_key(s.path)) for s in samples], dtype=np.int64)
        nw = 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)
        aug = dict(n_points=1, augment=True, seed=cfg.seed, stats=cfg.normalize)
        fed = feed_dls(samples, valid_idx, "point", size, cfg.bs, device, cache.array, slots, **aug)
        feed_c = loader_img_s(fed.train, device)
        old = make_dls(samples, valid_idx, "point", size, cfg.bs, device, num_workers=nw, **aug)
        feed_u = loader_img_s(old.train, device)
        limit = limit_img_s(cfg, fed, device, a.iters)
        del fed
        eng, notes = engine_img_s(samples, train_idx, valid_idx, cfg)
        unc, _ = engine_img_s(samples, train_idx, valid_idx, replace(cfg, cache=False))
    out = {
        "bench": "feed",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if gpu else "cpu",
        "threads": torch.get_num_threads(),
        "arch": arch,
        "size": list(size),
        "bs": cfg.bs,
        "n_frames": len(samples),
        "n_train": len(train_idx),
        "epochs": a.epochs,
        "cache_build_s": round(build_s, 3),
        "cache_build_img_s": round(len(samples) / build_s, 1),
        "limit_img_s": round(limit, 1),
        "engine_img_s": round(eng, 1),
        "uncached_img_s": round(unc, 1),
        "feed_cached_img_s": round(feed_c, 1),
        "feed_uncached_img_s": round(feed_u, 1),
        "engine_vs_limit": round(eng / limit, 3),
        "engine_vs_uncached": round(eng / unc, 3),
        "feed_cached_vs_uncached": round(feed_c / feed_u, 2),
        "engine_used_cache": any("decoded-image cache" in m for m in notes),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
