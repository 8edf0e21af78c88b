"""The image canvas: zoom, pan, the label cross, the prediction ring, the error line, and dragging a new centre.

Scene coordinates are original-image pixels (floats), so a label ``(x, y)`` sits at scene point ``(x, y)``.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsLineItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from engine.core import Label
from imgreg_gui import interaction
from imgreg_gui.interaction import Drag
from imgreg_gui.legend import PROPOSAL_SCALAR_TIP, PROPOSAL_TIP, legend_rows
from imgreg_gui.marks import (
    ORIGINAL_COLOR,
    GhostItem,
    draw_interval_bar,
    ghost_line,
    interval_circle,
    place_circle,
    proposal_marker,
)
from imgreg_gui.model.items import label_distance
from imgreg_gui.model.state import Annotations, AppState
from imgreg_gui.overlays import (
    LINE_COLOR,
    CircleItem,
    CrossItem,
    TagItem,
    chip_size,
    draw_chip,
    draw_placeholder,
    heatmap_image,
)

ZOOM_MIN, ZOOM_MAX, ZOOM_STEP = 0.02, 64.0, 1.25


class ImageCanvas(QGraphicsView):
    """Shows the state's current image with its ``Annotations``; the user drags or places the label (the rules
    of which live in ``imgreg_gui.interaction``).

    Signals: ``label_edited(name, label)`` once per drag or placement (on mouse release), ``cursor_moved(x, y)``
    in image pixels (NaN when outside), ``zoom_changed(scale)``, ``image_shown(name)`` when an image is on screen.
    """

    label_edited = Signal(str, object)
    cursor_moved = Signal(float, float)
    zoom_changed = Signal(float)
    image_shown = Signal(str)
    place_mode_ended = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ImageCanvas")
        self.state = state
        self.scene_ = QGraphicsScene(self)
        self.setScene(self.scene_)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor("#1b1e24"))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        # Overlays are painted in viewport coordinates, so every repaint must be a full one.
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        # No scroll bars (drag pans): bars that come and go resize the viewport and shift the image under a
        # still cursor while the wheel zooms.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setToolTip("")

        self.pix_item = QGraphicsPixmapItem()
        self.pix_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene_.addItem(self.pix_item)
        # The run's heatmap: above the image, under the line (z 10), rings and crosses.
        self.heat_item = QGraphicsPixmapItem()
        self.heat_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.heat_item.setZValue(5)
        self.heat_item.setVisible(False)
        self.heat_item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.scene_.addItem(self.heat_item)
        self.heat_key: tuple[str, str] | None = None  # (item, run) the heatmap and spread belong to
        self.heat_gray: np.ndarray | None = None
        self.spread: float | None = None
        self.show_heat = False
        self._heat_serial = 0  # bumped by every set_heatmap: tells when the coloured pixmap must be rebuilt
        self._heat_built: tuple | None = None
        self.lines: list[QGraphicsLineItem] = []
        self.crosses: list[CrossItem] = []
        self.rings: list[CircleItem] = []
        self.ghosts: list[GhostItem] = []  # where the doubt expects the label
        self.ghost_lines: list[QGraphicsLineItem] = []
        self.origs: list[GhostItem] = []  # where the label was before the correction
        self.circles: list = []  # the prediction's interval, one circle per point
        self.proposals: list[GhostItem] = []  # an unlabelled item's prediction, drawn instead of its rings
        self.tag = TagItem()
        self.tag.setVisible(False)
        self.scene_.addItem(self.tag)

        self.name: str | None = None
        self.kind = "point"
        self.image_size: tuple[int, int] | None = None
        self.label: Label | None = None
        self.pred: Label | None = None
        self.source = "original"
        self.verified = False
        self.run_id: str | None = None
        self.problem: tuple[str, str] | None = (
            "No dataset open",
            "Open a dataset folder with File ▸ Open dataset (Ctrl+O).",
        )
        self.show_label = self.show_pred = self.show_line = True
        self.show_hint = True
        self.place_mode = False
        self.active_point = 0
        self.fit_mode = True
        self.pending = False
        self.note: str | None = None
        self.stale = False  # the prediction is of an older version of the image
        self.expected: Label | None = None
        self.why = ""
        self.interval: tuple[float, ...] | None = None
        self.original: Label | None = None
        self.proposal = False  # the prediction is a proposal: the item has no label yet
        self.image_error: str | None = None

        self.legend_rect: QRectF | None = None  # where the legend was last drawn (None: not drawn)
        self._drag: Drag | None = None
        self._pan_from: QPointF | None = None
        self._space = False
        self._loading_timer = QTimer(self, singleShot=True, interval=150)
        self._loading_timer.timeout.connect(self._show_loading)
        state.records_changed.connect(lambda names: self._follow_state() if state.current in names else None)
        state.active_run_changed.connect(self._follow_state)
        state.doubts_changed.connect(self._follow_state)

    def _follow_state(self, *_args: object) -> None:
        """Draw the state's current annotations."""
        if self.state.current is not None:
            self.set_annotations(self.state.annotations())

    # -- content ---------------------------------------------------------------------------------------

    def begin_item(self, name: str) -> None:
        """A new item is on its way: keep the old picture briefly, then say 'Loading…' if it is slow."""
        self.name = name
        self.pending = True
        self._drag = None
        self.pix_item.setOpacity(0.35)
        self._layout_overlays()
        self._loading_timer.start()

    def set_image(self, name: str, img: QImage | None, reason: str | None = None) -> None:
        """Show the decoded image of ``name`` (or a placeholder with ``reason`` when it could not be read)."""
        self._loading_timer.stop()
        self.name = name
        self.pending = False
        self.pix_item.setOpacity(1.0)
        if img is None or img.isNull():
            self.pix_item.setPixmap(QPixmap())
            self.image_size = None
            self.image_error = reason or "cannot decode image"
            self.problem = (
                "Cannot show this image",
                f"{reason or 'The file could not be decoded.'}\n\n{name}",
            )
            self.scene_.setSceneRect(QRectF(0, 0, 1, 1))
            self.setSceneRect(QRectF())  # the view follows the scene again (fit() sets its own)
        else:
            size = (img.width(), img.height())
            self.pix_item.setPixmap(QPixmap.fromImage(img))
            self.problem = self.image_error = None
            if size != self.image_size:
                self.image_size = size
                self.scene_.setSceneRect(QRectF(0, 0, *size))
                self.fit_mode = True
            if self.fit_mode:
                self.fit()
        self._layout_overlays()
        self.viewport().update()
        self.image_shown.emit(name)

    def set_message(self, title: str, detail: str) -> None:
        """Show a message instead of an image (no dataset, empty dataset)."""
        self._loading_timer.stop()
        self.name = None
        self.pending = False
        self.pix_item.setPixmap(QPixmap())
        self.image_size = None
        self.image_error = None
        self.label = self.pred = self.expected = self.original = self.interval = None
        self.problem = (title, detail)
        self._layout_overlays()
        self.viewport().update()

    def set_annotations(self, ann: Annotations | None) -> None:
        """Draw these annotations (None: nothing); cancels a drag."""
        ann = ann or Annotations()
        self.note = ann.note
        self.stale = ann.stale
        stale_tip = f"Stale prediction: the image changed on disk since run {ann.run_id} predicted it"
        why = f"Doubted: {ann.why}" if ann.why else ""
        prop = (PROPOSAL_SCALAR_TIP if ann.kind == "scalar" else PROPOSAL_TIP) if ann.proposal else ""
        self.setToolTip("\n".join(t for t in (stale_tip if ann.stale else "", prop, why) if t))
        self.proposal = ann.proposal
        self.expected, self.why, self.interval, self.original = (
            ann.expected,
            ann.why,
            ann.interval,
            ann.original,
        )
        self.label = tuple(ann.label) if ann.label is not None else None
        self.pred = tuple(ann.pred) if ann.pred is not None else None
        self.source, self.verified, self.run_id, self.kind = ann.source, ann.verified, ann.run_id, ann.kind
        self._drag = None
        n = len(self.label) // 2 if self.label and self.kind == "point" else 1
        self.active_point = min(self.active_point, max(n - 1, 0))
        self._layout_overlays()
        self.viewport().update()

    def set_visibility(
        self, label: bool | None = None, pred: bool | None = None, line: bool | None = None
    ) -> None:
        """Show or hide the label, the prediction and the error line."""
        if label is not None:
            self.show_label = label
        if pred is not None:
            self.show_pred = pred
        if line is not None:
            self.show_line = line
        self._layout_overlays()
        self.viewport().update()

    def set_heatmap(
        self, name: str | None, run_id: str | None, gray: np.ndarray | None, spread: float | None, show: bool
    ) -> None:
        """The heatmap (uint8 ``(h, w)``, spanning the whole image) and spread of item ``name``'s prediction by
        ``run_id``; shown while ``show`` and while that item and run are on the canvas."""
        self.heat_key = (name, run_id) if name and run_id else None
        self.heat_gray, self.spread, self.show_heat = gray, spread, show
        self._heat_serial += 1
        self._layout_overlays()
        self.viewport().update()

    def _heat_matches(self) -> bool:
        return self.heat_key is not None and self.heat_key == (self.name, self.run_id)

    def _layout_heatmap(self) -> None:
        """Stretch the heatmap over the image (cell edges on image pixels: the map spans the squished input)."""
        gray = self.heat_gray if self._heat_matches() else None
        show = (
            self.show_heat and self.show_pred and gray is not None and self.pred is not None
            and self.image_size is not None and self.kind == "point" and not self.pending
        )  # fmt: skip
        self.heat_item.setVisible(show)
        if not show or gray is None or self.image_size is None:
            return
        key = (self._heat_serial, self.image_size)
        if key != self._heat_built:
            img = heatmap_image(gray, self.image_size)
            self.heat_item.setPixmap(QPixmap.fromImage(img))
            w, h = self.image_size
            self.heat_item.setTransform(QTransform.fromScale(w / img.width(), h / img.height()))
            self._heat_built = key

    def heat_visible(self) -> bool:
        """Whether a heatmap is drawn now."""
        return self.heat_item.isVisible()

    def shown_label(self) -> Label | None:
        """The label as drawn now (mid-drag position included)."""
        return tuple(self._drag.label) if self._drag is not None else self.label

    def next_point(self) -> None:
        """Select the next point of a multi-point label (for nudging)."""
        if self.label and len(self.label) > 2:
            self.active_point = (self.active_point + 1) % (len(self.label) // 2)
            self._layout_overlays()
            self.viewport().update()

    # -- overlays ----------------------------------------------------------------------------------------

    @staticmethod
    def _points(label: Label | None) -> list[QPointF]:
        return [QPointF(x, y) for x, y in interaction.points(label)]

    def _sync_count(self, items: list, n: int, factory) -> None:
        while len(items) < n:
            item = factory()
            self.scene_.addItem(item)
            items.append(item)
        for i, item in enumerate(items):
            item.setVisible(i < n)

    def _layout_overlays(self) -> None:
        """Place the heatmap, crosses, rings, lines and the distance tag for the current label and prediction."""
        self._layout_heatmap()
        has_img = self.image_size is not None and self.kind == "point" and not self.pending
        lab = self._points(self.shown_label()) if has_img and self.show_label else []
        pred = self._points(self.pred) if has_img and self.show_pred else []
        self._sync_count(self.crosses, len(lab), CrossItem)
        props = pred if self.proposal and self.label is None else []
        self._sync_count(self.rings, 0 if props else len(pred), CircleItem)
        self._sync_count(self.proposals, len(props) if self._drag is None else 0, proposal_marker)
        for prop, pt in zip(self.proposals, props):
            prop.setPos(pt)
        for i, (item, pt) in enumerate(zip(self.crosses, lab)):
            item.setPos(pt)
            item.active = len(lab) > 1 and i == self.active_point
            item.update()
        for ring, pt in zip(self.rings, pred):
            ring.setPos(pt)
        pairs = list(zip(lab, pred)) if self.show_line and len(lab) == len(pred) else []

        def make_line() -> QGraphicsLineItem:
            line = QGraphicsLineItem()
            pen = QPen(LINE_COLOR, 1.8, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            line.setPen(pen)
            line.setZValue(10)
            return line

        self._sync_count(self.lines, len(pairs), make_line)
        for line, (a, b) in zip(self.lines, pairs):
            line.setLine(a.x(), a.y(), b.x(), b.y())
        self._layout_marks(lab, pred, has_img)
        dist = label_distance(self.shown_label(), self.pred) if pairs else None
        self.tag.setVisible(dist is not None)
        if dist is not None:
            a, b = pairs[0]
            self.tag.setPos((a + b) / 2)
            self.tag.set_text(f"{dist:.1f} px")

    def _layout_marks(self, lab: list[QPointF], pred: list[QPointF], has_img: bool) -> None:
        """The ghost of the expected position with a line from the label, the ghost of the original label, and
        the interval circles around the prediction."""
        exp = self._points(self.expected) if has_img and self.show_label else []
        orig = self._points(self.original) if has_img and self.show_label else []
        radii = list(self.interval or ()) if pred and len(self.interval or ()) == len(pred) else []
        self._sync_count(self.ghosts, len(exp), GhostItem)
        self._sync_count(self.origs, len(orig), lambda: GhostItem(ORIGINAL_COLOR, z=24))
        self._sync_count(self.circles, len(radii), interval_circle)
        pairs = list(zip(lab, exp)) if len(lab) == len(exp) else []
        self._sync_count(self.ghost_lines, len(pairs), ghost_line)
        for item, pt in zip(self.ghosts, exp):
            item.setPos(pt)
        for item, pt in zip(self.origs, orig):
            item.setPos(pt)
        for item, pt, r in zip(self.circles, pred, radii):
            place_circle(item, pt, r)
        for line, (a, b) in zip(self.ghost_lines, pairs):
            line.setLine(a.x(), a.y(), b.x(), b.y())

    def drawForeground(self, p: QPainter, rect: QRectF | QRect) -> None:
        """The legend, the item header and placeholders, in viewport coordinates."""
        super().drawForeground(p, rect)
        p.save()
        p.resetTransform()
        vp = QRectF(self.viewport().rect())
        if self.problem is not None:
            title, detail = self.problem
            draw_placeholder(p, vp, title, detail, broken=title.startswith("Cannot"))
        if self.name and self.image_size is not None:
            header = [("none", f"{self.name}   {self.image_size[0]} × {self.image_size[1]}")]
            if self.note:
                header = [("none", header[0][1]), ("warn", self.note)]
            head = draw_chip(p, QPointF(10, 10), header, corner="top-left", max_width=vp.width() - 20)
            self.legend_rect = self._place_legend(vp, head.bottom())
            if self.legend_rect is not None:
                r = self.legend_rect
                draw_chip(p, r.topLeft(), self._legend_rows(), corner="top-left", max_width=r.width())
                if self.kind == "scalar" and self.interval and len(self.interval) == 2:
                    top = (
                        r.bottom() + 6 if r.bottom() + 46 <= vp.height() else r.top() - 46
                    )  # below, or above
                    bar = QRectF(r.left(), top, max(r.width(), 220.0), 40)
                    lab, pred, exp = self.shown_label(), self.pred, self.expected
                    draw_interval_bar(
                        p, bar, self.interval[0], self.interval[1], lab[0] if lab else None,
                        pred[0] if pred else None, exp[0] if exp else None,
                    )  # fmt: skip
        else:
            self.legend_rect = None
        p.restore()

    def marker_points(self) -> list[tuple[float, float]]:
        """The view positions of the drawn label and prediction markers."""
        marks = self.crosses + self.rings + self.ghosts + self.origs + self.proposals
        pts = [it.pos() for it in marks if it.isVisible()]
        return [(v.x(), v.y()) for v in (self.mapFromScene(pt) for pt in pts)]

    def _place_legend(self, vp: QRectF, top: float) -> QRectF | None:
        """Where the legend goes so it covers no marker (None: no room, it is not drawn)."""
        rows = self._legend_rows()
        if not rows:
            return None
        size = chip_size(rows, vp.width() - 20)
        r = interaction.legend_rect((vp.width(), vp.height()), size, self.marker_points(), top)
        return None if r is None else QRectF(*r)

    def _legend_rows(self) -> list[tuple[str, str]]:
        """The legend's ``(symbol, text)`` rows for what is drawn now (``imgreg_gui.legend``)."""
        spread = self.spread if self._heat_matches() else None
        return legend_rows(self, self.shown_label(), spread, self.heat_visible())

    def _show_loading(self) -> None:
        self.pix_item.setPixmap(QPixmap())
        self.image_size = None
        self.problem = ("Loading…", self.name or "")
        self._layout_overlays()
        self.viewport().update()

    # -- zoom ----------------------------------------------------------------------------------------------

    def scale_factor(self) -> float:
        """The current zoom (screen pixels per image pixel)."""
        return self.transform().m11()

    def set_scale(self, s: float, anchor_under_mouse: bool = False) -> None:
        """Set the zoom, clamped to sensible limits; turns fit mode off."""
        s = min(max(s, ZOOM_MIN), ZOOM_MAX)
        anchor = self.transformationAnchor()
        if not anchor_under_mouse:
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setTransform(QTransform.fromScale(s, s))
        self.setTransformationAnchor(anchor)
        self.fit_mode = False
        self._after_zoom()

    def zoom_in(self) -> None:
        """Zoom in one step around the view centre."""
        self.set_scale(self.scale_factor() * ZOOM_STEP)

    def zoom_out(self) -> None:
        """Zoom out one step around the view centre."""
        self.set_scale(self.scale_factor() / ZOOM_STEP)

    def actual_size(self) -> None:
        """One image pixel per screen pixel."""
        self.set_scale(1.0)

    def fit(self) -> None:
        """Fit the whole image in the view (and keep fitting as the window resizes)."""
        if self.image_size is not None:
            margin = 8
            w, h = self.image_size
            # Room above it for the header and below it for the legend, so that neither covers the image.
            vp_w, vp_h = self.viewport().width(), self.viewport().height()
            legend = chip_size(self._legend_rows() or [("none", "Label")], vp_w - 20)[1] + interaction.MARGIN
            header = chip_size([("none", "Header")])[1] + interaction.MARGIN
            bottom = legend if vp_h - legend - header > 0.6 * vp_h else 0.0
            top = header if bottom else 0.0
            vw, vh = max(vp_w - 2 * margin, 1), max(vp_h - 2 * margin - top - bottom, 1)
            s = min(vw / w, vh / h)
            self.setTransform(QTransform.fromScale(s, s))
            # The scene reaches beyond the image by that room, so centring puts the image between the chips.
            scene = QRectF(0, -top / s, w, h + (top + bottom) / s)
            self.setSceneRect(scene)
            self.centerOn(scene.center())
        self.fit_mode = True
        self._after_zoom()

    def _after_zoom(self) -> None:
        # Below 2x smooth scaling looks best; above it, show crisp pixels so a centre can be placed precisely.
        smooth = self.scale_factor() < 2
        mode = (
            Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
        )
        self.pix_item.setTransformationMode(mode)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        self.zoom_changed.emit(self.scale_factor())

    def resizeEvent(self, ev) -> None:
        """Refit on resize while in fit mode."""
        super().resizeEvent(ev)
        if self.fit_mode:
            self.fit()

    def wheelEvent(self, ev) -> None:
        """Wheel zooms around the cursor: the image point under it stays under it."""
        steps = ev.angleDelta().y() / 120
        if steps:
            self.zoom_at(self.scale_factor() * ZOOM_STEP**steps, ev.position())
        ev.accept()

    def zoom_at(self, s: float, pos: QPointF) -> None:
        """Zoom to ``s`` keeping the scene point under viewport position ``pos`` there (as far as scrolling can).

        Qt's AnchorUnderMouse uses the last mouse *move* the view saw, which our own move handler never passes
        on: so the anchor is computed here from the event's position."""
        fixed = self.viewportTransform().inverted()[0].map(pos)
        if self.image_size is not None:  # room to scroll on every side, so the point can stay where it is
            z = min(max(s, ZOOM_MIN), ZOOM_MAX)
            px, py = self.viewport().width() / z, self.viewport().height() / z
            iw, ih = self.image_size
            self.setSceneRect(QRectF(-px, -py, iw + 2 * px, ih + 2 * py))
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.set_scale(s, anchor_under_mouse=True)
        self.setTransformationAnchor(anchor)
        off = self.viewportTransform().map(fixed) - pos
        hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
        hbar.setValue(hbar.value() + round(off.x()))
        vbar.setValue(vbar.value() + round(off.y()))

    # -- mouse and keys ------------------------------------------------------------------------------------

    def _grabbed(self) -> Label | None:
        """What a press can drag: the label, or a proposal while the item has none (dragging it corrects it)."""
        if self.label is None and self.proposal and self.show_pred:
            return self.pred
        return self.label if self.show_label else None

    def _hit(self, pos: QPointF) -> int:
        """Index of the label (or proposal) point within reach of viewport position ``pos``, or -1."""
        label = self._grabbed()
        view = [self.mapFromScene(pt) for pt in self._points(label)]
        return interaction.hit([(v.x(), v.y()) for v in view], (pos.x(), pos.y()))

    def can_edit(self) -> bool:
        """Whether a point label can be edited now (an image is shown for a point item)."""
        return self.name is not None and self.image_size is not None and self.kind == "point"

    def mousePressEvent(self, ev: QMouseEvent) -> None:
        """Middle or space+left drag pans; left on the cross drags it; left elsewhere places (see docs)."""
        pos = ev.position()
        if ev.button() == Qt.MouseButton.MiddleButton or (
            ev.button() == Qt.MouseButton.LeftButton and self._space
        ):
            self._start_pan(pos)
            return
        if ev.button() != Qt.MouseButton.LeftButton or not self.can_edit():
            super().mousePressEvent(ev)
            return
        scene = self.mapToScene(pos.toPoint())
        hit = self._hit(pos)
        drag = interaction.press(
            self._grabbed() if hit >= 0 else self.label,
            hit,
            (scene.x(), scene.y()),
            self.image_size,
            ctrl=bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier),
            place_mode=self.place_mode,
            active_point=self.active_point,
        )
        if drag is None:
            self._start_pan(pos)
            return
        self._drag = drag
        self.active_point = drag.index
        self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        self._layout_overlays()
        self.viewport().update()

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        """Drag the marker, pan, or report the cursor position."""
        pos = ev.position()
        if self._pan_from is not None:
            delta = pos - self._pan_from
            self._pan_from = pos
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
            return
        scene = self.mapToScene(pos.toPoint())
        if self._drag is not None:
            self._drag.move((scene.x(), scene.y()), self.image_size)
            self._layout_overlays()
            self.viewport().update()
        elif self.can_edit():
            over = self._hit(pos) >= 0
            placing = self.place_mode or self.label is None
            cursor = (
                Qt.CursorShape.OpenHandCursor
                if over
                else Qt.CursorShape.CrossCursor
                if placing
                else Qt.CursorShape.ArrowCursor
            )
            self.viewport().setCursor(cursor)
        if self.image_size is not None and QRectF(0, 0, *self.image_size).contains(scene):
            self.cursor_moved.emit(scene.x(), scene.y())
        else:
            self.cursor_moved.emit(math.nan, math.nan)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        """Finish a pan, or commit a drag/placement as one edit."""
        if self._pan_from is not None and ev.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._pan_from = None
            self.viewport().setCursor(
                Qt.CursorShape.OpenHandCursor if self._space else Qt.CursorShape.ArrowCursor
            )
            return
        if ev.button() == Qt.MouseButton.LeftButton and self._drag is not None:
            label = self._drag.result(self.label)
            self._drag = None
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            if label is not None and self.name is not None:
                self.label = label  # show it now; the store update follows at once
                if self.place_mode:
                    self.place_mode = False
                    self.place_mode_ended.emit()
                self._layout_overlays()
                self.label_edited.emit(self.name, label)
            self._layout_overlays()
            self.viewport().update()
            return
        super().mouseReleaseEvent(ev)

    def _start_pan(self, pos: QPointF) -> None:
        self._pan_from = pos
        self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)

    def keyPressEvent(self, ev) -> None:
        """Space held turns left-drag into panning; Esc cancels a drag or the place mode."""
        if ev.key() == Qt.Key.Key_Space and not ev.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            return
        if ev.key() == Qt.Key.Key_Escape and (self._drag is not None or self.place_mode):
            self._drag = None
            if self.place_mode:
                self.place_mode = False
                self.place_mode_ended.emit()
            self._layout_overlays()
            self.viewport().update()
            return
        super().keyPressEvent(ev)

    def keyReleaseEvent(self, ev) -> None:
        """End space-panning mode."""
        if ev.key() == Qt.Key.Key_Space and not ev.isAutoRepeat():
            self._space = False
            self.viewport().setCursor(Qt.CursorShape.ArrowCursor)
            return
        super().keyReleaseEvent(ev)

    def leaveEvent(self, ev: QEvent) -> None:
        """The cursor left: no pixel position to report."""
        self.cursor_moved.emit(math.nan, math.nan)
        super().leaveEvent(ev)
