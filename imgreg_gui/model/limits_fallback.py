"""Stand-in for ``engine.labels.limits.check_label`` until that module is merged into main (issue 25.2): delete
this file then. Same name and meaning: why a label is refused, or None."""

from __future__ import annotations

import math
from collections.abc import Iterable

from engine.core import Dataset, Item

AGE_RANGE = (0.0, 120.0)


def check_label(ds: Dataset, item: Item | str, label: Iterable[float]) -> str | None:
    """Why ``label`` is not a valid label of ``item`` in ``ds`` (one line), or None when it is."""
    vals = tuple(float(v) for v in label)
    if not vals or not all(math.isfinite(v) for v in vals):
        return "label values must be finite numbers"
    if ds.kind != "scalar":
        return None
    if ds.format == "utkface":
        lo, hi, why = *AGE_RANGE, "ages of UTKFace"
    else:
        orig = [it.label[0] for it in ds.items if it.label]
        if not orig:
            return None
        a, b = min(orig), max(orig)
        pad = max(0.5 * (b - a), 1.0)
        lo, hi, why = a - pad, b + pad, "the original values' range plus a margin"
    if not lo <= vals[0] <= hi:
        return f"value {vals[0]:g} is outside {lo:g} to {hi:g} ({why})"
    return None
