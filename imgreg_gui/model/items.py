"""The item table model (a filtered, sorted view over items, label records and predictions) and navigation."""

from __future__ import annotations

import html

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QIcon

from engine.core import Item, Label, label_distance  # noqa: F401  (label_distance: part of this API)
from engine.labels.store import LabelRecord, PredictionRow
from imgreg_gui.model.state import AppState
from imgreg_gui.settings import status_icon

STATUS_TEXT = {
    "problem": "Problem",
    "verified": "Verified",
    "corrected": "Corrected",
    "accepted": "Prediction accepted",
    "labelled": "Labelled",
    "unlabelled": "No label",
    "proposed": "No label; a proposal from the active run (Enter accepts it)",
    "suggested": "Suggested",
}
FILTERS = {
    "all": "All items",
    "corrected": "Corrected",
    "unverified": "Unverified",
    "verified": "Verified",
    "problems": "Problems",
    "unlabelled": "No label",
    "proposed": "Proposals",
    "suggested": "Suggested",
}
COLUMNS = ("Item", "Group", "Error", "Score")
COL_NAME, COL_GROUP, COL_ERROR, COL_SCORE = range(4)
ItemIndex = QModelIndex | QPersistentModelIndex
R = Qt.ItemDataRole
ROLES = frozenset(
    (R.DisplayRole, R.DecorationRole, R.ToolTipRole, R.TextAlignmentRole, R.ForegroundRole, R.UserRole)
)


def item_status(item: Item, rec: LabelRecord | None) -> str:
    """One of ``STATUS_TEXT``'s keys for an item and its label record (problems win, then verified, ...).

    A problem item whose label a person has since set shows that label's status (its tooltip keeps the problem).
    """
    if item.problem and (rec is None or rec.source == "original"):
        return "problem"
    if rec is not None and rec.verified:
        return "verified"
    if rec is not None and rec.source == "corrected":
        return "corrected"
    if rec is not None and rec.source == "prediction":
        return "accepted"
    label = rec.effective if rec is not None else item.label
    return "labelled" if label is not None else "unlabelled"


def format_label(label: Label | None, kind: str = "point", short: bool = False, missing: str = "none") -> str:
    """A label in words: ``(x, y)`` pixels or the scalar value; ``short``: whole pixels, ``3 points`` for several."""
    if label is None:
        return missing
    if kind == "scalar" or len(label) == 1:
        return f"{label[0]:.4g}"
    if short:
        return f"({label[0]:.0f}, {label[1]:.0f})" if len(label) == 2 else f"{len(label) // 2} points"
    return "  ".join(f"({label[i]:.1f}, {label[i + 1]:.1f})" for i in range(0, len(label) - 1, 2))


class ItemModel(QAbstractTableModel):
    """Rows are the app state's items that pass the filters, in the chosen order; columns name, group, error and,
    while the active run's predictions carry label-quality scores, score.

    It keeps no copy of items, records or predictions: it reads them from ``state`` and follows its signals.
    """

    def __init__(self, state: AppState | None = None, parent=None) -> None:
        super().__init__(parent)
        self.state = state if state is not None else AppState(self)
        self.view: list[int] = []
        self._row_of: dict[int, int] = {}
        self.filter_text = ""
        self.filter_choice = "all"
        self.sort_column = -1
        self.sort_order = Qt.SortOrder.AscendingOrder
        self._icons: dict[str, QIcon] = {}  # data() runs on every paint: draw each status dot once
        self._suggested: set[str] = set()  # the state's suggested items, as a set while filtering
        self.has_scores = False  # the Score column exists only while the active run's predictions have scores
        st = self.state
        st.items_added.connect(self._on_items_added)
        st.dataset_changed.connect(self._rebuild)
        st.records_changed.connect(self._on_records_changed)
        st.active_run_changed.connect(self._on_active_run)
        st.item_filter_changed.connect(self._rebuild)

    # -- the state's content, read through -------------------------------------------------------------

    @property
    def items(self) -> list[Item]:
        """Every item of the open dataset (the state's list)."""
        return self.state.items

    @property
    def records(self) -> dict[str, LabelRecord]:
        """Label records by name (the state's)."""
        return self.state.records

    @property
    def preds(self) -> dict[str, PredictionRow]:
        """The active run's predictions (the state's)."""
        return self.state.preds

    @property
    def errors(self) -> dict[str, float]:
        """Label-to-prediction errors by name (the state's)."""
        return self.state.errors

    @property
    def kind(self) -> str:
        """``point`` or ``scalar``."""
        return self.state.kind

    def set_items(self, items: list[Item], records: dict[str, LabelRecord] | None = None) -> None:
        """Show these items without a store (tests, previews): they become the state's items."""
        st = self.state
        st.items, st._index_of = [], {}
        st.add_items(items)
        st.records = dict(records or {})
        self._rebuild()

    def set_predictions(self, preds: dict[str, PredictionRow]) -> None:
        """Show predictions without a store (they become the state's, with no run id)."""
        self.state.show_predictions(None, preds)

    def _on_items_added(self, new: list[Item]) -> None:
        """Items parsed while indexing: those passing the filter appear at once."""
        start = len(self.items) - len(new)
        rows = [start + i for i in range(len(new)) if self._passes(start + i)]
        if not rows:
            return
        first = len(self.view)
        self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
        for r, i in enumerate(rows):
            self._row_of[i] = first + r
        self.view.extend(rows)
        self.endInsertRows()

    def _on_records_changed(self, names: list[str]) -> None:
        """Some records changed: their rows repaint (the filter is re-applied only when it is changed)."""
        for name in names:
            self.refresh(name)

    def _on_active_run(self, _run_id: object) -> None:
        if self.sort_column == COL_ERROR and not self.preds:
            self.sort_column = -1
        if self.sort_column == COL_SCORE and not self._scores_known():
            self.sort_column = -1
        self._rebuild()

    def _scores_known(self) -> bool:
        return any(p.score is not None for p in self.preds.values())

    def score(self, name: str) -> float | None:
        """The active run's label-quality score of ``name`` (None when it has none)."""
        p = self.preds.get(name)
        return None if p is None else p.score

    def refresh(self, name: str) -> None:
        """Repaint one item's row."""
        row = self.row_of(name)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0), self.index(row, self.columnCount() - 1))

    # -- lookups ---------------------------------------------------------------------------------------

    def item(self, name: str) -> Item | None:
        """The item called ``name`` or None."""
        return self.state.item(name)

    def item_at(self, row: int) -> Item | None:
        """The item shown in ``row`` or None."""
        return self.items[self.view[row]] if 0 <= row < len(self.view) else None

    def row_of(self, name: str) -> int | None:
        """The row showing ``name``, None when filtered out or absent."""
        i = self.state._index_of.get(name)
        return None if i is None else self._row_of.get(i)

    def record(self, name: str) -> LabelRecord | None:
        """The item's label record, if known."""
        return self.records.get(name)

    def effective(self, name: str) -> Label | None:
        """The item's effective label: from its record, else the label read from the dataset."""
        return self.state.effective(name)

    def shown_status(self, it: Item) -> str:
        """The item's status as the list shows it: an unlabelled item with the active run's prediction is
        ``proposed``."""
        status = item_status(it, self.records.get(it.name))
        return "proposed" if status == "unlabelled" and self.state.proposal(it.name) else status

    def status(self, name: str) -> str:
        """The item's status key."""
        it = self.item(name)
        return "unlabelled" if it is None else item_status(it, self.records.get(name))

    def names_in_view(self) -> list[str]:
        """Item names in view order."""
        return [self.items[i].name for i in self.view]

    # -- filter and sort ---------------------------------------------------------------------------------

    def set_filter(self, text: str | None = None, choice: str | None = None) -> None:
        """Filter by a case-insensitive substring of the name and a ``FILTERS`` choice."""
        if text is not None:
            self.filter_text = text.strip().lower()
        if choice is not None:
            self.filter_choice = choice
        self._rebuild()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by name, group, error or score (items without one last); -1 restores dataset order."""
        self.sort_column, self.sort_order = column, order
        self._rebuild()

    def _passes(self, i: int) -> bool:
        it = self.items[i]
        if not self.state.passes_filter(it.name):
            return False
        if self.filter_text and self.filter_text not in it.name.lower():
            return False
        choice = self.filter_choice
        if choice == "all":
            return True
        status = item_status(it, self.records.get(it.name))
        if choice == "corrected":
            rec = self.records.get(it.name)
            return rec is not None and rec.source != "original"
        if choice == "unverified":
            return status not in ("verified", "problem")
        if choice == "verified":
            return status == "verified"
        if choice == "problems":
            return status == "problem"
        if choice == "unlabelled":
            return status == "unlabelled"
        if choice == "proposed":
            return self.shown_status(it) == "proposed"
        if choice == "suggested":
            return it.name in self._suggested
        return True

    def _rebuild(self) -> None:
        self.beginResetModel()
        self._suggested = set(self.state.suggested)
        view = [i for i in range(len(self.items)) if self._passes(i)]
        reverse = self.sort_order == Qt.SortOrder.DescendingOrder
        if self.sort_column == -1 and self.filter_choice == "suggested":  # best first, as suggest ranked them
            rank = {n: r for r, n in enumerate(self.state.suggested)}
            view.sort(key=lambda i: rank[self.items[i].name])
        elif self.sort_column == COL_NAME:
            view.sort(key=lambda i: self.items[i].name, reverse=reverse)
        elif self.sort_column == COL_GROUP:
            view.sort(key=lambda i: (self.items[i].group, self.items[i].name), reverse=reverse)
        elif self.sort_column == COL_ERROR:
            known = [i for i in view if self.items[i].name in self.errors]
            unknown = [i for i in view if self.items[i].name not in self.errors]
            known.sort(key=lambda i: self.errors[self.items[i].name], reverse=reverse)
            view = known + unknown
        elif self.sort_column == COL_SCORE:
            scores = {i: self.score(self.items[i].name) for i in view}
            scored = {i: s for i, s in scores.items() if s is not None}
            known = sorted(scored, key=scored.__getitem__, reverse=reverse)
            view = known + [i for i in view if i not in scored]
        self.has_scores = self._scores_known()
        self.view = view
        self._row_of = {i: r for r, i in enumerate(view)}
        self.endResetModel()

    # -- Qt model API -------------------------------------------------------------------------------------

    def rowCount(self, parent: ItemIndex = QModelIndex()) -> int:  # noqa: B008
        """Rows in view (0 under any parent: a flat table)."""
        return 0 if parent.isValid() else len(self.view)

    def columnCount(self, parent: ItemIndex = QModelIndex()) -> int:  # noqa: B008
        """Name, group, error (and score while the active run has scores)."""
        return 0 if parent.isValid() else len(COLUMNS) - (not self.has_scores)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        """Column titles."""
        if section >= len(COLUMNS):
            return None
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return (
                "Image file (status icon: green verified, amber corrected, purple accepted prediction, "
                "grey labelled, hollow no label, blue ring a proposal, red problem)",
                "Group (person folder, or parent folder)",
                "Distance between the label and the active run's prediction (pixels, or value difference)",
                "Label-quality score (doubt) stored by imgreg rank: about 1 for a typical label, 3 or more worth "
                "a look",
            )[section]
        return None

    def data(self, index: ItemIndex, role: int = Qt.ItemDataRole.DisplayRole):
        """Text, status icon, tooltip and colours of a cell."""
        if role not in ROLES or not index.isValid() or index.row() >= len(self.view):
            return None  # the view asks for a dozen roles per cell on every paint: answer the rest at once
        it = self.items[self.view[index.row()]]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_NAME:
                return it.name.rsplit("/", 1)[-1]
            if col == COL_GROUP:
                return it.group
            if col == COL_SCORE:
                sc = self.score(it.name)
                return "" if sc is None else f"{sc:.2f}"
            err = self.errors.get(it.name)
            return "" if err is None else f"{err:.1f}"
        if role == Qt.ItemDataRole.DecorationRole and col == COL_NAME:
            status = self.shown_status(it)
            if status not in self._icons:
                self._icons[status] = status_icon(status)
            return self._icons[status]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(it)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (COL_ERROR, COL_SCORE):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and it.problem:
            return QBrush(QColor("#e5484d"))
        if role == Qt.ItemDataRole.UserRole:
            return it.name
        return None

    def tooltip(self, it: Item) -> str:
        """The hover text of an item: name, status, labels, error, problem."""
        rec = self.records.get(it.name)
        status = self.shown_status(it)
        lines = [f"<b>{it.name}</b>", f"Status: {STATUS_TEXT[status]}"]
        if it.problem:
            lines.append(f"<span style='color:#e5484d'>Problem: {it.problem}</span>")
        eff = rec.effective if rec else it.label
        lines.append(f"Label: {format_label(eff, self.kind)}")
        if rec and rec.source != "original":
            lines.append(f"Original: {format_label(rec.original, self.kind)}")
        pred = self.preds.get(it.name)
        if pred is not None:
            word = "Proposal" if status == "proposed" else "Prediction"
            lines.append(f"{word}: {format_label(pred.pred, self.kind)}")
        if it.name in self.errors:
            lines.append(f"Error: {self.errors[it.name]:.2f}")
        sc = self.score(it.name)
        if sc is not None:
            lines.append(f"Label-quality score: {sc:.2f}")
        d = self.state.doubt(it.name)
        if d is not None:
            why = "<br>".join(html.escape(f.why) for f in d.findings)
            lines.append(f"<span style='color:#c084fc'>Doubted ({d.score:.1f}):</span> {why}")
        return "<br>".join(lines)


class Navigator:
    """Answers 'which item comes next' for the panel's filtered, sorted list (no Qt state of its own)."""

    def __init__(self, model: ItemModel) -> None:
        self.model = model

    def _row(self, name: str | None) -> int | None:
        return None if name is None else self.model.row_of(name)

    def _name(self, row: int) -> str | None:
        it = self.model.item_at(row)
        return None if it is None else it.name

    def first(self) -> str | None:
        """The first item in view."""
        return self._name(0)

    def last(self) -> str | None:
        """The last item in view."""
        return self._name(len(self.model.view) - 1)

    def next(self, name: str | None) -> str | None:
        """The item after ``name`` (the first one when ``name`` is not in view); None at the end."""
        row = self._row(name)
        return self.first() if row is None else self._name(row + 1)

    def prev(self, name: str | None) -> str | None:
        """The item before ``name`` (the first one when ``name`` is not in view); None at the start."""
        row = self._row(name)
        return self.first() if row is None else (self._name(row - 1) if row > 0 else None)

    def _group(self, row: int) -> str | None:
        it = self.model.item_at(row)
        return None if it is None else it.group

    def next_group(self, name: str | None) -> str | None:
        """The first item after ``name`` whose group differs from ``name``'s."""
        row = self._row(name)
        if row is None:
            return self.first()
        group = self._group(row)
        n = len(self.model.view)
        for r in range(row + 1, n):
            if self._group(r) != group:
                return self._name(r)
        return None

    def prev_group(self, name: str | None) -> str | None:
        """The start of ``name``'s group, or when already there, the start of the group before it."""
        row = self._row(name)
        if row is None:
            return self.first()
        start = self._group_start(row)
        if start < row:
            return self._name(start)
        return self._name(self._group_start(row - 1)) if row > 0 else None

    def _group_start(self, row: int) -> int:
        group = self._group(row)
        while row > 0 and self._group(row - 1) == group:
            row -= 1
        return row

    def neighbours(self, name: str, ahead: int, behind: int) -> tuple[list[str], list[str]]:
        """Names of up to ``ahead`` items after and ``behind`` items before ``name``, nearest first."""
        row = self._row(name)
        if row is None:
            return [], []
        n = len(self.model.view)
        after = [self._name(r) for r in range(row + 1, min(n, row + 1 + ahead))]
        before = [self._name(r) for r in range(row - 1, max(-1, row - 1 - behind), -1)]
        return [a for a in after if a], [b for b in before if b]
