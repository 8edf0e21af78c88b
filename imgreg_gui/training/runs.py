"""The runs list: every ``<store.dir>/runs/*`` with its settings and metrics side by side, the active run,
Predict all (a supervised ``imgreg predict`` child that stores predictions for every item) and Export ONNX (an
``imgreg export`` child)."""

from __future__ import annotations

import csv
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.audit.conformal import TOO_FEW
from engine.events import Event
from engine.labels.store import StoreError
from engine.runs import files as runfiles
from imgreg_gui.jobs.process import (
    ChildProcess,
    ChildResult,
    engine_command,
    open_error_box,
    show_progress,
)
from imgreg_gui.jobs.router import Router
from imgreg_gui.model.state import AppState
from imgreg_gui.training.options import predict_command

PREDICT_COVERAGE = 0.9  # the coverage of the intervals every Predict all stores

BASE_COLUMNS = ("Run", "Arch", "Head", "Size", "Epochs", "LR", "Train/valid", "Time", "Preds")
METRIC_ORDER = ("mean_px", "median_px", "mae", "mean_error", "median_error", "valid_loss", "rmse")


@dataclass
class RunRecord:
    """One run folder: its id, config and summary (either may be empty when unreadable)."""

    run_id: str
    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    @property
    def metrics(self) -> dict[str, float]:
        """The run's final numeric metrics (from summary.json)."""
        raw = self.summary.get("metrics") or {}
        out = {}
        for k, v in raw.items() if isinstance(raw, dict) else ():
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(f):
                out[k] = f
        return out

    @property
    def is_oof(self) -> bool:
        """Out-of-fold predictions (K models, no single model to predict with)."""
        return self.summary.get("kind") == "oof" or self.run_id.startswith("oof-")

    @property
    def has_model(self) -> bool:
        """Whether the folder holds a model that can predict."""
        return (self.run_dir / "config.json").is_file() and not self.is_oof

    def setting(self, *keys: str) -> str:
        """The first of ``keys`` present in the config (or summary), as text."""
        for src in (self.config, self.config.get("model") or {}, self.summary):
            if isinstance(src, dict):
                for k in keys:
                    if src.get(k) not in (None, ""):
                        return str(src[k])
        return ""


def run_columns(r: RunRecord, has_preds: bool) -> list[str]:
    """The texts of a run's BASE_COLUMNS."""
    size = r.config.get("size") or r.summary.get("size")
    size_text = "x".join(str(v) for v in size) if isinstance(size, list) else str(size or "")
    done, total = (
        r.summary.get("epochs_run"),
        r.summary.get("epochs") or (r.config.get("train") or {}).get("epochs"),
    )
    epochs = (
        f"{done}/{total}" if done is not None and total is not None and done != total else str(total or "")
    )
    lr = r.summary.get("lr") or (r.config.get("train") or {}).get("lr")
    n_tr, n_va = r.summary.get("n_train"), r.summary.get("n_valid")
    secs = r.summary.get("time_s")
    return [
        r.run_id + (" (stopped)" if r.summary.get("cancelled") else ""),
        r.setting("arch"),
        f"out-of-fold x{r.summary.get('folds', '?')}"
        if r.is_oof
        else r.setting("head")
        if r.setting("kind") != "scalar"
        else r.setting("scalar_head") or "scalar",
        size_text,
        epochs,
        f"{float(lr):.1e}" if isinstance(lr, (int, float)) else "",
        f"{n_tr}/{n_va}" if n_tr is not None else "",
        f"{float(secs):.0f} s" if isinstance(secs, (int, float)) else "",
        "yes" if has_preds else "",
    ]


def export_command(run_dir: str | Path, out: str | Path) -> list[str]:
    """The child command line writing a run's model as ONNX (``imgreg export RUN --out FILE --json``)."""
    return engine_command("export", str(run_dir), "--out", str(out), "--json")


def load_runs(runs_dir: Path) -> list[RunRecord]:
    """Every run folder holding a config.json or summary.json, newest first."""
    if not runs_dir.is_dir():
        return []
    out = []
    for d in runs_dir.iterdir():
        if not d.is_dir() or not ((d / "config.json").is_file() or (d / "summary.json").is_file()):
            continue
        created = min((p.stat().st_mtime for p in d.iterdir() if p.is_file()), default=d.stat().st_mtime)
        out.append(
            RunRecord(
                d.name,
                d,
                runfiles.read_json(d / "config.json"),
                runfiles.read_json(d / "summary.json"),
                created,
            )
        )
    out.sort(key=lambda r: (r.created, r.run_id), reverse=True)
    return out


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """A run's ``history.csv`` as rows of floats where the text is a number (empty when missing or unreadable)."""
    try:
        rows = runfiles.read_history(run_dir)
    except (OSError, csv.Error):
        return []
    return [{k: _number(v) for k, v in row.items()} for row in rows]


def _number(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def metric_columns(runs: list[RunRecord]) -> list[str]:
    """Metric names found in any run, the usual ones first."""
    names = list(dict.fromkeys(k for r in runs for k in r.metrics))
    return sorted(names, key=lambda k: (METRIC_ORDER.index(k) if k in METRIC_ORDER else len(METRIC_ORDER), k))


class _Item(QTreeWidgetItem):
    """Sorts numeric columns by value."""

    def __lt__(self, other: QTreeWidgetItem) -> bool:
        col = self.treeWidget().sortColumn() if self.treeWidget() else 0
        a, b = self.data(col, Qt.ItemDataRole.UserRole), other.data(col, Qt.ItemDataRole.UserRole)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a < b
        return self.text(col) < other.text(col)


class RunsPanel(QWidget):
    """The state's runs with their metrics; selecting one makes it the state's active run; Predict all fills the
    store (``predictions_stored(run_id)`` when done)."""

    predictions_stored = Signal(str)
    onnx_exported = Signal(str)  # the .onnx file written

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.runs_dir: Path | None = None
        self.runs: list[RunRecord] = []
        self.child = ChildProcess(self)
        self.child.event.connect(self._on_event)
        self._route = Router(
            progress=lambda e: show_progress(self.progress, e)
        )  # any kind, also ones added later
        self.child.ended.connect(self._on_ended)
        self.predicting: str | None = None
        self.error_box: QMessageBox | None = None
        self.device_fn: Callable[[], str] = lambda: "auto"
        self.make_command = self.predict_command
        self.coverage: float | None = PREDICT_COVERAGE  # None while the one retry without intervals starts
        self._retrying = False  # the running prediction is that retry (it is never retried again)
        self.exporter = ChildProcess(self)
        self.exporter.ended.connect(self._on_exported)
        self.exporting: str | None = None
        self.make_export_command: Callable[[Path, str], list[str]] = export_command
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.tree = QTreeWidget()
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(0, Qt.SortOrder.DescendingOrder)  # run ids are timestamps: newest first
        self.tree.setUniformRowHeights(True)
        self.tree.itemSelectionChanged.connect(self._on_selection)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        lay.addWidget(self.tree, 1)
        row = QHBoxLayout()
        self.refresh_btn = QPushButton("Refresh")
        self.refresh_btn.clicked.connect(lambda: self.refresh())
        self.predict_btn = QPushButton("Predict all")
        self.predict_btn.setToolTip("Predict every item with the selected run and store the predictions")
        self.predict_btn.clicked.connect(lambda: self.predict())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.child.cancel)
        self.none_btn = QPushButton("Hide predictions")
        self.none_btn.setToolTip("Make no run active: the image shows labels only")
        self.none_btn.clicked.connect(self.tree.clearSelection)
        self.export_btn = QPushButton("Export ONNX…")
        self.export_btn.setToolTip(
            "Write the selected run's model as ONNX (with a metadata JSON beside it) for use outside imgreg"
        )
        self.export_btn.clicked.connect(lambda: self.choose_export())
        for b in (self.refresh_btn, self.predict_btn, self.export_btn, self.cancel_btn, self.none_btn):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setFormat("predicting %v / %m")
        self.progress.hide()
        self.status = QLabel("")
        self.status.setWordWrap(
            True
        )  # a long message wraps instead of widening the dock (and the canvas refits)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        self._update_buttons()
        state.dataset_changed.connect(self._on_dataset)
        state.active_run_changed.connect(self._follow_active_run)

    # -- data --------------------------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        """The state's label store."""
        return self.state.store

    @property
    def dataset_path(self) -> str | None:
        """The open dataset's folder."""
        return str(self.state.dataset.root) if self.state.dataset is not None else None

    def _on_dataset(self) -> None:
        """Show the runs of the open dataset's store (none while nothing is open)."""
        store = self.state.store
        self.runs_dir = runfiles.runs_dir(store.dir) if store is not None else None
        if not self.child.running:
            self.status.setText("")  # the last dataset's prediction message is not this one's
        self.refresh()

    def _follow_active_run(self, run_id: object) -> None:
        """Select the state's active run (nothing when it is not listed)."""
        blocker = QSignalBlocker(self.tree)  # showing the state is not choosing a run
        if isinstance(run_id, str) and self.run(run_id) is not None:
            self.select(run_id)
        else:
            self.tree.clearSelection()
        blocker.unblock()
        self._update_buttons()

    def refresh(self, select: str | None = None) -> None:
        """Re-read the run folders, keeping (or moving to) the selected run."""
        keep = select or self.selected_run() or self.state.active_run
        self.runs = load_runs(self.runs_dir) if self.runs_dir else []
        with_preds = set(self._prediction_runs())
        metrics = metric_columns(self.runs)
        blocker = QSignalBlocker(self.tree)  # refilled here: the selection is restored below
        self.tree.clear()
        self.tree.setColumnCount(len(BASE_COLUMNS) + len(metrics))
        self.tree.setHeaderLabels([*BASE_COLUMNS, *metrics])
        head = self.tree.header()
        # Metrics go right after the run id, where a narrow dock still shows them.
        for k, j in enumerate(range(len(BASE_COLUMNS), len(BASE_COLUMNS) + len(metrics))):
            head.moveSection(head.visualIndex(j), 1 + k)
        chosen = None
        for r in self.runs:
            it = _Item()
            values = run_columns(r, r.run_id in with_preds)
            for i, v in enumerate(values):
                it.setText(i, v)
            for j, m in enumerate(metrics, len(BASE_COLUMNS)):
                x = r.metrics.get(m)
                it.setText(j, "" if x is None else f"{x:.4g}")
                it.setData(j, Qt.ItemDataRole.UserRole, x)
                it.setTextAlignment(j, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            it.setData(0, Qt.ItemDataRole.UserRole + 1, r.run_id)
            it.setToolTip(0, str(r.run_dir))
            self.tree.addTopLevelItem(it)
            if r.run_id == keep:
                chosen = it
        for i in range(self.tree.columnCount()):
            self.tree.resizeColumnToContents(i)
        if chosen is not None:
            chosen.setSelected(True)
            self.tree.setCurrentItem(chosen)
        blocker.unblock()
        self._update_buttons()
        if select is not None and chosen is not None:
            self._on_selection()

    def _prediction_runs(self) -> list[str]:
        try:
            return list(self.store.prediction_runs()) if self.store is not None else []
        except (StoreError, sqlite3.Error):  # a closed store while the window switches datasets
            return []

    def selected_run(self) -> str | None:
        """The selected run's id."""
        items = self.tree.selectedItems()
        return items[0].data(0, Qt.ItemDataRole.UserRole + 1) if items else None

    def run(self, run_id: str) -> RunRecord | None:
        """The run called ``run_id``."""
        return next((r for r in self.runs if r.run_id == run_id), None)

    def select(self, run_id: str | None) -> None:
        """Select a run (None clears the selection); the active run follows."""
        if run_id is None:
            self.tree.clearSelection()
            return
        for i in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(i)
            if it is not None and it.data(0, Qt.ItemDataRole.UserRole + 1) == run_id:
                self.tree.setCurrentItem(it)
                it.setSelected(True)
                return

    def _on_selection(self) -> None:
        self._update_buttons()
        run = self.selected_run()
        if run != self.state.active_run:
            self.state.set_active_run(run)

    # -- predict all -----------------------------------------------------------------------------------

    def predict(self, run_id: str | None = None) -> bool:
        """Predict every item with a run (the selected one by default) in a child; False if it cannot start."""
        run_id = run_id or self.selected_run()
        rec = self.run(run_id) if run_id else None
        if rec is None or not rec.has_model or self.child.running or not self.dataset_path:
            return False
        self.predicting = run_id
        self.progress.setRange(0, 0)
        self.progress.show()
        self.status.setText(f"Predicting with {run_id}...")
        self._t0 = time.monotonic()
        self.child.start(self.make_command(rec.run_dir, self.dataset_path))
        self._update_buttons()
        return True

    def predict_command(self, run_dir: Path, dataset: str) -> list[str]:
        """The ``imgreg predict`` child command, with intervals of ``self.coverage`` (calibrated: proposals and the
        bulk accept's bound); spatial runs also write their heatmaps (``--heatmaps``)."""
        cmd = predict_command(run_dir, dataset, self.device_fn())
        if self.coverage is not None:
            cmd += ["--coverage", str(self.coverage)]
        if runfiles.is_spatial(run_dir):
            cmd.append("--heatmaps")
        return cmd

    def _on_event(self, ev: Event) -> None:
        self._route(ev)

    def _on_ended(self, res: ChildResult) -> None:
        run_id, self.predicting = self.predicting, None
        self.progress.hide()
        self._update_buttons()
        retried, self._retrying = self._retrying, False
        if res.status == "failed" and not retried and run_id and _too_few_to_calibrate(res):
            # A run with under MIN_CALIBRATION validation items cannot state intervals: predict without them.
            self.coverage, self._retrying = None, True
            try:
                if self.predict(run_id):
                    self.status.setText(
                        f"Predicting with {run_id} (too few validation items for intervals)..."
                    )
                    return
            finally:
                self.coverage = PREDICT_COVERAGE
            self._retrying = False
        if res.status == "finished" and run_id:
            self.status.setText(f"Predictions of {run_id} stored ({time.monotonic() - self._t0:.1f} s).")
            self.refresh()
            self.predictions_stored.emit(run_id)
        elif res.status == "cancelled":
            self.status.setText("Prediction cancelled.")
        else:
            self.status.setText("Prediction failed.")
            self.error_box = open_error_box(self, "Prediction failed", res.message, res.stderr_tail)
            self.error_box.finished.connect(lambda _r: setattr(self, "error_box", None))

    # -- export ONNX -------------------------------------------------------------------------------------

    def _context_menu(self, pos: Any) -> None:
        it = self.tree.itemAt(pos)
        if it is None:
            return
        run_id = it.data(0, Qt.ItemDataRole.UserRole + 1)
        rec = self.run(run_id)
        menu = QMenu(self)
        predict = menu.addAction("Predict all", lambda: self.predict(run_id))
        predict.setEnabled(self.predict_btn.isEnabled() and run_id == self.selected_run())
        export = menu.addAction("Export ONNX…", lambda: self.choose_export(run_id))
        export.setEnabled(rec is not None and rec.has_model and not self.exporter.running)
        export.setToolTip(self.export_btn.toolTip())
        menu.addAction("Copy run folder path", lambda: _copy(str(rec.run_dir)) if rec else None)
        self._menu = menu
        menu.popup(self.tree.viewport().mapToGlobal(pos))

    def choose_export(self, run_id: str | None = None) -> None:
        """Ask where to write a run's ONNX model (the selected run by default) and export it."""
        rec = self.run(run_id or self.selected_run() or "")
        if rec is None:
            return
        default = str(rec.run_dir / "model.onnx")
        path, _ = QFileDialog.getSaveFileName(self, "Export ONNX model", default, "ONNX model (*.onnx)")
        if path:
            self.export_onnx(rec.run_id, path if path.lower().endswith(".onnx") else path + ".onnx")

    def export_onnx(self, run_id: str, out: str | Path) -> bool:
        """Write run ``run_id``'s model as ONNX to ``out`` in a child; False if it cannot start."""
        rec = self.run(run_id)
        if rec is None or not rec.has_model or self.exporter.running:
            return False
        self.exporting = run_id
        self.progress.setRange(0, 0)
        self.progress.setFormat("exporting ONNX…")
        self.progress.show()
        self.status.setText(f"Exporting {run_id} as ONNX…")
        self.exporter.start(self.make_export_command(rec.run_dir, str(out)))
        self._update_buttons()
        return True

    def _on_exported(self, res: ChildResult) -> None:
        run_id, self.exporting = self.exporting, None
        if not self.child.running:
            self.progress.hide()
        self._update_buttons()
        if res.status == "finished":
            onnx = str(res.summary.get("onnx") or res.final.get("onnx") or "")
            self.status.setText(f"{run_id} exported to {onnx}")
            self.state.notify(f"Exported run {run_id} as ONNX to {onnx}", 10000)
            self.onnx_exported.emit(onnx)
            return
        self.status.setText("ONNX export failed." if res.status != "cancelled" else "ONNX export cancelled.")
        details = res.stderr_tail if res.status == "crashed" else ""
        self.error_box = open_error_box(self, "ONNX export failed", res.message, details)
        self.error_box.finished.connect(lambda _r: setattr(self, "error_box", None))

    def _update_buttons(self) -> None:
        busy = self.child.running
        rec = self.run(self.selected_run() or "")
        self.export_btn.setEnabled(rec is not None and rec.has_model and not self.exporter.running)
        self.predict_btn.setEnabled(
            not busy and rec is not None and rec.has_model and bool(self.dataset_path)
        )
        self.cancel_btn.setEnabled(busy)
        self.cancel_btn.setVisible(busy)
        self.none_btn.setEnabled(self.selected_run() is not None)

    def shutdown(self) -> None:
        """Kill a running prediction or export (the window is closing)."""
        for child in (self.child, self.exporter):
            if child.running:
                child.kill()
                child.wait(3000)


def _too_few_to_calibrate(res: ChildResult) -> bool:
    """Whether a prediction failed only because the run's validation items are too few to calibrate intervals."""
    return TOO_FEW in f"{res.message}\n{res.stderr_tail}"


def _copy(text: str) -> None:
    from PySide6.QtGui import QGuiApplication

    QGuiApplication.clipboard().setText(text)
