"""Wires the training UI to the app state: docks, the Training menu, and the flow train -> runs -> predict ->
review. The panels follow the state themselves; this only adds what crosses panels."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QCheckBox, QDockWidget, QMainWindow, QVBoxLayout, QWidget

from engine.runs.sanity import degenerate
from imgreg_gui.actions import Actions, Menus
from imgreg_gui.canvas import ImageCanvas
from imgreg_gui.model.editing import Editor
from imgreg_gui.model.state import AppState
from imgreg_gui.training.heatmap import HeatmapView
from imgreg_gui.training.options import rank_command
from imgreg_gui.training.panel import TrainPanel
from imgreg_gui.training.review import ReviewPanel
from imgreg_gui.training.runs import RunsPanel, read_history

RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea
AddDock = Callable[[QWidget, str, Qt.DockWidgetArea], QDockWidget]


class TrainingController(QObject):
    """Owns the Train, Training curves, Runs and Review docks of one main window and the Training menu."""

    def __init__(
        self,
        state: AppState,
        editor: Editor,
        window: QMainWindow,
        canvas: ImageCanvas,
        menus: Menus,
        acts: Actions,
        add_dock: AddDock,
    ) -> None:
        super().__init__(window)
        self.state = state
        self.window = window
        self.train = TrainPanel()
        self.runs = RunsPanel(state)
        self.review = ReviewPanel(state, editor)
        self.predict_after = QCheckBox("Predict all items after training")
        self.predict_after.setChecked(True)
        self.predict_after.setToolTip("Store the new run's predictions so the review queue can rank by them")
        cast(QVBoxLayout, self.train.layout()).insertWidget(2, self.predict_after)  # TrainPanel's own layout
        self.docks = {
            "Train": add_dock(self.train, "Train", RIGHT),
            "Training curves": add_dock(self.train.live, "Training curves", BOTTOM),
            "Runs": add_dock(self.runs, "Runs", BOTTOM),
            "Review": add_dock(self.review, "Review", RIGHT),
        }
        self._tabify()
        self.review.install_shortcuts(window, acts)
        self.heat = HeatmapView(state, canvas, window, menus, acts)
        self._menu(menus)
        self.train.run_finished.connect(self._on_run_finished)
        self.runs.predictions_stored.connect(self._on_predictions_stored)
        self.review.make_rank_command = self._rank_command
        self.review.parallel = lambda: self.train.options().parallel
        self.runs.device_fn = lambda: self.train.options().device
        self.review.child.ended.connect(lambda _res: self.runs.refresh())
        state.dataset_changed.connect(self.on_dataset_opened)
        state.active_run_changed.connect(self._show_run_history)
        state.records_changed.connect(self._update_counts)
        state.doubts_changed.connect(self._show_doubts)
        self._doubts_shown = False
        window.installEventFilter(self)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        if state.dataset is not None:
            QTimer.singleShot(0, self.on_dataset_opened)

    def _tabify(self) -> None:
        """Curves and runs share the bottom area as tabs; train and review share the right one."""
        d, w = self.docks, self.window
        w.tabifyDockWidget(d["Training curves"], d["Runs"])
        w.tabifyDockWidget(d["Train"], d["Review"])
        d["Training curves"].raise_()
        d["Train"].raise_()
        # First-run sizes; a remembered layout (restoreState) replaces them.
        w.resizeDocks([d["Train"]], [420], Qt.Orientation.Horizontal)
        w.resizeDocks([d["Training curves"]], [300], Qt.Orientation.Vertical)

    def _menu(self, menus: Menus) -> None:
        self.menu = menus.add("&Training")
        self.actions: dict[str, QAction] = {}
        t, rv = self.train, self.review
        table = (
            ("Start training", t.start, "Ctrl+T"),
            ("Stop after this epoch", t.stop_after_epoch, ""),
            ("Cancel training", t.cancel, ""),
            ("Find learning rate", t.find_lr, ""),
            None,
            ("Predict all with the active run", self.runs.predict, "Ctrl+Shift+P"),
            ("Rank out-of-fold", rv.ask_rank, ""),
            None,
            ("Next suspect", rv.next_suspect, ""),
            ("Previous suspect", rv.previous, ""),
        )
        for row in table:
            if row is None:
                self.menu.addSeparator()
                continue
            name, f, key = row
            act = self.menu.addAction(name)
            act.triggered.connect(lambda _c=False, f=f: f())
            if key:
                act.setShortcut(QKeySequence(key))
            self.actions[name] = act
        # N / Shift+N are window shortcuts (review.install_shortcuts); the menu only shows them.
        self.actions["Next suspect"].setText("Next suspect\tN")
        self.actions["Previous suspect"].setText("Previous suspect\tShift+N")

    # -- flow ----------------------------------------------------------------------------------------------

    def on_dataset_opened(self, *_args: object) -> None:
        """A dataset was opened (or closed): point the Train panel at it, show its newest predictions."""
        self._doubts_shown = False
        ds, store = self.state.dataset, self.state.store
        path = str(ds.root) if ds is not None else None
        self.train.set_dataset(path, ds.groups if ds is not None else [], self.state.kind)
        labels = {n: r.effective for n, r in self.state.records.items() if r.effective is not None}
        self.train.set_data(ds, store.dir if store is not None else None, labels)
        active = self.state.active_run
        if active is None and store is not None:
            # Show the newest predictions at once (e.g. reopening a dataset after training).
            runs = store.prediction_runs()
            active = runs[-1] if runs else None
        if active is not None:
            self.state.set_active_run(active)
        self._update_counts()

    def _show_doubts(self) -> None:
        """The first doubts of a freshly opened dataset bring the review queue forward (once per dataset)."""
        if self.state.doubts and not self._doubts_shown and not self.train.busy:
            self._doubts_shown = True
            self.docks["Review"].raise_()

    def _update_counts(self, *_args: object) -> None:
        self.train.set_label_counts(self.state.counts if self.state.store is not None else None)

    def _show_run_history(self, run_id: object) -> None:
        """The active run's training curves, while nothing trains."""
        rec = self.runs.run(run_id) if isinstance(run_id, str) else None
        if not self.train.busy and rec is not None and rec.has_model:
            self.train.live.curves.show_history(read_history(rec.run_dir), rec.run_id)

    def _rank_command(self, dataset: str | Path, folds: int, repeats: int = 1) -> list[str]:
        """Out-of-fold ranking trains with the Train panel's options."""
        return rank_command(dataset, self.train.options(), folds, self.train.kind, repeats)

    def _on_run_finished(self, run_id: str) -> None:
        self.runs.refresh()
        rec = self.runs.run(run_id) if run_id else None
        store = self.state.store
        if rec is not None and (rec.is_oof or (store is not None and run_id in store.prediction_runs())):
            self._on_predictions_stored(run_id)  # out-of-fold runs store their predictions as they go
        elif rec is not None and self.predict_after.isChecked():
            self.runs.predict(run_id)
        elif run_id:
            self.runs.select(run_id)

    def _on_predictions_stored(self, run_id: str) -> None:
        self.review.refresh(prefer=run_id)
        self.state.set_active_run(run_id)
        self.check_predictions(run_id)

    def check_predictions(self, run_id: str) -> str | None:
        """Warn when the active run's predictions are degenerate (flat, or no better than the mean label)."""
        st = self.state
        if st.active_run != run_id:
            return None
        labels = {n: r.effective for n, r in st.records.items() if r.effective is not None}
        reason = degenerate(st.preds, labels, st.kind)
        if reason:
            self.train.warn(f"Run {run_id} looks degenerate: {reason}.")
            st.notify(f"Run {run_id} looks degenerate: {reason}", 20000)
        return reason

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
