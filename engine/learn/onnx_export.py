"""A run's model as ONNX with a metadata JSON beside it, so it predicts anywhere without torch.

The graph takes a normalised float batch ``image`` (N, 3, H, W) and gives ``coords`` (N, 2 * n_points, x1, y1, ...
in [-1, 1]) or ``value`` (N, 1); spatial runs add ``spread`` (N, n_points) in input pixels. ``onnx_metadata``
says how to get there from an image file and back to original pixels; the same JSON is also stored in the
ONNX file's metadata (key ``imgreg``) so the file alone suffices. Exported with torch's ``torch.export``-based
exporter (needs ``onnxscript``, works offline); the TorchScript exporter is the fallback.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from engine.atomic import atomic_write_text
from engine.learn.arch import ModelConfig
from engine.learn.models import load_run
from engine.runs.calibration import calibration_data, read_calibration
from engine.runs.files import RunError
from engine.runs.onnx_predict import META_KEY, ONNX_FORMAT, meta_path
from engine.runs.schema import SchemaError

OPSET = 18


class ExportError(Exception):
    """A model cannot be exported (a one-line reason)."""


class Exportable(nn.Module):
    """The run's model with plain tensor outputs: coords (and spread for the spatial head)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.spread = callable(getattr(model, "forward_with_spread", None))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Outputs in [-1, 1] (points) or label units (scalars); with the spread when the model has one."""
        if self.spread:
            return cast(Any, self.model).forward_with_spread(x)  # checked in __init__
        return self.model(x).as_subclass(torch.Tensor)


def onnx_metadata(cfg: ModelConfig, run_id: str, outputs: list[str]) -> dict[str, Any]:
    """How to feed the ONNX model and read its outputs, as a JSON-able dict."""
    h, w = int(cfg.size[0]), int(cfg.size[1])
    meta: dict[str, Any] = {
        "format": ONNX_FORMAT,
        "run_id": run_id,
        "kind": cfg.kind,
        "arch": cfg.arch,
        "head": cfg.head,
        "input": {
            "name": "image",
            "shape": ["N", 3, h, w],
            "size": [h, w],
            "layout": "NCHW, RGB, float32",
            "scale": 1 / 255,
            "mean": [float(v) for v in cfg.normalize[0]],
            "std": [float(v) for v in cfg.normalize[1]],
            "normalize": "x = (pixel / 255 - mean) / std per channel",
        },
        "resize": {
            "method": "squish",
            "interpolation": "PIL Image.resize BILINEAR (antialiased when shrinking)",
            "note": "the whole image is resized to (w, h) ignoring its aspect ratio; no crop, no padding",
        },
        "outputs": outputs,
        "opset": OPSET,
    }
    if cfg.kind == "point":
        meta["n_points"] = int(cfg.n_points)
        meta["output_map"] = (
            "coords (N, 2*n_points) as x1, y1, x2, y2, ... in [-1, 1]; original pixels: "
            "x_px = (x + 1) * W / 2, y_px = (y + 1) * H / 2 with W, H the original image's width and height"
        )
        if "spread" in outputs:
            meta["spread_map"] = (
                "spread (N, n_points): heatmap std in input pixels; original pixels: "
                "spread * sqrt(((W / w)^2 + (H / h)^2) / 2)"
            )
    else:
        meta["value_range"] = list(cfg.y_range) if cfg.y_range is not None else None
        meta["output_map"] = "value (N, 1) in label units, no mapping needed"
    return meta


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's warnings, logging and prints (the CLI reports one line)."""
    log = logging.getLogger("torch")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _export(net: nn.Module, x: torch.Tensor, out: Path, names: list[str]) -> None:
    """Write ``net`` to ``out`` with a dynamic batch axis: torch.export first, TorchScript when that fails."""
    try:
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)

        prog = torch.onnx.export(
            net, (x,), None, input_names=["image"], output_names=names, opset_version=OPSET, dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False,
        )  # fmt: skip
        if prog is None:  # dynamo=True returns the program
            raise RuntimeError("torch.onnx.export returned no program")
        prog.save(str(out))
        return
    except Exception:  # any exporter failure: try the older exporter before giving up
        pass
    axes = {n: {0: "batch"} for n in ["image", *names]}
    torch.onnx.export(
        net, (x,), str(out), input_names=["image"], output_names=names, dynamic_axes=axes,
        opset_version=17, dynamo=False,
    )  # fmt: skip


def _embed(out: Path, meta: dict[str, Any]) -> None:
    """Store the metadata JSON inside the ONNX file too (``metadata_props``)."""
    import onnx

    m = onnx.load(str(out))
    del m.metadata_props[:]
    m.metadata_props.add(key=META_KEY, value=json.dumps(meta))
    onnx.save(m, str(out))


def export_onnx(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Export a run's model to ``out`` (default ``<run>/model.onnx``) plus its metadata JSON; returns the path."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the 'onnx' package (pip install onnx onnxscript)") from None
    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "model.onnx"
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{out}: the output file must end in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    net = Exportable(run.model).eval()
    h, w = int(run.cfg.size[0]), int(run.cfg.size[1])
    x = torch.zeros(2, 3, h, w)
    first = "coords" if run.cfg.kind == "point" else "value"
    names = [first, "spread"] if net.spread else [first]
    try:
        with _quiet(), torch.no_grad():
            _export(net, x, out, names)
    except Exception as e:
        raise ExportError(f"cannot export run {run.run_id} to ONNX: {str(e).splitlines()[0][:200]}") from None
    meta = onnx_metadata(run.cfg, run.run_id, names)
    try:
        saved = read_calibration(run_dir)
    except SchemaError as e:
        raise ExportError(f"run {run.run_id}: {e}") from None
    if saved is not None:  # predict FILE.onnx --coverage calibrates from it: the file alone suffices
        meta["calibration"] = calibration_data(saved[1], saved[2], saved[0])
    _embed(out, meta)
    atomic_write_text(meta_path(out), json.dumps(meta, indent=2) + "\n")
    return out


__all__ = ["ExportError", "RunError", "export_onnx", "onnx_metadata"]
