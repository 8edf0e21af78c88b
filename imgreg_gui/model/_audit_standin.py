"""TEMPORARY stand-in for ``engine.audit.run`` (audit, merge, Doubt) until the audit helper's module lands on main.

Delete this file once ``engine.audit.run`` exists: ``imgreg_gui.model.doubts`` imports the real one first. Only a
crude sequence check lives here (each label against the median of the frames around it), enough to drive the app.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from engine.audit.findings import SEQUENCE, Finding
from engine.core import CancelToken, Dataset, OnEvent, label_distance, no_event
from engine.labels.store import LabelStore


@dataclass(frozen=True)
class Doubt:
    """All findings about one item: the strongest score, every reason."""

    item: str
    score: float
    findings: tuple[Finding, ...] = field(default_factory=tuple)


def audit(
    ds: Dataset, store: LabelStore, on_event: OnEvent = no_event, cancel: CancelToken | None = None
) -> list[Finding]:
    """Sequence doubts: a label far from the median of its group's two frames either side."""
    if ds.format != "biwi":  # frames in sequence only
        return []
    labels = store.effective_labels()
    by_group: dict[str, list[str]] = {}
    for it in ds.items:
        if it.name in labels:
            by_group.setdefault(it.group, []).append(it.name)
    out: list[Finding] = []
    for names in by_group.values():
        if cancel is not None:
            cancel.raise_if_now()
        if len(names) < 5:
            continue
        res: list[tuple[str, float, tuple[float, ...]]] = []
        for i, n in enumerate(names):
            around = [labels[m] for m in names[max(0, i - 2) : i] + names[i + 1 : i + 3]]
            med = tuple(statistics.median(v[j] for v in around) for j in range(len(labels[n])))
            d = label_distance(labels[n], med)
            if d is not None:
                res.append((n, d, med))
        scale = 1.4826 * statistics.median(d for _, d, _ in res) + 1e-6
        unit = "" if ds.kind == "scalar" else " px"
        for n, d, med in res:
            if d / scale >= 3:
                why = f"{d:.1f}{unit} away from where the frames around it put the label"
                out.append(Finding(n, d / scale, SEQUENCE, why, med))
    return out


def merge(*lists: list[Finding]) -> list[Doubt]:
    """One Doubt per item (strongest first), its findings strongest first."""
    by_item: dict[str, list[Finding]] = {}
    for fs in lists:
        for f in fs:
            by_item.setdefault(f.item, []).append(f)
    doubts = [
        Doubt(n, max(f.score for f in fs), tuple(sorted(fs, key=lambda f: -f.score)))
        for n, fs in by_item.items()
    ]
    return sorted(doubts, key=lambda d: -d.score)
