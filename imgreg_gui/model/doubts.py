"""Doubt about labels in the app: the audit's findings and the active run's evidence (its label-quality scores,
labels outside its intervals) merged into one ``Doubt`` per item, and what the canvas and queue show of one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from engine.audit.findings import INTERVAL, MODEL, Finding
from engine.core import Label, label_distance
from engine.labels.store import PredictionRow

try:
    from engine.audit.run import Doubt, audit, merge  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # TEMPORARY until engine.audit.run is on main (then delete _audit_standin.py)
    from imgreg_gui.model._audit_standin import Doubt, audit, merge  # type: ignore[assignment, unused-ignore]

__all__ = ["Doubt", "audit", "merge", "run_findings", "expected", "why", "reasons", "outside", "WORTH_A_LOOK"]

WORTH_A_LOOK = 3.0  # a model score from here on is a finding of its own (Finding's scale: about 1 typical)


def outside(label: Label | None, pred: Label, interval: tuple[float, ...] | None, kind: str) -> float | None:
    """How far the label lies outside the prediction's interval, in interval widths (None: inside, or unknown)."""
    if label is None or not interval:
        return None
    if kind == "scalar":
        lo, hi = interval[0], interval[-1]
        width = max(hi - lo, 1e-9)
        v = label[0]
        return None if lo <= v <= hi else (lo - v if v < lo else v - hi) / width + 1.0
    worst = None
    for i, r in enumerate(interval):
        d = label_distance(label[2 * i : 2 * i + 2], pred[2 * i : 2 * i + 2])
        if d is not None and r > 0 and d > r:
            worst = max(worst or 0.0, d / r)
    return worst


def run_findings(
    run_id: str | None,
    preds: Mapping[str, PredictionRow],
    effective: Callable[[str], Label | None],
    kind: str,
    names: Iterable[str] | None = None,
) -> list[Finding]:
    """The active run's evidence as findings (of ``names`` only, when given): a label-quality score worth a look,
    a label outside its interval."""
    out: list[Finding] = []
    unit = "" if kind == "scalar" else " px"
    for name in preds if names is None else names:
        row = preds.get(name)
        if row is None:
            continue
        lab = effective(name)
        err = label_distance(lab, row.pred)
        far = f"{err:.1f}{unit} from the label" if err is not None else "here"
        if row.score is not None and row.score >= WORTH_A_LOOK:
            why = f"a model trained without this item predicts {far} (score {row.score:.1f}, run {run_id})"
            out.append(Finding(name, float(row.score), MODEL, why, tuple(row.pred)))
        ratio = outside(lab, row.pred, row.interval, kind)
        if ratio is not None:
            why = f"the label lies outside the model's interval, {far} (run {run_id})"
            out.append(Finding(name, WORTH_A_LOOK * ratio, INTERVAL, why, tuple(row.pred)))
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
