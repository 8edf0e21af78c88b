"""The main window's status bar: the current item's problem, position, cursor pixel, zoom and dataset summary."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QHBoxLayout, QLabel, QStatusBar, QWidget

from engine.core import Dataset
from imgreg_gui.model.state import AppState
from imgreg_gui.words import plural

SAVED_MS = 4000


class StatusField(QWidget):
    """A fixed-width status text: changing it repaints only itself (a QLabel re-lays out the whole status bar)."""

    def __init__(self, widest: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self.setFixedSize(self.fontMetrics().horizontalAdvance(widest) + 20, self.fontMetrics().height() + 6)

    def setText(self, text: str) -> None:  # noqa: N802 (QLabel-compatible name)
        """Show ``text`` (repaints only when it changed)."""
        if text != self._text:
            self._text = text
            self.update()

    def text(self) -> str:
        """The shown text."""
        return self._text

    def paintEvent(self, _ev) -> None:  # noqa: N802 (Qt override)
        """A separator on the left and the centred text."""
        p = QPainter(self)
        p.setPen(QColor("#dfe1e6"))
        p.drawLine(0, 3, 0, self.height() - 3)
        p.setPen(QColor("#4a5160"))
        p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._text)
        p.end()


class StatusBar(QStatusBar):
    """Status bar with permanent fields; ``message`` (and the state's ``message`` signal) shows transient text."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("StatusBar")
        self.problem = QLabel(self)
        self.problem.setObjectName("ProblemLabel")
        self.problem.setVisible(False)
        self.fields = QWidget(self)
        box = QHBoxLayout(self.fields)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        self.position = self._field(
            "Position of the current item in the (filtered) list", "Item 888,888 of 888,888"
        )
        self.pixel = self._field("Image pixel under the cursor (x, y)", "x 88888.8  y 88888.8")
        self.zoom = self._field("Zoom: screen pixels per image pixel (F fits, 1 shows actual size)", "88888%")
        self.summary = self._field(
            "Dataset format, number of items, corrections, verified items and problems"
        )
        self.addWidget(self.problem, 1)
        for w in (self.position, self.pixel, self.zoom, self.summary):
            box.addWidget(w)
        self.addPermanentWidget(self.fields)
        self.set_pixel(math.nan, math.nan)
        self.set_zoom(1.0)
        self._problems_of: tuple[Dataset | None, int] = (None, 0)  # problem count of the open index
        state.message.connect(self.message)

    def _field(self, tip: str, widest: str = "") -> QLabel | StatusField:
        lab: QLabel | StatusField = StatusField(widest, self.fields) if widest else QLabel(self.fields)
        lab.setToolTip(tip)
        lab.setObjectName("StatusField")
        return lab

    def message(self, text: str, ms: int = SAVED_MS) -> None:
        """A transient message on the left."""
        self.showMessage(text, ms)

    def saved(self, names: list[str]) -> None:
        """Say the edit is on disk."""
        what = names[0] if len(names) == 1 else f"{len(names)} items"
        self.showMessage(f"✔ Saved {what}", SAVED_MS)

    def set_problem(self, reason: str | None) -> None:
        """Show (or clear) the current item's problem in red."""
        self.problem.setVisible(bool(reason))
        self.problem.setText(f"⚠ {reason}" if reason else "")
        self.problem.setToolTip(reason or "")

    def set_position(self, index: int | None, total: int) -> None:
        """``Item i of n`` (1-based), or the total alone."""
        if index is None:
            self.position.setText(plural(total, "item") if total else "")
        else:
            self.position.setText(f"Item {index + 1:,} of {total:,}")

    def set_pixel(self, x: float, y: float) -> None:
        """The cursor's image pixel, blank when outside."""
        self.pixel.setText("x —  y —" if math.isnan(x) else f"x {x:7.1f}  y {y:7.1f}")

    def set_zoom(self, s: float) -> None:
        """The zoom in percent."""
        self.zoom.setText(f"{s * 100:.0f}%")

    def show_dataset(self, ds: Dataset, counts: dict[str, int] | None, orphans: int = 0) -> None:
        """The dataset summary: format, items, corrections, verified items, problems, orphans (tooltip: the
        problems)."""
        c = counts or {"corrected": 0, "verified": 0}
        if self._problems_of[0] is not ds:  # the index is fixed once open: count once, not per edit
            bad = {it.name for it in ds.items if it.problem} | {p.item for p in ds.problems}
            self._problems_of = (ds, len(bad))
        probs = self._problems_of[1]
        text = f"{ds.format} · {plural(len(ds.items), 'item')} · {c['corrected']:,} corrected · {c['verified']:,} verified"
        if probs:
            text += f" · {probs:,} problems"
        if orphans:
            text += f" · {orphans:,} orphan{'s' if orphans != 1 else ''}"
        tip = "\n".join([f"{p.item}: {p.reason}" for p in ds.problems[:20]] + ds.notes[:10])
        self.set_summary(text, tip or str(ds.root))

    def set_summary(self, text: str, tip: str = "") -> None:
        """The dataset summary on the right."""
        self.summary.setText(text)
        if tip:
            self.summary.setToolTip(tip)
