"""Prediction with an exported ONNX model through onnxruntime, without torch: same squish resize, normalisation
and pixel mapping as ``engine.learn.predict``, so both give the same rows (``imgreg predict FILE.onnx``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core import CancelToken, Dataset, Item, Label, OnEvent, label_distance, no_event
from engine.data.images import ImageError, load_image, squish
from engine.labels.store import PredictionRow

ONNX_FORMAT = "imgreg-onnx/1"
META_KEY = "imgreg"
"""Key of the metadata JSON inside the ONNX file's ``metadata_props``."""


class OnnxError(Exception):
    """An ONNX file cannot be used for prediction (a one-line reason)."""


def meta_path(onnx_path: Path | str) -> Path:
    """The metadata JSON beside an ONNX file: ``model.onnx`` -> ``model.json``."""
    return Path(onnx_path).with_suffix(".json")


def is_onnx(spec: str | Path) -> bool:
    """Whether a run argument names an ONNX file rather than a run."""
    return str(spec).lower().endswith(".onnx")


@dataclass
class OnnxModel:
    """An onnxruntime session with the metadata that says how to feed it."""

    path: Path
    session: Any
    meta: dict[str, Any]

    @property
    def run_id(self) -> str:
        """The id its predictions are stored under: ``<run id>.onnx``."""
        return f"{self.meta.get('run_id') or self.path.stem}.onnx"

    @property
    def size(self) -> tuple[int, int]:
        """Network input (h, w)."""
        h, w = self.meta["input"]["size"]
        return int(h), int(w)


def load_onnx(path: Path | str) -> OnnxModel:
    """Open an exported model and its metadata (the JSON beside it, else the copy inside the file); OnnxError."""
    path = Path(path)
    if not path.is_file():
        raise OnnxError(f"{path}: no such ONNX file")
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxError("predicting with an ONNX file needs onnxruntime (pip install onnxruntime)") from None
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise OnnxError(f"{path}: not a usable ONNX model ({str(e).splitlines()[0][:160]})") from None
    meta: Any = None
    side = meta_path(path)
    try:
        meta = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else None
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != ONNX_FORMAT:
        try:
            meta = json.loads(sess.get_modelmeta().custom_metadata_map.get(META_KEY, "null"))
        except ValueError:
            meta = None
    if not isinstance(meta, dict) or meta.get("format") != ONNX_FORMAT:
        raise OnnxError(f"{path}: no imgreg metadata (export it with 'imgreg export RUN')")
    return OnnxModel(path, sess, meta)


def to_input(imgs: list[np.ndarray], meta: dict[str, Any]) -> np.ndarray:
    """Squished uint8 RGB images to the normalised float32 batch (N, 3, h, w) the model takes."""
    x = np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    mean = np.asarray(meta["input"]["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(meta["input"]["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    return (x - mean) / std


def _load(item: Item, size: tuple[int, int]) -> tuple[Item, np.ndarray | None, tuple[int, int]]:
    """One item's squished image and original (w, h); None for an unreadable image."""
    try:
        img = load_image(item.path)
    except ImageError:
        return item, None, (0, 0)
    return item, squish(img, size), (img.shape[1], img.shape[0])


def _batches(items: list[Item], size: tuple[int, int], bs: int) -> Iterator[list[tuple]]:
    """Loaded batches in order (decoded in two threads)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(0, len(items), bs):
            yield list(pool.map(_load, items[i : i + bs], [size] * len(items[i : i + bs])))


def run_batch(m: OnnxModel, x: np.ndarray, tta: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs (N, n_out) and spread (N, n_points) or None, averaged with the flipped image under ``tta``."""
    names = [o.name for o in m.session.get_outputs()]

    def run(inp: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        res = m.session.run(names, {m.session.get_inputs()[0].name: np.ascontiguousarray(inp)})
        return res[0].astype(np.float32), (res[1].astype(np.float32) if len(res) > 1 else None)

    out, spread = run(x)
    if tta:
        out_f, spread_f = run(x[..., ::-1])
        if m.meta["kind"] == "point":
            out_f = (out_f.reshape(len(x), -1, 2) * np.array([-1.0, 1.0], dtype=np.float32)).reshape(
                len(x), -1
            )
        out = (out + out_f) / 2
        if spread is not None and spread_f is not None:
            spread = (spread + spread_f) / 2
    return out, spread


def to_pixels(pred: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """[-1, 1] outputs (N, 2n) to original pixels given each image's (w, h) (as ``engine.learn.dls.to_pixels``)."""
    p = np.asarray(pred, dtype=np.float64).reshape(len(sizes), -1, 2)
    return ((p + 1) * sizes[:, None, :].astype(np.float64) / 2).reshape(len(sizes), -1)


def _spread_pixels(spread: np.ndarray, sizes: np.ndarray, size: tuple[int, int]) -> list[float | None]:
    """Mean spread per item in original pixels, from spread in input pixels."""
    sp = spread.astype(np.float64).reshape(len(sizes), -1).mean(-1)
    h, w = size
    scale = np.sqrt(((sizes[:, 0] / w) ** 2 + (sizes[:, 1] / h) ** 2) / 2)
    return [float(v) if math.isfinite(v) else None for v in sp * scale]


def check_fits(m: OnnxModel, ds: Dataset) -> None:
    """OnnxError when the model predicts another kind or number of points than the dataset holds."""
    kind = m.meta.get("kind")
    if kind != ds.kind:
        raise OnnxError(f"{m.path.name} predicts {kind}s but the dataset holds {ds.kind}s")
    if kind == "point" and int(m.meta.get("n_points", 0)) != ds.n_points:
        raise OnnxError(
            f"{m.path.name} predicts {m.meta.get('n_points')} point(s), the dataset has {ds.n_points}"
        )


def predict_onnx(
    path: Path | str,
    ds: Dataset,
    store: Any | None = None,
    items: list[Item] | None = None,
    tta: bool = False,
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    bs: int = 32,
) -> tuple[str, list[PredictionRow]]:
    """Predict ``ds`` (items without a problem by default) with an ONNX model: ``(run id, rows)`` in original
    pixels, errors against effective labels; rows stored under ``<run id>.onnx`` when a store is given."""
    m = load_onnx(path)
    check_fits(m, ds)
    items = items if items is not None else [it for it in ds.items if not it.problem]
    labels: dict[str, Label] = dict(store.effective_labels()) if store is not None else {
        it.name: it.label for it in ds.items if it.label is not None
    }  # fmt: skip
    point = m.meta["kind"] == "point"
    tta = tta and (not point or int(m.meta.get("n_points", 1)) == 1)
    rows: list[PredictionRow] = []
    done = 0
    on_event({"type": "predict_progress", "done": 0, "total": len(items)})
    for batch in _batches(items, m.size, bs):
        if cancel is not None:
            cancel.raise_if_now()
        ok = [b for b in batch if b[1] is not None]
        if ok:
            out, spread = run_batch(m, to_input([b[1] for b in ok], m.meta), tta)
            sizes = np.array([b[2] for b in ok], dtype=np.float64)
            preds = to_pixels(out, sizes) if point else out.astype(np.float64)
            spreads = _spread_pixels(spread, sizes, m.size) if spread is not None else [None] * len(ok)
            for (it, _, _), p, sp in zip(ok, preds, spreads, strict=True):
                pred = tuple(float(v) for v in p)
                rows.append(PredictionRow(it.name, pred, label_distance(pred, labels.get(it.name)), sp))
        done += len(batch)
        on_event({"type": "predict_progress", "done": done, "total": len(items)})
    if store is not None:
        store.put_predictions(m.run_id, rows)
    return m.run_id, rows
