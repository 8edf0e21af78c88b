"""Small dialogs: keyboard shortcuts, About, and the label export writer they sit beside."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.core import Label
from engine.labels.store import Change
from imgreg_gui.actions import Actions, shortcut_text
from imgreg_gui.model.items import format_label
from imgreg_gui.words import plural

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


def change_text(c: Change) -> str:
    """What one history row did, in words."""
    if c.kind == "correct":
        return "Accepted prediction" if c.new_source == "prediction" else "Corrected"
    if c.kind == "verify":
        return "Marked verified" if c.verified else "Verified mark cleared"
    return CHANGE_WORDS.get(c.kind, c.kind)


CHANGE_WORDS = {"revert": "Reverted to original", "set_state": "Undo / redo", "sync": "Source file changed"}


def history_dialog(parent: QWidget, name: str, changes: list[Change], kind: str) -> QDialog:
    """The label history of item ``name``, newest first: when, what, the label before and after, verified."""
    dlg = QDialog(parent)
    dlg.setWindowTitle(f"Label history — {name}")
    rows = sorted(changes, key=lambda c: c.time, reverse=True)
    table = QTableWidget(len(rows), 5, dlg)
    table.setObjectName("HistoryTable")
    table.setHorizontalHeaderLabels(["Time", "Change", "Before", "After", "Verified"])
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)

    def shown(label: Label | None, source: str) -> str:
        return f"{format_label(label, kind)} ({source})" if label is not None else f"none ({source})"

    for r, c in enumerate(rows):
        cells = [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.time)), change_text(c),
                 shown(c.old, c.old_source), shown(c.new, c.new_source), "yes" if c.verified else ""]  # fmt: skip
        for col, text in enumerate(cells):
            table.setItem(r, col, QTableWidgetItem(text))
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    note = QLabel(
        "No changes yet: the label is the dataset's own." if not rows else plural(len(rows), "change")
    )
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dlg)
    buttons.rejected.connect(dlg.reject)
    lay = QVBoxLayout(dlg)
    lay.addWidget(note)
    lay.addWidget(table)
    lay.addWidget(buttons)
    dlg.resize(760, 360)
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
