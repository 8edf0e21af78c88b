"""Doubt about labels in the app: the audit's findings and the active run's evidence (its label-quality scores,
labels outside its intervals) merged into one ``Doubt`` per item, and what the canvas and queue show of one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from engine.audit import conformal
from engine.audit.findings import MODEL, Doubt, Finding
from engine.audit.run import audit, merge
from engine.core import Label, label_distance
from engine.labels.store import PredictionRow

__all__ = ["Doubt", "audit", "merge", "run_findings", "expected", "why", "reasons", "WORTH_A_LOOK"]

WORTH_A_LOOK = 3.0  # a model score from here on is a finding of its own (Finding's scale: about 1 typical)


def run_findings(
    run_id: str | None,
    preds: Mapping[str, PredictionRow],
    effective: Callable[[str], Label | None],
    kind: str,
    names: Iterable[str] | None = None,
) -> list[Finding]:
    """The active run's evidence as findings (of ``names`` only, when given): a label-quality score worth a look,
    and a label outside its calibrated interval (``engine.audit.conformal.interval_findings``)."""
    out: list[Finding] = []
    unit = "" if kind == "scalar" else " px"
    rows = [preds[n] for n in (preds if names is None else names) if n in preds]
    labels = {r.item: lab for r in rows if (lab := effective(r.item)) is not None}
    for row in rows:
        if row.score is not None and row.score >= WORTH_A_LOOK:
            err = label_distance(labels.get(row.item), row.pred)
            far = f"{err:.1f}{unit} from the label" if err is not None else "here"
            why = f"a model trained without this item predicts {far} (score {row.score:.1f}, run {run_id})"
            out.append(Finding(row.item, float(row.score), MODEL, why, tuple(row.pred)))
    with_interval = [r for r in rows if r.interval is not None]
    if with_interval:
        out += conformal.interval_findings(
            with_interval, labels, kind == "point", "" if kind == "scalar" else "px"
        )
    return out


def expected(d: Doubt | None) -> Label | None:
    """Where the strongest finding that says so expects the label."""
    for f in d.findings if d is not None else ():
        if f.expected is not None:
            return tuple(f.expected)
    return None


def why(d: Doubt | None) -> str:
    """Every finding's reason in words, strongest first, one per line."""
    return "\n".join(f.why for f in d.findings) if d is not None else ""


def reasons(d: Doubt | None) -> tuple[str, ...]:
    """The reason names of a doubt, strongest first, each once."""
    return tuple(dict.fromkeys(f.reason for f in d.findings)) if d is not None else ()
