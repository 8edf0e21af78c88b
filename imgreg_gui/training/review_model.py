"""The review queue's rows and table model: the queue orders (doubt or label-quality score, error, spread, error
then spread), their words for what the rows hold, ReviewRow with its reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

COLUMNS = ("#", "Item", "Group", "Score", "Reason", "Error", "Spread", "Status")
SCORE_COL = COLUMNS.index("Score")
REASON_COL = COLUMNS.index("Reason")
ERROR_COL = COLUMNS.index("Error")
SPREAD_COL = COLUMNS.index("Spread")
ALL_GROUPS = "All groups"
ALL_REASONS = "All reasons"
ORDERS = (
    (
        "score",
        "label-quality score",
        "Largest doubt first: the residual against the residuals of items the model sees alike (imgreg rank's "
        "score); runs without scores fall back to the error",
    ),
    ("error", "error", "Largest disagreement between prediction and label first"),
    ("spread", "spread", "Most diffuse heatmap first: the predictions the model is least sure of"),
    (
        "error_spread",
        "error, then spread",
        "Largest error first (to the whole pixel); equal errors and unlabelled items by spread",
    ),
)
ORDER_SETTING = "review/order"
REPEATS_SETTING = "review/repeats"  # one per kind: review/repeats/scalar, review/repeats/point
# planted wrong ages in the top k (bench_label_errors.py, 5 folds): 0.45 with one round, 0.53 with two, 0.57 with
# three; wrong points 0.96 with one
DEFAULT_REPEATS = {"scalar": 2, "point": 1}
Index = QModelIndex | QPersistentModelIndex


def order_key(order: str):
    """The sort key of a queue order (``error``, ``spread``, ``error_spread``): largest first, unknowns last."""

    def big_first(v: float | None, step: float = 0.0) -> tuple[bool, float]:
        if v is None:
            return True, 0.0
        return False, -(round(v / step) * step if step else v)

    if order == "score":
        return lambda r: (big_first(r.score), big_first(r.error))
    if order == "spread":
        return lambda r: (big_first(r.spread), big_first(r.error))
    if order == "error_spread":
        return lambda r: (big_first(r.error, 1.0), big_first(r.spread))
    return lambda r: big_first(r.error)


def score_words(rows: list[ReviewRow]) -> tuple[str, str]:
    """The ``score`` order's text and tip, by what the rows hold: a run's label-quality scores, the checks' doubt
    alone, or no score at all (then the queue is ordered by the error)."""
    if any(r.model_score for r in rows):
        return ORDERS[0][1], ORDERS[0][2]
    if any(r.reasons for r in rows):
        return (
            "doubt",
            "Largest doubt first: how strongly the checks (frames around it, look-alikes, duplicates) disagree",
        )
    return (
        "score (none here: by error)",
        "No score for these items (rank out-of-fold to get some): largest error first",
    )


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


@dataclass
class ReviewRow:
    """One item of the queue: its rank by disagreement, error against its current label, and review state."""

    rank: int
    name: str
    group: str
    error: float | None
    verified: bool = False
    source: str = "original"
    spread: float | None = None
    score: float | None = None  # the strongest doubt: the run's label-quality score or a check's
    reasons: tuple[str, ...] = ()  # why it is doubted (engine.audit.findings.REASONS), strongest first
    why: str = ""  # the same in words, one per line
    model_score: bool = False  # the score includes the run's label-quality score

    @property
    def reviewed(self) -> bool:
        """Verified, corrected or accepted."""
        return self.verified or self.source != "original"

    @property
    def status(self) -> str:
        """Short state text."""
        parts = (
            [] if self.source == "original" else [{"prediction": "accepted"}.get(self.source, self.source)]
        )
        if self.verified:
            parts.append("verified")
        return ", ".join(parts)


class ReviewModel(QAbstractTableModel):
    """The visible queue rows as a table."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.rows: list[ReviewRow] = []
        self.unit = "px"

    def set_rows(self, rows: list[ReviewRow]) -> None:
        """Replace every row."""
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def row_changed(self, i: int) -> None:
        """Repaint row ``i``."""
        self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def rows_changed(self) -> None:
        """Repaint every row (one signal, however long the queue)."""
        if self.rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(COLUMNS) - 1))

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 (Qt override)
        """Number of visible rows."""
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 (Qt override)
        """Number of columns."""
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:  # noqa: N802
        """Column titles."""
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            name = COLUMNS[section]
            return f"{name} ({self.unit})" if name in ("Error", "Spread") else name
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Cell text, alignment and the reviewed rows' colour."""
        if not index.isValid():
            return None
        r, col = self.rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return str(r.rank)
            if col == 1:
                return r.name
            if col == 2:
                return r.group
            if col == SCORE_COL:
                return _num(r.score)
            if col == REASON_COL:
                return ", ".join(r.reasons)
            if col == ERROR_COL:
                return _num(r.error)
            if col == SPREAD_COL:
                return _num(r.spread)
            return r.status
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (0, SCORE_COL, ERROR_COL, SPREAD_COL):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and r.reviewed:
            return QBrush(QColor("#16a34a"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == REASON_COL and r.why:
                return r.why
            if col == SCORE_COL:
                return "Doubt about the label: about 1 for a typical label, 3 or more worth a look"
            if col == SPREAD_COL:
                return "Heatmap spread of the prediction (pixels): large means diffuse, the model is unsure"
            return r.name
        return None
