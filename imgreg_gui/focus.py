"""Where the keyboard goes back to: Esc (and Enter in the value box) return it to the image, and letter shortcuts
(D, A, V, ...) pass through a field that has no use for letters, so no widget traps the keys."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QAbstractSpinBox, QWidget

ENTER = (Qt.Key.Key_Return, Qt.Key.Key_Enter)


def numeric_key(ev: QKeyEvent) -> bool:
    """Whether a key press can be part of typing a number (digits, sign, point, editing keys)."""
    text = ev.text()
    return not text or not text.isalpha() or bool(ev.modifiers() & ~Qt.KeyboardModifier.ShiftModifier)


class ReturnToCanvas(QObject):
    """Event filter for panel widgets: Esc gives the focus back to ``canvas``; on a spin box Enter does too (after
    the value is committed) and letters are left to the window's shortcuts."""

    def __init__(self, canvas: QWidget, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas

    def watch(self, *widgets: QWidget) -> None:
        """Filter the keys of ``widgets``."""
        for w in widgets:
            w.installEventFilter(self)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 (Qt override)
        """Esc and Enter hand the keyboard back; letters in a number box become shortcuts."""
        t = ev.type()
        if not isinstance(ev, QKeyEvent) or t not in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
            return False
        spin = isinstance(obj, QAbstractSpinBox)
        if t == QEvent.Type.ShortcutOverride:
            if spin and not numeric_key(ev):
                ev.ignore()  # not wanted by the box: the shortcut (D next item, V verify, ...) fires
                return True
            return False
        if ev.key() == Qt.Key.Key_Escape:
            if spin:  # typing abandoned: show the stored value again, so leaving the box saves nothing
                obj.setValue(obj.value())  # type: ignore[attr-defined]
            self.canvas.setFocus(Qt.FocusReason.ShortcutFocusReason)
            return True
        if spin and ev.key() in ENTER:  # leaving the box commits the typed value (editingFinished)
            self.canvas.setFocus(Qt.FocusReason.ShortcutFocusReason)
            return True
        return False
