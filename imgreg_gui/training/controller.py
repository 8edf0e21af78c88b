"""Wires the training UI into the main window: docks, menu, and the flow train -> runs -> predict -> review."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QCheckBox, QMenu

from engine.labels.store import StoreError
from imgreg_gui.training.heatmap import HeatmapView
from imgreg_gui.training.options import rank_command
from imgreg_gui.training.panel import TrainPanel
from imgreg_gui.training.review import ReviewPanel
from imgreg_gui.training.runs import RunsPanel, read_history

RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea


class TrainingController(QObject):
    """Owns the Train, Training curves, Runs and Review docks of one main window and keeps them in step."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.train = TrainPanel()
        self.runs = RunsPanel()
        self.review = ReviewPanel(window)
        self.predict_after = QCheckBox("Predict all items after training")
        self.predict_after.setChecked(True)
        self.predict_after.setToolTip("Store the new run's predictions so the review queue can rank by them")
        self.train.layout().insertWidget(2, self.predict_after)
        self.docks = {
            "Train": window.add_dock(self.train, "Train", RIGHT),
            "Training curves": window.add_dock(self.train.live, "Training curves", BOTTOM),
            "Runs": window.add_dock(self.runs, "Runs", BOTTOM),
            "Review": window.add_dock(self.review, "Review", RIGHT),
        }
        self._tabify()
        self.review.install_shortcuts(window)
        self.heat = HeatmapView(window)
        self._menu()
        self.train.run_finished.connect(self._on_run_finished)
        self.runs.active_run_changed.connect(self._on_runs_selection)
        self.runs.predictions_stored.connect(self._on_predictions_stored)
        self.review.source_changed.connect(self._on_review_source)
        self.review.make_rank_command = self._rank_command
        self.runs.device_fn = lambda: self.train.options().device
        self.review.child.ended.connect(lambda _res: self.runs.refresh())
        window.dataset_opened.connect(self.on_dataset_opened)
        window.current_item_changed.connect(self.review.show_current)
        window.labels_changed.connect(self.review.update_items)
        window.labels_changed.connect(self._update_counts)
        window.installEventFilter(self)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        if getattr(window, "dataset", None) is not None:
            QTimer.singleShot(0, self.on_dataset_opened)

    def _tabify(self) -> None:
        """Curves and runs share the bottom area as tabs; train and review share the right one."""
        with contextlib.suppress(Exception):
            d = self.docks
            self.window.tabifyDockWidget(d["Training curves"], d["Runs"])
            self.window.tabifyDockWidget(d["Train"], d["Review"])
            d["Training curves"].raise_()
            d["Train"].raise_()
            # First-run sizes; a remembered layout (restoreState) replaces them.
            self.window.resizeDocks([d["Train"]], [420], Qt.Orientation.Horizontal)
            self.window.resizeDocks([d["Training curves"]], [300], Qt.Orientation.Vertical)

    def _menu(self) -> None:
        menus = getattr(self.window, "menus", {}) or {}
        menu = menus.get("Training") or menus.get("&Training")
        if menu is None:
            menu = QMenu("&Training", self.window)
            menu.setToolTipsVisible(True)
            help_menu = menus.get("Help")
            if help_menu is not None:
                self.window.menuBar().insertMenu(help_menu.menuAction(), menu)
            else:
                self.window.menuBar().addMenu(menu)
            with contextlib.suppress(Exception):
                menus["Training"] = menu
        self.menu = menu
        self.actions: dict[str, QAction] = {}
        for name, slot, key in (
            ("Start training", self.train.start, "Ctrl+T"),
            ("Stop after this epoch", self.train.stop_after_epoch, ""),
            ("Cancel training", self.train.cancel, ""),
            ("Find learning rate", self.train.find_lr, ""),
            (None, None, None),
            ("Predict all with the active run", self.runs.predict, "Ctrl+Shift+P"),
            ("Rank out-of-fold", self.review.rank, ""),
            (None, None, None),
            ("Next suspect", self.review.next_suspect, ""),
            ("Previous suspect", self.review.previous, ""),
        ):
            if name is None:
                menu.addSeparator()
                continue
            act = menu.addAction(name)
            act.triggered.connect(lambda _c=False, f=slot: f())
            if key:
                act.setShortcut(QKeySequence(key))
            self.actions[name] = act
        # N / Shift+N are window shortcuts (review.install_shortcuts); the menu only shows them.
        self.actions["Next suspect"].setText("Next suspect\tN")
        self.actions["Previous suspect"].setText("Previous suspect\tShift+N")

    # -- flow ----------------------------------------------------------------------------------------------

    def on_dataset_opened(self, *_args: Any) -> None:
        """A dataset was opened: point every panel at it."""
        ds, store = getattr(self.window, "dataset", None), getattr(self.window, "store", None)
        path = str(ds.root) if ds is not None else None
        self.train.set_dataset(
            path, ds.groups if ds is not None else [], ds.kind if ds is not None else "point"
        )
        self.runs.set_dataset(path, store)
        active = getattr(self.window, "active_run", None)
        if active is None and store is not None:
            # Show the newest predictions at once (e.g. reopening a dataset after training).
            runs = store.prediction_runs()
            active = runs[-1] if runs else None
        self.review.refresh(prefer=active)
        if active is not None:
            self.set_active_run(active)
        self._update_counts()

    def _update_counts(self, *_args: Any) -> None:
        store = getattr(self.window, "store", None)
        try:
            self.train.set_label_counts(store.counts() if store is not None else None)
        except (StoreError, sqlite3.Error):  # a closed store while the window switches datasets
            self.train.set_label_counts(None)

    def set_active_run(self, run_id: str | None, force: bool = False) -> None:
        """Make ``run_id`` the window's active run; the runs list and the review queue follow."""
        if force or getattr(self.window, "active_run", None) != run_id:
            self.window.set_active_run(run_id)
        self.heat.update()
        self.runs.blockSignals(True)
        if run_id is None or self.runs.run(run_id) is not None:
            self.runs.select(run_id)
        else:
            self.runs.tree.clearSelection()
        self.runs.blockSignals(False)
        self.runs._update_buttons()
        if run_id is not None:
            self.review.set_source(run_id)
        rec = self.runs.run(run_id) if run_id else None
        if not self.train.busy and rec is not None and rec.has_model:
            self.train.live.curves.show_history(read_history(rec.run_dir), run_id or "")

    def _on_runs_selection(self, run_id: str | None) -> None:
        self.set_active_run(run_id)

    def _on_review_source(self, run_id: str | None) -> None:
        if run_id is not None:
            self.set_active_run(run_id)

    def _rank_command(self, dataset: Any, folds: int) -> list[str]:
        """Out-of-fold ranking trains with the Train panel's options."""
        return rank_command(dataset, self.train.options(), folds, self.train.kind)

    def _on_run_finished(self, run_id: str) -> None:
        self.runs.refresh()
        rec = self.runs.run(run_id) if run_id else None
        store = getattr(self.window, "store", None)
        if rec is not None and (rec.is_oof or (store is not None and run_id in store.prediction_runs())):
            self._on_predictions_stored(run_id)  # out-of-fold runs store their predictions as they go
        elif rec is not None and self.predict_after.isChecked():
            self.runs.predict(run_id)
        elif run_id:
            self.runs.select(run_id)

    def _on_predictions_stored(self, run_id: str) -> None:
        self.review.refresh(prefer=run_id)
        self.set_active_run(run_id, force=True)
        refresh = getattr(self.window, "refresh_item", None)
        name = self.window.current_item_name() if hasattr(self.window, "current_item_name") else None
        if refresh is not None and name:
            refresh(name)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        """Stop child processes when the window closes."""
        if obj is self.window and event.type() == QEvent.Type.Close:
            self.shutdown()
        return False

    def shutdown(self) -> None:
        """Kill every child process this UI started."""
        for panel in (self.train, self.runs, self.review):
            with contextlib.suppress(RuntimeError):
                panel.shutdown()
