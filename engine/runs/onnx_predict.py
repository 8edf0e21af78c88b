"""Prediction with an exported ONNX model through onnxruntime, without torch: same squish resize, normalisation
and pixel mapping as ``engine.learn.predict``, so both give the same rows (``imgreg predict FILE.onnx``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import events
from engine.audit.conformal import Calibration, CoverageError, calibrate, with_intervals
from engine.core import CancelToken, Dataset, Item, Label, OnEvent, no_event
from engine.data.squish import squished_batches
from engine.inputs import load_json, read_regular
from engine.labels.store import PredictionRow
from engine.runs.calibration import check_calibration
from engine.runs.predictions import batch_rows, flip_half
from engine.runs.schema import SchemaError, check_onnx_meta

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
        meta = load_json(read_regular(side)) if side.is_file() else None
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != ONNX_FORMAT:
        try:
            meta = json.loads(sess.get_modelmeta().custom_metadata_map.get(META_KEY, "null"))
        except ValueError:
            meta = None
    if not isinstance(meta, dict) or meta.get("format") != ONNX_FORMAT:
        raise OnnxError(f"{path}: no imgreg metadata (export it with 'imgreg export RUN')")
    try:
        check_onnx_meta(meta)
    except SchemaError as e:
        raise OnnxError(f"{path}: unusable metadata: {e}") from None
    return OnnxModel(path, sess, meta)


def to_input(imgs: list[np.ndarray], meta: dict[str, Any]) -> np.ndarray:
    """Squished uint8 RGB images to the normalised float32 batch (N, 3, h, w) the model takes."""
    x = np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    mean = np.asarray(meta["input"]["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(meta["input"]["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    return (x - mean) / std


def run_batch(
    m: OnnxModel, x: np.ndarray, tta: bool, flip_spread: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs (N, n_out) and spread (N, n_points) or None, averaged with the flipped image under ``tta``;
    ``flip_spread`` gives a model without a spread output the flip disagreement as one (as torch prediction)."""
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
        if flip_spread and spread is None:
            spread = flip_half(out, out_f, m.meta["kind"] == "point", (x.shape[-1], x.shape[-2]))
        out = (out + out_f) / 2
        if spread is not None and spread_f is not None:
            spread = (spread + spread_f) / 2
    return out, spread


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
    coverage: float | None = None,
    mondrian: int = 0,
) -> tuple[str, list[PredictionRow]]:
    """Predict ``ds`` (items without a problem by default) with an ONNX model: ``(run id, rows)`` in original
    pixels, errors against effective labels; rows stored under ``<run id>.onnx`` when a store is given.

    ``coverage``: each row also gets its calibrated region, from the calibration set the export carries.
    """
    m = load_onnx(path)
    check_fits(m, ds)
    cal = onnx_calibration(m, coverage, mondrian) if coverage is not None else None
    items = items if items is not None else [it for it in ds.items if not it.problem]
    labels: dict[str, Label] = dict(store.effective_labels()) if store is not None else {
        it.name: it.label for it in ds.items if it.label is not None
    }  # fmt: skip
    point = m.meta["kind"] == "point"
    tta = (tta or cal is not None) and (not point or int(m.meta.get("n_points", 1)) == 1)
    rows: list[PredictionRow] = []
    done = 0
    on_event(events.progress("predict_progress", 0, len(items)))
    for batch in squished_batches(items, m.size, bs):
        if cancel is not None:
            cancel.raise_if_now()
        ok = [b for b in batch if b.img is not None]
        if ok:
            x = to_input([b.img for b in ok if b.img is not None], m.meta)
            out, spread = run_batch(m, x, tta, flip_spread=cal is not None)
            rows += batch_rows(ok, out, spread, m.size, point, labels)
        done += len(batch)
        on_event(events.progress("predict_progress", done, len(items)))
    if cal is not None:
        rows = with_intervals(rows, cal)
    if store is not None:
        store.put_predictions(m.run_id, rows)
    return m.run_id, rows


def onnx_calibration(m: OnnxModel, coverage: float, mondrian: int) -> Calibration:
    """The conformal fit of the calibration set in the model's metadata; OnnxError when it carries none."""
    data = m.meta.get("calibration")
    if data is None:
        raise OnnxError(
            f"{m.path.name} carries no calibration (exported from a run saved without one): export a run "
            "trained with this version to predict with --coverage"
        )
    try:
        kind, rows, labels = check_calibration(data)
        if kind != m.meta["kind"]:
            raise SchemaError(f"calibration is for {kind}s, the model predicts {m.meta['kind']}s")
        return calibrate(rows, labels, kind == "point", coverage, mondrian)
    except (SchemaError, CoverageError) as e:
        raise OnnxError(f"{m.path.name}: unusable calibration: {e}") from None
