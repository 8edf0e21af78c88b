"""The canvas legend's rows (pure: no painting): what each drawn mark means for the current item, in words."""

from __future__ import annotations

from typing import Protocol

from engine.core import Label
from imgreg_gui.model.items import format_label, label_distance

PROPOSAL_TIP = "Proposal: press Enter to accept (drag it to correct it first)"
PROPOSAL_SCALAR_TIP = "Proposal: press Enter to accept (or type the value)"
SOURCE_TEXT = {"original": "original", "corrected": "corrected", "prediction": "accepted prediction"}


class Shown(Protocol):
    """What the canvas shows of the current item (``ImageCanvas`` has these fields)."""

    kind: str
    source: str
    verified: bool
    run_id: str | None
    stale: bool
    pred: Label | None
    proposal: bool
    interval: tuple[float, ...] | None
    original: Label | None
    expected: Label | None
    why: str
    show_label: bool
    show_pred: bool
    show_line: bool
    show_hint: bool


def legend_rows(
    c: Shown, label: Label | None, spread: float | None, heat_shown: bool
) -> list[tuple[str, str]]:
    """``(symbol, text)`` rows: the label and its source, the prediction or proposal, interval, error, the
    original and expected positions, hints; ``spread`` is the heatmap's when it matches the image."""
    state = SOURCE_TEXT.get(c.source, c.source) + (", verified" if c.verified else "")
    run = f"run {c.run_id}" if c.run_id else "prediction"
    if c.stale:
        run = f"stale, {run}"  # first, so a narrow legend never elides it
    rows: list[tuple[str, str]] = []
    if c.kind == "scalar":
        rows.append(("none", f"Label  {format_label(label, 'scalar')}   ({state})"))
        if c.original is not None:
            rows.append(("original", f"Was  {format_label(c.original, 'scalar')}   (original)"))
        if c.pred is not None and c.proposal:
            rows.append(("proposal", f"Proposal  {format_label(c.pred, 'scalar')}   ({run})"))
            rows.append(("hint", PROPOSAL_SCALAR_TIP))
        elif c.pred is not None:
            rows.append(("none", f"Prediction  {format_label(c.pred, 'scalar')}   ({run})"))
        if c.pred is not None:
            if c.interval and len(c.interval) == 2:
                lo, hi = c.interval
                rows.append(("interval", f"Interval  {lo:.4g} – {hi:.4g}"))
            dist = label_distance(label, c.pred)
            if dist is not None:
                rows.append(("none", f"Error  {dist:.2f}"))
        if c.expected is not None:
            rows.append(("expected", f"Expected  {format_label(c.expected, 'scalar')}   (G accepts)"))
            rows.append(("hint", c.why.splitlines()[0]))
        return rows
    if c.show_label:
        where = f"  {format_label(label)}" if label is not None and len(label) == 2 else ""
        rows.append(
            ("cross", f"Label{where}  ({state})" if label is not None else "No label: click to place one")
        )
    if c.show_pred and c.pred is not None and c.proposal:
        rows.append(("proposal", f"Proposal  {format_label(c.pred)}  ({run})"))
        rows.append(("hint", PROPOSAL_TIP))
    elif c.show_pred and c.pred is not None:
        rows.append(("ring", f"Prediction  {format_label(c.pred)}  ({run})"))
        if spread is not None:
            rows.append(
                (
                    "heat" if heat_shown else "none",
                    f"{'Heatmap  s' if heat_shown else 'S'}pread {spread:.1f} px",
                )
            )
    if c.show_pred and c.pred is not None and c.interval and len(c.interval) * 2 == len(c.pred):
        r = ", ".join(f"{v:.1f}" for v in c.interval)
        rows.append(("interval", f"Interval  radius {r} px"))
    dist = label_distance(label, c.pred)
    if c.show_line and c.show_label and c.show_pred and dist is not None:
        rows.append(("line", f"Error  {dist:.1f} px"))
    if c.show_label and c.original is not None:
        rows.append(("original", f"Was  {format_label(c.original)}  (original label)"))
    if c.show_label and c.expected is not None:
        off = label_distance(label, c.expected)
        far = f", {off:.1f} px away" if off is not None else ""
        rows.append(("expected", f"Expected  {format_label(c.expected)}{far}  (G accepts)"))
        rows.append(("hint", c.why.splitlines()[0]))
    if c.show_hint and c.show_label and label is not None:
        rows.append(("hint", "Drag the cross · Ctrl+click to place · arrows nudge"))
    return rows
