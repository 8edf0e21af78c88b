"""Planted near-duplicates for tests and benchmarks: re-encoded, resized, brightened or cropped copies."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.data.images import load_image
from engine.data.synth import write_image

VARIANTS = ("reencode", "resize", "brighten", "crop")


def variant(img: np.ndarray, kind: str) -> np.ndarray:
    """A near-duplicate of an RGB image: JPEG at quality 75, 3/4 size, 12% brighter, or 5% cropped per side."""
    h, w = img.shape[:2]
    if kind == "reencode":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 75])
        dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else None
        return img if dec is None else np.asarray(dec)
    if kind == "resize":
        return cv2.resize(img, (max(8, w * 3 // 4), max(8, h * 3 // 4)), interpolation=cv2.INTER_AREA)
    if kind == "brighten":
        return np.clip(img.astype(np.float32) * 1.12, 0, 255).astype(np.uint8)
    if kind == "crop":
        dy, dx = max(1, h * 5 // 100), max(1, w * 5 // 100)
        return np.ascontiguousarray(img[dy : h - dy, dx : w - dx])
    raise ValueError(f"unknown variant {kind!r}; known: {', '.join(VARIANTS)}")


def plant_duplicates(root: Path | str, copies: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """Write ``dst`` as a near-duplicate of ``src`` (paths relative to ``root``), cycling through ``VARIANTS``.

    Returns ``(src, dst, variant)`` per copy.
    """
    root = Path(root)
    out = []
    for i, (src, dst) in enumerate(copies):
        kind = VARIANTS[i % len(VARIANTS)]
        write_image(root / dst, variant(load_image(root / src), kind))
        out.append((src, dst, kind))
    return out


def utk_copy_name(name: str, age: int | None = None, bump: int = 1) -> str:
    """A UTKFace name for a copy of ``name``: same fields with a later timestamp (and ``age`` when given)."""
    base = Path(name).name
    parts = base.split("_")
    stamp = parts[3].split(".", 1)
    parts[3] = f"{int(stamp[0]) + bump}.{stamp[1]}" if len(stamp) > 1 else str(int(stamp[0]) + bump)
    if age is not None:
        parts[0] = str(age)
    return "_".join(parts)
