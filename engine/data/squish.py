"""The squish resize and how points map through it (original pixels <-> [-1, 1]), and images loaded and squished
in batches for prediction and embedding (torch-free: the ONNX path uses it too)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from engine.core import Item
from engine.data.images import ImageError, load_image


def squish(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image to ``size`` (h, w) ignoring aspect, exactly as training does (PIL bilinear)."""
    h, w = size
    return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))


def to_pixels(pred: Any, sizes: np.ndarray) -> np.ndarray:
    """Model outputs in [-1, 1] (bs, 2n) to original pixels, given each item's (w, h) (bs, 2)."""
    p = np.asarray(pred, dtype=np.float64).reshape(len(sizes), -1, 2)
    return ((p + 1) * sizes[:, None, :].astype(np.float64) / 2).reshape(len(sizes), -1)


def to_unit(pts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Original pixels (bs, 2n) to [-1, 1] coordinates (inverse of ``to_pixels``)."""
    p = np.asarray(pts, dtype=np.float64).reshape(len(sizes), -1, 2)
    return (p * 2 / sizes[:, None, :].astype(np.float64) - 1).reshape(len(sizes), -1)


def spread_pixels(spread: np.ndarray, sizes: np.ndarray, size: tuple[int, int]) -> list[float | None]:
    """Per-item heatmap spread in original pixels (mean over points), from spread in network-input pixels."""
    sp = np.asarray(spread, dtype=np.float64).reshape(len(sizes), -1).mean(-1)
    h, w = size
    scale = np.sqrt(((sizes[:, 0] / w) ** 2 + (sizes[:, 1] / h) ** 2) / 2)
    return [float(v) if math.isfinite(v) else None for v in sp * scale]


@dataclass
class Loaded:
    """One item ready for a model: squished RGB image and its original size (w, h), or why it failed."""

    item: Item
    img: np.ndarray | None
    size: tuple[int, int]
    error: str | None = None


def load_squished(item: Item, size: tuple[int, int], cache: Any = None) -> Loaded:
    """Load and squish one item, from the decoded-image cache (``engine.data.cache.ImageCache``) when it holds the
    unchanged file (never raises: unreadable images carry their reason)."""
    img = cache.get(item.name, item.path) if cache is not None else None
    if img is not None:
        return Loaded(item, img, cache.orig_size(item.name))
    try:
        img = load_image(item.path)
    except ImageError as e:
        return Loaded(item, None, (0, 0), e.reason)
    h, w = img.shape[:2]
    return Loaded(item, squish(img, size), (w, h))


def squished_batches(
    items: list[Item], size: tuple[int, int], bs: int, workers: int = 2, cache: Any = None
) -> Iterator[list[Loaded]]:
    """Loaded batches in order, decoding the next batch in threads while the current one runs."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        chunks = [items[i : i + bs] for i in range(0, len(items), bs)]

        def submit(chunk: list[Item]) -> list[Future]:
            return [pool.submit(load_squished, it, size, cache) for it in chunk]

        pending = submit(chunks[0])
        for k in range(len(chunks)):
            nxt = submit(chunks[k + 1]) if k + 1 < len(chunks) else []
            yield [f.result() for f in pending]
            pending = nxt
