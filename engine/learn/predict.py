"""Prediction: batched inference in original-image pixels, errors against effective labels, optional flip TTA,
and the spatial head's heatmaps as PNGs (``heatmap_path``, re-exported from ``engine.runs.heatmaps``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine import events
from engine.audit.conformal import (
    MIN_CALIBRATION,
    TOO_FEW,
    Calibration,
    CoverageError,
    calibrate,
    check_coverage,
    with_intervals,
)
from engine.core import CancelToken, Dataset, Item, Label, OnEvent, no_event
from engine.data.cache import ImageCache, cache_dir, open_cache
from engine.data.squish import squish, squished_batches
from engine.labels.store import LabelStore, PredictionRow
from engine.learn.arch import ModelConfig
from engine.learn.device import resolve_device
from engine.learn.dls import effective_labels
from engine.learn.models import load_run
from engine.learn.spatial import heatmap_spread, heatmaps, soft_argmax
from engine.runs.calibration import read_calibration, write_calibration
from engine.runs.files import read_summary
from engine.runs.heatmaps import heatmap_path, write_heatmap
from engine.runs.predictions import batch_rows, flip_half


def to_batch(
    imgs: list[np.ndarray], stats: tuple[list[float], list[float]], device: torch.device
) -> torch.Tensor:
    """Stack squished uint8 RGB images into a normalised float batch (bs, 3, h, w) on ``device``."""
    x = torch.from_numpy(np.stack(imgs)).to(device).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(stats[0], device=device).view(1, 3, 1, 1)
    std = torch.tensor(stats[1], device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def forward(
    model: nn.Module,
    x: torch.Tensor,
    tta: bool,
    kind: str,
    with_heatmaps: bool = False,
    flip_spread: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Model outputs (bs, n_out), per-point spread (bs, n_points) in input pixels when the model gives one, and
    with ``with_heatmaps`` a spatial model's softmaxed maps (bs, n_points, h, w) from the same forward pass.

    ``flip_spread`` (with ``tta``): a model without a spread of its own reports half the disagreement between
    the image and its mirror (points in input pixels, scalars in label units), the difficulty intervals scale by.
    """
    spread_fn = getattr(model, "forward_with_spread", None)
    maps_fn = getattr(model, "heatmaps", None) if with_heatmaps else None

    def run(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if maps_fn is not None:
            hm = maps_fn(inp).float()
            coords = soft_argmax(hm).reshape(len(inp), -1)
            return coords, heatmap_spread(hm, (inp.shape[-1], inp.shape[-2])), hm
        if spread_fn is not None:
            out, spread = spread_fn(inp)
            return out.float(), spread.float(), None
        return model(inp).float(), None, None

    out, spread, hm = run(x)
    if tta:
        out_f, spread_f, hm_f = run(x.flip(-1))
        if kind == "point":
            out_f = out_f.view(len(x), -1, 2) * torch.tensor([-1.0, 1.0], device=out_f.device)
            out_f = out_f.view(len(x), -1)
        if flip_spread and spread is None:
            half = flip_half(
                out.cpu().numpy(), out_f.cpu().numpy(), kind == "point", (x.shape[-1], x.shape[-2])
            )
            spread = torch.from_numpy(half).to(out.device, torch.float32)
        out = (out + out_f) / 2
        if spread is not None and spread_f is not None:
            spread = (spread + spread_f) / 2
        if hm is not None and hm_f is not None:
            hm = (hm + hm_f.flip(-1)) / 2
    return out, spread, hm


def predict_model(
    model: nn.Module,
    cfg: ModelConfig,
    items: list[Item],
    labels: dict[str, Label] | None = None,
    tta: bool = False,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    bs: int = 32,
    device: torch.device | str = "cpu",
    workers: int = 2,
    heatmaps_to: Path | None = None,
    cache: ImageCache | None = None,
    flip_spread: bool = False,
) -> list[PredictionRow]:
    """Predict ``items`` with an in-memory model; rows in original pixels (unreadable images are left out).

    ``cache``: a decoded-image cache at ``cfg.size`` (``engine.data.cache``); items it holds unchanged are not
    decoded again.

    With ``heatmaps_to`` (a run folder) and a spatial model, each item's heatmap is also written as a PNG at
    ``engine.runs.heatmaps.heatmap_path(heatmaps_to, item)`` from the same forward pass.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    labels = labels or {}
    size = (int(cfg.size[0]), int(cfg.size[1]))
    # Flipping swaps the identity of ordered points (left/right eye), so multi-point TTA would average wrong pairs.
    tta = tta and (cfg.kind == "scalar" or cfg.n_points == 1)
    rows: list[PredictionRow] = []
    want_maps = heatmaps_to is not None and callable(getattr(model, "heatmaps", None))
    done = 0
    on_event(events.progress("predict_progress", 0, len(items)))
    amp = device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device.type, enabled=amp):
        for batch in squished_batches(items, size, bs, workers, cache):
            if cancel is not None:
                cancel.raise_if_now()
            ok = [b for b in batch if b.img is not None]
            if ok:
                x = to_batch([b.img for b in ok if b.img is not None], cfg.normalize, device)
                out, spread, hm = forward(model, x, tta, cfg.kind, want_maps, flip_spread)
                pred = out.cpu().numpy()
                if hm is not None and heatmaps_to is not None:
                    for b, maps in zip(ok, hm.cpu().numpy(), strict=True):
                        write_heatmap(heatmap_path(heatmaps_to, b.item.name), maps)
                sp = spread.cpu().numpy() if spread is not None else None
                rows += batch_rows(ok, pred, sp, size, cfg.kind == "point", labels)
            done += len(batch)
            on_event(events.progress("predict_progress", done, len(items)))
    return rows


def default_items(ds: Dataset, items: list[Item] | list[str] | None) -> list[Item]:
    """The items to predict: given ones (names or Items), else every item without a problem."""
    if items is None:
        return [it for it in ds.items if not it.problem]
    return [ds.item(it) if isinstance(it, str) else it for it in items]


def predict(
    run_dir: Path | str,
    ds: Dataset,
    store: LabelStore | None = None,
    items: list[Item] | list[str] | None = None,
    tta: bool = False,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    bs: int = 32,
    device: str = "cpu",
    heatmaps: bool = False,
    coverage: float | None = None,
    mondrian: int = 0,
    calibration: Calibration | None = None,
) -> list[PredictionRow]:
    """Predict with a saved run; errors against effective labels; stored under the run id when a store is given.

    ``heatmaps``: a spatial run also writes each item's heatmap under ``<run_dir>/heatmaps`` (see
    ``engine.runs.heatmaps``); a no-op for pooled runs (``has_heatmap_head`` tells which).
    ``coverage``: each row also gets its calibrated region (``engine.audit.conformal``), calibrated on the
    run's validation items among those predicted; a run without a spread of its own is scaled by flip TTA.
    ``calibration``: regions from a calibration made before (e.g. on the run's own dataset) instead.
    """
    run = load_run(run_dir)
    if run.cfg.kind != ds.kind:
        raise ValueError(f"run {run.run_id} predicts {run.cfg.kind}s but the dataset holds {ds.kind}s")
    if run.cfg.kind == "point" and run.cfg.n_points != ds.n_points:
        raise ValueError(
            f"run {run.run_id} predicts {run.cfg.n_points} point(s), the dataset has {ds.n_points}"
        )
    if coverage is not None:
        check_coverage(coverage)
    regions = coverage is not None or calibration is not None
    labels = effective_labels(ds, store)
    rows = predict_model(
        run.model, run.cfg, default_items(ds, items), labels, tta or regions, on_event, cancel, bs,
        resolve_device(device), heatmaps_to=Path(run_dir) if heatmaps else None,
        cache=open_cache(cache_dir(store.dir, run.cfg.size), run.cfg.size) if store is not None else None,
        flip_spread=regions,
    )  # fmt: skip
    if calibration is None and coverage is not None:
        calibration = run_calibration(Path(run_dir), rows, labels, run.cfg.kind, coverage, mondrian)
    if calibration is not None:
        rows = with_intervals(rows, calibration)
    if store is not None:
        store.put_predictions(run.run_id, rows)
    return rows


def run_calibration(
    run_dir: Path,
    rows: list[PredictionRow],
    labels: Mapping[str, Label],
    kind: str,
    coverage: float,
    mondrian: int,
) -> Calibration:
    """The run's calibration: its validation items among ``rows`` (today's labels, so corrections count), else
    the calibration set saved at training (a dataset the run never saw); CoverageError when neither is there."""
    valid = set(read_summary(run_dir).get("valid_items") or [])
    point = kind == "point"
    own = [r for r in rows if r.item in valid and labels.get(r.item) is not None]
    if len(own) >= MIN_CALIBRATION:
        return calibrate(own, labels, point, coverage, mondrian)
    saved = read_calibration(run_dir)
    if saved is None:
        raise CoverageError(
            f"{TOO_FEW}: run {run_dir.name} has no saved calibration and only {len(own)} of its validation "
            "items are here: predict its own dataset with --coverage, or retrain it (imgreg train --from RUN)"
        )
    saved_kind, cal_rows, cal_labels = saved
    if saved_kind != kind:
        raise CoverageError(
            f"run {run_dir.name}'s calibration is for {saved_kind}s, the run predicts {kind}s"
        )
    return calibrate(cal_rows, cal_labels, point, coverage, mondrian)


def save_calibration(
    run_dir: Path,
    model: nn.Module,
    cfg: ModelConfig,
    items: list[Item],
    labels: dict[str, Label],
    device: torch.device | str = "cpu",
) -> Path | None:
    """Predict ``items`` (the run's validation items) as ``predict(coverage=...)`` does and save them as the run's
    calibration set; None when too few are labelled to calibrate anything."""
    rows = predict_model(model, cfg, items, labels, tta=True, device=device, flip_spread=True)
    if sum(labels.get(r.item) is not None for r in rows) < MIN_CALIBRATION:
        return None
    return write_calibration(run_dir, rows, labels, cfg.kind)


def has_heatmap_head(model: nn.Module) -> bool:
    """Whether a model gives heatmaps (the spatial head), so ``predict(heatmaps=True)`` writes files."""
    return callable(getattr(model, "heatmaps", None))


def image_heatmaps(model: nn.Module, cfg: Any, img: np.ndarray) -> np.ndarray:
    """Heatmaps ``(n_points, h, w)`` float32 of one RGB image (h, w, 3), resized to the image, each map summing to 1.

    The image is squished and normalised exactly like prediction does (``cfg.size``, ``cfg.normalize``), so the
    maps line up with the original image pixel for pixel.
    """
    size = (int(cfg.size[0]), int(cfg.size[1]))
    device = next(model.parameters()).device
    x = to_batch([squish(img, size)], cfg.normalize, device)
    hm = heatmaps(model.eval(), x)[0].float().cpu()
    h, w = img.shape[:2]
    # Nearest keeps each cell a flat block, so the overlay shows the map's real resolution.
    big = F.interpolate(hm[None], size=(h, w), mode="nearest")[0]
    return (big / big.sum((-2, -1), keepdim=True).clamp_min(1e-12)).numpy().astype(np.float32)
