"""Secondary canvas marks, reusable by any view that suggests a position: ghost markers (where a check expects
the label, where the label was before a correction, a proposal), the line from the label to a ghost, interval
circles around a prediction (radius in image pixels) and the interval bar of a scalar."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsLineItem, QStyleOptionGraphicsItem, QWidget

from imgreg_gui.overlays import (
    CHIP_BG,
    CHIP_FG,
    LABEL_COLOR,
    MUTED_FG,
    PRED_COLOR,
    SYMBOL_COLORS,
    _ScreenItem,
)

EXPECTED_COLOR = QColor(SYMBOL_COLORS["expected"])  # violet: where a check expects the label
ORIGINAL_COLOR = QColor(SYMBOL_COLORS["original"])  # grey: where the label was before the correction
PROPOSAL_COLOR = QColor(SYMBOL_COLORS["proposal"])  # sky blue: an unlabelled item's prediction, Enter accepts
INTERVAL_COLOR = QColor(255, 90, 95, 170)  # the prediction's red, translucent


class GhostItem(_ScreenItem):
    """A hollow dashed cross in ``color``: a suggested or former position, never dragged."""

    ARM = 9.0

    def __init__(self, color: QColor = EXPECTED_COLOR, z: float = 25) -> None:
        super().__init__()
        self.color = QColor(color)
        self.setZValue(z)

    def boundingRect(self) -> QRectF:
        """Cross extent plus the outline."""
        a = self.ARM + 4
        return QRectF(-a, -a, 2 * a, 2 * a)

    def paint(self, p: QPainter, _opt: QStyleOptionGraphicsItem, _w: QWidget | None = None) -> None:
        """A dark outline under a dashed cross, and an open centre ring."""
        a = self.ARM
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setBrush(Qt.BrushStyle.NoBrush)
        for color, width, style in ((QColor(0, 0, 0, 150), 4.0, Qt.PenStyle.SolidLine),
                                    (self.color, 1.8, Qt.PenStyle.DashLine)):  # fmt: skip
            p.setPen(QPen(color, width, style, Qt.PenCapStyle.FlatCap))
            p.drawLine(QPointF(-a, 0), QPointF(-3.5, 0))
            p.drawLine(QPointF(3.5, 0), QPointF(a, 0))
            p.drawLine(QPointF(0, -a), QPointF(0, -3.5))
            p.drawLine(QPointF(0, 3.5), QPointF(0, a))
            p.drawEllipse(QPointF(0, 0), 3.0, 3.0)


def proposal_marker() -> GhostItem:
    """A proposal: the dashed cross in sky blue, above the other ghosts (it is dragged to correct it)."""
    return GhostItem(PROPOSAL_COLOR, z=26)


def ghost_line(color: QColor = EXPECTED_COLOR) -> QGraphicsLineItem:
    """A dotted line from the label to a ghost (cosmetic: the same width at any zoom)."""
    line = QGraphicsLineItem()
    pen = QPen(color, 1.6, Qt.PenStyle.DotLine)
    pen.setCosmetic(True)
    line.setPen(pen)
    line.setZValue(9)
    line.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
    return line


def interval_circle() -> QGraphicsEllipseItem:
    """A circle in image pixels (it grows with the zoom), dashed, for a prediction's interval."""
    item = QGraphicsEllipseItem()
    pen = QPen(INTERVAL_COLOR, 1.4, Qt.PenStyle.DashLine)
    pen.setCosmetic(True)
    item.setPen(pen)
    item.setBrush(QColor(255, 90, 95, 28))
    item.setZValue(8)
    item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
    return item


def place_circle(item: QGraphicsEllipseItem, centre: QPointF, radius: float) -> None:
    """Centre ``item`` on ``centre`` with ``radius`` image pixels."""
    item.setRect(QRectF(centre.x() - radius, centre.y() - radius, 2 * radius, 2 * radius))


def draw_interval_bar(
    p: QPainter,
    rect: QRectF,
    lo: float,
    hi: float,
    label: float | None,
    pred: float | None,
    expected: float | None = None,
) -> None:
    """A scalar's interval as a horizontal bar in ``rect`` (viewport pixels): the band lo-hi, ticks for the
    prediction (red), the label (green) and the expected value (violet), the ends' values written under it."""
    vals = [v for v in (lo, hi, label, pred, expected) if v is not None]
    a, b = min(vals), max(vals)
    pad = max((b - a) * 0.1, 1e-6)
    a, b = a - pad, b + pad
    x0, x1 = rect.left() + 10, rect.right() - 10
    cy = rect.top() + 14

    def x(v: float) -> float:
        return x0 + (v - a) / (b - a) * (x1 - x0)

    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(CHIP_BG)
    p.drawRoundedRect(rect, 7, 7)
    p.setPen(QPen(MUTED_FG, 1.0))
    p.drawLine(QPointF(x0, cy), QPointF(x1, cy))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(INTERVAL_COLOR)
    p.drawRoundedRect(QRectF(x(lo), cy - 5, max(x(hi) - x(lo), 2.0), 10), 3, 3)
    for v, color, h in ((pred, PRED_COLOR, 9), (expected, EXPECTED_COLOR, 9), (label, LABEL_COLOR, 12)):
        if v is not None:
            p.setPen(QPen(color, 3.0, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
            p.drawLine(QPointF(x(v), cy - h), QPointF(x(v), cy + h))
    font = QFont()
    font.setPointSizeF(8.5)
    p.setFont(font)
    p.setPen(CHIP_FG)
    for v, align in ((lo, Qt.AlignmentFlag.AlignRight), (hi, Qt.AlignmentFlag.AlignLeft)):
        r = QRectF(x(v) - 60, cy + 8, 60, 16) if v == lo else QRectF(x(v), cy + 8, 60, 16)
        p.drawText(r, align | Qt.AlignmentFlag.AlignVCenter, f"{v:.4g}")
    p.restore()
