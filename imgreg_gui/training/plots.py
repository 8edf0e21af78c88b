"""Live pyqtgraph plots: training/validation loss, validation error, the LR finder curve, an error histogram."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from engine.events import Batch, Epoch

TRAIN_COLOR = "#3b82f6"
VALID_COLOR = "#f59e0b"
ERROR_COLOR = "#10b981"
MARK_COLOR = "#ef4444"
REDRAW_MS = 250
EMA_BETA = 0.9


def ema(values: Sequence[float], beta: float = EMA_BETA) -> list[float]:
    """Debiased exponential moving average (as fastai smooths its recorded losses)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def styled_plot(title: str, left: str, bottom: str, parent: QWidget | None = None) -> pg.PlotWidget:
    """A PlotWidget coloured from the application palette, with a small title, labels, grid and legend."""
    pal = parent.palette() if parent is not None else QPalette()
    bg, fg = pal.color(QPalette.ColorRole.Base), pal.color(QPalette.ColorRole.Text)
    w = pg.PlotWidget(parent=parent, background=bg)
    item = w.getPlotItem()
    item.setTitle(title, color=fg.name(), size="9pt")
    for side, text in (("left", left), ("bottom", bottom)):
        ax = item.getAxis(side)
        ax.setPen(pg.mkPen(fg))
        ax.setTextPen(pg.mkPen(fg))
        ax.setLabel(text, color=fg.name())
    item.showGrid(x=True, y=True, alpha=0.18)
    for side in ("left", "bottom"):
        item.getAxis(side).enableAutoSIPrefix(False)  # no "(x0.001)" in axis labels
    item.setMenuEnabled(False)
    w.setMinimumHeight(130)
    return w


def legend_html(title: str, entries: Sequence[tuple[str, str, str]]) -> str:
    """A plot title with an inline legend (a legend item inside a small plot would hide the curves)."""
    keys = "&nbsp;&nbsp;".join(
        f'<span style="color:{c}">{sym}</span>&nbsp;{text}' for sym, c, text in entries
    )
    return f"<b>{title}</b>&nbsp;&nbsp;&nbsp;<span style='font-size:8pt'>{keys}</span>"


LOSS_KEYS = (
    ("&#9472;", TRAIN_COLOR, "train"),
    ("&#9679;", TRAIN_COLOR, "epoch"),
    ("&#9679;", VALID_COLOR, "valid"),
)


class TrainingCurves(QWidget):
    """Loss per batch (raw and smoothed) and per epoch, and the validation error per epoch, fed with events."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        self.source_label = QLabel("")
        self.source_label.setStyleSheet("color: #6b7280; padding-left: 4px;")
        outer.addWidget(self.source_label)
        lay = QHBoxLayout()
        outer.addLayout(lay, 1)
        self.loss_plot = styled_plot("Loss", "loss", "epoch", self)
        self.error_plot = styled_plot("Validation error", "px", "epoch", self)
        lay.addWidget(self.loss_plot, 3)
        lay.addWidget(self.error_plot, 2)
        p = self.loss_plot.getPlotItem()
        raw = QColor(TRAIN_COLOR)
        raw.setAlpha(70)
        self.raw_curve = p.plot(pen=pg.mkPen(raw, width=1))
        self.train_curve = p.plot(pen=pg.mkPen(TRAIN_COLOR, width=2), name="train (smoothed)")
        self.epoch_train_curve = p.plot(
            pen=None, symbol="o", symbolSize=6, symbolBrush=TRAIN_COLOR, symbolPen=None, name="train (epoch)"
        )
        self.valid_curve = p.plot(
            pen=pg.mkPen(VALID_COLOR, width=2),
            symbol="o",
            symbolSize=7,
            symbolBrush=VALID_COLOR,
            name="valid",
        )
        self.error_curve = self.error_plot.getPlotItem().plot(
            pen=pg.mkPen(ERROR_COLOR, width=2),
            symbol="s",
            symbolSize=7,
            symbolBrush=ERROR_COLOR,
            name="valid error",
        )
        for w in (self.loss_plot, self.error_plot):
            w.getPlotItem().disableAutoRange()
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self.clear()
        self.set_title("")

    def clear(self, error_label: str = "px") -> None:
        """Forget every point (a new run starts)."""
        self.batch_x: list[float] = []
        self.batch_loss: list[float] = []
        self.smooth: list[float] = []
        self._avg = 0.0
        self.epoch_x: list[float] = []
        self.epoch_train: list[float] = []
        self.valid_loss: list[float] = []
        self.error_x: list[float] = []
        self.errors: list[float] = []
        self.metric_name = ""
        self.epochs = 1
        self._titled: str | None = None
        self._dirty_loss = self._dirty_error = True
        self.error_plot.getPlotItem().getAxis("left").setLabel(error_label)
        self.set_epochs(1)
        self.redraw()

    def show_history(self, rows: list[dict], name: str = "") -> None:
        """Show a finished run's per-epoch curves (its ``history.csv`` rows) when nothing is training."""
        self.clear(self.error_plot.getPlotItem().getAxis("left").labelText or "px")
        for row in rows:
            metrics = {k: v for k, v in row.items() if k not in HISTORY_SKIP}
            self._add_epoch(
                row.get("epoch", len(self.epoch_x) + 1), row.get("train_loss"), row.get("valid_loss"), metrics
            )
        self.set_epochs(max([int(x) for x in self.epoch_x] or [1]))
        self.set_title(f"Run {name} (per epoch)" if name else "")
        self.redraw()

    def set_title(self, suffix: str) -> None:
        """Title the loss plot, e.g. with the run it shows."""
        fg = self.palette().color(QPalette.ColorRole.Text)
        title = legend_html("Loss", LOSS_KEYS)
        self.source_label.setText(suffix)
        self.loss_plot.getPlotItem().setTitle(title, color=fg.name(), size="9pt")

    def set_epochs(self, epochs: int) -> None:
        """Fix the x axes to the run's epochs, so they are not re-laid out on every point."""
        self.epochs = max(1, int(epochs))
        for w in (self.loss_plot, self.error_plot):
            w.getPlotItem().setXRange(0, self.epochs * 1.03 + 0.05, padding=0)

    def add_batch(self, ev: Batch) -> None:
        """Record a ``batch`` event; the plots redraw at most every REDRAW_MS."""
        loss = _num(ev["loss"])
        if loss is None:
            return
        n = max(1, ev["n_batches"])
        # The engine counts epochs and batches from 1.
        self.batch_x.append(ev["epoch"] - 1 + ev["batch"] / n)
        self.batch_loss.append(loss)
        self._avg = EMA_BETA * self._avg + (1 - EMA_BETA) * loss
        self.smooth.append(self._avg / (1 - EMA_BETA ** len(self.batch_loss)))
        self._dirty_loss = True
        self._redraw_soon()

    def add_epoch(self, ev: Epoch) -> None:
        """Record an ``epoch`` event; the plots redraw at most every REDRAW_MS."""
        self._add_epoch(ev["epoch"], ev["train_loss"], ev["valid_loss"], ev["metrics"])

    def _add_epoch(self, epoch: Any, train_loss: Any, valid_loss: Any, metrics: dict[str, Any]) -> None:
        x = float(epoch)
        if x > self.epochs:
            self.set_epochs(int(x))
        for values, v in ((self.epoch_train, _num(train_loss)), (self.valid_loss, _num(valid_loss))):
            if v is not None:
                values.append(v)
        if _num(train_loss) is not None or _num(valid_loss) is not None:
            self.epoch_x.append(x)
        name, err = pick_error_metric(metrics)
        if err is not None:
            self.metric_name = name
            self.error_x.append(x)
            self.errors.append(err)
            self._dirty_error = True
        self._dirty_loss = True
        self._redraw_soon()

    def _redraw_soon(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def redraw(self) -> None:
        """Push the recorded points to the curves whose data changed (each plot repaints only then)."""
        if not (self._dirty_loss or self._dirty_error):
            self._timer.stop()
            return
        if self._dirty_loss:
            self._dirty_loss = False
            self.raw_curve.setData(self.batch_x, self.batch_loss)
            self.train_curve.setData(self.batch_x, self.smooth)
            n_train = min(len(self.epoch_x), len(self.epoch_train))
            self.epoch_train_curve.setData(self.epoch_x[:n_train], self.epoch_train[:n_train])
            n_valid = min(len(self.epoch_x), len(self.valid_loss))
            self.valid_curve.setData(self.epoch_x[:n_valid], self.valid_loss[:n_valid])
            fit_y(self.loss_plot, self.batch_loss + self.valid_loss + self.epoch_train)
        if self._dirty_error:
            self._dirty_error = False
            self.error_curve.setData(self.error_x, self.errors)
            fit_y(self.error_plot, self.errors, floor=0.0)
            if self._titled != self.metric_name:
                self._titled = self.metric_name
                title = f"Validation error ({self.metric_name})" if self.metric_name else "Validation error"
                fg = self.palette().color(QPalette.ColorRole.Text)
                self.error_plot.getPlotItem().setTitle(title, color=fg.name(), size="9pt")


def fit_y(w: pg.PlotWidget, values: Sequence[float], floor: float | None = None) -> None:
    """Fit the y range to ``values`` only when they leave it or fill under half of it (fewer axis re-layouts)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return
    lo, hi = min(vals), max(vals)
    if floor is not None:
        lo = min(floor, lo)
    cur_lo, cur_hi = w.getPlotItem().getViewBox().viewRange()[1]
    span = max(hi - lo, abs(hi) * 1e-3, 1e-9)
    if lo < cur_lo or hi > cur_hi or span < 0.5 * (cur_hi - cur_lo):
        w.getPlotItem().setYRange(lo - 0.1 * span, hi + 0.12 * span, padding=0)


HISTORY_SKIP = ("epoch", "train_loss", "valid_loss", "time_s", "size", "fold")
ERROR_KEYS = ("mean_px", "px", "mae", "error", "err", "rmse")


def pick_error_metric(metrics: dict) -> tuple[str, float | None]:
    """The validation error to plot from an epoch's metrics: mean pixels for points, MAE for scalars."""
    numeric = {k: _num(v) for k, v in metrics.items() if _num(v) is not None}
    for want in ERROR_KEYS:
        for k, v in numeric.items():
            if want in k.lower():
                return k, v
    if numeric:
        k = next(iter(numeric))
        return k, numeric[k]
    return "", None


def _num(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class LrPlot(QWidget):
    """The learning-rate finder's loss against a log-scale learning rate, with the suggestion marked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.plot = styled_plot("LR finder", "loss", "learning rate", self)
        self.plot.setLogMode(x=True, y=False)
        self.plot.setMinimumHeight(120)
        lay.addWidget(self.plot)
        self.curve = self.plot.getPlotItem().plot(pen=pg.mkPen(TRAIN_COLOR, width=2))
        self.mark = pg.InfiniteLine(angle=90, pen=pg.mkPen(MARK_COLOR, width=1.5, style=Qt.PenStyle.DashLine))
        self.mark.setVisible(False)
        self.plot.addItem(self.mark)

    def show_result(self, lrs: Sequence[float], losses: Sequence[float], suggestion: float | None) -> None:
        """Draw the finder's curve (smoothed losses as recorded) and a line at the suggestion."""
        pairs = [(a, b) for a, b in zip(lrs, losses) if _num(a) and _num(b) is not None and a > 0]
        if pairs:
            x, y = zip(*pairs)
            y_arr = np.asarray(y, float)
            lo, hi = np.percentile(y_arr, 2), np.percentile(y_arr, 95)
            self.curve.setData(list(x), list(y))
            span = max(hi - lo, 1e-9)
            self.plot.setYRange(lo - 0.1 * span, hi + 0.4 * span)
        if suggestion and suggestion > 0:
            self.mark.setValue(math.log10(suggestion))
            self.mark.setVisible(True)
        else:
            self.mark.setVisible(False)


class ErrorHistogram(QWidget):
    """A bar histogram of per-item errors with the current item's error marked."""

    def __init__(self, parent: QWidget | None = None, unit: str = "px") -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.plot = styled_plot("Disagreement", "items", f"error ({unit})", self)
        self.plot.setMinimumHeight(110)
        lay.addWidget(self.plot)
        self.bars: pg.BarGraphItem | None = None
        self.mark = pg.InfiniteLine(angle=90, pen=pg.mkPen(MARK_COLOR, width=2))
        self.mark.setVisible(False)
        self.plot.addItem(self.mark)
        self.edges = np.zeros(0)

    def set_unit(self, unit: str) -> None:
        """Label the x axis with the error's unit."""
        self.plot.getPlotItem().getAxis("bottom").setLabel(f"error ({unit})")

    def set_errors(self, errors: Sequence[float], bins: int = 30) -> None:
        """Replace the histogram."""
        if self.bars is not None:
            self.plot.removeItem(self.bars)
            self.bars = None
        vals = np.asarray([e for e in errors if _num(e) is not None], float)
        if vals.size == 0:
            self.edges = np.zeros(0)
            return
        hi = float(vals.max()) if vals.max() > 0 else 1.0
        counts, edges = np.histogram(vals, bins=min(bins, max(5, vals.size)), range=(0.0, hi))
        self.edges = edges
        width = edges[1] - edges[0]
        self.bars = pg.BarGraphItem(
            x0=edges[:-1],
            height=counts,
            width=width * 0.92,
            brush=pg.mkBrush(TRAIN_COLOR),
            pen=pg.mkPen(None),
        )
        self.plot.addItem(self.bars)
        self.plot.getPlotItem().setXRange(0, hi * 1.06, padding=0)
        self.plot.getPlotItem().setYRange(0, max(1, counts.max()) * 1.1, padding=0)

    def mark_error(self, err: float | None) -> None:
        """Draw the current item's error as a red line (hidden when None)."""
        if err is None or _num(err) is None:
            self.mark.setVisible(False)
            return
        self.mark.setValue(float(err))
        self.mark.setVisible(True)
