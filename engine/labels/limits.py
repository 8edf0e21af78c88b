"""The one rule for a valid label: ``check_label(ds, item, label)`` says why a label is refused, or None.

Points: one finite ``(x, y)`` per point, each within the image plus a margin (``point_margin`` of the image's
width / height on every side, 0.5 by default). Scalars: one finite value within the dataset's valid range:
ages 0-120 for UTKFace; for a scalar CSV the original values' range widened by ``scalar_margin`` (0.5) of its
width on each side. ``<dataset>/.imgreg/limits.json`` overrides any of them, e.g.
``{"min": 0, "max": 200, "point_margin": 1.0, "scalar_margin": 0.5}``. The store refuses edits that fail it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.core import Dataset, Item
from engine.data.images import ImageError, image_size
from engine.inputs import load_json, read_regular

LIMITS_NAME = "limits.json"
POINT_MARGIN = 0.5
SCALAR_MARGIN = 0.5
AGE_RANGE = (0.0, 120.0)
MAX_ABS = 1e6
"""Bound on any value when the image size or a scalar range is unknown."""
_KEYS = ("min", "max", "point_margin", "scalar_margin")


class LabelRefused(ValueError):
    """A label that ``check_label`` refuses; the message is the reason."""


def limits_path(ds: Dataset) -> Path:
    """The dataset's limits file: ``<root>/.imgreg/limits.json``."""
    return Path(ds.root) / ".imgreg" / LIMITS_NAME


def read_limits(ds: Dataset) -> dict[str, float]:
    """The overrides from ``limits.json`` ({} when absent); ``ValueError`` saying what is wrong with it."""
    path = limits_path(ds)
    try:
        data: Any = load_json(read_regular(path, 1 << 16), allow_nan=False)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object (keys: {', '.join(_KEYS)})")
    out: dict[str, float] = {}
    for k, v in data.items():
        if k not in _KEYS:
            raise ValueError(f"{path}: unknown key {str(k)[:40]!r} (keys: {', '.join(_KEYS)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{path}: {k} must be a finite number")
        if k.endswith("margin") and not 0 <= v <= 100:
            raise ValueError(f"{path}: {k} must lie between 0 and 100")
        out[k] = float(v)
    if out.get("min", -math.inf) > out.get("max", math.inf):
        raise ValueError(f"{path}: min is above max")
    return out


def scalar_range(ds: Dataset, limits: dict[str, float] | None = None) -> tuple[float, float, str]:
    """``(low, high, where it comes from)`` of a scalar dataset's valid values."""
    lim = read_limits(ds) if limits is None else limits
    if ds.format == "utkface":
        lo, hi, why = *AGE_RANGE, "ages of UTKFace"
    else:
        vals = [it.label[0] for it in ds.items if it.label]
        if vals:
            a, b = min(vals), max(vals)
            pad = max(lim.get("scalar_margin", SCALAR_MARGIN) * (b - a), 1.0)
            lo, hi, why = a - pad, b + pad, "the original values' range plus a margin"
        else:
            lo, hi, why = -MAX_ABS, MAX_ABS, "no original values to derive a range from"
    if "min" in lim or "max" in lim:
        why = LIMITS_NAME
    return lim.get("min", lo), lim.get("max", hi), why


def _find(ds: Dataset, item: Item | str) -> Item | None:
    if isinstance(item, Item):
        return item
    try:
        return ds.item(item)
    except KeyError:
        return None


def _numbers(label: Iterable[Any]) -> tuple[float, ...] | str:
    """The label as floats, or the reason it is not a list of finite numbers."""
    try:
        vals = list(label)
    except TypeError:
        return "a label is a list of numbers"
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in vals):
        return "a label holds only numbers"
    try:
        out = tuple(float(v) for v in vals)
    except OverflowError:
        return "a label value is too large"
    if not all(math.isfinite(v) for v in out):
        return "label values must be finite numbers"
    return out


def check_label(ds: Dataset, item: Item | str, label: Iterable[float]) -> str | None:
    """Why ``label`` is not a valid label of ``item`` in ``ds`` (one line), or None when it is."""
    vals = _numbers(label)
    if isinstance(vals, str):
        return vals
    want = 2 * ds.n_points if ds.kind == "point" else 1
    if len(vals) != want:
        what = f"{ds.n_points} point(s) take {want} values (x y each)" if ds.kind == "point" else "one value"
        return f"this {ds.kind} dataset's labels hold {what}, got {len(vals)}"
    try:
        lim = read_limits(ds)
    except ValueError as e:
        return f"cannot check labels: {e}"
    if ds.kind == "scalar":
        lo, hi, why = scalar_range(ds, lim)
        if not lo <= vals[0] <= hi:
            return f"value {vals[0]:g} is outside {lo:g} to {hi:g} ({why})"
        return None
    it = _find(ds, item)
    if it is None:  # not (or no longer) in the dataset, e.g. an orphan: no image to measure against
        return None
    try:
        size: tuple[int, int] | None = image_size(it.path)
    except (ImageError, OSError):
        size = None
    if size is None:
        if any(abs(v) > MAX_ABS for v in vals):
            return f"a point lies more than {MAX_ABS:g} pixels away (the image size is unknown)"
        return None
    w, h = size
    m = lim.get("point_margin", POINT_MARGIN)
    for k in range(0, len(vals), 2):
        x, y = vals[k], vals[k + 1]
        if not (-m * w <= x <= (1 + m) * w and -m * h <= y <= (1 + m) * h):
            return (
                f"point ({x:g}, {y:g}) is far outside the {w}x{h} image "
                f"(allowed: {m:g} of its size beyond each edge; set point_margin in .imgreg/{LIMITS_NAME})"
            )
    return None


def require_label(ds: Dataset | None, item: Item | str, label: Iterable[float]) -> tuple[float, ...]:
    """The label as floats when ``check_label`` accepts it (only finite numbers when ``ds`` is None)."""
    vals = _numbers(label)
    if isinstance(vals, str) or not vals:
        raise LabelRefused(vals if isinstance(vals, str) else "a label needs one or more numbers")
    reason = check_label(ds, item, vals) if ds is not None else None
    if reason:
        raise LabelRefused(f"{item.name if isinstance(item, Item) else item}: {reason}")
    return vals
