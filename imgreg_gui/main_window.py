"""The imgreg main window: dataset panel, image canvas, label correction with undo, menus and settings.

Integration API (used by ``imgreg_gui.training`` and tests; keep stable):

- ``window.dataset``: the open ``engine.core.Dataset`` (None until indexing finished).
- ``window.store``: its ``engine.labels.store.LabelStore`` (None until opened; every label edit goes through it).
- ``window.undo_stack``: the ``QUndoStack`` of label edits (``imgreg_gui.commands``).
- ``window.current_item_name() -> str | None`` and ``window.go_to_item(name)``.
- ``window.set_active_run(run_id | None)``: load that run's predictions from the store, show them on the canvas
  and in the panel (error column, sort by error); ``window.active_run`` is its id (None: no predictions shown).
- ``window.accept_prediction()``, ``window.revert_label()``, ``window.mark_verified()`` (toggle): undoable
  edits of the current item.
- ``window.refresh_item(name)``: re-read that item's label record from the store and redraw it.
- ``window.add_dock(widget, title, area) -> QDockWidget``: a dock whose state is remembered between sessions.
- ``window.menus``: QMenus by title (``File``, ``Edit``, ``Go``, ``View``, ``Help``; others may be added).
- Signals: ``dataset_opened()`` (dataset and store ready), ``current_item_changed(str)``,
  ``labels_changed(list[str])`` (after any store edit, from any thread, delivered on the GUI thread),
  ``image_shown(str)`` (the current item's image or placeholder is on screen).
- Also: ``window.open_dataset(root, item=None)`` (asynchronous), ``window.next_item()`` / ``prev_item()`` /
  ``next_group()`` / ``prev_group()`` / ``first_item()`` / ``last_item()``, ``window.nudge(dx, dy)``,
  ``window.export_labels(path)``; widgets ``window.canvas``, ``window.panel``, ``window.status``,
  ``window.loader`` and the actions by name in ``window.acts.all``.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QImage, QUndoStack
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QMessageBox, QTabBar, QWidget

from engine.core import Dataset, Item
from engine.labels.store import LabelRecord, LabelStore
from imgreg_gui import settings
from imgreg_gui.actions import StatusBar, build_actions, build_menus, build_toolbar, shortcut_text
from imgreg_gui.canvas import ImageCanvas
from imgreg_gui.dataset_panel import DatasetPanel, OpenWorker
from imgreg_gui.dialogs import about_box, shortcuts_dialog, write_labels
from imgreg_gui.editing import EditingMixin
from imgreg_gui.image_loader import ImageLoader
from imgreg_gui.item_model import Navigator
from imgreg_gui.settings import icon

log = logging.getLogger(__name__)
PREFETCH_AHEAD, PREFETCH_BEHIND = 3, 1


class MainWindow(EditingMixin, QMainWindow):
    """Browse a dataset, compare label and prediction, correct labels (undoable, saved at once)."""

    dataset_opened = Signal()
    current_item_changed = Signal(str)
    labels_changed = Signal(list)
    image_shown = Signal(str)
    _store_changed = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MainWindow")
        self.setWindowTitle("imgreg")
        self.setWindowIcon(icon("app"))
        self.dataset: Dataset | None = None
        self.store: LabelStore | None = None
        self.root: Path | None = None
        self.active_run: str | None = None
        self.undo_stack = QUndoStack(self)
        self.loader = ImageLoader(parent=self)
        self._current: str | None = None
        self._wanted: str | None = None
        self._worker: OpenWorker | None = None
        self._problems_of: tuple[Dataset | None, int] = (None, 0)  # problem count of the open index
        self._old_workers: list[OpenWorker] = []
        self._nudge_session = 0
        self._docks: dict[str, QDockWidget] = {}
        self.persist = True  # save layout and recent datasets (off for scripted screenshots)

        for corner, area in (
            (Qt.Corner.TopLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea),
            (Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea),
            (Qt.Corner.TopRightCorner, Qt.DockWidgetArea.RightDockWidgetArea),
            (Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea),
        ):
            self.setCorner(corner, area)
        self.canvas = ImageCanvas(self)
        self.setCentralWidget(self.canvas)
        self.panel = DatasetPanel(self)
        self.nav = Navigator(self.panel.model)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self.acts = build_actions(self)
        self.menus = build_menus(self, self.acts)
        self.toolbar = build_toolbar(self, self.acts)
        self.add_dock(self.panel, "Dataset", Qt.DockWidgetArea.LeftDockWidgetArea)

        self.panel.item_selected.connect(self.go_to_item)
        self.panel.filter_changed.connect(self._update_position)
        self.panel.filter_edit.returnPressed.connect(self.canvas.setFocus)
        self.loader.ready.connect(self._on_image_ready)
        self.loader.failed.connect(self._on_image_failed)
        self.canvas.label_edited.connect(self._on_label_edited)
        self.canvas.cursor_moved.connect(self.status.set_pixel)
        self.canvas.zoom_changed.connect(self.status.set_zoom)
        self.canvas.image_shown.connect(self.image_shown)
        self.canvas.image_shown.connect(self._release_indexer)
        self.canvas.place_mode_ended.connect(lambda: self.acts.place.setChecked(False))
        self._store_changed.connect(self._on_store_changed)
        self.value_box.editingFinished.connect(self._on_value_edited)
        self.undo_stack.canUndoChanged.connect(self._update_actions)
        self.undo_stack.canRedoChanged.connect(self._update_actions)

        self._install_training()
        self._restore_settings()
        self._update_actions()
        self._update_summary()
        self.canvas.setFocus()

    # -- integration -----------------------------------------------------------------------------------

    def _install_training(self) -> None:
        """Let the training UI add its docks and menus, if that package is present."""
        if importlib.util.find_spec("imgreg_gui.training") is None:
            return
        import imgreg_gui.training as training

        self.training = training.install(self)

    def add_dock(self, widget: QWidget, title: str, area: Qt.DockWidgetArea) -> QDockWidget:
        """Put ``widget`` in a dock (state remembered between sessions) listed under View ▸ Panels."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.replace(' ', '_')}")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        self._docks[title] = dock
        self.docks_menu.addAction(dock.toggleViewAction())
        return dock

    # -- opening ---------------------------------------------------------------------------------------

    def choose_dataset(self) -> None:
        """Ask for a dataset folder and open it."""
        start = str(self.root.parent) if self.root else str(Path.home())
        path = QFileDialog.getExistingDirectory(self, "Open dataset folder", start)
        if path:
            self.open_dataset(path)

    def fill_recent_menu(self) -> None:
        """Rebuild File ▸ Open recent from the settings."""
        menu = self.recent_menu
        menu.clear()
        recent = settings.recent_datasets()
        for path in recent:
            act = menu.addAction(path)
            act.triggered.connect(lambda _=False, p=path: self.open_dataset(p))
        if not recent:
            menu.addAction("No recent datasets").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction("Clear list").triggered.connect(settings.clear_recent)

    def open_dataset(self, root: str | Path, item: str | None = None) -> None:
        """Start indexing ``root`` on a worker thread; items appear as they are parsed, ``item`` is shown first."""
        self.close_dataset()
        self.root = Path(root).expanduser().resolve()
        self._wanted = item
        self.setWindowTitle(f"{self.root.name} — imgreg")
        self.canvas.set_message("Opening dataset…", str(self.root))
        self.status.set_summary("Indexing…")
        worker = OpenWorker(self.root, self)
        worker.batch.connect(lambda items, w=worker: self._on_batch(w, items))
        worker.opened.connect(lambda ds, store, recs, w=worker: self._on_opened(w, ds, store, recs))
        worker.failed.connect(lambda msg, w=worker: self._on_open_failed(w, msg))
        worker.finished.connect(lambda w=worker: self._worker_done(w))
        self._worker = worker
        worker.start()

    def close_dataset(self) -> None:
        """Close the open dataset and its store (edits are already saved)."""
        if self._worker is not None:
            self._worker.cancel.cancel("now")
            self._worker.first_shown.set()
            self._old_workers.append(self._worker)
            self._worker = None
        if self.store is not None:
            self.store.unsubscribe(self._store_listener)
            self.store.close()
        self.store = self.dataset = None
        self.active_run = None
        self._current = None
        self.undo_stack.clear()
        self.loader.clear()
        self.panel.model.clear()
        self.panel.model.preds = {}
        self.panel.show_errors(False)
        self.canvas.set_annotations(None)
        self.canvas.set_message("No dataset open", "Open a dataset folder with File ▸ Open dataset (Ctrl+O).")
        self._update_actions()

    def _release_indexer(self, _name: str = "") -> None:
        if self._worker is not None:
            self._worker.first_shown.set()

    def _worker_done(self, worker: OpenWorker) -> None:
        if worker in self._old_workers:
            self._old_workers.remove(worker)
        worker.deleteLater()

    def _on_batch(self, worker: OpenWorker, items: list[Item]) -> None:
        if worker is not self._worker:
            return
        self.panel.model.append(items)
        if self._current is None and items:
            names = {it.name for it in items}
            if self._wanted is None:
                self.go_to_item(self.panel.model.item_at(0).name if self.panel.model.view else items[0].name)
            elif self._wanted in names:
                self.go_to_item(self._wanted)

    def _on_opened(self, worker: OpenWorker, ds: Dataset, store: LabelStore, records: dict) -> None:
        if worker is not self._worker:
            store.close()
            return
        self._worker = None
        self.dataset, self.store = ds, store
        model = self.panel.model
        model.kind = ds.kind
        if [it.name for it in model.items] != [it.name for it in ds.items]:
            model.set_items(ds.items, records)
        else:
            model.items = list(ds.items)
            model.set_records(records)
        store.subscribe(self._store_listener)
        if self.persist:
            settings.add_recent(self.root or ds.root)
        current = self._current
        if self._wanted and model.item(self._wanted) is not None:
            current = self._wanted
        elif self._wanted:
            self.status.message(f"No item named {self._wanted} in this dataset", 8000)
        if current is None and model.view:
            current = model.item_at(0).name
        self._wanted = None
        self._current = None
        if current is not None:
            self.go_to_item(current)
        else:
            self.canvas.set_message("This dataset has no items", "; ".join(p.reason for p in ds.problems[:3]))
        self._update_summary()
        self._update_actions()
        self.dataset_opened.emit()

    def _on_open_failed(self, worker: OpenWorker, message: str) -> None:
        if worker is not self._worker:
            return
        self._worker = None
        self.canvas.set_message("Cannot open this dataset", message)
        self.status.set_summary("No dataset")
        self.status.message(message, 10000)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Cannot open dataset", message, QMessageBox.StandardButton.Ok, self
        )
        box.open()
        self._failed_box = box

    # -- navigation -------------------------------------------------------------------------------------

    def current_item_name(self) -> str | None:
        """The item shown on the canvas."""
        return self._current

    def go_to_item(self, name: str) -> None:
        """Show item ``name`` (its image decodes off the GUI thread; neighbours are prefetched)."""
        it = self.panel.model.item(name)
        if it is None:
            self.status.message(f"No item named {name}")
            return
        changed = name != self._current
        self._current = name
        if changed:
            self._nudge_session += 1
            self.canvas.place_mode = False
            self.acts.place.setChecked(False)
        self.panel.select(name)
        img = self.loader.request(it.path)
        if img is not None:
            self.canvas.set_image(name, img)
        elif self.loader.error(it.path) is not None:
            self.canvas.set_image(name, None, self.loader.error(it.path))
        else:
            self.canvas.begin_item(name)
        self._show_annotations()
        if img is None:
            self._prefetch(name)
        else:  # let the shown image paint before decoders compete with it for the CPU
            QTimer.singleShot(0, lambda n=name: self._prefetch(n) if n == self._current else None)
        self._update_position()
        self._update_actions()
        if changed:
            self.current_item_changed.emit(name)

    def _prefetch(self, name: str) -> None:
        ahead, behind = self.nav.neighbours(name, PREFETCH_AHEAD, PREFETCH_BEHIND)
        model = self.panel.model
        paths = [model.item(n).path for n in ahead + behind]
        cur = model.item(name)
        self.loader.retain([cur.path, *paths] if cur else paths)
        self.loader.prefetch(paths)

    def _step(self, target: str | None) -> None:
        if target is not None and target != self._current:
            self.go_to_item(target)

    def next_item(self) -> None:
        """Go to the next item in the list."""
        self._step(self.nav.next(self._current))

    def prev_item(self) -> None:
        """Go to the previous item in the list."""
        self._step(self.nav.prev(self._current))

    def next_group(self) -> None:
        """Go to the first item of the next group."""
        self._step(self.nav.next_group(self._current))

    def prev_group(self) -> None:
        """Go to the first item of the previous group (or of this group when not at its start)."""
        self._step(self.nav.prev_group(self._current))

    def first_item(self) -> None:
        """Go to the first item in the list."""
        self._step(self.nav.first())

    def last_item(self) -> None:
        """Go to the last item in the list."""
        self._step(self.nav.last())

    def focus_filter(self) -> None:
        """Put the keyboard in the filter box."""
        self._docks["Dataset"].show()
        self.panel.filter_edit.setFocus()
        self.panel.filter_edit.selectAll()

    def _on_image_ready(self, key: str, img: QImage) -> None:
        it = self.panel.model.item(self._current) if self._current else None
        if it is not None and str(it.path) == key:
            self.canvas.set_image(it.name, img)
            self._show_annotations()

    def _on_image_failed(self, key: str, reason: str) -> None:
        it = self.panel.model.item(self._current) if self._current else None
        if it is not None and str(it.path) == key:
            self.canvas.set_image(it.name, None, reason)
            self._show_annotations()

    # -- display -----------------------------------------------------------------------------------------

    def _record(self, name: str) -> LabelRecord | None:
        return self.panel.model.record(name)

    def _show_annotations(self) -> None:
        """Push the current item's label, prediction and problem to the canvas, the value box and status bar."""
        name = self._current
        model = self.panel.model
        if name is None:
            return
        it = model.item(name)
        rec = self._record(name)
        pred = model.preds.get(name)
        kind = self.dataset.kind if self.dataset else model.kind
        self.canvas.set_annotations(
            model.effective(name),
            pred.pred if pred else None,
            rec.source if rec else "original",
            bool(rec and rec.verified),
            self.active_run,
            kind,
            it.problem if it else None,
        )
        problem = (it.problem if it else None) or self.canvas.image_error
        self.status.set_problem(problem)
        scalar = kind == "scalar"
        self.value_label_action.setVisible(scalar)
        self.value_box_action.setVisible(scalar)
        if scalar:
            eff = model.effective(name)
            self.value_box.blockSignals(True)
            self.value_box.setValue(eff[0] if eff else 0.0)
            self.value_box.blockSignals(False)
        self.acts.verify.setText("Clear &verified mark" if rec and rec.verified else "&Mark verified")

    def _update_position(self) -> None:
        model = self.panel.model
        row = model.row_of(self._current) if self._current else None
        self.status.set_position(row, len(model.view))

    def _update_summary(self) -> None:
        ds = self.dataset
        if ds is None:
            self.status.set_summary("No dataset" if self._worker is None else "Indexing…")
            return
        c = self.store.counts() if self.store else {"corrected": 0, "verified": 0}
        if self._problems_of[0] is not ds:  # the index is fixed once open: count once, not per edit
            self._problems_of = (
                ds,
                len({it.name for it in ds.items if it.problem} | {p.item for p in ds.problems}),
            )
        probs = self._problems_of[1]
        text = f"{ds.format} · {len(ds.items):,} items · {c['corrected']:,} corrected · {c['verified']:,} verified"
        if probs:
            text += f" · {probs:,} problems"
        tip = "\n".join([f"{p.item}: {p.reason}" for p in ds.problems[:20]] + ds.notes[:10])
        self.status.set_summary(text, tip or str(ds.root))

    def _update_actions(self) -> None:
        a = self.acts
        has_item = self._current is not None
        editable = has_item and self.store is not None
        has_pred = editable and self._current in self.panel.model.preds
        a.undo.setEnabled(self.undo_stack.canUndo())
        a.redo.setEnabled(self.undo_stack.canRedo())
        undo_text, redo_text = self.undo_stack.undoText(), self.undo_stack.redoText()
        a.undo.setStatusTip(f"Undo: {undo_text}" if undo_text else "Nothing to undo")
        a.redo.setStatusTip(f"Redo: {redo_text}" if redo_text else "Nothing to redo")
        for key in ("revert", "verify", "place"):
            a.all[key].setEnabled(editable)
        a.accept.setEnabled(has_pred)
        a.export.setEnabled(self.store is not None)
        a.sort_error.setEnabled(bool(self.panel.model.preds))
        self.value_box.setEnabled(editable)

    def refresh_item(self, name: str) -> None:
        """Re-read ``name``'s record from the store and redraw it."""
        if self.store is None:
            return
        self.panel.model.update_records({name: self.store.record(name)})
        if name == self._current:
            self._show_annotations()
            self._update_actions()

    def set_active_run(self, run_id: str | None) -> None:
        """Show run ``run_id``'s predictions (None hides predictions); enables sorting by error."""
        preds = self.store.predictions(run_id) if self.store is not None and run_id else {}
        self.active_run = run_id
        self.panel.model.set_predictions(preds)
        self.panel.show_errors(bool(preds))
        if self._current:
            self.panel.select(self._current)
            self._show_annotations()
        self._update_position()
        self._update_actions()

    # -- files and dialogs -----------------------------------------------------------------------------

    def choose_export(self) -> None:
        """Ask where to export the effective labels and write them."""
        if self.store is None or self.dataset is None:
            return
        default = str(Path.home() / f"{self.dataset.root.name}-labels.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export labels", default, "CSV (*.csv);;JSON (*.json)")
        if path:
            self.export_labels(path)

    def export_labels(self, path: str | Path) -> int:
        """Write the effective labels to ``path`` (CSV or JSON by suffix); returns the row count."""
        if self.store is None or self.dataset is None:
            return 0
        try:
            n = write_labels(self.store, self.dataset, path)
        except OSError as e:
            self.status.message(f"Could not export labels: {e}", 10000)
            return 0
        self.status.message(f"Exported {n:,} labels to {path}", 8000)
        return n

    def show_shortcuts(self) -> None:
        """Open the keyboard shortcuts dialog."""
        extra = []  # the Training menu's keys (start, predict all, next suspect, ...)
        for act in getattr(getattr(self, "training", None), "actions", {}).values():
            text, _, keys = act.text().partition("\t")
            keys = keys or shortcut_text(act)
            if keys:
                extra.append((text.replace("&", ""), keys))
        self._shortcuts = shortcuts_dialog(self, self.acts, extra)
        self._shortcuts.open()

    def show_about(self) -> None:
        """Open the About box."""
        about_box(self)

    # -- settings ------------------------------------------------------------------------------------------

    def _restore_settings(self) -> None:
        s = settings.settings()
        geometry, state = s.value("geometry"), s.value("windowState")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1440, 900)
        self._needs_layout = not (
            isinstance(state, QByteArray) and not state.isEmpty() and self.restoreState(state)
        )
        for key, act in (
            ("show_label", self.acts.show_label),
            ("show_pred", self.acts.show_pred),
            ("show_line", self.acts.show_line),
        ):
            act.setChecked(settings.get_bool(f"view/{key}", True))

    def _default_layout(self) -> None:
        """Side panels run full height; the image gets most of the room, bottom panels stay short."""
        by_area: dict[Qt.DockWidgetArea, list[QDockWidget]] = {}
        for dock in self._docks.values():
            by_area.setdefault(self.dockWidgetArea(dock), []).append(dock)
        horizontal = {Qt.DockWidgetArea.LeftDockWidgetArea: 300, Qt.DockWidgetArea.RightDockWidgetArea: 340}
        for area, width in horizontal.items():
            docks = by_area.get(area, [])
            if docks:
                self.resizeDocks(docks, [width] * len(docks), Qt.Orientation.Horizontal)
        bottom = by_area.get(Qt.DockWidgetArea.BottomDockWidgetArea, [])
        if bottom:
            self.resizeDocks(bottom, [200] * len(bottom), Qt.Orientation.Vertical)

    def save_settings(self) -> None:
        """Remember geometry, dock layout and view toggles."""
        s = settings.settings()
        s.setValue("geometry", self.saveGeometry())
        s.setValue("windowState", self.saveState())
        for key in (
            ("show_label", self.acts.show_label),
            ("show_pred", self.acts.show_pred),
            ("show_line", self.acts.show_line),
        ):
            s.setValue(f"view/{key[0]}", key[1].isChecked())
        s.sync()

    def showEvent(self, ev) -> None:
        """Lay the docks out once the window has its real size (first start only)."""
        super().showEvent(ev)
        QTimer.singleShot(0, self.hide_stray_tab_bars)
        if self._needs_layout:
            self._needs_layout = False
            self._default_layout()

    def hide_stray_tab_bars(self) -> None:
        """Hide the dock tab strips Qt left behind over the panels.

        Docks tabified before the window is shown (and a restored layout) leave orphan tab bars that Qt never
        retires: they stay painted over the dataset list or the image. A live dock tab bar sits beside its
        docks, never on top of a dock or the central widget, which is how the orphans are told apart.
        """
        covered = [d.geometry() for d in self._docks.values() if d.isVisible() and not d.isFloating()]
        covered.append(self.centralWidget().geometry())
        for bar in self.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if bar.isVisible() and any(bar.geometry().intersects(r) for r in covered):
                bar.hide()

    def closeEvent(self, ev: QCloseEvent) -> None:
        """Save settings, stop workers, close the store."""
        if self.persist:
            self.save_settings()
        if self._worker is not None:
            self._worker.cancel.cancel("now")
            self._worker.first_shown.set()
            self._old_workers.append(self._worker)
        for worker in list(self._old_workers):
            worker.wait(3000)
        self.loader.clear()
        self.loader.wait(3000)
        if self.store is not None:
            self.store.unsubscribe(self._store_listener)
            self.store.close()
            self.store = None
        super().closeEvent(ev)
