"""Doubt in the app on the real window: the audit on opening (a worker), the queue's reasons and filter, the ghost
marker, line and interval, Accept suggestion, and the review queue's keyboard paths (issue 25 items 4 and 10)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QTableWidget  # noqa: E402

from engine.audit.findings import DUPLICATE, SEQUENCE, Finding  # noqa: E402
from engine.data.synth import make_biwi, make_utkface  # noqa: E402
from engine.labels.store import PredictionRow  # noqa: E402
from imgreg_gui.dialogs import shortcuts_dialog  # noqa: E402
from imgreg_gui.model import doubts  # noqa: E402
from imgreg_gui.training.review_model import ORDERS, REASON_COL  # noqa: E402

WHY = "40.0 px away from where the frames around it put the label"


@pytest.fixture
def audited(monkeypatch):
    """A stand-in for engine.audit.run.audit: doubts two items, records each call's thread."""
    calls: list[threading.Thread] = []

    def fake_audit(ds, store, on_event=None, cancel=None):
        calls.append(threading.current_thread())
        a, b = ds.items[1], ds.items[2]
        lab = store.effective(a.name)
        return [
            Finding(a.name, 6.0, SEQUENCE, WHY, (lab[0] - 40.0, lab[1])),
            Finding(b.name, 4.0, DUPLICATE, "a near-duplicate image carries another label"),
        ]

    monkeypatch.setattr(doubts, "audit", fake_audit)
    return calls


@pytest.fixture
def win(training_window, tmp_path: Path, audited):
    w = training_window(make_biwi(tmp_path / "biwi", groups=2, frames=4, size=(64, 48)).root)
    QApplication.instance().processEvents()
    return w


def _wait_audit(qtbot, w, n: int = 1) -> None:
    qtbot.waitUntil(lambda: len(w.state.findings) >= n and not w.audit.running, timeout=10000)


def _focus(qtbot, w, widget) -> None:
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    widget.setFocus()
    qtbot.waitUntil(widget.hasFocus, timeout=5000)


def test_opening_audits_off_the_gui_thread_and_fills_the_queue_with_reasons(qtbot, win, audited) -> None:
    _wait_audit(qtbot, win)
    assert audited and all(t is not threading.main_thread() for t in audited)
    review = win.training.review
    a, b = win.dataset.items[1].name, win.dataset.items[2].name
    assert review.source is None and review.names() == [a, b]  # no run, no training: the checks' doubts alone
    assert review.rows[0].reasons == (SEQUENCE,) and review.rows[1].reasons == (DUPLICATE,)
    assert review.model.data(review.model.index(0, REASON_COL)) == SEQUENCE
    assert review.model.data(review.model.index(0, REASON_COL), Qt.ItemDataRole.ToolTipRole) == WHY
    assert WHY in win.panel.model.tooltip(win.dataset.items[1])  # the item list's hover says why too
    review.reason_box.setCurrentText(DUPLICATE)
    assert review.names() == [b]
    review.reason_box.setCurrentText("All reasons")
    # The score order is worded by what is there: the checks' doubt, not a label-quality score.
    assert review.order_box.itemText(review.order_box.findData("score")) == "doubt"


def test_a_run_merges_its_evidence_and_an_edit_re_audits(qtbot, win, audited) -> None:
    _wait_audit(qtbot, win)
    ds, store, review = win.dataset, win.store, win.training.review
    names = [it.name for it in ds.items]
    rows = [PredictionRow(n, tuple(store.effective(n)), 0.0, None, 1.0) for n in names]
    rows[3] = PredictionRow(names[3], tuple(store.effective(names[3])), 0.0, None, 7.0)
    store.put_predictions("r1", rows)
    review.refresh(prefer="r1")
    win.state.set_active_run("r1")
    assert review.names()[:3] == [names[3], names[1], names[2]]  # model 7, sequence 6, duplicate 4
    assert review.rows[0].reasons == ("model",) and review.rows[1].reasons == (SEQUENCE,)
    assert review.order_box.itemText(review.order_box.findData("score")) == ORDERS[0][1]
    n = len(audited)
    win.go_to_item(names[0])
    win.editor.nudge(1, 0)
    qtbot.waitUntil(lambda: len(audited) > n and not win.audit.running, timeout=10000)


def test_ghost_line_original_and_accept_suggestion(qtbot, win) -> None:
    _wait_audit(qtbot, win)
    name = win.dataset.items[1].name
    before = win.store.effective(name)
    win.go_to_item(name)
    qtbot.waitUntil(lambda: win.canvas.name == name and not win.canvas.pending, timeout=5000)
    c = win.canvas
    want = (before[0] - 40.0, before[1])
    assert c.expected == want and c.ghosts[0].isVisible() and c.ghosts[0].pos().x() == pytest.approx(want[0])
    assert c.ghost_lines[0].isVisible() and c.ghost_lines[0].line().x1() == pytest.approx(before[0])
    assert WHY in c.toolTip()
    assert any("Expected" in text for _, text in c._legend_rows())
    act = win.acts.accept_suggestion
    assert act.isEnabled() and act.shortcut().toString() == "G"
    table = shortcuts_dialog(win, win.acts).findChild(QTableWidget)
    keys = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert keys.get("Accept suggestion") == "G"
    act.trigger()
    assert win.store.effective(name) == pytest.approx(want)
    assert win.store.record(name).source == "corrected"
    # After the correction, a grey ghost shows where the original label was.
    assert c.origs[0].isVisible() and c.origs[0].pos().x() == pytest.approx(before[0])
    win.editor.undo()
    assert win.store.effective(name) == pytest.approx(before)
    assert not any(g.isVisible() for g in c.origs)


def test_interval_circle_for_points(qtbot, win) -> None:
    name = win.dataset.items[0].name
    lab = win.store.effective(name)
    row = PredictionRow(name, (lab[0] + 3, lab[1]), 3.0, None, None, (5.0,))
    win.store.put_predictions("iv", [row])
    win.state.show_predictions("iv", {name: row})  # the conformal helper's store fills interval itself
    c = win.canvas
    qtbot.waitUntil(lambda: c.name == name and not c.pending, timeout=5000)
    assert c.circles[0].isVisible()
    r = c.circles[0].rect()
    assert r.width() == pytest.approx(10.0) and r.center().x() == pytest.approx(lab[0] + 3)
    assert any("Interval" in text for _, text in c._legend_rows())


def test_scalar_interval_bar_and_words(qtbot, training_window, tmp_path: Path, audited) -> None:
    w = training_window(make_utkface(tmp_path / "utk", n=6, size=48).root)
    name = w.dataset.items[0].name
    v = w.store.effective(name)[0]
    row = PredictionRow(name, (v + 2,), 2.0, None, None, (v - 1, v + 5))
    w.state.show_predictions("iv", {name: row})
    assert any("Interval" in text for _, text in w.canvas._legend_rows())
    w.canvas.grab()  # paints the bar (draw_interval_bar) without error
    review = w.training.review
    assert "drag" not in review.keys_hint.text() and "type the value" in review.keys_hint.text()


def test_order_box_words_a_run_without_scores(qtbot, win) -> None:
    _wait_audit(qtbot, win)
    store, review = win.store, win.training.review
    win.state.set_findings([])
    store.put_predictions("plain", [PredictionRow(it.name, tuple(it.label), 1.0) for it in win.dataset.items])
    review.refresh(prefer="plain")
    text = review.order_box.itemText(review.order_box.findData("score"))
    assert "label-quality" not in text and "error" in text
    assert "drag the label" in review.keys_hint.text()  # points: dragging is how to fix one


def test_next_suspect_walks_the_queue_after_a_new_run(qtbot, win) -> None:
    """Issue 25 item 4: after a training's predictions arrive, N steps through the queue order from the current
    item instead of jumping back to the head (or elsewhere)."""
    _wait_audit(qtbot, win)
    win.state.set_findings([])
    ds, store, review = win.dataset, win.store, win.training.review
    for run, off in (("r1", 1.0), ("r2", 2.0)):  # a second training finishes: its predictions become active
        rows = [PredictionRow(it.name, (it.label[0] + off * i, it.label[1])) for i, it in enumerate(ds.items)]
        store.put_predictions(run, rows)
        review.refresh(prefer=run)
        win.state.set_active_run(run)
    queue = review.names()
    win.go_to_item(queue[2])  # from the item list, not from the queue
    _focus(qtbot, win, win.canvas)
    for want in queue[3:6]:
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_N)
        assert win.state.current == want


def test_keyboard_moves_in_the_review_table_open_the_item(qtbot, win) -> None:
    _wait_audit(qtbot, win)
    ds, store, review = win.dataset, win.store, win.training.review
    rows = [PredictionRow(it.name, (it.label[0] + i, it.label[1])) for i, it in enumerate(ds.items)]
    store.put_predictions("r1", rows)
    review.refresh(prefer="r1")
    win.state.set_active_run("r1")
    win.training.docks["Review"].raise_()
    queue = review.names()
    review.go_to(0)
    _focus(qtbot, win, review.table)
    qtbot.keyClick(review.table, Qt.Key.Key_Down)
    assert win.state.current == queue[1]
    qtbot.keyClick(review.table, Qt.Key.Key_Down)
    assert win.state.current == queue[2]
    qtbot.keyClick(review.table, Qt.Key.Key_Home, Qt.KeyboardModifier.ControlModifier)
    assert win.state.current == queue[0]


def test_run_findings_from_scores_and_intervals() -> None:
    labels = {"a": (10.0, 10.0), "b": (10.0, 10.0)}
    preds = {
        "a": PredictionRow("a", (10.0, 14.0), 4.0, None, 5.0, (6.0,), 0.9),  # score worth a look, inside
        "b": PredictionRow("b", (20.0, 10.0), 10.0, None, 1.0, (5.0,), 0.9),  # typical score, one radius out
    }
    found = doubts.run_findings("r", preds, labels.get, "point")
    assert [(f.item, f.reason) for f in found] == [("a", "model"), ("b", "interval")]
    assert found[1].score == pytest.approx(2.0) and found[1].expected == (20.0, 10.0)
    assert [f.item for f in doubts.run_findings("r", preds, labels.get, "point", names=["b"])] == ["b"]
    merged = {d.item: d for d in doubts.merge(found)}
    assert doubts.reasons(merged["b"]) == ("interval",) and "outside" in doubts.why(merged["b"])


def test_the_app_reads_intervals_without_importing_crepes(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import sys, imgreg_gui.model.doubts, imgreg_gui.main_window; print('crepes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
