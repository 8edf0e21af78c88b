"""The review queue: items sorted by their doubt (the audit's checks on opening, merged with the label-quality score
``imgreg rank`` stores with a run's predictions), or by how far a model's prediction is from their label, largest
first (or by the spatial head's heatmap spread: diffuse, doubtful predictions first), with next-suspect navigation
in queue order, accept / verify actions (the window's V and Ctrl+Enter move on too), a reviewed counter, filters
by group and reason, and an error histogram."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.audit.findings import REASONS
from engine.core import label_distance
from imgreg_gui import settings
from imgreg_gui.actions import Actions
from imgreg_gui.model import doubts
from imgreg_gui.model.doubts import WORTH_A_LOOK
from imgreg_gui.model.editing import Editor
from imgreg_gui.model.state import AppState
from imgreg_gui.training.plots import ErrorHistogram
from imgreg_gui.training.rank_control import RankControls
from imgreg_gui.training.review_model import (  # noqa: F401  (ReviewRow, ... are part of this API)
    ALL_GROUPS,
    ALL_REASONS,
    COLUMNS,
    DEFAULT_REPEATS,
    ORDER_SETTING,
    ORDERS,
    REASON_COL,
    REPEATS_SETTING,
    SCORE_COL,
    SPREAD_COL,
    ReviewModel,
    ReviewRow,
    order_key,
    score_words,
)
from imgreg_gui.words import plural


class ReviewPanel(RankControls, QWidget):
    """Suspect labels first: the queue, its histogram and actions, over the app state's store and predictions.

    The queue ranks by the active run's predictions (``source``); choosing another run here makes it active.
    """

    def __init__(self, state: AppState, editor: Editor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.editor = editor
        self.source: str | None = None
        self.all_rows: list[ReviewRow] = []
        self._by_name: dict[str, int] = {}
        self._syncing = False  # the panel itself moves the table's current row: no item to open
        self.error_box: QMessageBox | None = None
        self._preds: dict[str, Any] = {}  # the predictions the rows were built from (edits keep them)
        self._init_rank()
        self._build()
        self.load_repeats()
        state.dataset_changed.connect(lambda: self.refresh())
        state.active_run_changed.connect(self._follow_active_run)
        state.current_changed.connect(self.show_current)
        state.records_changed.connect(self.update_items)
        state.doubts_changed.connect(self._on_doubts)

    @property
    def kind(self) -> str:
        """``point`` or ``scalar``."""
        return self.state.kind

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.source_box = QComboBox()
        self.source_box.setToolTip("Whose predictions to rank by: a run's, or out-of-fold predictions")
        self.source_box.activated.connect(self._on_source_box)  # the user's choice only
        self._build_rank()
        top.addWidget(QLabel("Predictions"))
        top.addWidget(self.source_box, 1)
        top.addWidget(self.folds)
        top.addWidget(self.repeats)
        top.addWidget(self.rank_btn)
        lay.addLayout(top)
        filters = QHBoxLayout()
        self.unverified = QCheckBox("Unverified only")
        self.unverified.toggled.connect(lambda _on: self.rebuild())
        self.group_box = QComboBox()
        self.group_box.addItem(ALL_GROUPS)
        self.group_box.currentIndexChanged.connect(lambda _i: self.rebuild())
        self.reason_box = QComboBox()
        self.reason_box.addItem(ALL_REASONS)
        self.reason_box.setToolTip("Show only items doubted for this reason")
        self.reason_box.currentIndexChanged.connect(lambda _i: self.rebuild())
        self.counter = QLabel("")
        self.counter.setStyleSheet("font-weight: 600;")
        self.order_box = QComboBox()
        for key, text, hint in ORDERS:
            self.order_box.addItem(text, key)
            self.order_box.setItemData(self.order_box.count() - 1, hint, Qt.ItemDataRole.ToolTipRole)
        self.order_box.setToolTip(
            "Order by: doubt (default: the checks' and the run's label-quality score; the error where there is "
            "no score), error (label vs prediction), spread (diffuse heatmap = doubtful prediction), or both"
        )
        i = self.order_box.findData(settings.settings().value(ORDER_SETTING, "score"))
        self.order_box.setCurrentIndex(max(i, 0))
        self.order_box.currentIndexChanged.connect(self._on_order)
        filters.addWidget(self.unverified)
        filters.addWidget(self.group_box)
        filters.addWidget(self.reason_box)
        filters.addStretch(1)
        lay.addLayout(filters)
        order = QHBoxLayout()  # a row of its own, so the panel fits a narrow dock
        order.addWidget(QLabel("Order"))
        order.addWidget(self.order_box)
        order.addStretch(1)
        order.addWidget(self.counter)
        lay.addLayout(order)
        self.model = ReviewModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setAlternatingRowColors(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        head.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.clicked.connect(lambda idx: self.go_to(idx.row()))
        # Keyboard moves (Down, PgDown, Ctrl+Home...) open the item too, not only the highlight.
        self.table.selectionModel().currentRowChanged.connect(self._on_table_row)
        lay.addWidget(self.table, 3)
        self.histogram = ErrorHistogram()
        lay.addWidget(self.histogram, 2)
        actions = QGridLayout()  # two rows, so the panel fits a narrow dock beside the image
        self.prev_btn = QPushButton("Previous")
        self.prev_btn.setToolTip("Previous item in the queue (Shift+N)")
        self.next_btn = QPushButton("Next suspect")
        self.next_btn.setToolTip("Next item not yet reviewed, largest disagreement first (N)")
        self.accept_btn = QPushButton("Accept prediction")
        self.accept_btn.setToolTip(
            "Replace the label with the model's prediction, or with where the checks expect it when there is no "
            "prediction (undoable)"
        )
        self.verify_btn = QPushButton("Keep label, verified")
        self.verify_btn.setToolTip("The label is right: keep it and mark it verified (undoable)")
        self.advance = QCheckBox("then next")
        self.advance.setChecked(True)
        self.prev_btn.clicked.connect(self.previous)
        self.next_btn.clicked.connect(self.next_suspect)
        self.accept_btn.clicked.connect(self.accept)
        self.verify_btn.clicked.connect(self.verify)
        self.similar_btn = QPushButton("Find similar")
        self.similar_btn.setToolTip("Show the items most like this one in the Similar items panel (S)")
        self.similar_btn.setEnabled(False)  # wired to the window's action by install_shortcuts
        buttons = (
            self.prev_btn,
            self.next_btn,
            self.advance,
            self.accept_btn,
            self.verify_btn,
            self.similar_btn,
        )
        for i, w in enumerate(buttons):
            actions.addWidget(w, i // 3, i % 3)
        lay.addLayout(actions)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addWidget(self.rank_bar)
        self.keys_hint = QLabel("")
        self.keys_hint.setWordWrap(True)
        self.keys_hint.setStyleSheet("color: #6b7280;")
        lay.addWidget(self.keys_hint)

    @property
    def order(self) -> str:
        """The queue order: ``score`` (default), ``error``, ``spread`` or ``error_spread``."""
        return self.order_box.currentData() or "score"

    def set_order(self, order: str) -> None:
        """Order the queue by ``score``, ``error``, ``spread`` or ``error_spread``."""
        i = self.order_box.findData(order)
        if i >= 0:
            self.order_box.setCurrentIndex(i)

    def _on_order(self, _i: int) -> None:
        settings.set_value(ORDER_SETTING, self.order)
        self.rebuild()

    def install_shortcuts(self, host: QWidget, acts: Actions) -> None:
        """N: next suspect, Shift+N: previous, anywhere in ``host`` (the main window); the window's verify (V) and
        accept (Ctrl+Enter) actions move on to the next suspect too while this panel is shown with "then next"."""
        self.shortcuts = []
        for key, slot in (("N", self.next_suspect), ("Shift+N", self.previous)):
            sc = QShortcut(QKeySequence(key), host)
            sc.setContext(Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(slot)
            self.shortcuts.append(sc)
        if "similar" in acts.all:
            self.similar_btn.clicked.connect(acts.all["similar"].trigger)
            self.similar_btn.setEnabled(True)
        for name in ("verify", "accept"):
            # Connected after the window's own slot, so the edit is done when this runs.
            acts.all[name].triggered.connect(lambda _c=False, n=name: self._after_window_action(n))

        if "accept_suggestion" in acts.all:
            acts.all["accept_suggestion"].triggered.connect(
                lambda _c=False: self._after_window_action("accept_suggestion")
            )

        def keys_of(name: str, fallback: str) -> str:
            act = acts.all.get(name)
            seq = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText) if act is not None else ""
            return seq or fallback

        self._keys = {k: keys_of(k, fb) for k, fb in (("accept", "Ctrl+Enter"), ("verify", "V"))}
        self._keys["accept_suggestion"] = keys_of("accept_suggestion", "G")
        self._update_hint()

    def _update_hint(self) -> None:
        """The keys line, in words that fit the dataset: drag a point, or type a value."""
        keys = getattr(self, "_keys", None)
        if keys is None:
            return
        fix = (
            "or type the value in the toolbar box (Up/Down step it) to fix it"
            if self.kind == "scalar"
            else "or drag the label on the image to fix it"
        )
        self.keys_hint.setText(
            f"Keys: N next suspect, Shift+N previous, {keys['accept']} accept prediction, "
            f"{keys['accept_suggestion']} accept suggestion, {keys['verify']} verified; {fix}."
        )

    # -- sources -------------------------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        """The state's label store (None while no dataset is open)."""
        return self.state.store

    @property
    def dataset(self) -> Any:
        """The state's dataset."""
        return self.state.dataset

    def refresh(self, prefer: str | None = None) -> None:
        """Re-read the runs with predictions, choose ``prefer`` (or keep the source), and rebuild the queue."""
        ds, store = self.dataset, self.store
        self.load_repeats()
        self._update_hint()
        unit = "px" if self.kind == "point" else "abs"
        self.model.unit = unit
        self.histogram.set_unit(unit)
        runs = list(store.prediction_runs()) if store is not None else []
        if self.source not in runs:
            self.source = None
        want = prefer or self.source or (runs[-1] if runs else None)
        blocker = QSignalBlocker(self.group_box)  # refilled here: one rebuild at the end
        self.source_box.clear()
        for r in reversed(runs):
            self.source_box.addItem(r, r)
        i = self.source_box.findData(want)
        self.source_box.setCurrentIndex(i if i >= 0 else (0 if runs else -1))
        groups = ds.groups if ds is not None else []
        keep = self.group_box.currentText()
        self.group_box.clear()
        self.group_box.addItem(ALL_GROUPS)
        self.group_box.addItems(groups)
        self.group_box.setCurrentText(keep if keep in groups else ALL_GROUPS)
        blocker.unblock()
        self.source = self.source_box.currentData()
        self._update_rank_btn()
        self.rebuild()

    def _follow_active_run(self, run_id: object) -> None:
        """Rank by the new active run's predictions (a run without any leaves the queue as it is)."""
        i = self.source_box.findData(run_id) if run_id else -1
        if i < 0 and run_id and self.store is not None and run_id in self.store.prediction_runs():
            self.refresh(prefer=str(run_id))  # predictions stored since the last refresh
            return
        if i >= 0:
            self.source_box.setCurrentIndex(i)
            self.source = str(run_id)
            self.rebuild()

    def _on_source_box(self, _i: int) -> None:
        self.state.set_active_run(self.source_box.currentData())

    # -- the queue -------------------------------------------------------------------------------------

    def rebuild(self) -> None:
        """Recompute every error against the current labels, sort largest first, apply the filters."""
        ds, store, st = self.dataset, self.store, self.state
        rows: list[ReviewRow] = []
        self._preds = {}
        if ds is not None and store is not None:
            preds: dict[str, Any] = {}
            if self.source:
                preds = st.preds if self.source == st.active_run else store.predictions(self.source)
            self._preds = preds
            found = self._doubts()
            records = st.records
            for it in ds.items:
                p, d = preds.get(it.name), found.get(it.name)
                if p is None and d is None:
                    continue
                rec = records.get(it.name)
                row = ReviewRow(
                    0, it.name, it.group, None, bool(rec and rec.verified), rec.source if rec else "original"
                )
                if p is not None:
                    err = label_distance(p.pred, rec.effective if rec is not None else it.label)
                    row.error, row.spread = (p.error if err is None else err), p.spread
                self._set_doubt(row, p, d)
                rows.append(row)
        rows.sort(key=order_key(self.order))
        for i, r in enumerate(rows, 1):
            r.rank = i
        self.all_rows = rows
        self._fill_reasons(rows)
        group, reason = self.group_box.currentText(), self.reason_box.currentText()
        visible = [
            r
            for r in rows
            if (group == ALL_GROUPS or r.group == group)
            and (reason == ALL_REASONS or reason in r.reasons)
            and not (self.unverified.isChecked() and r.verified)
        ]
        self.model.set_rows(visible)
        self.table.setColumnHidden(SPREAD_COL, not any(r.spread is not None for r in rows))
        self.table.setColumnHidden(SCORE_COL, not any(r.score is not None for r in rows))
        self.table.setColumnHidden(REASON_COL, not any(r.reasons for r in rows))
        text, tip = score_words(rows)
        i = self.order_box.findData("score")
        self.order_box.setItemText(i, text)
        self.order_box.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self._by_name = {r.name: i for i, r in enumerate(visible)}
        self.histogram.set_errors([r.error for r in visible if r.error is not None])
        self._update_counter()
        self.show_current(self._current())
        if self.source:
            self.status.setText("")
        elif rows:
            worth = sum(1 for r in rows if r.score is not None and r.score >= WORTH_A_LOOK)
            self.status.setText(
                f"{plural(len(rows), 'label')} checked with no model, {worth:,} worth a look (doubt "
                f"{WORTH_A_LOOK:g} or more): hover a reason to read why."
            )
        elif ds is not None:
            self.status.setText(
                "The checks doubt no label. Train a run and Predict all, or Rank out-of-fold."
            )
        else:
            self.status.setText("No predictions yet: train a run and Predict all, or Rank out-of-fold.")

    def _doubts(self) -> dict[str, doubts.Doubt]:
        """The merged doubts for the queue's source: the state's when it ranks by the active run."""
        st = self.state
        if not self.source or self.source == st.active_run:
            return st.doubts
        run = doubts.run_findings(self.source, self._preds, st.effective, self.kind)
        return {d.item: d for d in doubts.merge(st.findings, run)}

    @staticmethod
    def _set_doubt(row: ReviewRow, p: Any, d: doubts.Doubt | None) -> None:
        scores = [
            v
            for v in (p.score if p is not None else None, d.score if d is not None else None)
            if v is not None
        ]
        row.score = max(scores) if scores else None
        row.model_score = p is not None and p.score is not None
        row.reasons, row.why = doubts.reasons(d), doubts.why(d)

    def _fill_reasons(self, rows: list[ReviewRow]) -> None:
        keep = self.reason_box.currentText()
        present = [r for r in REASONS if any(r in row.reasons for row in rows)]
        with QSignalBlocker(self.reason_box):
            self.reason_box.clear()
            self.reason_box.addItem(ALL_REASONS)
            self.reason_box.addItems(present)
            self.reason_box.setCurrentText(keep if keep in present else ALL_REASONS)
        self.reason_box.setVisible(bool(present))

    def _on_doubts(self) -> None:
        """New doubts (the audit finished, or re-ran after an edit): update the rows in place so the queue stays
        put; a newly doubted item not in the queue rebuilds it."""
        found = self._doubts()
        if not self.all_rows or any(n not in {r.name for r in self.all_rows} for n in found):
            self.rebuild()
            return
        for r in self.all_rows:
            self._set_doubt(r, self._preds.get(r.name), found.get(r.name))
        self.model.rows_changed()

    @property
    def rows(self) -> list[ReviewRow]:
        """The visible queue, largest disagreement first."""
        return self.model.rows

    def names(self) -> list[str]:
        """Visible item names in queue order."""
        return [r.name for r in self.model.rows]

    def reviewed_count(self) -> tuple[int, int]:
        """(reviewed, total) over the visible queue."""
        return sum(r.reviewed for r in self.model.rows), len(self.model.rows)

    def _update_counter(self) -> None:
        k, n = self.reviewed_count()
        self.counter.setText(f"reviewed {k} of {n}")

    def update_items(self, names: list[str]) -> None:
        """Labels of ``names`` changed: refresh their error and state in place (the order stays put)."""
        if self.store is None or not self.model.rows:
            return
        for name in names:
            i = self._by_name.get(name)
            rec = self.state.records.get(name)
            if i is None or rec is None:
                continue
            r = self.model.rows[i]
            p = self._preds.get(name)  # the rows were built from these: no store query per edit
            err = label_distance(p.pred, rec.effective) if p is not None else None
            r.error = err if err is not None else r.error
            r.verified, r.source = rec.verified, rec.source
            self.model.row_changed(i)
        self.histogram.set_errors([r.error for r in self.model.rows if r.error is not None])
        self._update_counter()
        self.show_current(self._current())

    # -- navigation and actions -----------------------------------------------------------------------------

    def _current(self) -> str | None:
        return self.state.current

    def show_current(self, name: object) -> None:
        """Select the current item's row and mark its error on the histogram."""
        i = self._by_name.get(name) if isinstance(name, str) else None
        has_pred = isinstance(name, str) and self.state.prediction(name) is not None
        self.accept_btn.setText("Accept prediction" if has_pred or i is None else "Accept suggestion")
        self._syncing = True
        try:
            if i is None:
                self.table.clearSelection()
                self.histogram.mark_error(None)
            else:
                self.table.selectRow(i)
                self.table.scrollTo(self.model.index(i, 0))
                self.histogram.mark_error(self.model.rows[i].error)
        finally:
            self._syncing = False

    def _on_table_row(self, cur: Any, _prev: Any) -> None:
        if not self._syncing and cur.isValid():
            self.go_to(cur.row())

    def go_to(self, i: int) -> None:
        """Show row ``i``'s item in the window."""
        if 0 <= i < len(self.model.rows):
            self.state.set_current(self.model.rows[i].name)
            self.show_current(self.model.rows[i].name)

    def next_suspect(self) -> str | None:
        """Go to the next item not yet reviewed after the current one in queue order (wrapping; from the head when
        the current item is not in the queue); returns its name."""
        rows = self.model.rows
        if not rows:
            return None
        cur = self._by_name.get(self._current() or "", -1)
        for k in range(1, len(rows) + 1):
            i = (cur + k) % len(rows)
            if not rows[i].reviewed and i != cur:
                self.go_to(i)
                return rows[i].name
        self.status.setText("Every item in the queue is reviewed.")
        return None

    def previous(self) -> str | None:
        """Go to the item before the current one in the queue."""
        rows = self.model.rows
        if not rows:
            return None
        cur = self._by_name.get(self._current() or "", len(rows))
        i = max(0, cur - 1)
        self.go_to(i)
        return rows[i].name

    def accept(self) -> None:
        """Accept the model's prediction for the current item, or the checks' suggestion where there is no
        prediction (undoable), then move on."""
        cur = self._current()
        if cur in self._by_name:
            if self.state.prediction(cur) is not None:
                self.editor.accept_prediction()
            else:
                self.editor.accept_suggestion()
            self._after_action()

    def verify(self) -> None:
        """Keep the current item's label and mark it verified (undoable), then move on."""
        name = self._current()
        if name in self._by_name:
            rec = self.state.record(name) if name is not None else None
            if rec is None or not rec.verified:  # the window's action toggles; never clear a flag from here
                self.editor.mark_verified()
            self._after_action()

    def on_screen(self) -> bool:
        """Whether the panel can be seen: shown, and not a dock tab behind another (Qt moves those off screen)."""
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def _after_window_action(self, name: str) -> None:
        """The window's V or Ctrl+Enter acted on the current item: move on like the panel's buttons do, when the
        panel is on screen, "then next" is ticked, the item is in the queue and the action reviewed it."""
        cur = self._current()
        if not (self.advance.isChecked() and self.on_screen() and cur in self._by_name and self.store):
            return
        rec = self.state.record(cur or "")
        done = {"verify": rec and rec.verified, "accept": rec and rec.source == "prediction"}
        if done.get(name, rec is not None and rec.source != "original"):
            self._after_action()

    def _after_action(self) -> None:
        self.update_items([self._current() or ""])
        if self.advance.isChecked():
            self.next_suspect()
