"""Canvas overlay items (label cross, prediction circle, distance tag, heatmap image) and the painted legend and
placeholder."""

from __future__ import annotations

import cv2
import numpy as np
import PySide6.QtGui  # noqa: F401  (before qimage2ndarray, which uses the Qt binding already loaded)
import qimage2ndarray
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QLinearGradient, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from imgreg_gui.settings import STATUS_COLORS

LABEL_COLOR = QColor("#4ade80")
LABEL_DARK = QColor("#0b3d1e")
PRED_COLOR = QColor("#ff5a5f")
PRED_DARK = QColor("#4a0d0f")
LINE_COLOR = QColor("#f5c542")
CHIP_BG = QColor(18, 20, 26, 200)
CHIP_FG = QColor("#e8eaf0")
MUTED_FG = QColor("#a9afbc")
WARN_FG = QColor("#ff8a8e")
SYMBOL_COLORS = {
    "expected": "#c084fc",
    "original": "#9ca3af",
    "interval": "#ff5a5f",
    "proposal": STATUS_COLORS["proposed"],
}  # legend rows of marks.py


# Inferno: the dark rim stands out on skin and the pale core marks the peak.
HEAT_STOPS = ((0.0, (0, 0, 4)), (0.15, (40, 11, 84)), (0.3, (101, 21, 110)), (0.45, (159, 42, 99)),
              (0.6, (212, 72, 66)), (0.75, (245, 125, 21)), (0.9, (250, 193, 39)), (1.0, (252, 255, 164)))  # fmt: skip
HEAT_RAMP = 3.0  # opacity reaches its maximum at a third of the peak; fainter cells fade out
HEAT_OPACITY = 0.8
HEAT_UPSAMPLE = 8


def heat_lut(opacity: float = HEAT_OPACITY) -> np.ndarray:
    """A (256, 4) uint8 RGBA colour map: inferno colours, alpha rising with the value (cold cells clear)."""
    v = np.linspace(0, 1, 256)
    pos = np.array([s[0] for s in HEAT_STOPS])
    rgb = np.stack([np.interp(v, pos, [s[1][c] for s in HEAT_STOPS]) for c in range(3)], -1)
    alpha = np.clip(v * HEAT_RAMP, 0, 1) * opacity * 255
    return np.concatenate([rgb, alpha[:, None]], -1).round().astype(np.uint8)


HEAT_LUT = heat_lut()


def heat_contrast(gray: np.ndarray) -> np.ndarray:
    """Values above the map's median, stretched to 0-255: a flat map (a model that localises nothing) shows nothing.

    Stored maps are scaled to their own peak, so without this a near-uniform map would paint the whole image hot.
    """
    g = np.asarray(gray, dtype=np.float32)
    floor, peak = float(np.median(g)), float(g.max(initial=0.0))
    if peak - floor < 8:
        return np.zeros(g.shape, np.uint8)
    return np.clip((g - floor) * (255.0 / (peak - floor)), 0, 255).astype(np.uint8)


def heatmap_image(gray: np.ndarray, size: tuple[int, int]) -> QImage:
    """A small uint8 heatmap ``(h, w)`` as a coloured, semi-transparent RGBA image for an image of ``size`` (W, H).

    Values are upsampled bilinearly (cell centres kept) to at most ``HEAT_UPSAMPLE`` times the map and at most the
    image size before colouring, so the colours are smooth; the caller stretches the result over the image (a
    smooth pixmap item), which keeps drawing it cheap for large images.
    """
    h, w = gray.shape
    tw, th = min(size[0], w * HEAT_UPSAMPLE), min(size[1], h * HEAT_UPSAMPLE)
    big = cv2.resize(heat_contrast(gray), (tw, th), interpolation=cv2.INTER_LINEAR)
    return qimage2ndarray.array2qimage(HEAT_LUT[big])  # RGBA -> ARGB32 with its own pixels


def pen(color: QColor | str, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    """A round-capped pen."""
    return QPen(QColor(color), width, style, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)


class _ScreenItem(QGraphicsItem):
    """A scene item drawn at a constant size on screen (it ignores the view's zoom)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)


class CrossItem(_ScreenItem):
    """The label: a green cross with a dark outline (visible on any image), brighter while active."""

    ARM = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.setZValue(30)

    def boundingRect(self) -> QRectF:
        """Cross extent plus the outline."""
        a = self.ARM + 4
        return QRectF(-a, -a, 2 * a, 2 * a)

    def paint(self, p: QPainter, _opt: QStyleOptionGraphicsItem, _w: QWidget | None = None) -> None:
        """Dark outline, then the green cross, then a one-pixel centre dot."""
        a = self.ARM + (2 if self.active else 0)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for color, width in ((LABEL_DARK, 5.0), (LABEL_COLOR, 2.2)):
            p.setPen(QPen(color, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
            p.drawLine(QPointF(-a, 0), QPointF(-3, 0))
            p.drawLine(QPointF(3, 0), QPointF(a, 0))
            p.drawLine(QPointF(0, -a), QPointF(0, -3))
            p.drawLine(QPointF(0, 3), QPointF(0, a))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(LABEL_COLOR)
        p.drawEllipse(QPointF(0, 0), 1.3, 1.3)


class CircleItem(_ScreenItem):
    """The prediction: a red ring with a dark outline."""

    R = 9.0

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(20)

    def boundingRect(self) -> QRectF:
        """Ring extent plus the outline."""
        r = self.R + 4
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, p: QPainter, _opt: QStyleOptionGraphicsItem, _w: QWidget | None = None) -> None:
        """Outline, ring and centre dot."""
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setBrush(Qt.BrushStyle.NoBrush)
        for color, width in ((PRED_DARK, 4.6), (PRED_COLOR, 2.2)):
            p.setPen(QPen(color, width))
            p.drawEllipse(QPointF(0, 0), self.R, self.R)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(PRED_COLOR)
        p.drawEllipse(QPointF(0, 0), 1.3, 1.3)


class TagItem(_ScreenItem):
    """A small rounded text tag (the label-to-prediction distance)."""

    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self.font = QFont()
        self.font.setPointSizeF(9)
        self.font.setBold(True)
        self.setZValue(40)

    def set_text(self, text: str) -> None:
        """Change the text and repaint."""
        self.prepareGeometryChange()
        self.text = text
        self.update()

    def _rect(self) -> QRectF:
        w = QFontMetricsF(self.font).horizontalAdvance(self.text) + 12
        h = QFontMetricsF(self.font).height() + 4
        return QRectF(8, -h - 6, w, h)

    def boundingRect(self) -> QRectF:
        """The tag's rectangle, offset up-right of its anchor."""
        return self._rect().adjusted(-1, -1, 1, 1)

    def paint(self, p: QPainter, _opt: QStyleOptionGraphicsItem, _w: QWidget | None = None) -> None:
        """Rounded dark chip with light text."""
        r = self._rect()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(LINE_COLOR, 1))
        p.setBrush(CHIP_BG)
        p.drawRoundedRect(r, 4, 4)
        p.setFont(self.font)
        p.setPen(CHIP_FG)
        p.drawText(r, Qt.AlignmentFlag.AlignCenter, self.text)


def _chip_font() -> QFont:
    font = QFont()
    font.setPointSizeF(9.5)
    return font


def chip_size(rows: list[tuple[str, str]], max_width: float | None = None) -> tuple[float, float]:
    """The (width, height) ``draw_chip`` gives these rows."""
    fm = QFontMetricsF(_chip_font())
    line_h = max(fm.height(), 16) + 4
    sym_w = 24 if any(sym not in ("none", "hint") for sym, _ in rows) else 0
    width = max((fm.horizontalAdvance(text) for _, text in rows), default=0) + sym_w + 22
    if max_width is not None:
        width = min(width, max(max_width, 120.0))
    return width, line_h * len(rows) + 12


def draw_chip(
    p: QPainter,
    anchor: QPointF,
    rows: list[tuple[str, str]],
    corner: str = "bottom-left",
    max_width: float | None = None,
) -> QRectF:
    """Draw a legend chip at a viewport corner; each row is (symbol, text), symbol cross/ring/line/heat/warn/none."""
    font = _chip_font()
    fm = QFontMetricsF(font)
    line_h = max(fm.height(), 16) + 4
    sym_w = 24 if any(sym not in ("none", "hint") for sym, _ in rows) else 0
    width, height = chip_size(rows, max_width)
    x = anchor.x() if "left" in corner else anchor.x() - width
    y = anchor.y() - height if "bottom" in corner else anchor.y()
    box = QRectF(x, y, width, height)
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(CHIP_BG)
    p.drawRoundedRect(box, 7, 7)
    p.setFont(font)
    for i, (symbol, text) in enumerate(rows):
        cy = y + 6 + line_h * i + line_h / 2
        sx = x + 10 + sym_w / 2 - 4
        _draw_symbol(p, symbol, QPointF(sx, cy))
        p.setPen(WARN_FG if symbol == "warn" else MUTED_FG if symbol == "hint" else CHIP_FG)
        rect = QRectF(x + 10 + sym_w, cy - line_h / 2, width - sym_w - 14, line_h)
        text = fm.elidedText(text, Qt.TextElideMode.ElideMiddle, rect.width())
        p.drawText(rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
    p.restore()
    return box


def _draw_symbol(p: QPainter, symbol: str, c: QPointF) -> None:
    """The small legend symbol for a row."""
    if symbol == "cross":
        for color, width in ((LABEL_DARK, 4.0), (LABEL_COLOR, 2.0)):
            p.setPen(pen(color, width))
            p.drawLine(QPointF(c.x() - 6, c.y()), QPointF(c.x() + 6, c.y()))
            p.drawLine(QPointF(c.x(), c.y() - 6), QPointF(c.x(), c.y() + 6))
    elif symbol == "ring":
        p.setBrush(Qt.BrushStyle.NoBrush)
        for color, width in ((PRED_DARK, 4.0), (PRED_COLOR, 2.0)):
            p.setPen(QPen(color, width))
            p.drawEllipse(c, 5.5, 5.5)
    elif symbol == "warn":
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#e5484d"))
        p.drawEllipse(c, 7, 7)
        p.setPen(pen("white", 2.0))
        p.drawLine(QPointF(c.x(), c.y() - 3.5), QPointF(c.x(), c.y() + 0.5))
        p.drawPoint(QPointF(c.x(), c.y() + 3.5))
    elif symbol == "heat":
        grad = QLinearGradient(QPointF(c.x() - 8, c.y()), QPointF(c.x() + 8, c.y()))
        for t, rgb in HEAT_STOPS:
            grad.setColorAt(t, QColor(*rgb))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(grad)
        p.drawRoundedRect(QRectF(c.x() - 8, c.y() - 5, 16, 10), 3, 3)
    elif symbol == "line":
        p.setPen(QPen(LINE_COLOR, 2, Qt.PenStyle.DashLine))
        p.drawLine(QPointF(c.x() - 8, c.y()), QPointF(c.x() + 8, c.y()))
    elif (
        symbol in SYMBOL_COLORS
    ):  # ghost markers (imgreg_gui.marks): a dashed cross; the interval: a dashed ring
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(SYMBOL_COLORS[symbol]), 1.8, Qt.PenStyle.DashLine))
        if symbol == "interval":
            p.drawEllipse(c, 6.5, 6.5)
        else:
            p.drawLine(QPointF(c.x() - 7, c.y()), QPointF(c.x() + 7, c.y()))
            p.drawLine(QPointF(c.x(), c.y() - 7), QPointF(c.x(), c.y() + 7))


def draw_placeholder(p: QPainter, rect: QRectF, title: str, detail: str, broken: bool) -> None:
    """A centred card saying why there is no image (broken file, loading, nothing open)."""
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    c = rect.center()
    icon = QRectF(c.x() - 34, c.y() - 90, 68, 54)
    p.setPen(QPen(QColor("#e5484d") if broken else MUTED_FG, 2.4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    if broken:
        path = QPainterPath()
        path.moveTo(icon.left() + 40, icon.top())
        path.lineTo(icon.left(), icon.top())
        path.lineTo(icon.left(), icon.bottom())
        path.lineTo(icon.left() + 28, icon.bottom())
        path.lineTo(icon.left() + 36, icon.top() + 34)
        path.lineTo(icon.left() + 28, icon.top() + 18)
        path.lineTo(icon.left() + 40, icon.top())
        path.moveTo(icon.left() + 48, icon.top())
        path.lineTo(icon.right(), icon.top())
        path.lineTo(icon.right(), icon.bottom())
        path.lineTo(icon.left() + 40, icon.bottom())
        path.lineTo(icon.left() + 46, icon.top() + 32)
        path.lineTo(icon.left() + 38, icon.top() + 18)
        path.lineTo(icon.left() + 48, icon.top())
        p.drawPath(path)
    else:
        p.drawRoundedRect(icon, 6, 6)
        p.drawEllipse(QPointF(icon.left() + 18, icon.top() + 16), 5, 5)
        p.drawPolyline(
            [
                QPointF(icon.left() + 6, icon.bottom() - 6),
                QPointF(icon.left() + 26, icon.top() + 26),
                QPointF(icon.left() + 38, icon.bottom() - 14),
                QPointF(icon.left() + 46, icon.top() + 30),
                QPointF(icon.right() - 6, icon.bottom() - 6),
            ]
        )
    font = QFont()
    font.setPointSizeF(13)
    font.setBold(True)
    p.setFont(font)
    p.setPen(CHIP_FG)
    p.drawText(
        QRectF(rect.left() + 20, c.y() - 24, rect.width() - 40, 28), Qt.AlignmentFlag.AlignCenter, title
    )
    font.setPointSizeF(10)
    font.setBold(False)
    p.setFont(font)
    p.setPen(MUTED_FG)
    p.drawText(
        QRectF(rect.left() + 40, c.y() + 8, rect.width() - 80, 80),
        Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
        detail,
    )
    p.restore()
