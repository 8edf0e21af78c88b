"""The main window end to end (offscreen): open, navigate, correct with mouse and keys, undo/redo, reopen."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from engine.data.synth import make_biwi, make_folder
from engine.labels.store import PredictionRow
from imgreg_gui.app import is_loaded
from imgreg_gui.main_window import MainWindow


@pytest.fixture
def biwi(tmp_path: Path) -> Path:
    """A tiny Biwi-layout dataset: 2 groups x 4 frames of 64x48."""
    return make_biwi(tmp_path / "biwi", groups=2, frames=4, size=(64, 48)).root


@pytest.fixture
def win(qtbot):
    """A shown main window, closed at the end."""
    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(900, 640)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def open_ds(qtbot, w: MainWindow, root: Path, item: str | None = None) -> None:
    """Open ``root`` and wait until the dataset and the first image are shown."""
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(root, item=item)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)


def vp_pos(w: MainWindow, x: float, y: float) -> QPoint:
    """Viewport position of image pixel (x, y)."""
    return w.canvas.mapFromScene(QPointF(x, y))


def label(w: MainWindow) -> tuple[float, ...]:
    """The current item's effective label from the store."""
    return w.store.effective(w.current_item_name())


def test_open_and_navigate(qtbot, win, biwi):
    open_ds(qtbot, win, biwi)
    names = [it.name for it in win.dataset.items]
    assert len(names) == 8 and win.current_item_name() == names[0]
    assert win.canvas.image_size == (64, 48)
    win.next_item()
    assert win.current_item_name() == names[1]
    win.prev_item()
    assert win.current_item_name() == names[0]
    win.next_group()
    assert win.current_item_name() == names[4]
    win.prev_group()
    assert win.current_item_name() == names[0]
    win.last_item()
    assert win.current_item_name() == names[-1]
    win.first_item()
    qtbot.waitUntil(lambda: is_loaded(win))
    # Keyboard: D / PgDown next, A previous, End last, Home first.
    win.canvas.setFocus()
    QTest.keyClick(win.canvas, Qt.Key.Key_D)
    assert win.current_item_name() == names[1]
    QTest.keyClick(win.canvas, Qt.Key.Key_PageDown)
    assert win.current_item_name() == names[2]
    QTest.keyClick(win.canvas, Qt.Key.Key_A)
    assert win.current_item_name() == names[1]
    QTest.keyClick(win.canvas, Qt.Key.Key_End)
    assert win.current_item_name() == names[-1]
    qtbot.waitUntil(lambda: is_loaded(win))
    assert win.canvas.name == names[-1]


def drag(
    w: MainWindow, start: tuple[float, float], end: tuple[float, float], mod=Qt.KeyboardModifier.NoModifier
):
    """Press at image pixel ``start``, move in steps, release at ``end`` (left button)."""
    vp = w.canvas.viewport()
    a, b = vp_pos(w, *start), vp_pos(w, *end)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, mod, a)
    for t in (0.25, 0.5, 0.75, 1.0):
        QTest.mouseMove(vp, QPoint(round(a.x() + (b.x() - a.x()) * t), round(a.y() + (b.y() - a.y()) * t)))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, mod, b)
    return w.canvas.mapToScene(b)


def close_to(a, b, tol: float = 0.5) -> bool:
    return a is not None and b is not None and all(math.isclose(x, y, abs_tol=tol) for x, y in zip(a, b))


def test_drag_the_cross_is_one_undoable_edit(qtbot, win, biwi):
    open_ds(qtbot, win, biwi)
    original = label(win)
    target = drag(win, original[:2], (original[0] + 7, original[1] - 5))
    assert close_to(label(win), (target.x(), target.y()))
    assert close_to(label(win), (original[0] + 7, original[1] - 5), tol=1.0)
    rec = win.store.record(win.current_item_name())
    assert rec.source == "corrected" and win.undo_stack.count() == 1
    win.undo()
    assert label(win) == original and win.store.record(win.current_item_name()).source == "original"
    win.redo()
    assert close_to(label(win), (target.x(), target.y()))
    assert win.canvas.label == label(win)  # the canvas follows the store


def test_ctrl_click_places_and_click_places_when_unlabelled(qtbot, win, biwi, tmp_path):
    open_ds(qtbot, win, biwi)
    vp = win.canvas.viewport()
    pos = vp_pos(win, 10, 12)
    QTest.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, pos)
    at = win.canvas.mapToScene(pos)
    assert close_to(label(win), (at.x(), at.y()))
    # Place mode (C): the next plain click puts the label there, then the mode ends.
    QTest.keyClick(win.canvas, Qt.Key.Key_C)
    assert win.acts.place.isChecked() and win.canvas.place_mode
    pos = vp_pos(win, 40, 30)
    QTest.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    at = win.canvas.mapToScene(pos)
    assert close_to(label(win), (at.x(), at.y())) and not win.acts.place.isChecked()
    # An unlabelled folder: a plain click places the label.
    root = make_folder(tmp_path / "plain", n=2, size=(64, 48)).root
    open_ds(qtbot, win, root)
    assert label(win) is None
    pos = vp_pos(win, 30, 20)
    QTest.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    at = win.canvas.mapToScene(pos)
    assert close_to(label(win), (at.x(), at.y()))
    assert win.panel.model.status(win.current_item_name()) == "corrected"


def test_nudges_merge_into_one_undo_step(qtbot, win, biwi):
    open_ds(qtbot, win, biwi)
    x, y = label(win)
    win.canvas.setFocus()
    for key in (Qt.Key.Key_Right, Qt.Key.Key_Right, Qt.Key.Key_Right):
        QTest.keyClick(win.canvas, key)
    QTest.keyClick(win.canvas, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    QTest.keyClick(win.canvas, Qt.Key.Key_Left)
    assert close_to(label(win), (x + 2, y + 10), tol=1e-9)
    assert win.undo_stack.count() == 1
    QTest.keyClick(win.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert label(win) == (x, y)
    QTest.keyClick(win.canvas, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert close_to(label(win), (x + 2, y + 10), tol=1e-9)
    QTest.keyClick(win.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(
        win.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    assert close_to(label(win), (x + 2, y + 10), tol=1e-9)
    # Nudging another item starts a new undo step; coming back starts another.
    first = win.current_item_name()
    win.next_item()
    QTest.keyClick(win.canvas, Qt.Key.Key_Up)
    win.prev_item()
    QTest.keyClick(win.canvas, Qt.Key.Key_Up)
    assert win.undo_stack.count() == 3
    win.next_item()
    win.undo()  # undo jumps to the item it changes
    assert win.current_item_name() == first
    assert close_to(label(win), (x + 2, y + 10), tol=1e-9)


def test_accept_prediction_revert_and_verify(qtbot, win, biwi):
    open_ds(qtbot, win, biwi)
    name = win.current_item_name()
    original = label(win)
    rows = [PredictionRow(it.name, (5.0 + i, 6.0), None, None) for i, it in enumerate(win.dataset.items)]
    win.store.put_predictions("run-1", rows)
    win.state.set_active_run("run-1")
    assert win.active_run == "run-1" and win.canvas.pred == (5.0, 6.0)
    assert win.acts.accept.isEnabled()
    win.accept_prediction()
    rec = win.store.record(name)
    assert rec.effective == (5.0, 6.0) and rec.source == "prediction"
    assert win.panel.model.status(name) == "accepted"
    win.undo()
    assert label(win) == original
    win.redo()
    win.revert_label()
    assert label(win) == original and win.store.record(name).source == "original"
    win.mark_verified()
    assert win.store.record(name).verified and win.panel.model.status(name) == "verified"
    win.mark_verified()
    assert not win.store.record(name).verified
    win.undo()
    assert win.store.record(name).verified
    # Sorting by error puts the largest distance first.
    win.panel.sort_by_error()
    errors = [win.panel.model.errors.get(n) for n in win.panel.model.names_in_view()]
    assert errors == sorted(errors, reverse=True)
    win.state.set_active_run(None)
    assert win.canvas.pred is None and not win.panel.model.errors


def test_edits_survive_reopening(qtbot, biwi):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    open_ds(qtbot, w, biwi)
    w.next_item()
    name = w.current_item_name()
    x, y = label(w)
    w.nudge(3, -2)
    w.mark_verified()
    w.close()
    w2 = MainWindow()
    qtbot.addWidget(w2)
    w2.show()
    open_ds(qtbot, w2, biwi, item=name)
    assert w2.current_item_name() == name
    rec = w2.store.record(name)
    assert rec.effective == (x + 3, y - 2) and rec.verified and rec.source == "corrected"
    assert w2.canvas.label == (x + 3, y - 2)
    assert w2.panel.model.status(name) == "verified"
    from imgreg_gui import settings

    assert settings.recent_datasets()[0] == str(biwi.resolve())
    w2.close()


def test_broken_images_show_a_placeholder(qtbot, win, biwi):
    frames = sorted((biwi / "01").glob("*_rgb.png"))
    frames[1].write_bytes(b"")
    data = frames[2].read_bytes()
    frames[2].write_bytes(data[: len(data) // 2])
    open_ds(qtbot, win, biwi)
    for frame in frames[1:3]:
        name = f"01/{frame.name}"
        assert win.panel.model.status(name) == "problem"
        win.go_to_item(name)
        qtbot.waitUntil(lambda: is_loaded(win), timeout=10000)
        assert win.canvas.image_size is None and win.canvas.problem[0].startswith("Cannot")
        assert win.status.problem.text()
    win.next_item()
    qtbot.waitUntil(lambda: is_loaded(win), timeout=10000)
    assert win.canvas.image_size == (64, 48)


def test_a_failed_write_is_reported_not_fatal(qtbot, win, biwi, monkeypatch):
    open_ds(qtbot, win, biwi)
    before = label(win)

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(win.store, "correct", broken)
    win.nudge(1, 0)
    assert label(win) == before and win.undo_stack.count() == 0
    assert "disk full" in win.status.currentMessage()
    assert win.canvas.label == before


def test_zoom_pan_and_fit(qtbot, win, biwi):
    open_ds(qtbot, win, biwi)
    canvas = win.canvas
    fit = canvas.scale_factor()
    canvas.zoom_in()
    assert canvas.scale_factor() > fit and not canvas.fit_mode
    canvas.set_scale(8.0)
    h = canvas.horizontalScrollBar()
    start = h.value()
    vp = canvas.viewport()
    mid = vp.rect().center()
    QTest.mousePress(vp, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, mid)
    QTest.mouseMove(vp, mid + QPoint(-60, 0))
    QTest.mouseRelease(vp, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, mid + QPoint(-60, 0))
    assert h.value() != start
    QTest.keyClick(canvas, Qt.Key.Key_F)
    assert canvas.fit_mode and math.isclose(canvas.scale_factor(), fit, rel_tol=0.05)
    # Scene coordinates are image pixels: the label's scene point maps back onto itself.
    x, y = label(win)
    back = canvas.mapToScene(canvas.mapFromScene(QPointF(x, y)))
    assert abs(back.x() - x) < 1 and abs(back.y() - y) < 1


def test_opening_a_folder_without_a_dataset_does_not_block(qtbot, win, tmp_path):
    (tmp_path / "empty").mkdir()
    win.open_dataset(tmp_path / "empty")
    qtbot.waitUntil(lambda: win._worker is None, timeout=10000)
    assert win.dataset is None and win.canvas.problem[0] == "Cannot open this dataset"
    win.nudge(1, 1)  # nothing open: a message, no exception
    win.next_item()


def test_arrows_nudge_only_from_the_canvas_and_docks_work(qtbot, win, biwi):
    from PySide6.QtWidgets import QSpinBox

    open_ds(qtbot, win, biwi)
    spin = QSpinBox()
    dock = win.add_dock(spin, "Extra", Qt.DockWidgetArea.RightDockWidgetArea)
    assert dock.objectName() == "dock_Extra" and dock.toggleViewAction() in win.docks_menu.actions()
    before = label(win)
    win.activateWindow()
    spin.setFocus()
    QTest.keyClick(spin, Qt.Key.Key_Up)
    assert spin.value() == 1 and label(win) == before
    win.canvas.setFocus()
    QTest.keyClick(win.canvas, Qt.Key.Key_Up)
    assert label(win) == (before[0], before[1] - 1)


def test_help_dialogs_list_shortcuts(qtbot, win):
    from PySide6.QtWidgets import QTableWidget

    from imgreg_gui.actions import shortcut_text

    win.show_shortcuts()
    table = win._shortcuts.findChild(QTableWidget)
    with_keys = [a for a in win.acts.all.values() if a.shortcuts()]
    assert win._shortcuts.isVisible() and table.rowCount() >= len(with_keys) > 30
    assert all(shortcut_text(a) in a.toolTip() for a in with_keys)
    win._shortcuts.close()


def test_a_corrected_problem_item_shows_its_correction() -> None:
    from pathlib import Path

    from engine.core import Item
    from engine.labels.store import LabelRecord
    from imgreg_gui.model.items import item_status

    it = Item("01/a.png", "01", Path("a.png"), None, problem="malformed pose file")
    assert item_status(it, None) == "problem"
    assert item_status(it, LabelRecord("01/a.png", None, None, "original", False)) == "problem"
    assert item_status(it, LabelRecord("01/a.png", None, (1.0, 2.0), "corrected", False)) == "corrected"


def test_multi_point_labels_draw_every_point_and_tab_picks_the_one_to_nudge(qtbot, win, tmp_path):
    root = make_folder(tmp_path / "two", n=1, size=(80, 60)).root
    (root / "labels.csv").write_text("image,x1,y1,x2,y2\nimg_000.png,10.5,20.5,50.0,30.0\n")
    open_ds(qtbot, win, root)
    assert win.dataset.n_points == 2 and win.canvas.label == (10.5, 20.5, 50.0, 30.0)
    win.canvas.setFocus()
    QTest.keyClick(win.canvas, Qt.Key.Key_Right)
    assert label(win) == (11.5, 20.5, 50.0, 30.0)
    QTest.keyClick(win.canvas, Qt.Key.Key_Tab)
    QTest.keyClick(win.canvas, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    assert label(win) == (11.5, 20.5, 50.0, 40.0)
    win.undo_stack.undo()  # the nudges of one visit, on either point, are one undo step
    assert label(win) == (10.5, 20.5, 50.0, 30.0)
