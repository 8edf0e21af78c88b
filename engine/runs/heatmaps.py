"""Heatmap files of spatial runs: one small 8-bit grayscale PNG per predicted item, beside the run.

``imgreg predict RUN DATASET --heatmaps`` writes ``<run_dir>/heatmaps/<item name>.png`` (the item's relative path
mirrored, ``.png`` appended: ``07/frame_00123_rgb.png`` -> ``heatmaps/07/frame_00123_rgb.png.png``). Each file is
at the heatmap's own resolution (the network input divided by the head's stride, e.g. 30x40 for 240x320), which
spans the squish-resized input, so stretching it to the original W x H is exact: cell (i, j) of an (h, w) map covers
original pixels ``[j*W/w, (j+1)*W/w) x [i*H/h, (i+1)*H/h)``. Values are max-normalised (the peak is 255).
Several points share one file: each point's map is normalised to its own peak, then the maximum over points is
stored, so every point's peak is 255.

This module needs no torch (the GUI reads the files with it).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

HEATMAP_DIR = "heatmaps"


def heatmap_dir(run_dir: Path | str) -> Path:
    """The folder of a run's heatmap PNGs (``<run_dir>/heatmaps``)."""
    return Path(run_dir) / HEATMAP_DIR


def heatmap_path(run_dir: Path | str, item: str) -> Path:
    """Where the heatmap of item ``item`` (its POSIX name relative to the dataset root) lives in a run folder."""
    parts = [p for p in PurePosixPath(item.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    if not parts:
        raise ValueError(f"item name {item!r} has no file name")
    return heatmap_dir(run_dir).joinpath(*parts[:-1], parts[-1] + ".png")


def has_heatmaps(run_dir: Path | str | None) -> bool:
    """Whether a run folder holds heatmaps (``predict --heatmaps`` wrote some)."""
    return run_dir is not None and heatmap_dir(run_dir).is_dir()


def to_gray(maps: np.ndarray) -> np.ndarray:
    """Maps ``(n_points, h, w)`` (or one ``(h, w)``) as one uint8 ``(h, w)`` image: each map over its own peak,
    then the maximum over points, times 255."""
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim == 2:
        m = m[None]
    peak = m.reshape(len(m), -1).max(-1).reshape(-1, 1, 1)
    m = np.where(peak > 0, m / np.maximum(peak, 1e-30), 0.0).max(0)
    return np.clip(np.rint(m * 255), 0, 255).astype(np.uint8)


def write_heatmap(path: Path, maps: np.ndarray) -> None:
    """Write maps as a grayscale PNG at ``path``: temp file in the same folder, then ``os.replace`` (no fsync:
    a heatmap lost in a crash is only redrawn by the next predict)."""
    ok, buf = cv2.imencode(".png", to_gray(maps), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"cannot encode heatmap for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_heatmap(path: Path | str) -> np.ndarray | None:
    """A heatmap PNG as uint8 ``(h, w)``, or None when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    return img if img is not None and img.ndim == 2 else None


def peak_pixel(gray: np.ndarray, size: tuple[int, int]) -> tuple[float, float]:
    """The centre of the brightest heatmap cell in original pixels of an image ``(W, H)``."""
    h, w = gray.shape
    i, j = np.unravel_index(int(np.argmax(gray)), gray.shape)
    return (j + 0.5) * size[0] / w, (i + 0.5) * size[1] / h
