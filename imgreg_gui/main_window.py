"""The imgreg main window: lays out the dataset panel, the image canvas, the menus and docks over one ``AppState``.

The state (``window.state``, ``imgreg_gui.model.state.AppState``) owns the dataset, store, records, current item and
active run; the editor (``window.editor``, ``imgreg_gui.model.editing.Editor``) makes every label edit undoable. The
window only shows the state: the current item's image (decoded off the GUI thread, neighbours prefetched), its
annotations, the status bar and which actions are enabled.

Kept for scripts and tests: ``window.dataset``/``store``/``root``/``active_run`` (read from the state),
``current_item_name()``, ``go_to_item(name)``, ``open_dataset(root, item=None)``, ``next_item()`` and the other
steps, the edits (``accept_prediction()``, ``revert_label()``, ``mark_verified()``, ``nudge(dx, dy)``, ``undo()``,
``redo()``), ``export_labels(path)``, ``add_dock(widget, title, area)``, ``acts``, ``menus`` (by title),
``toolbar``, and the signals ``dataset_opened``, ``current_item_changed``, ``labels_changed`` (the state's own)
and ``image_shown(str)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal, SignalInstance
from PySide6.QtGui import QCloseEvent, QImage, QUndoStack
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QMessageBox, QWidget

from engine.core import Dataset, Item
from engine.labels.store import LabelStore
from imgreg_gui import settings
from imgreg_gui.actions import (
    NUDGES,
    VALUE_TIP,
    VIEW_TOGGLES,
    build_actions,
    build_menus,
    build_toolbar,
    insert_after,
    shortcut_text,
)
from imgreg_gui.canvas import ImageCanvas
from imgreg_gui.dataset_panel import DatasetPanel, OpenWorker
from imgreg_gui.dialogs import about_box, history_dialog, shortcuts_dialog
from imgreg_gui.docks import Docks
from imgreg_gui.explore import ExploreController
from imgreg_gui.files import FileOps, export_labels, orphan_text
from imgreg_gui.focus import ReturnToCanvas
from imgreg_gui.jobs.audit import AuditWatch
from imgreg_gui.jobs.image_loader import ImageLoader
from imgreg_gui.labelling import LabelFlow
from imgreg_gui.model.editing import Editor
from imgreg_gui.model.items import Navigator
from imgreg_gui.model.state import AppState
from imgreg_gui.settings import icon
from imgreg_gui.statusbar import StatusBar
from imgreg_gui.training.controller import TrainingController

log = logging.getLogger(__name__)
PREFETCH_AHEAD, PREFETCH_BEHIND = 3, 1


class MainWindow(QMainWindow):
    """Browse a dataset, compare label and prediction, correct labels (undoable, saved at once)."""

    dataset_opened = Signal()
    image_shown = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MainWindow")
        self.setWindowTitle("imgreg")
        self.setWindowIcon(icon("app"))
        self.state = AppState(self)
        self.editor = Editor(self.state, self)
        self.loader = ImageLoader(parent=self)
        self._wanted: str | None = None
        self._wanted_quietly = False
        self._worker: OpenWorker | None = None
        self._old_workers: list[OpenWorker] = []
        self.persist = True  # save layout and recent datasets (off for scripted screenshots)

        for corner, area in (
            (Qt.Corner.TopLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea),
            (Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea),
            (Qt.Corner.TopRightCorner, Qt.DockWidgetArea.RightDockWidgetArea),
            (Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea),
        ):
            self.setCorner(corner, area)
        self.canvas = ImageCanvas(self.state, self)
        self.setCentralWidget(self.canvas)
        self.panel = DatasetPanel(self.state, self)
        self.nav = Navigator(self.panel.model)
        self.status = StatusBar(self.state, self)
        self.setStatusBar(self.status)
        self.files = FileOps(self.state, self)
        self.audit = AuditWatch(self.state, self)  # doubts on opening, before any training
        self.acts = build_actions(self, self.canvas, self._slots())
        menus = build_menus(self.menuBar(), self.acts)
        self.menu_bar = menus
        self.menus = menus.by_title
        self.recent_menu, self.docks_menu = menus.subs["Open recent"], menus.subs["Panels"]
        self.docks = Docks(self, self.docks_menu)
        self.recent_menu.aboutToShow.connect(self.fill_recent_menu)
        self.toolbar, self.value = build_toolbar(self, self.acts)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.toolbar)
        self.add_dock(self.panel, "Dataset", Qt.DockWidgetArea.LeftDockWidgetArea)

        st = self.state
        st.current_changed.connect(self._on_current_changed)
        st.records_changed.connect(self._on_records_changed)
        st.active_run_changed.connect(self._on_active_run)
        st.dataset_changed.connect(self._update_actions)
        st.doubts_changed.connect(self._update_actions)
        self.panel.filter_changed.connect(self._update_position)
        self.panel.orphan_picked.connect(self._show_orphan)
        self.panel.filter_changed.connect(
            lambda: None if self.panel.showing_orphans else self._show_current()
        )
        self.files.reloaded.connect(self._after_reload)
        self.files.busy.connect(lambda _b: self._update_actions())
        self.panel.filter_edit.returnPressed.connect(self.canvas.setFocus)
        self.keys_home = ReturnToCanvas(self.canvas, self)
        self.keys_home.watch(self.value.box, self.panel.view, self.panel.filter_edit)
        self.loader.ready.connect(self._on_image_ready)
        self.loader.failed.connect(self._on_image_failed)
        self.canvas.label_edited.connect(self.editor.set_label)
        self.canvas.cursor_moved.connect(self.status.set_pixel)
        self.canvas.zoom_changed.connect(self.status.set_zoom)
        self.canvas.image_shown.connect(self.image_shown)
        self.canvas.image_shown.connect(self._release_indexer)
        self.canvas.place_mode_ended.connect(lambda: self.acts.place.setChecked(False))
        self.value.box.editingFinished.connect(lambda: self.editor.set_value(float(self.value.box.value())))
        self.editor.edited.connect(self._update_actions)
        self.editor.refused.connect(self._on_refused)
        self.undo_stack.canUndoChanged.connect(self._update_actions)
        self.undo_stack.canRedoChanged.connect(self._update_actions)

        self.training = TrainingController(
            self.state, self.editor, self, self.canvas, menus, self.acts, self.add_dock
        )
        insert_after(self.toolbar, self.acts.show_line, self.training.heat.action)
        self.labelling = LabelFlow(self.state, self.editor, self, self.panel, self.training, menus)
        self.explore = ExploreController(
            self.state, self, self.acts, self.add_dock, self.panel.view, self.docks.by_title
        )
        self.explore.source.ready.connect(lambda _emb: self.training.train.recheck_leaks())  # new embeddings
        self.docks.restore(self._toggles())
        self._update_actions()
        self._update_summary()
        self.canvas.setFocus()

    def _slots(self) -> dict:
        """What each action of the table does, by its key."""
        c, ed = self.canvas, self.editor
        slots = {
            "open": self.choose_dataset, "export": self.files.choose_export, "reload": self.files.reload,
            "quit": self.close,
            "undo": ed.undo, "redo": ed.redo, "accept": ed.accept_prediction,
            "accept_proposal": ed.accept_proposal,
            "accept_suggestion": ed.accept_suggestion, "revert": ed.revert_label,
            "verify": ed.mark_verified, "history": self.show_history, "place": self.toggle_place_mode,
            "next_point": self.next_point,
            "next": self.next_item, "prev": self.prev_item, "next_group": self.next_group,
            "prev_group": self.prev_group, "first": self.first_item, "last": self.last_item,
            "find": self.focus_filter, "zoom_in": c.zoom_in, "zoom_out": c.zoom_out, "fit": c.fit,
            "actual": c.actual_size, "show_label": lambda on: c.set_visibility(label=on),
            "show_pred": lambda on: c.set_visibility(pred=on), "show_line": lambda on: c.set_visibility(line=on),
            "sort_error": lambda: self.panel.sort_by_error(), "sort_name": lambda: self.panel.sort_by_name(),
            "shortcuts": self.show_shortcuts, "about": lambda: about_box(self),
        }  # fmt: skip
        for k, _key, dx, dy in NUDGES:
            slots[f"nudge_{k}"] = lambda _=False, dx=dx, dy=dy: self.nudge(dx, dy)
            slots[f"nudge_{k}10"] = lambda _=False, dx=dx, dy=dy: self.nudge(10 * dx, 10 * dy)
        return slots

    # -- the state, read through (scripts and tests) ---------------------------------------------------

    @property
    def dataset(self) -> Dataset | None:
        """The open dataset (None until indexing finished)."""
        return self.state.dataset

    @property
    def store(self) -> LabelStore | None:
        """Its label store."""
        return self.state.store

    @property
    def root(self) -> Path | None:
        """The folder being opened or open."""
        return self.state.root

    @property
    def active_run(self) -> str | None:
        """The active run's id."""
        return self.state.active_run

    @property
    def undo_stack(self) -> QUndoStack:
        """The undo stack of label edits."""
        return self.editor.undo_stack

    @property
    def current_item_changed(self) -> SignalInstance:
        """The state's ``current_changed``."""
        return self.state.current_changed

    @property
    def labels_changed(self) -> SignalInstance:
        """The state's ``records_changed``."""
        return self.state.records_changed

    def current_item_name(self) -> str | None:
        """The item shown on the canvas."""
        return self.state.current

    def accept_prediction(self) -> None:
        """Use the active run's prediction as the current item's label."""
        self.editor.accept_prediction()

    def revert_label(self) -> None:
        """Go back to the label from the dataset's own files."""
        self.editor.revert_label()

    def mark_verified(self) -> None:
        """Toggle the verified mark of the current item."""
        self.editor.mark_verified()

    def undo(self) -> None:
        """Undo the last edit, showing the item it touched."""
        self.editor.undo()

    def redo(self) -> None:
        """Redo the edit just undone."""
        self.editor.redo()

    def nudge(self, dx: float, dy: float) -> None:
        """Move the current label's active point by (dx, dy) pixels (one undo step per run of nudges)."""
        self.editor.nudge(dx, dy, self.canvas.active_point)

    def next_point(self) -> None:
        """Select the next point of a multi-point label for nudging."""
        self.canvas.next_point()

    def toggle_place_mode(self, on: bool) -> None:
        """Arm or disarm 'the next click places the label'."""
        self.canvas.place_mode = on and self.store is not None
        if on:
            self.status.message("Click the image to put the label there (Esc cancels)")

    def add_dock(self, widget: QWidget, title: str, area: Qt.DockWidgetArea) -> QDockWidget:
        """Put ``widget`` in a dock (state remembered between sessions) listed under View ▸ Panels."""
        return self.docks.add(widget, title, area)

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
        self.state.begin_open(root)
        self._wanted = item if item is not None or not self.persist else settings.last_item(root)
        self._wanted_quietly = item is None  # a remembered item that is gone is no news
        self.setWindowTitle(f"{Path(root).name} — imgreg")
        self.canvas.set_message("Opening dataset…", str(self.root))
        self.status.set_summary("Indexing…")
        worker = OpenWorker(root, self)
        worker.batch.connect(lambda items, w=worker: self._on_batch(w, items))
        worker.opened.connect(lambda ds, store, recs, w=worker: self._on_opened(w, ds, store, recs))
        worker.failed.connect(lambda msg, w=worker: self._on_open_failed(w, msg))
        worker.finished.connect(lambda w=worker: self._worker_done(w))
        self._set_worker(worker)
        worker.start()

    def _set_worker(self, worker: OpenWorker | None) -> None:
        self._worker = worker
        self.editor.opening = worker is not None

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel.cancel("now")
            self._worker.first_shown.set()
            self._old_workers.append(self._worker)
            self._set_worker(None)

    def close_dataset(self) -> None:
        """Close the open dataset and its store (edits are already saved)."""
        if self.persist and self.state.root is not None and self.state.dataset is not None:
            settings.set_last_item(self.state.root, self.state.current)
        self._stop_worker()
        self.loader.clear()
        self.state.close()
        self.value.set_visible(False)
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
        self.state.add_items(items)
        if self.state.current is None and items:
            names = {it.name for it in items}
            if self._wanted is None:
                first = self.panel.model.item_at(0)
                self.go_to_item(first.name if first is not None else items[0].name)
            elif self._wanted in names:
                self.go_to_item(self._wanted)

    def _on_opened(self, worker: OpenWorker, ds: Dataset, store: LabelStore, records: dict) -> None:
        if worker is not self._worker:
            store.close()
            return
        self._set_worker(None)
        st = self.state
        current = st.current
        st.current = None  # shown again below, over the full index and its records
        st.set_opened(ds, store, records)
        if self.persist:
            settings.add_recent(self.root or ds.root)
        if self._wanted and st.item(self._wanted) is not None:
            current = self._wanted
        elif self._wanted and not self._wanted_quietly:
            self.status.message(f"No item named {self._wanted} in this dataset", 8000)
        if current is None and (first := self.panel.model.item_at(0)) is not None:
            current = first.name
        self._wanted = None
        if current is not None:
            self.go_to_item(current)
        else:
            self.canvas.set_message("This dataset has no items", "; ".join(p.reason for p in ds.problems[:3]))
        self.value.set_visible(ds.kind == "scalar")
        self._update_summary()
        self._update_actions()
        self.files.show_recovery(store.recovery_message)
        self.dataset_opened.emit()

    def _after_reload(self, _res: object) -> None:
        """The state was re-indexed: drop cached images (files may have changed), show the current item again."""
        self.loader.clear()
        cur = self.state.current
        if cur is None and (first := self.panel.model.item_at(0)) is not None:
            cur = first.name
        if cur is not None:
            self.state.current = None  # shown again, its image decoded afresh
            self.go_to_item(cur)
        self._update_summary()
        self._update_actions()

    def _show_orphan(self, name: str) -> None:
        """A placeholder for an orphan (its image file is gone) with its kept label."""
        rec = self.state.orphans.get(name)
        if rec is not None:
            self.canvas.set_message(f"The file is gone: {name}", orphan_text(rec, self.state.kind))

    def _on_open_failed(self, worker: OpenWorker, message: str) -> None:
        if worker is not self._worker:
            return
        self._set_worker(None)
        self.canvas.set_message("Cannot open this dataset", message)
        self.status.set_summary("No dataset")
        self.status.message(message, 10000)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Cannot open dataset", message, QMessageBox.StandardButton.Ok, self
        )
        box.open()
        self._failed_box = box

    # -- navigation -------------------------------------------------------------------------------------

    def go_to_item(self, name: str) -> None:
        """Show item ``name`` (its image decodes off the GUI thread; neighbours are prefetched)."""
        if self.state.item(name) is None:
            self.status.message(f"No item named {name}")
        elif not self.state.set_current(name):
            self._show_current()

    def _on_refused(self, reason: str) -> None:
        """A refused edit: the box says why and shows the stored value again."""
        self.value.box.setToolTip(f"Not saved: {reason}\n{VALUE_TIP}")
        if self.state.current is not None:
            self.canvas.set_annotations(self.state.annotations())  # a refused drag snaps back
        self._show_annotations()

    def _on_current_changed(self, _name: object) -> None:
        self.value.box.setToolTip(VALUE_TIP)
        self.canvas.place_mode = False
        self.acts.place.setChecked(False)
        self._show_current()

    def _show_current(self) -> None:
        """Put the current item's image (or its placeholder) and annotations on screen; prefetch neighbours."""
        name = self.state.current
        it = self.state.item(name)
        if name is None or it is None:
            return
        img = self.loader.request(it.path)
        if img is not None:
            self.canvas.set_image(name, img)
        elif self.loader.error(it.path) is not None:
            self.canvas.set_image(name, None, self.loader.error(it.path))
        else:
            self.canvas.begin_item(name)
        self.canvas.set_annotations(self.state.annotations(name))  # also when the item is shown again
        self._show_annotations()
        if img is None:
            self._prefetch(name)
        else:  # let the shown image paint before decoders compete with it for the CPU
            QTimer.singleShot(0, lambda n=name: self._prefetch(n) if n == self.state.current else None)
        self._update_position()
        self._update_actions()

    def _prefetch(self, name: str) -> None:
        ahead, behind = self.nav.neighbours(name, PREFETCH_AHEAD, PREFETCH_BEHIND)
        st = self.state
        paths: list[str | Path] = [it.path for n in ahead + behind if (it := st.item(n)) is not None]
        cur = st.item(name)
        self.loader.retain([cur.path, *paths] if cur else paths)
        self.loader.prefetch(paths)

    def _step(self, target: str | None) -> None:
        if target is not None and target != self.state.current:
            self.go_to_item(target)

    def next_item(self) -> None:
        """Go to the next item in the list."""
        self._step(self.nav.next(self.state.current))

    def prev_item(self) -> None:
        """Go to the previous item in the list."""
        self._step(self.nav.prev(self.state.current))

    def next_group(self) -> None:
        """Go to the first item of the next group."""
        self._step(self.nav.next_group(self.state.current))

    def prev_group(self) -> None:
        """Go to the first item of the previous group (or of this group when not at its start)."""
        self._step(self.nav.prev_group(self.state.current))

    def first_item(self) -> None:
        """Go to the first item in the list."""
        self._step(self.nav.first())

    def last_item(self) -> None:
        """Go to the last item in the list."""
        self._step(self.nav.last())

    def focus_filter(self) -> None:
        """Put the keyboard in the filter box."""
        self.docks.by_title["Dataset"].show()
        self.panel.filter_edit.setFocus()
        self.panel.filter_edit.selectAll()

    def _on_image_ready(self, key: str, img: QImage) -> None:
        it = self.state.item(self.state.current)
        if it is not None and str(it.path) == key:
            self.canvas.set_image(it.name, img)
            self._show_annotations()

    def _on_image_failed(self, key: str, reason: str) -> None:
        it = self.state.item(self.state.current)
        if it is not None and str(it.path) == key:
            self.canvas.set_image(it.name, None, reason)
            self._show_annotations()

    # -- display -----------------------------------------------------------------------------------------

    def _show_annotations(self) -> None:
        """Show the current item's value (scalar datasets), problem and verified state beside the canvas."""
        name = self.state.current
        if name is None:
            return
        ann = self.state.annotations(name)  # the canvas follows the state itself
        self.status.set_problem(ann.note or self.canvas.image_error)
        if ann.kind == "scalar":
            self.value.box.setValue(
                ann.label[0] if ann.label else 0.0
            )  # edits come from editingFinished only
        self.acts.verify.setText("Clear &verified mark" if ann.verified else "&Mark verified")

    def _on_records_changed(self, names: list[str]) -> None:
        if self.state.current in names:
            self._show_annotations()
        self.status.saved(names)
        self._update_summary()
        self._update_actions()

    def _on_active_run(self, _run_id: object) -> None:
        if self.state.current:
            self.panel.select(self.state.current)
            self._show_annotations()
        self._update_position()
        self._update_actions()

    def _update_position(self) -> None:
        model = self.panel.model
        cur = self.state.current
        self.status.set_position(model.row_of(cur) if cur else None, len(model.view))

    def _update_summary(self) -> None:
        if self.dataset is None:
            self.status.set_summary("No dataset" if self._worker is None else "Indexing…")
        else:
            counts = self.state.counts if self.store else None
            self.status.show_dataset(self.dataset, counts, len(self.state.orphans))

    def _update_actions(self) -> None:
        a, stack = self.acts, self.undo_stack
        editable = self.state.current is not None and self.store is not None
        a.undo.setEnabled(stack.canUndo())
        a.redo.setEnabled(stack.canRedo())
        undo_text, redo_text = stack.undoText(), stack.redoText()
        a.undo.setText(f"&Undo {self._action_of(stack.index() - 1)}".rstrip())
        a.redo.setText(f"&Redo {self._action_of(stack.index())}".rstrip())
        a.undo.setStatusTip(f"Undo: {undo_text}" if undo_text else "Nothing to undo")
        a.redo.setStatusTip(f"Redo: {redo_text}" if redo_text else "Nothing to redo")
        for key in ("revert", "verify", "place", "history"):
            a.all[key].setEnabled(editable)
        a.accept.setEnabled(editable and self.state.prediction(self.state.current) is not None)
        a.accept_proposal.setEnabled(editable)  # Enter on a labelled item says why nothing happens
        ann = self.state.annotations() if editable else None
        a.accept_suggestion.setEnabled(ann is not None and ann.expected is not None)
        a.export.setEnabled(self.store is not None and not self.files.running)
        a.reload.setEnabled(self.store is not None and not self.files.running)
        a.sort_error.setEnabled(bool(self.state.preds))
        self.value.box.setEnabled(editable)

    def _action_of(self, i: int) -> str:
        """The short name of undo command ``i`` ("Move label"), or "" when there is none."""
        cmd = self.undo_stack.command(i) if 0 <= i < self.undo_stack.count() else None
        return getattr(cmd, "action", "") if cmd is not None else ""

    # -- files and dialogs -----------------------------------------------------------------------------

    def choose_export(self) -> None:
        """Ask for a format and where to export the effective labels (File ▸ Export)."""
        self.files.choose_export()

    def export_labels(self, path: str | Path) -> int:
        """Write the effective labels to ``path`` (CSV or JSON by suffix); returns the row count."""
        if self.store is None or self.dataset is None:
            return 0
        try:
            fmt = "json" if Path(path).suffix.lower() == ".json" else "csv"
            n = export_labels(self.dataset, self.store, fmt, path).n_labels
        except OSError as e:
            self.status.message(f"Could not export labels: {e}", 10000)
            return 0
        self.status.message(f"Exported {n:,} labels to {path}", 8000)
        return n

    def show_history(self) -> None:
        """Open the current item's label history (Edit ▸ Label history)."""
        name, store = self.state.current, self.store
        if name is None or store is None:
            return
        self._history = history_dialog(self, name, store.history(name), self.state.kind)
        self._history.open()

    def show_shortcuts(self) -> None:
        """Open the keyboard shortcuts dialog (the Training menu's keys included)."""
        extra = []
        for act in [*self.training.actions.values(), *self.labelling.actions.values()]:
            text, _, keys = act.text().partition("\t")
            keys = keys or shortcut_text(act)
            if keys:
                extra.append((text.replace("&", ""), keys))
        self._shortcuts = shortcuts_dialog(self, self.acts, extra)
        self._shortcuts.open()

    # -- settings ------------------------------------------------------------------------------------------

    def _toggles(self) -> dict:
        return {k: self.acts.all[k] for k in VIEW_TOGGLES}

    def save_settings(self) -> None:
        """Remember geometry, dock layout and view toggles."""
        self.docks.save(self._toggles())

    def showEvent(self, ev) -> None:
        """Lay the docks out once the window has its real size (first start only)."""
        super().showEvent(ev)
        QTimer.singleShot(0, self.docks.hide_stray_tab_bars)
        if self.docks.needs_layout:
            self.docks.needs_layout = False
            self.docks.default_layout()

    def closeEvent(self, ev: QCloseEvent) -> None:
        """Save settings, stop workers, close the store."""
        if self.persist:
            self.save_settings()
            if self.state.root is not None and self.state.dataset is not None:
                settings.set_last_item(self.state.root, self.state.current)
        self._stop_worker()
        self.files.wait()
        self.explore.shutdown()
        self.audit.shutdown()
        for worker in list(self._old_workers):
            worker.wait(3000)
        self.loader.clear()
        self.loader.wait(3000)
        self.state.close()
        super().closeEvent(ev)
