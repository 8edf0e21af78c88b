"""Find similar: a strip of thumbnails of an item's nearest neighbours with distance, label and error.

Plain inputs only (``Neighbour`` rows, e.g. from ``engine.runs.embeddings.ExactIndex.neighbours`` or
``imgreg similar --json``); a click emits ``item_clicked(name)``, *Show in item list* ``show_in_list()``, *Cancel*
(while embeddings are computed, ``set_progress``) ``cancel_requested()``. Thumbnails decode off the GUI thread through
``ImageLoader``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QPointF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from imgreg_gui.jobs.image_loader import ImageLoader
from imgreg_gui.model.items import format_label

THUMB = 96
NAME_ROLE = Qt.ItemDataRole.UserRole


@dataclass
class Neighbour:
    """One similar item: its name, image path, distance to the query, label and prediction error (if known)."""

    item: str
    path: str
    distance: float
    label: tuple[float, ...] | None = None
    error: float | None = None


def neighbour_text(n: Neighbour) -> str:
    """The caption under a thumbnail: distance, label, error."""
    err = f"\nerror {n.error:.3g}" if n.error is not None else ""
    return f"d {n.distance:.3f}\n{format_label(n.label, short=True, missing='no label')}{err}"


def neighbour_tip(n: Neighbour) -> str:
    """The tooltip of a thumbnail: name, distance, label."""
    return (
        f"{n.item}\ndistance {n.distance:.4f}\nlabel {format_label(n.label, short=True, missing='no label')}"
    )


def query_text(query: str, label: tuple[float, ...] | None, error: float | None, note: str = "") -> str:
    """The panel's title: the query's file name, its label and error, and where the embeddings come from."""
    lab = format_label(label, short=True, missing="no label")
    lab = lab if label is None else f"label {lab}"
    err = f", error {error:.3g}" if error is not None else ""
    return f"Similar to {Path(query).name}: {lab}{err}" + (f" ({note})" if note else "")


def neighbours_from_json(
    obj: dict, paths: dict[str, str], errors: dict[str, float] | None = None
) -> list[Neighbour]:
    """``Neighbour`` rows from ``imgreg similar --json``'s object, with image paths and errors by item name."""
    errors = errors or {}
    out = []
    for n in obj.get("neighbours", []):
        lab = tuple(n["label"]) if n.get("label") is not None else None
        out.append(
            Neighbour(n["item"], paths.get(n["item"], ""), float(n["distance"]), lab, errors.get(n["item"]))
        )
    return out


def _placeholder() -> QPixmap:
    pm = QPixmap(THUMB, THUMB)
    pm.fill(QColor(60, 60, 60))
    return pm


class SimilarPanel(QWidget):
    """Thumbnails of the nearest items, nearest first; clicking one emits ``item_clicked(name)``."""

    item_clicked = Signal(str)
    show_in_list = Signal()
    cancel_requested = Signal()

    def __init__(self, loader: ImageLoader | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loader = loader or ImageLoader(capacity=64, parent=self)
        self.loader.ready.connect(self._on_ready)
        self.loader.failed.connect(self._on_failed)
        self.title = QLabel("Find similar (S): the items most like the current one")
        self.title.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setFormat("embedded %v / %m")
        self.progress.hide()
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop computing embeddings (those done so far are kept)")
        self.cancel_btn.clicked.connect(self.cancel_requested)
        self.cancel_btn.hide()
        self.list_btn = QPushButton("Show in item list")
        self.list_btn.setToolTip(
            "Filter the item list to these items (the filter shows in the list; clear it there)"
        )
        self.list_btn.clicked.connect(self.show_in_list)
        self.list_btn.setEnabled(False)
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 24, THUMB + 60))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setMovement(QListWidget.Movement.Static)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(True)
        self.list.itemClicked.connect(self._clicked)
        self.list.itemActivated.connect(self._clicked)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.progress)
        top.addWidget(self.cancel_btn)
        top.addWidget(self.list_btn)
        lay.addLayout(top)
        lay.addWidget(self.list, 1)
        self._rows: dict[str, QListWidgetItem] = {}  # loader key -> item still waiting for its thumbnail
        self._shown: dict[str, tuple[Neighbour, QListWidgetItem]] = {}
        self._thumbs: dict[str, tuple[QImage, float]] = {}  # item -> thumbnail, its scale from the image
        self._note = ""
        self.query: str | None = None

    def set_results(
        self,
        query: str,
        rows: list[Neighbour],
        note: str = "",
        label: tuple[float, ...] | None = None,
        error: float | None = None,
    ) -> None:
        """Show ``rows`` (nearest first) as the neighbours of ``query`` (whose ``label`` and ``error`` the title
        shows)."""
        self.query = query
        self.set_progress(None)
        self.list_btn.setEnabled(bool(rows))
        self._note = note
        self.title.setText(query_text(query, label, error, note))
        self.title.setToolTip(query)
        self.list.clear()
        self._rows.clear()
        self._shown.clear()
        self._thumbs.clear()
        for n in rows:
            it = QListWidgetItem(QIcon(_placeholder()), neighbour_text(n))
            it.setData(NAME_ROLE, n.item)
            it.setToolTip(neighbour_tip(n))
            self.list.addItem(it)
            self._shown[n.item] = (n, it)
            if n.path:
                self._rows[self.loader.key(n.path)] = it
                img = self.loader.request(n.path)
                if img is not None:
                    self._set_thumb(it, img)

    def set_message(self, text: str) -> None:
        """Show a message instead of results (computing, no embeddings, errors)."""
        self.title.setText(text)
        self.title.setToolTip(text)
        self.list_btn.setEnabled(False)
        self.list.clear()
        self._rows.clear()
        self._shown.clear()
        self.query = None

    def update_item(self, name: str, label: tuple[float, ...] | None, error: float | None) -> bool:
        """New label and error of a shown item (the query or a neighbour), e.g. after an edit or its undo: the
        caption (or title) changes in place; returns whether ``name`` is shown."""
        if name == self.query:
            self.title.setText(query_text(name, label, error, self._note))
        if name not in self._shown:
            return name == self.query
        n, it = self._shown[name]
        n = replace(n, label=label, error=error)
        self._shown[name] = (n, it)
        it.setText(neighbour_text(n))
        it.setToolTip(neighbour_tip(n))
        self._draw_thumb(name)
        return True

    def shown(self) -> list[str]:
        """The query and the neighbours shown (empty when a message is shown instead)."""
        return ([self.query] if self.query else []) + list(self._shown)

    def set_progress(self, done: int | None, total: int = 0) -> None:
        """Show embedding progress with a Cancel button (``done`` None hides both)."""
        on = done is not None
        self.progress.setVisible(on)
        self.cancel_btn.setVisible(on)
        if done is not None:
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)

    def names(self) -> list[str]:
        """The neighbours shown, nearest first."""
        return [self.list.item(i).data(NAME_ROLE) for i in range(self.list.count())]

    def thumbnails_loaded(self) -> bool:
        """Whether every thumbnail has arrived (or failed)."""
        return not self._rows

    def _set_thumb(self, it: QListWidgetItem, img: QImage) -> None:
        thumb = img.scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        name = it.data(NAME_ROLE)
        self._thumbs[name] = (thumb, thumb.width() / max(1, img.width()))
        self._draw_thumb(name)

    def _draw_thumb(self, name: str) -> None:
        """The thumbnail with the item's point label drawn on it (green crosses, as on the canvas)."""
        if name not in self._thumbs or name not in self._shown:
            return
        thumb, scale = self._thumbs[name]
        n, it = self._shown[name]
        pix = thumb.copy()  # painted afresh each time: the thumbnail itself stays clean
        label = n.label
        if label is not None and len(label) >= 2 and len(label) % 2 == 0:
            p = QPainter(pix)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            for x, y in zip(label[::2], label[1::2], strict=True):
                cx, cy = x * scale, y * scale
                for colour, width in ((QColor(0, 0, 0, 160), 4.0), (QColor("#22c55e"), 2.0)):
                    p.setPen(QPen(colour, width))
                    p.drawLine(QPointF(cx - 6, cy), QPointF(cx + 6, cy))
                    p.drawLine(QPointF(cx, cy - 6), QPointF(cx, cy + 6))
            p.end()
        it.setIcon(QIcon(QPixmap.fromImage(pix)))

    def _on_ready(self, key: str, img: QImage) -> None:
        it = self._rows.pop(key, None)
        if it is not None:
            self._set_thumb(it, img)

    def _on_failed(self, key: str, reason: str) -> None:
        it = self._rows.pop(key, None)
        if it is not None:
            it.setText(it.text() + f"\n{reason}")

    def _clicked(self, it: QListWidgetItem) -> None:
        self.item_clicked.emit(it.data(NAME_ROLE))
