"""The review queue's rows and table model: disagreement, the queue orders (label-quality score, error, spread,
error then spread), ReviewRow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from engine.core import label_distance

COLUMNS = ("#", "Item", "Group", "Score", "Error", "Spread", "Status")
SCORE_COL = COLUMNS.index("Score")
ERROR_COL = COLUMNS.index("Error")
SPREAD_COL = COLUMNS.index("Spread")
ALL_GROUPS = "All groups"
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


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def disagreement(pred: Any, label: Any, kind: str = "point") -> float | None:
    """Mean distance in pixels between predicted and labelled points; absolute difference for scalars."""
    if pred is None or label is None or not len(pred) or not len(label):
        return None
    if kind == "scalar" or len(pred) == 1 or len(label) == 1:
        return abs(float(pred[0]) - float(label[0]))
    n = 2 * (min(len(pred), len(label)) // 2)
    return label_distance(tuple(pred[:n]), tuple(label[:n])) if n else None


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
    score: float | None = None

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
            if col == SCORE_COL:
                return "Label-quality score (doubt): about 1 for a typical label, 3 or more worth a look"
            if col == SPREAD_COL:
                return "Heatmap spread of the prediction (pixels): large means diffuse, the model is unsure"
            return r.name
        return None
