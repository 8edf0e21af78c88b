"""The dataset panel (filter box, filter choices, item list) and the worker that opens a dataset to fill it."""

from __future__ import annotations

import logging
import threading
import traceback
from pathlib import Path

from PySide6.QtCore import QEvent, QItemSelectionModel, QModelIndex, QObject, Qt, QThread, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QStackedWidget,
    QTreeView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.core import Cancelled, CancelToken, Item
from imgreg_gui.model.items import COL_ERROR, COL_GROUP, COL_NAME, FILTERS, ItemModel, format_label
from imgreg_gui.model.state import AppState
from imgreg_gui.words import plural

log = logging.getLogger(__name__)
FIRST_IMAGE_WAIT_S = 0.5
ORPHANS = "orphans"  # the status filter listing corrections whose image file vanished (not items: no image)


class DatasetPanel(QWidget):
    """Browses the app state's items; picking one makes it the state's current item."""

    filter_changed = Signal()
    orphan_picked = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DatasetPanel")
        self.state = state
        self.model = ItemModel(state, self)

        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter by name…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setToolTip(
            "Show only items whose path contains this text (Ctrl+F); Esc returns to the image"
        )
        self.filter_combo = QComboBox(self)
        # A plain list as the popup, so the stylesheet's highlighted-entry colours apply (Fusion's menu-like
        # popup ignored them and showed the highlighted entry as a bare outline).
        self.filter_combo.setView(QListView(self.filter_combo))
        for key, text in FILTERS.items():
            self.filter_combo.addItem(text, key)
        self.filter_combo.addItem("Orphans (file gone)", ORPHANS)
        self.filter_combo.setToolTip(
            "Show all items, or only corrected, unverified, verified, problem or unlabelled ones; Orphans lists "
            "corrections whose image file is gone (kept: they return when the file does)"
        )

        self.view = QTreeView(self)
        self.view.setModel(self.model)
        self.view.setRootIsDecorated(False)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # A clicked list takes the keyboard: its arrows move the selection (the canvas's arrows nudge), Esc returns.
        self.view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.view.setAutoScroll(False)  # select() scrolls, by half pages (_reveal)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        header = self.view.header()
        header.setSortIndicatorShown(True)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        # Group and Error take what their contents need, but never the name's room: refitted on every resize.
        header.setSectionResizeMode(COL_GROUP, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(COL_ERROR, QHeaderView.ResizeMode.Interactive)
        self.view.viewport().installEventFilter(self)
        self.view.setColumnHidden(COL_ERROR, True)
        self.count_label = QLabel(self)
        self.count_label.setObjectName("CountLabel")
        self.orphan_view = QTreeWidget(self)
        self.orphan_view.setObjectName("OrphanList")
        self.orphan_view.setRootIsDecorated(False)
        self.orphan_view.setAlternatingRowColors(True)
        self.orphan_view.setHeaderLabels(["Item (file gone)", "Label", "Source"])
        self.orphan_view.setToolTip("Corrections whose image file vanished; File ▸ Reload brings them back")
        self.orphan_view.currentItemChanged.connect(self._on_orphan)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.orphan_view)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.filter_combo)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(6)
        lay.addLayout(top)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.count_label)

        self._filter_timer = QTimer(self, singleShot=True, interval=150)
        self._filter_timer.timeout.connect(self._apply_filter)
        self.filter_edit.textChanged.connect(self._filter_timer.start)
        self.filter_edit.returnPressed.connect(self._apply_filter)
        self.filter_combo.currentIndexChanged.connect(self._apply_filter)
        self.view.selectionModel().currentRowChanged.connect(self._on_current_row)
        self.model.modelReset.connect(self._after_reset)
        self.model.rowsInserted.connect(self._update_count)
        # Items arrive in batches while indexing: refit once they pause, not per batch (the fit reads every row).
        self._fit_timer = QTimer(self, singleShot=True, interval=200)
        self._fit_timer.timeout.connect(self.fit_columns)
        self.model.rowsInserted.connect(lambda *_a: self._fit_timer.start())
        state.dataset_changed.connect(self._fill_orphans)
        state.current_changed.connect(self.select)
        state.active_run_changed.connect(lambda _run: self.show_errors(bool(state.preds)))

    # -- public ----------------------------------------------------------------------------------------

    def select(self, name: str | None) -> None:
        """Make ``name`` the current row (scrolled into view)."""
        row = None if name is None else self.model.row_of(name)
        sel = self.view.selectionModel()
        # _on_current_row ignores the change: the state already names it.
        if row is None:
            sel.clear()
        else:
            idx = self.model.index(row, 0)
            flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
            sel.setCurrentIndex(idx, flags)
            self._reveal(idx)

    def _reveal(self, idx: QModelIndex) -> None:
        """Scroll ``idx`` into view only when it is outside, a page at a time: below the view it becomes the top
        row, above it the bottom row. Stepping through the list then scrolls once per page, not on every step
        (a scroll repaints the whole list, which costs more than showing the image)."""
        rect, vp = self.view.visualRect(idx), self.view.viewport().rect()
        if vp.contains(rect):
            return
        below = rect.center().y() > vp.center().y()
        hint = QAbstractItemView.ScrollHint
        self.view.scrollTo(idx, hint.PositionAtTop if below else hint.PositionAtBottom)

    def set_filter_choice(self, key: str) -> None:
        """Choose one of ``FILTERS`` by key."""
        i = self.filter_combo.findData(key)
        if i >= 0:
            self.filter_combo.setCurrentIndex(i)

    def show_errors(self, on: bool) -> None:
        """Show the error column (when a run's predictions are active)."""
        self.view.setColumnHidden(COL_ERROR, not on)
        self.fit_columns()

    def fit_columns(self) -> None:
        """Give Group and Error their contents' width, each at most a fifth of the list, the name the rest."""
        room = self.view.viewport().width()
        fm = self.view.fontMetrics()
        # Widths from the texts themselves: sizeHintForColumn asks every row (seconds on 15k items).
        texts = {COL_GROUP: {it.group for it in self.state.items}, COL_ERROR: {"9999.9"}}
        for col in (COL_GROUP, COL_ERROR):
            if not self.view.isColumnHidden(col):
                text = (
                    max((fm.horizontalAdvance(t) for t in texts[col]), default=0) + 2 * fm.averageCharWidth()
                )
                want = max(text, self.view.header().sectionSizeHint(col))
                self.view.setColumnWidth(col, max(36, min(want, room // 5)))

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 (Qt override)
        """Refit the columns when the list changes size."""
        if obj is self.view.viewport() and ev.type() == QEvent.Type.Resize:
            self.fit_columns()
        return False

    def sort_by_error(self, descending: bool = True) -> None:
        """Sort the list by prediction error, largest first by default."""
        self.view.setColumnHidden(COL_ERROR, False)
        self.fit_columns()
        order = Qt.SortOrder.DescendingOrder if descending else Qt.SortOrder.AscendingOrder
        self.view.sortByColumn(COL_ERROR, order)

    def sort_by_name(self) -> None:
        """Sort the list by item name."""
        self.view.sortByColumn(COL_NAME, Qt.SortOrder.AscendingOrder)

    # -- internals -------------------------------------------------------------------------------------

    def _apply_filter(self) -> None:
        self._filter_timer.stop()
        choice = self.filter_combo.currentData()
        self.stack.setCurrentWidget(self.orphan_view if choice == ORPHANS else self.view)
        if choice == ORPHANS:
            self._fill_orphans()
        else:
            self.model.set_filter(self.filter_edit.text(), choice)
        self.filter_changed.emit()

    @property
    def showing_orphans(self) -> bool:
        """Whether the Orphans filter is chosen (the orphan list replaces the item list)."""
        return self.stack.currentWidget() is self.orphan_view

    def orphan_names(self) -> list[str]:
        """The orphans listed (the Orphans filter)."""
        view = self.orphan_view
        return [
            it.text(0) for i in range(view.topLevelItemCount()) if (it := view.topLevelItem(i)) is not None
        ]

    def _fill_orphans(self) -> None:
        text = self.filter_edit.text().strip().lower()
        self.orphan_view.clear()
        for name, rec in sorted(self.state.orphans.items()):
            if text and text not in name.lower():
                continue
            label = rec.effective
            shown = format_label(label, self.state.kind) if label is not None else "—"
            it = QTreeWidgetItem([name, shown, rec.source + (", verified" if rec.verified else "")])
            it.setToolTip(0, f"{name}: the image file is gone; its label is kept")
            self.orphan_view.addTopLevelItem(it)
        for i in range(3):
            self.orphan_view.resizeColumnToContents(i)
        if self.stack.currentWidget() is self.orphan_view:
            n = self.orphan_view.topLevelItemCount()
            self.count_label.setText(f"{n:,} orphan{'s' if n != 1 else ''} (corrections whose file is gone)")

    def _on_orphan(self, cur: QTreeWidgetItem | None, _prev: QTreeWidgetItem | None) -> None:
        if cur is not None:
            self.orphan_picked.emit(cur.text(0))

    def _on_current_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        it = self.model.item_at(current.row()) if current.isValid() else None
        if it is not None and it.name != self.state.current:
            self.state.set_current(it.name)

    def _after_reset(self) -> None:
        self._update_count()
        self.fit_columns()
        if self.state.current is not None:
            self.select(self.state.current)

    def _update_count(self, *_args) -> None:
        if self.stack.currentWidget() is self.orphan_view:
            return
        shown, total = len(self.model.view), len(self.model.items)
        groups = len({it.group for it in self.model.items}) if total < 200_000 else 0
        text = f"{shown:,} of {plural(total, 'item')}" if shown != total else plural(total, "item")
        if self.state.item_filter is not None and self.state.item_filter_label:
            text += f" ({self.state.item_filter_label})"
        if groups:
            text += f" · {plural(groups, 'group')}"
        self.count_label.setText(text)


class OpenWorker(QThread):
    """Index ``root`` and open its LabelStore in a worker thread.

    Signals (queued to the GUI thread): ``batch(list[Item])`` as items are parsed, ``opened(Dataset, LabelStore,
    records)`` at the end, ``failed(message)`` when the folder holds no usable dataset or the store fails.
    """

    batch = Signal(object)
    opened = Signal(object, object, object)
    failed = Signal(str)

    def __init__(self, root: str | Path, parent=None) -> None:
        super().__init__(parent)
        self.root = Path(root)
        self.cancel = CancelToken()
        self.first_shown = threading.Event()
        self._batches = 0

    def _on_batch(self, items: list[Item]) -> None:
        self.cancel.raise_if_now()
        self.batch.emit(list(items))
        self._batches += 1
        if self._batches == 1:
            # Indexing threads would starve the first image's decode (CPU and GIL): pause until it is on
            # screen (the window sets ``first_shown``), at most a moment.
            self.first_shown.wait(FIRST_IMAGE_WAIT_S)

    def run(self) -> None:
        """Index, open the store, read every record; report through signals, never raise."""
        from engine.data import DatasetError, open_dataset
        from engine.labels.store import LabelStore, StoreError

        try:
            ds = open_dataset(self.root, on_batch=self._on_batch, cancel=self.cancel)
            self.cancel.raise_if_now()
            store = LabelStore.open(ds)
            try:
                records = store.records()
            except BaseException:
                store.close()
                raise
            if self.cancel.now:
                store.close()
                return
            self.opened.emit(ds, store, records)
        except Cancelled:
            return
        except DatasetError as e:
            self.failed.emit(str(e) or f"{self.root} holds no recognised dataset")
        except StoreError as e:
            self.failed.emit(f"Cannot open the label store: {e}")
        except Exception as e:
            log.error("opening %s failed:\n%s", self.root, traceback.format_exc())
            self.failed.emit(f"Cannot open {self.root}: {type(e).__name__}: {e}")
