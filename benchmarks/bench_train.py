"""Engine training and prediction throughput against plain PyTorch on the same model, batch and input size.

Training: images/s of ``engine.learn.train.fit`` (fastai Learner with the engine's callbacks and metrics, one-cycle, per-epoch
validation) against a hand-written loop that loads the same files, trains with Adam + MSE and validates each epoch.
The first epoch of each is a warm-up and not timed. Prediction: ``engine.learn.predict.predict`` (run folder reload, threaded
decoding, pixel conversion, errors) against a plain batched forward pass over the same files.
Prints one JSON object as the last line.
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
from engine.data.images import load_image  # noqa: E402
from engine.data.squish import squish, to_pixels  # noqa: E402
from engine.data.synth import make_biwi  # noqa: E402
from engine.learn.arch import build_model  # noqa: E402
from engine.learn.device import resolve_device  # noqa: E402
from engine.learn.dls import split_groups  # noqa: E402
from engine.learn.predict import predict  # noqa: E402
from engine.learn.train import TrainConfig, fit, prepare, train  # noqa: E402


class Files(torch.utils.data.Dataset):
    """The plain loop's dataset: load, squish, normalise; targets in [-1, 1]."""

    def __init__(self, samples, size, stats) -> None:
        self.samples, self.size = samples, size
        self.mean = np.array(stats[0], np.float32)
        self.std = np.array(stats[1], np.float32)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        img = squish(load_image(s.path), self.size).astype(np.float32) / 255
        x = torch.from_numpy(((img - self.mean) / self.std).transpose(2, 0, 1).copy())
        w, h = s.size
        y = torch.tensor([s.label[0] * 2 / w - 1, s.label[1] * 2 / h - 1], dtype=torch.float32)
        return x, y


def plain_train(cfg: TrainConfig, samples, train_idx, valid_idx, device: torch.device) -> float:
    """Train with a plain loop for ``cfg.epochs`` epochs; images/s over the epochs after the first."""
    torch.manual_seed(cfg.seed)
    model, _ = build_model(cfg)
    model.to(device)
    tr = torch.utils.data.Subset(Files(samples, cfg.size, cfg.normalize), train_idx)
    va = torch.utils.data.Subset(Files(samples, cfg.size, cfg.normalize), valid_idx)
    nw = 0 if device.type == "cpu" else 8
    tdl = torch.utils.data.DataLoader(tr, cfg.bs, shuffle=True, drop_last=True, num_workers=nw)
    vdl = torch.utils.data.DataLoader(va, cfg.bs, num_workers=nw)
    opt = torch.optim.Adam(model.parameters(), cfg.lr)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(enabled=amp)
    n_img, t_start = 0, 0.0
    for ep in range(cfg.epochs):
        if ep == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t_start = time.perf_counter()
        model.train()
        for x, y in tdl:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp):
                loss = torch.nn.functional.mse_loss(model(x).float(), y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ep >= 1:
                n_img += len(x)
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            for x, y in vdl:
                torch.nn.functional.mse_loss(model(x.to(device)).float(), y.to(device)).item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_img / (time.perf_counter() - t_start)


def engine_train(cfg: TrainConfig, samples, train_idx, valid_idx) -> float:
    """Train with the engine for ``cfg.epochs`` epochs; images/s over the epochs after the first."""
    marks: list[float] = []

    def on_event(e: dict) -> None:
        if e["type"] == "epoch":
            marks.append(time.perf_counter())

    fit(samples, train_idx, valid_idx, cfg, on_event)
    n_batches = len(train_idx) // min(cfg.bs, len(train_idx))
    return n_batches * cfg.bs * (len(marks) - 1) / (marks[-1] - marks[0])


def plain_predict(model, cfg: TrainConfig, items, device: torch.device) -> float:
    """A plain batched forward pass over the files (load, squish, normalise, forward, to pixels); images/s."""
    model = model.to(device).eval()
    mean = torch.tensor(cfg.normalize[0], device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.normalize[1], device=device).view(1, 3, 1, 1)
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for i in range(0, len(items), 32):
            chunk = items[i : i + 32]
            imgs = [load_image(it.path) for it in chunk]
            sizes = np.array([(im.shape[1], im.shape[0]) for im in imgs], dtype=np.float64)
            x = torch.from_numpy(np.stack([squish(im, cfg.size) for im in imgs])).to(device)
            x = (x.permute(0, 3, 1, 2).float() / 255 - mean) / std
            to_pixels(model(x).float().cpu().numpy(), sizes)
    return len(items) / (time.perf_counter() - t0)


def main() -> None:
    """Run both comparisons and print the JSON result."""
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--n", type=int, default=96, help="images (4 groups)")
    p.add_argument("--size", default="120x160")
    p.add_argument("--bs", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    h, w = (int(v) for v in a.size.split("x"))
    device = resolve_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        make_biwi(root, groups=4, frames=a.n // 4, size=(w * 2, h * 2))
        ds = open_dataset(root)
        cfg = TrainConfig(
            arch=a.arch, pretrained=False, size=(h, w), bs=a.bs, epochs=a.epochs, lr=1e-3, device=str(device),
            augment=False, schedule="one_cycle",
        )  # fmt: skip
        cfg, samples, _ = prepare(ds, None, cfg)
        train_idx, valid_idx, _ = split_groups(samples, ["04"])
        train_idx = train_idx[: len(train_idx) // a.bs * a.bs]
        plain_img_s = plain_train(cfg, samples, train_idx, valid_idx, device)
        engine_img_s = engine_train(cfg, samples, train_idx, valid_idx)
        aug_cfg = TrainConfig(**{**cfg.__dict__, "augment": True})
        engine_aug_img_s = engine_train(aug_cfg, samples, train_idx, valid_idx)

        info = train(ds, None, TrainConfig(**{**cfg.__dict__, "epochs": 1}))
        items = list(ds.items) * 3
        plain_pred_img_s = plain_predict(info.model, cfg, items, device)
        t0 = time.perf_counter()
        predict(info.run_dir, ds, items=items, device=str(device))
        engine_pred_img_s = len(items) / (time.perf_counter() - t0)
        # plain again after the engine so neither side profits from a warm file cache alone
        plain_pred_img_s = max(plain_pred_img_s, plain_predict(info.model, cfg, items, device))
    result = {
        "benchmark": "train_predict_throughput",
        "device": str(device),
        "arch": a.arch,
        "size": [h, w],
        "bs": a.bs,
        "n_train": len(train_idx),
        "epochs_timed": a.epochs - 1,
        "torch_threads": torch.get_num_threads(),
        "train_engine_img_s": round(engine_img_s, 2),
        "train_plain_img_s": round(plain_img_s, 2),
        "train_ratio": round(engine_img_s / plain_img_s, 3),
        "train_engine_augmented_img_s": round(engine_aug_img_s, 2),
        "predict_engine_img_s": round(engine_pred_img_s, 2),
        "predict_plain_img_s": round(plain_pred_img_s, 2),
        "predict_ratio": round(engine_pred_img_s / plain_pred_img_s, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
