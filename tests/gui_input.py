"""Real input for GUI tests: the window shown and active, focus set by clicking as a user does, keys sent to
whichever widget has the focus (so shortcuts, focus policies and event filters all take part)."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractItemView, QAbstractScrollArea, QApplication, QWidget

Mod = Qt.KeyboardModifier


def activate(qtbot, win: QWidget) -> None:
    """Show ``win`` and make it the active window, as the window manager does when a user clicks it."""
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    win.raise_()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)


def click(qtbot, widget: QWidget, pos: QPoint | None = None, mod: Mod = Mod.NoModifier) -> None:
    """A left click on ``widget`` (on its viewport for lists and views) at ``pos``; the focus follows the click."""
    target = widget.viewport() if isinstance(widget, QAbstractScrollArea) else widget
    QTest.mouseClick(target, Qt.MouseButton.LeftButton, mod, pos or target.rect().center())
    qtbot.wait(10)


def click_row(qtbot, view: QAbstractItemView, row: int) -> None:
    """Click row ``row`` of an item view."""
    idx = view.model().index(row, 0)
    view.scrollTo(idx)
    click(qtbot, view, view.visualRect(idx).center())


def focused() -> QWidget:
    """The widget that has the keyboard now (fails when none has)."""
    w = QApplication.focusWidget()
    assert w is not None, "no widget has the keyboard focus"
    return w


def press(qtbot, key: Qt.Key, mod: Mod = Mod.NoModifier, times: int = 1) -> None:
    """Press ``key`` ``times`` times on the focused widget (shortcuts see it first, as with a real keyboard)."""
    for _ in range(times):
        QTest.keyClick(focused(), key, mod)
        qtbot.wait(5)


def type_text(qtbot, text: str) -> None:
    """Type ``text`` into the focused widget."""
    QTest.keyClicks(focused(), text)
    qtbot.wait(5)


def wheel(qtbot, widget: QWidget, pos: QPoint, notches: int = 1) -> None:
    """Turn the mouse wheel ``notches`` clicks (positive: away from the user) with the cursor still at ``pos``."""
    target = widget.viewport() if isinstance(widget, QAbstractScrollArea) else widget
    for _ in range(abs(notches)):
        delta = QPoint(0, 120 if notches > 0 else -120)
        ev = QWheelEvent(
            QPointF(pos),
            QPointF(target.mapToGlobal(pos)),
            QPoint(),
            delta,
            Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier,
            Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(target, ev)
        qtbot.wait(5)
