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


@dataclass(frozen=True)
class Doubt:
    """One review-queue row: an item, its combined doubt and every check's finding about it, strongest first."""

    item: str
    score: float  # the root sum of squares of the findings' scores: independent evidence adds up
    findings: tuple[Finding, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        """The findings' reasons, strongest first."""
        return tuple(f.reason for f in self.findings)

    @property
    def why(self) -> str:
        """Every finding's words, strongest first, ``; ``-joined."""
        return "; ".join(f.why for f in self.findings)

    @property
    def expected(self) -> Label | None:
        """The strongest finding's expected label that has one."""
        return next((f.expected for f in self.findings if f.expected is not None), None)
