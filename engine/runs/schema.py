"""Checks of a run's ``config.json`` and an ONNX model's metadata: every field a model is rebuilt or fed from.

A file edited by hand or by another tool gets a one-line reason (``SchemaError``) instead of a traceback deep
in the model code, or a silently wrong model (a size ``"64x64"`` read as 6x4).
"""

from __future__ import annotations

import math
from typing import Any

MAX_SIDE = 8192
MAX_POINTS = 1000
KINDS = ("point", "scalar")


class SchemaError(ValueError):
    """A run config or model metadata field is missing or wrong (the message names it)."""


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SchemaError(f"{what} must be a whole number from {lo} to {hi}, not {str(v)[:40]!r}")
    return v


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SchemaError(f"{what} must be a finite number, not {str(v)[:40]!r}")
    return float(v)


def check_size(v: Any, what: str = "size") -> tuple[int, int]:
    """``[h, w]`` of whole numbers from 8 to ``MAX_SIDE``."""
    if not isinstance(v, list) or len(v) != 2:
        raise SchemaError(f"{what} must be [height, width], not {str(v)[:40]!r}")
    return _int(v[0], f"{what} height", 8, MAX_SIDE), _int(v[1], f"{what} width", 8, MAX_SIDE)


def check_stats(v: Any, what: str, positive: bool = False) -> list[float]:
    """Three finite per-channel numbers (positive ones for a standard deviation)."""
    if not isinstance(v, list) or len(v) != 3:
        raise SchemaError(f"{what} must list 3 numbers (R, G, B), not {str(v)[:40]!r}")
    vals = [_num(x, what) for x in v]
    if positive and min(vals) <= 0:
        raise SchemaError(f"{what} must be positive")
    return vals


def _range(v: Any, what: str) -> tuple[float, float] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != 2:
        raise SchemaError(f"{what} must be [low, high] or null, not {str(v)[:40]!r}")
    lo, hi = _num(v[0], what), _num(v[1], what)
    if not lo < hi:
        raise SchemaError(f"{what} must have low < high")
    return lo, hi


def _text(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise SchemaError(f"{what} must be text, not {str(v)[:40]!r}")
    return v


def check_config(d: Any) -> dict[str, Any]:
    """A run ``config.json`` object whose model fields are usable (unknown keys kept); SchemaError."""
    if not isinstance(d, dict):
        raise SchemaError("config.json is not a JSON object")
    if d.get("kind", "point") not in KINDS:
        raise SchemaError(f"kind must be one of {', '.join(KINDS)}")
    for key in ("arch", "head", "scalar_head"):
        if key in d:
            _text(d[key], key)
    if "n_points" in d:
        _int(d["n_points"], "n_points", 1, MAX_POINTS)
    if "size" in d:
        check_size(d["size"])
    if "y_range" in d:
        _range(d["y_range"], "y_range")
    if "ps" in d and not 0 <= _num(d["ps"], "ps") < 1:
        raise SchemaError("ps must lie in [0, 1)")
    for key in ("spatial_stride", "spatial_hidden"):
        if d.get(key) is not None:
            _int(d[key], key, 1, 1 << 16)
    if d.get("normalize") is not None:
        n = d["normalize"]
        if not isinstance(n, list) or len(n) != 2:
            raise SchemaError("normalize must be [mean, std]")
        check_stats(n[0], "normalize mean")
        check_stats(n[1], "normalize std", positive=True)
    if "weights_file" in d:
        w = _text(d["weights_file"], "weights_file")
        if "/" in w or "\\" in w or w in (".", ".."):
            raise SchemaError("weights_file must be a file name inside the run folder")
    return d


def check_onnx_meta(m: dict[str, Any]) -> dict[str, Any]:
    """ONNX metadata whose input and output fields are usable; SchemaError."""
    inp = m.get("input")
    if not isinstance(inp, dict):
        raise SchemaError("metadata has no 'input' object")
    check_size(inp.get("size"), "input size")
    check_stats(inp.get("mean"), "input mean")
    check_stats(inp.get("std"), "input std", positive=True)
    if m.get("kind") not in KINDS:
        raise SchemaError(f"metadata kind must be one of {', '.join(KINDS)}")
    if m["kind"] == "point":
        _int(m.get("n_points"), "n_points", 1, MAX_POINTS)
    return m
