"""The one record of doubt about a label: which item, how strongly, why in words, and what was expected."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core import Label

# Why an item is doubted; the review queue filters by these.
SEQUENCE = "sequence"  # the label disagrees with the frames around it
NEIGHBOURS = "neighbours"  # the label disagrees with those of look-alike images
DUPLICATE = "duplicate"  # a near-duplicate image carries another label
INTERVAL = "interval"  # the label lies outside the model's calibrated interval
MODEL = "model"  # the out-of-fold label-quality score
REASONS = (SEQUENCE, NEIGHBOURS, DUPLICATE, INTERVAL, MODEL)


@dataclass(frozen=True)
class Finding:
    """One check's doubt about one item's label (``score``: about 1 typical, 3 or more worth a look)."""

    item: str
    score: float
    reason: str  # one of REASONS
    why: str  # one line a non-specialist understands
    expected: Label | None = None  # where the check expects the label, original pixels or label units
