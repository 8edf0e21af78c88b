"""``audit``: every label check that needs no model, over a dataset's effective labels; ``merge``: findings of
several checks (and of the model, ``imgreg rank``) as one review queue, one row per item; torch-free."""

from __future__ import annotations

import math
from collections.abc import Callable

from engine.audit.findings import MODEL, Doubt, Finding
from engine.audit.lookalike import duplicate_findings, neighbour_findings
from engine.audit.sequence import check_sequences
from engine.core import CancelToken, Dataset, Label, OnEvent, no_event
from engine.events import note, progress


def audit(
    ds: Dataset, store, on_event: OnEvent = no_event, cancel: CancelToken | None = None
) -> list[Finding]:
    """Findings of the sequence, look-alike and duplicate checks on ``store``'s effective labels, highest score
    first; at most one per item and reason. The look-alike checks run only when embeddings are stored."""
    labels = store.effective_labels()
    found: list[Finding] = []
    checks: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("sequence", lambda: _sequence(ds, labels, on_event)),
        ("neighbours", lambda: neighbour_findings(ds, labels, store.dir)),
        ("duplicates", lambda: duplicate_findings(ds, labels, store.dir)),
    ]
    on_event(progress("audit_progress", 0, len(checks)))
    for i, (_, check) in enumerate(checks):
        if cancel is not None:
            cancel.raise_if_now()
        found += check()
        on_event(progress("audit_progress", i + 1, len(checks)))
    return sort_findings(found)


def _sequence(ds: Dataset, labels: dict[str, Label], on_event: OnEvent) -> list[Finding]:
    got, n = check_sequences(ds, labels)
    if n:  # silent otherwise: most datasets are no video
        on_event(note(f"sequence check: {n} frames judged against the frames around them"))
    return got


def sort_findings(found: list[Finding]) -> list[Finding]:
    """Highest score first (ties by item, then reason); NaN scores last."""
    return sorted(found, key=lambda f: (not math.isfinite(f.score), -f.score if math.isfinite(f.score) else 0,
                                        f.item, f.reason))  # fmt: skip


def merge(*lists: list[Finding]) -> list[Doubt]:
    """One ``Doubt`` per item from any number of findings lists, highest combined score first; an item's
    findings keep only the strongest per reason, strongest first."""
    by: dict[str, dict[str, Finding]] = {}
    for found in lists:
        for f in found:
            if not math.isfinite(f.score):
                continue
            own = by.setdefault(f.item, {})
            if f.reason not in own or own[f.reason].score < f.score:
                own[f.reason] = f
    rows = []
    for item, own in by.items():
        fs = tuple(sort_findings(list(own.values())))
        rows.append(Doubt(item, math.sqrt(sum(max(f.score, 0.0) ** 2 for f in fs)), fs))
    rows.sort(key=lambda d: (-d.score, d.item))
    return rows


def model_findings(rows: list) -> list[Finding]:
    """``Finding(reason=MODEL)`` from scored prediction rows (``engine.labels.quality``): the out-of-fold doubt."""
    out = []
    for r in rows:
        if r.score is None or r.error is None or not math.isfinite(r.score):
            continue
        why = f"the model puts it {r.error:.3g} away from its label, {r.score:.1f} times its usual miss here"
        out.append(Finding(r.item, float(r.score), MODEL, why, tuple(float(v) for v in r.pred)))
    return out


def with_audit(
    ds: Dataset,
    store,
    rows: list,
    by: str = "score",
    on_event: OnEvent = no_event,
    extra: tuple[list[Finding], ...] = (),
) -> tuple[list, dict[str, Doubt]]:
    """Scored prediction rows merged with the audit's findings (and any ``extra`` lists, e.g. INTERVAL ones):
    the rows in the merged order (kept in their own order when ranked by ``error``) and each item's ``Doubt``."""
    doubts = {d.item: d for d in merge(model_findings(rows), audit(ds, store, on_event), *extra)}
    if by == "score":
        pos = {item: i for i, item in enumerate(doubts)}
        rows = sorted(rows, key=lambda r: pos.get(r.item, len(pos)))
    return rows, doubts
