"""The embedding map: every item as a point of a 2-D projection, coloured by label, error, score or group.

Plain inputs only: names, (n, 2) coordinates (``ProjectionJob`` computes them off the GUI thread from the vectors
of ``engine.runs.embeddings``) and per-item values. Hovering shows a thumbnail, a click emits
``item_clicked(name)``, a box or lasso drag emits ``selection_changed(set)`` (an empty set clears the filter).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPoint, QPointF, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap, QPolygonF
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from engine.runs.projection import project
from imgreg_gui.jobs.image_loader import ImageLoader
from imgreg_gui.jobs.router import Router
from imgreg_gui.words import plural

COLOURINGS = ("label", "error", "score", "group")
COLOUR_TIPS = {
    "label": "Colour by the label (a scalar's value; for points the mean x of the label's points)",
    "error": "Colour by the active run's error (label vs prediction); grey: no prediction",
    "score": "Colour by the label-quality score of the active run; grey: no score",
    "group": "Colour by group (person folder, or parent folder)",
}
HOVER_THUMB = 128
LUT_SIZE = 64


def value_brushes(values: list, mode: str) -> np.ndarray:
    """One brush per item as an object array of shared brushes: a colour map for label/error/score (grey when
    unknown), categories for groups. Shared brushes keep pyqtgraph's symbol atlas at one entry per colour."""
    n = len(values)
    if mode == "group":
        cats, idx = np.unique(np.array([str(v) for v in values], dtype=object), return_inverse=True)
        return _group_palette(len(cats))[idx.reshape(-1)] if n else np.empty(0, dtype=object)
    lut = _value_palette()
    known = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    ok = np.isfinite(known)
    span = value_range(known)
    if span is None:
        return lut[np.full(n, LUT_SIZE)]
    lo, hi = span
    t = np.clip((np.nan_to_num(known) - lo) / max(hi - lo, 1e-12), 0, 1)
    return lut[np.where(ok, (t * (LUT_SIZE - 1)).astype(int), LUT_SIZE)]


def value_range(known: np.ndarray) -> tuple[float, float] | None:
    """The values the colour map spans (2nd to 98th percentile, so outliers do not wash it out); None if none."""
    if not np.isfinite(known).any():
        return None
    lo, hi = np.nanpercentile(known, [2, 98])
    return float(lo), float(hi)


def _swatch(brush) -> str:
    return f"<span style='color:{brush.color().name()}'>&#9632;</span>"


def legend_html(values: list, mode: str, max_groups: int = 8) -> str:
    """What the colours mean: the map's ends with their values, or the groups' colours (rich text)."""
    if mode == "group":
        cats = sorted({str(v) for v in values})
        if not cats:
            return ""
        pal = _group_palette(len(cats))
        shown = [f"{_swatch(pal[i])} {c}" for i, c in enumerate(cats[:max_groups])]
        more = f" +{len(cats) - max_groups} more" if len(cats) > max_groups else ""
        return "&nbsp; ".join(shown) + more
    known = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    span = value_range(known)
    if span is None:
        return f"no {mode} known yet (grey)"
    lut = _value_palette()
    lo, hi = span
    grey = f" &nbsp;{_swatch(lut[LUT_SIZE])} unknown" if not np.isfinite(known).all() else ""
    return f"{mode}: {_swatch(lut[0])} {lo:.4g} &#8594; {_swatch(lut[LUT_SIZE - 1])} {hi:.4g}{grey}"


@functools.cache
def _value_palette() -> np.ndarray:
    """The viridis brushes plus grey (last), made once: the same objects every recolour."""
    cmap = pg.colormap.get("viridis")
    lut = [pg.mkBrush(*c[:3], 210) for c in cmap.getLookupTable(0.0, 1.0, LUT_SIZE, alpha=False)]
    return _objects([*lut, pg.mkBrush(150, 150, 150, 120)])


@functools.cache
def _group_palette(k: int) -> np.ndarray:
    """``k`` category brushes, made once per ``k``."""
    return _objects([pg.mkBrush(pg.intColor(i, hues=max(k, 1), alpha=200)) for i in range(k)])


def _objects(xs: list) -> np.ndarray:
    arr = np.empty(len(xs), dtype=object)
    arr[:] = xs
    return arr


def set_brushes(scatter: pg.ScatterPlotItem, brushes: np.ndarray) -> None:
    """Restyle the points whose brush object changed, keeping positions, data and hover state.

    ``ScatterPlotItem.setBrush`` takes a list, and numpy inspects every QBrush while copying it into the point
    records (15 ms at 15k points); an object array goes in with one copy, and ``updateSpots`` looks up the
    symbol atlas only for the changed points (a label edit changes a few)."""
    data = scatter.data
    ids = np.fromiter(map(id, brushes), np.int64, len(brushes))
    old = np.fromiter(map(id, data["brush"]), np.int64, len(data))
    changed = ids != old
    if not changed.any():
        return
    data["brush"][changed] = brushes[changed]
    data["sourceRect"][changed] = 0
    scatter.updateSpots()


def inside_polygon(xy: np.ndarray, poly: QPolygonF) -> np.ndarray:
    """Which rows of ``xy`` (n, 2) lie inside ``poly`` (even-odd rule), vectorised over the points."""
    pts = np.array([(p.x(), p.y()) for p in poly.toList()], dtype=np.float64)
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    lo, hi = pts.min(0), pts.max(0)
    cand = np.nonzero((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]))[0]
    inside = np.zeros(len(xy), dtype=bool)
    cx, cy = x[cand], y[cand]
    hit = np.zeros(len(cand), dtype=bool)
    for (x1, y1), (x2, y2) in zip(pts, np.roll(pts, -1, 0), strict=True):
        crosses = (y1 > cy) != (y2 > cy)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = x1 + (cy - y1) * (x2 - x1) / (y2 - y1)
        hit ^= crosses & (cx < xcross)
    inside[cand] = hit
    return inside


def label_value(label) -> float | None:
    """What the label colouring shows: a scalar's value, or the mean x of a point label's points."""
    if label is None or not len(label):
        return None
    return float(label[0]) if len(label) == 1 else float(np.mean(label[0::2]))


class _JobSignals(QObject):
    done = Signal(object)
    progress = Signal(int, int)
    failed = Signal(str)


class ProjectionJob(QRunnable):
    """Projects vectors to 2-D on a thread pool; ``signals.done(np.ndarray)`` or ``signals.failed(reason)``."""

    def __init__(self, vecs: np.ndarray) -> None:
        super().__init__()
        self.vecs = vecs
        self.signals = _JobSignals()

    def run(self) -> None:
        """Compute the projection (UMAP when installed, else PCA), reporting progress."""
        try:
            on_event = Router(embed_progress=lambda e: self.signals.progress.emit(e["done"], e["total"]))
            xy = project(self.vecs, on_event=on_event)
        except Exception as e:  # any failure becomes a message in the dock, never a crash
            with contextlib.suppress(RuntimeError):  # the map was closed meanwhile
                self.signals.failed.emit(f"projection failed: {e}")
            return
        with contextlib.suppress(RuntimeError):
            self.signals.done.emit(xy)


class SelectViewBox(pg.ViewBox):
    """A ViewBox whose left drag draws a box or lasso (``mode``) instead of panning; ``selected(polygon)``."""

    def __init__(self, owner: EmbeddingMap) -> None:
        super().__init__()
        self.owner = owner
        self.mode = "box"
        self._pts: list[QPointF] = []
        self.outline = pg.PlotCurveItem(pen=pg.mkPen((255, 200, 0), width=1.5))
        self.outline.setZValue(10)
        self.addItem(self.outline, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802  (Qt override)
        """Box/lasso selection with the left button; other buttons keep pyqtgraph's pan and zoom."""
        if self.mode not in ("box", "lasso") or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        p = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            self._pts = [self.mapSceneToView(ev.buttonDownScenePos()), p]
        else:
            self._pts = [self._pts[0], p] if self.mode == "box" else [*self._pts, p]
        poly = self.polygon()
        pts = poly.toList()
        xs = [q.x() for q in pts] + ([pts[0].x()] if pts else [])
        ys = [q.y() for q in pts] + ([pts[0].y()] if pts else [])
        self.outline.setData(xs, ys)
        if ev.isFinish():
            self.outline.setData([], [])
            self.owner.select_polygon(poly)

    def polygon(self) -> QPolygonF:
        """The current selection outline in data coordinates."""
        if self.mode == "box" and len(self._pts) >= 2:
            a, b = self._pts[0], self._pts[-1]
            return QPolygonF([a, QPointF(b.x(), a.y()), b, QPointF(a.x(), b.y())])
        return QPolygonF(self._pts)


class EmbeddingMap(QWidget):
    """A pyqtgraph scatter of the items' 2-D projection with hover thumbnails, click and box/lasso selection."""

    item_clicked = Signal(str)
    selection_changed = Signal(object)

    def __init__(self, loader: ImageLoader | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loader = loader or ImageLoader(capacity=32, parent=self)
        self.loader.ready.connect(self._on_image)
        self.names: list[str] = []
        self.paths: dict[str, str] = {}
        self.values: dict[str, dict[str, object]] = {m: {} for m in COLOURINGS}
        self.xy = np.zeros((0, 2), np.float32)
        self.mode = "label"
        self.selected: set[str] = set()
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._job: ProjectionJob | None = None
        self._hover: str | None = None
        self._row: dict[str, int] = {}  # name -> point index, as last placed

        self.vb = SelectViewBox(self)
        self.plot = pg.PlotWidget(viewBox=self.vb, background=(30, 30, 30))
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        # tip=None: the hover thumbnail names the item; pyqtgraph's text tip would be built on every move
        self.scatter = pg.ScatterPlotItem(size=6, pen=None, hoverable=True, useCache=True, tip=None)
        self.scatter.sigClicked.connect(self._clicked)
        self.scatter.sigHovered.connect(self._hovered)
        self.plot.addItem(self.scatter)
        # The selection is a second, outline-only layer: selecting never re-styles every point.
        self.sel_scatter = pg.ScatterPlotItem(size=9, pen=pg.mkPen("w"), brush=None, useCache=True)
        self.sel_scatter.setZValue(5)
        self.plot.addItem(self.sel_scatter)
        # The item shown on the canvas: a red ring above everything.
        self.cur_scatter = pg.ScatterPlotItem(size=15, pen=pg.mkPen("#ff4d4d", width=2), brush=None)
        self.cur_scatter.setZValue(6)
        self.plot.addItem(self.cur_scatter)
        self.current: str | None = None
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setToolTip("What the colours mean; the red ring is the item shown on the image")
        self.thumb = QLabel(self.plot)
        self.thumb.setStyleSheet("background: #202020; border: 1px solid #888; color: #ddd; padding: 2px")
        self.thumb.hide()
        self.status = QLabel("")

        bar = QHBoxLayout()
        self.colour_buttons = QButtonGroup(self)
        for m in COLOURINGS:
            b = QPushButton(m.capitalize())
            b.setCheckable(True)
            b.setChecked(m == self.mode)
            b.setToolTip(COLOUR_TIPS[m])
            b.clicked.connect(lambda _=False, m=m: self.set_colouring(m))
            self.colour_buttons.addButton(b)
            bar.addWidget(b)
        bar.addStretch(1)
        # two rows keep the dock narrow enough to share a tab with the Train panel
        tools = QHBoxLayout()
        self.select_buttons = QButtonGroup(self)
        for m, tip in (("box", "drag a box to filter the item list"), ("lasso", "draw a lasso"),
                       ("pan", "drag to pan, wheel to zoom")):  # fmt: skip
            b = QPushButton(m.capitalize())
            b.setCheckable(True)
            b.setChecked(m == self.vb.mode)
            b.setToolTip(tip)
            b.clicked.connect(lambda _=False, m=m: setattr(self.vb, "mode", m))
            self.select_buttons.addButton(b)
            tools.addWidget(b)
        clear = QPushButton("Clear selection")
        clear.clicked.connect(self.clear_selection)
        tools.addWidget(clear)
        tools.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(bar)
        lay.addLayout(tools)
        lay.addWidget(self.legend)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.status)

    # --- data -------------------------------------------------------------------------------------------
    def set_items(
        self,
        names: list[str],
        paths: dict[str, str],
        labels: dict,
        errors: dict,
        groups: dict,
        scores: dict | None = None,
    ) -> None:
        """The items and what they can be coloured by (label, error, score, group)."""
        self.names = list(names)
        self.paths = dict(paths)
        self._row = {}  # placed again by the next redraw
        self.set_values(labels, errors, groups, scores)

    def set_values(self, labels: dict, errors: dict, groups: dict, scores: dict | None = None) -> None:
        """New colouring values (labels edited, another run active); the points stay where they are."""
        self.values = {
            "label": {n: label_value(v) for n, v in labels.items() if v is not None},
            "error": dict(errors),
            "score": dict(scores or {}),
            "group": dict(groups),
        }
        self._redraw()

    def set_message(self, text: str) -> None:
        """A line under the map (progress, errors)."""
        self.status.setText(text)

    def compute(self, vecs: np.ndarray) -> None:
        """Project ``vecs`` (rows in ``names`` order) in the background, then show the points."""
        self.status.setText(f"projecting {plural(len(vecs), 'item')} ...")
        job = ProjectionJob(np.asarray(vecs))
        # Bound methods, not lambdas: Qt drops the connections when the map is deleted before the job ends.
        job.signals.progress.connect(self._on_job_progress)
        job.signals.done.connect(self._on_job_done)
        job.signals.failed.connect(self._on_job_failed)
        self._job = job
        self.pool.start(job)

    def _current_job(self) -> bool:
        return self._job is not None and self.sender() is self._job.signals

    def _on_job_progress(self, done: int, total: int) -> None:
        if self._current_job():
            self.status.setText(f"projecting {plural(len(self.names), 'item')} ({done}/{total})")

    def _on_job_done(self, xy: np.ndarray) -> None:
        if self._current_job():
            self.set_points(xy)

    def _on_job_failed(self, msg: str) -> None:
        if self._current_job():
            self.status.setText(msg)

    def set_points(self, xy: np.ndarray) -> None:
        """Show the items at ``xy`` (n, 2), in ``names`` order."""
        self.xy = np.asarray(xy, dtype=np.float32)
        if len(self.xy) == len(self.names):
            self._place()
        self._redraw()
        self.vb.autoRange(padding=0.05)
        self.status.setText(self.hint())

    def set_colouring(self, mode: str) -> None:
        """Colour the points by ``label``, ``error``, ``score`` or ``group``."""
        if mode not in COLOURINGS:
            raise ValueError(f"unknown colouring {mode!r}")
        self.mode = mode
        for b in self.colour_buttons.buttons():
            b.setChecked(b.text().lower() == mode)
        self._redraw()

    def _redraw(self) -> None:
        """Recolour the points; positions are set (``setData``) only when the points changed."""
        if len(self.xy) != len(self.names):
            return
        vals = self.values.get(self.mode, {})
        brushes = value_brushes([vals.get(n) for n in self.names], self.mode)
        if not self._row or len(self.scatter.data) != len(self.names):
            self._place()
        set_brushes(self.scatter, brushes)
        self.legend.setText(legend_html([vals.get(n) for n in self.names], self.mode))
        self._draw_selection()
        self._draw_current()

    def _place(self) -> None:
        """Put the points at ``xy`` (drops per-point styles: ``_redraw`` sets them again)."""
        self._row = {n: i for i, n in enumerate(self.names)}
        self.scatter.setData(pos=self.xy, data=np.arange(len(self.names)), size=6, pen=None)

    def set_current(self, name: object) -> None:
        """Mark item ``name`` (the one on the canvas) with a ring; None or an unmapped item: no ring."""
        self.current = name if isinstance(name, str) else None
        self._draw_current()

    def _draw_current(self) -> None:
        i = self._row.get(self.current) if self.current is not None else None
        self.cur_scatter.setData(pos=self.xy[[i]] if i is not None else np.zeros((0, 2), np.float32))

    def _draw_selection(self) -> None:
        rows = sorted(self._row[n] for n in self.selected if n in self._row) if self.selected else []
        self.sel_scatter.setData(pos=self.xy[rows] if rows else np.zeros((0, 2), np.float32))

    # --- interaction ----------------------------------------------------------------------------------
    def select_polygon(self, poly: QPolygonF) -> None:
        """Select the items inside ``poly`` (data coordinates) and emit ``selection_changed``."""
        if poly.size() < 3 or not len(self.xy):
            return
        inside = {self.names[i] for i in np.nonzero(inside_polygon(self.xy, poly))[0]}
        self.selected = inside
        self._draw_selection()
        self.status.setText(f"{plural(len(inside), 'item')} selected")
        self.selection_changed.emit(set(inside))

    def clear_selection(self) -> None:
        """Drop the selection (the item list shows everything again)."""
        self.selected = set()
        self._draw_selection()
        self.status.setText(self.hint())
        self.selection_changed.emit(set())

    def hint(self) -> str:
        """The status line while nothing is selected."""
        return f"{plural(len(self.names), 'item')}; hover for a thumbnail, click to open, drag to select"

    def point_pos(self, name: str) -> QPoint:
        """Where item ``name`` is drawn, in the plot's viewport coordinates (for tests and tours)."""
        i = self._row[name] if name in self._row else self.names.index(name)
        scene = self.vb.mapViewToScene(QPointF(*map(float, self.xy[i])))
        return self.plot.mapFromScene(scene)

    def _clicked(self, _item, points, _ev=None) -> None:
        if len(points):
            self.item_clicked.emit(self.names[int(points[0].data())])

    def _hovered(self, _item, points, ev=None) -> None:
        if not len(points):
            self.thumb.hide()
            self._hover = None
            return
        name = self.names[int(points[0].data())]
        if name == self._hover:
            return
        self._hover = name
        path = self.paths.get(name)
        img = self.loader.request(path) if path else None
        self._show_thumb(name, img)

    def _on_image(self, key: str, img: QImage) -> None:
        if self._hover is not None and self.loader.key(self.paths.get(self._hover, "")) == key:
            self._show_thumb(self._hover, img)

    def _show_thumb(self, name: str, img: QImage | None) -> None:
        if img is not None:
            pm = QPixmap.fromImage(
                img.scaled(HOVER_THUMB, HOVER_THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                           Qt.TransformationMode.SmoothTransformation)
            )  # fmt: skip
            self.thumb.setPixmap(pm)
        else:
            self.thumb.setText(name)
        self.thumb.setToolTip(name)
        self.thumb.adjustSize()
        pos = self.point_pos(name)  # beside the point (the cursor is on it while hovering)
        x = min(max(0, pos.x() + 16), max(0, self.plot.width() - self.thumb.width()))
        y = min(max(0, pos.y() + 16), max(0, self.plot.height() - self.thumb.height()))
        self.thumb.move(x, y)
        self.thumb.show()
        self.thumb.raise_()

    def hover_name(self) -> str | None:
        """The item whose thumbnail is shown, if any."""
        return self._hover if self.thumb.isVisible() else None
