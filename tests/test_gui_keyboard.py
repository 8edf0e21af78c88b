"""The keyboard as a user meets it: focus set by clicking, keys sent to the focused widget (tests/gui_input.py).

Arrows belong to the widget with the focus (the list moves its selection; only the image nudges), the value box
gives the keys back (Enter, Esc, letter shortcuts), and refused values are not saved.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_input import activate, click, click_row, focused, press, type_text, wheel
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from engine.data.synth import make_biwi, make_utkface
from imgreg_gui.app import is_loaded
from imgreg_gui.main_window import MainWindow

K = Qt.Key


@pytest.fixture
def win(qtbot):
    """The main window, shown and active."""
    w = MainWindow()
    w.persist = False
    qtbot.addWidget(w)
    w.resize(1000, 700)
    activate(qtbot, w)
    yield w
    w.close()


def open_ds(qtbot, w: MainWindow, root: Path) -> None:
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(root)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)


def corrected(w: MainWindow) -> int:
    return w.store.counts()["corrected"]


def test_arrows_in_the_list_move_the_selection_not_the_label(qtbot, win, tmp_path):
    open_ds(qtbot, win, make_biwi(tmp_path / "biwi", groups=1, frames=5, size=(64, 48)).root)
    names = [win.panel.model.item_at(i).name for i in range(5)]
    labels = {n: win.store.effective(n) for n in names}
    click_row(qtbot, win.panel.view, 1)
    assert focused() is win.panel.view and win.current_item_name() == names[1]
    press(qtbot, K.Key_Down, times=2)
    assert win.current_item_name() == names[3]
    press(qtbot, K.Key_Up)
    assert win.current_item_name() == names[2]
    assert corrected(win) == 0 and {n: win.store.effective(n) for n in names} == labels
    press(qtbot, K.Key_Escape)  # back to the image: now the arrows nudge
    assert focused() is win.canvas
    press(qtbot, K.Key_Down)
    x, y = labels[names[2]]
    assert win.store.effective(names[2]) == (x, y + 1) and corrected(win) == 1


def test_arrows_in_the_list_leave_ages_alone(qtbot, win, tmp_path):
    open_ds(qtbot, win, make_utkface(tmp_path / "utk", n=6).root)
    first = win.panel.model.item_at(0).name
    ages = dict(win.store.effective_labels())
    click_row(qtbot, win.panel.view, 0)
    press(qtbot, K.Key_Down, times=2)
    assert win.current_item_name() == win.panel.model.item_at(2).name != first
    assert win.store.effective_labels() == ages and corrected(win) == 0


def test_the_value_box_gives_the_keys_back(qtbot, win, tmp_path):
    open_ds(qtbot, win, make_utkface(tmp_path / "utk", n=6).root)
    box = win.value.box
    names = [win.panel.model.item_at(i).name for i in range(3)]
    click(qtbot, box)
    assert focused() in (box, box.lineEdit())
    box.lineEdit().selectAll()
    type_text(qtbot, "33")
    press(qtbot, K.Key_Return)
    assert win.store.effective(names[0]) == (33.0,) and focused() is win.canvas
    press(qtbot, K.Key_D)
    assert win.current_item_name() == names[1]
    before = win.store.effective(names[1])
    click(qtbot, box)
    box.lineEdit().selectAll()
    type_text(qtbot, "44")
    press(qtbot, K.Key_Escape)  # typing abandoned: nothing saved, the image has the keys
    assert focused() is win.canvas and win.store.effective(names[1]) == before
    assert box.value() == before[0]
    click(qtbot, box)
    press(qtbot, K.Key_D)  # a letter in the number box is the window's shortcut
    assert win.current_item_name() == names[2]


@pytest.mark.parametrize("typed", ["-50", "99999"])
def test_out_of_range_values_are_refused(qtbot, win, tmp_path, typed):
    open_ds(qtbot, win, make_utkface(tmp_path / "utk", n=6).root)
    name, box = win.current_item_name(), win.value.box
    before = win.store.effective(name)
    messages = []
    win.state.message.connect(lambda text, _ms: messages.append(text))
    click(qtbot, box)
    box.lineEdit().selectAll()
    type_text(qtbot, typed)
    press(qtbot, K.Key_Return)
    assert win.store.effective(name) == before and corrected(win) == 0
    assert any(m.startswith("Not saved:") and "outside" in m for m in messages)
    assert "Not saved" in box.toolTip() and box.value() == before[0]


def test_nudging_an_age_below_zero_is_refused(qtbot, win, tmp_path):
    open_ds(qtbot, win, make_utkface(tmp_path / "utk", n=6).root)
    name = win.current_item_name()
    win.editor.set_value(1.0)
    click(qtbot, win.canvas)
    press(qtbot, K.Key_Down, times=3)  # 1 -> 0, then refused: ages are never negative
    assert win.store.effective(name) == (0.0,)


@pytest.mark.parametrize(("start", "notches"), [(None, 4), (2.0, 4), (4.0, -2), (None, -2)])
def test_wheel_zoom_keeps_the_point_under_a_still_cursor(qtbot, win, tmp_path, start, notches):
    open_ds(qtbot, win, make_biwi(tmp_path / "biwi", groups=1, frames=2, size=(640, 480)).root)
    c = win.canvas
    if start is not None:
        c.set_scale(start)  # else from fit, as a user starts
    pos = QPoint(c.viewport().width() // 3, c.viewport().height() // 3)
    QTest.mouseMove(
        c.viewport(), QPoint(5, 5)
    )  # the last move Qt saw is elsewhere: the anchor must not use it
    under = c.mapToScene(pos)
    wheel(qtbot, c, pos, notches)
    after = c.mapToScene(pos)
    assert c.scale_factor() != pytest.approx(1.0)
    assert abs(after.x() - under.x()) <= 2 and abs(after.y() - under.y()) <= 2, (under, after)


def test_a_moved_label_is_no_longer_verified(qtbot, win, tmp_path):
    open_ds(qtbot, win, make_biwi(tmp_path / "biwi", groups=1, frames=2, size=(640, 480)).root)
    name, c = win.current_item_name(), win.canvas
    click(qtbot, c)
    press(qtbot, K.Key_V)
    assert win.store.record(name).verified
    at = c.mapFromScene(100.0, 100.0)
    click(qtbot, c, at, Qt.KeyboardModifier.ControlModifier)  # Ctrl+click moves the label there
    rec = win.store.record(name)
    assert rec.source == "corrected" and not rec.verified and win.panel.model.status(name) != "verified"
    press(qtbot, K.Key_V)
    win.revert_label()
    assert not win.store.record(name).verified
