"""Small dialogs: keyboard shortcuts, About, and the label export writer they sit beside."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from imgreg_gui.actions import Actions, shortcut_text

MOUSE_HELP = [
    ("Drag the green cross", "Move the label (one drag is one undo step)"),
    ("Click (item without a label)", "Place the label"),
    ("Ctrl+click", "Move the label to the click"),
    ("Mouse wheel", "Zoom around the cursor"),
    ("Drag the image, middle-drag, Space+drag", "Pan"),
]


def shortcuts_dialog(
    parent: QWidget, actions: Actions, extra: list[tuple[str, str]] | None = None
) -> QDialog:
    """A table of every action with its shortcuts, ``extra`` (action, keys) rows, and the mouse gestures."""
    dlg = QDialog(parent)
    dlg.setWindowTitle("Keyboard shortcuts")
    rows = [(act.text().replace("&", "").rstrip("…"), shortcut_text(act)) for act in actions.all.values()]
    rows = [r for r in rows if r[1]] + list(extra or []) + MOUSE_HELP
    table = QTableWidget(len(rows), 2, dlg)
    table.setHorizontalHeaderLabels(["Action", "Keys / mouse"])
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(24)
    table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    for r, (text, keys) in enumerate(rows):
        table.setItem(r, 0, QTableWidgetItem(text))
        table.setItem(r, 1, QTableWidgetItem(keys))
    table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dlg)
    buttons.rejected.connect(dlg.reject)
    lay = QVBoxLayout(dlg)
    lay.addWidget(table)
    lay.addWidget(buttons)
    dlg.resize(560, 620)
    return dlg


def about_box(parent: QWidget) -> None:
    """The About box (version, purpose, credits)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("imgreg")
    except PackageNotFoundError:
        ver = "development"
    box = QMessageBox(parent)
    box.setWindowTitle("About imgreg")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(
        f"<h3>imgreg {ver}</h3><p>Review and correct image-regression labels (keypoints such as the Biwi head "
        "centre, or scalars such as age) and train fastai models on them.</p>"
        "<p>Labels are stored beside the dataset in <code>.imgreg/labels.sqlite</code>; source files are never "
        "modified.</p><p>MIT licence.</p>"
    )
    box.setIconPixmap(parent.windowIcon().pixmap(64, 64))
    box.open()
