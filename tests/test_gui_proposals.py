"""Labelling new images fast on the real window (issue 22): proposals on unlabelled items (Enter accepts, a drag
corrects), Accept all proposals within a bound as one undo step, Suggest next to label (a fake child) with its
filter and keys, and Retrain (``train --from RUN`` then ``predict --coverage``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from gui_input import activate  # noqa: E402
from PySide6.QtCore import QPoint, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.audit.conformal import TOO_FEW  # noqa: E402
from engine.data.synth import make_folder  # noqa: E402
from engine.labels.store import PredictionRow  # noqa: E402
from engine.runs import files as runfiles  # noqa: E402
from imgreg_gui.labelling import AcceptWithinDialog, suggested_items  # noqa: E402
from imgreg_gui.training.options import train_command  # noqa: E402

FAKE = str(Path(__file__).with_name("fake_child.py"))
RUN = "r1"


@pytest.fixture
def win(training_window, tmp_path: Path):
    """Six unlabelled images; the first two get human labels; run r1 predicts all six with intervals 2..7 px."""
    w = training_window(make_folder(tmp_path / "f", n=6, size=(80, 60)).root)
    names = [it.name for it in w.dataset.items]
    for n in names[:2]:
        w.store.correct(n, (20.0, 20.0))
    rows = [
        PredictionRow(n, (30.0 + i, 25.0), interval=(2.0 + i,), coverage=0.9) for i, n in enumerate(names)
    ]
    w.store.put_predictions(RUN, rows)
    w.state.refresh_records(names)
    w.state.set_active_run(RUN)
    QApplication.instance().processEvents()
    return w


def _show(qtbot, w, name: str) -> None:
    w.go_to_item(name)
    qtbot.waitUntil(lambda: w.canvas.name == name and w.canvas.image_size is not None, timeout=10000)
    activate(qtbot, w)
    w.canvas.setFocus()
    qtbot.waitUntil(w.canvas.hasFocus, timeout=5000)


def _names(w) -> list[str]:
    return [it.name for it in w.dataset.items]


def test_proposal_drawn_for_an_unlabelled_item_and_not_for_a_labelled_one(qtbot, win) -> None:
    names = _names(win)
    _show(qtbot, win, names[3])
    c = win.canvas
    assert c.proposal and [p.isVisible() for p in c.proposals] == [True]
    assert (c.proposals[0].pos().x(), c.proposals[0].pos().y()) == (33.0, 25.0)
    assert not any(r.isVisible() for r in c.rings)  # drawn as a proposal, not as a prediction ring
    assert c.circles[0].isVisible() and c.circles[0].rect().width() == pytest.approx(2 * 5.0)
    rows = [t for _s, t in c._legend_rows()]
    assert any(t.startswith("Proposal") for t in rows) and "press Enter to accept" in " ".join(rows)
    assert "Proposal: press Enter to accept" in c.toolTip()
    _show(qtbot, win, names[0])
    assert not c.proposal and not any(p.isVisible() for p in c.proposals)
    assert any(r.isVisible() for r in c.rings)
    assert not any(t.startswith("Proposal") for _s, t in c._legend_rows())


def test_the_item_list_marks_proposals_and_filters_them(qtbot, win) -> None:
    names = _names(win)
    model = win.panel.model
    assert [model.shown_status(it) for it in win.dataset.items] == ["corrected"] * 2 + ["proposed"] * 4
    row = model.row_of(names[3])
    assert "a proposal from the active run" in model.data(model.index(row, 0), Qt.ItemDataRole.ToolTipRole)
    assert "Proposal: (33.0, 25.0)" in model.tooltip(win.dataset.items[3])
    win.panel.set_filter_choice("proposed")
    qtbot.waitUntil(lambda: model.rowCount() == 4, timeout=5000)
    assert model.names_in_view() == names[2:]
    _show(qtbot, win, names[2])
    QTest.keyClick(win.canvas, Qt.Key.Key_Return)  # accepted: no longer a proposal
    qtbot.waitUntil(lambda: model.shown_status(win.dataset.items[2]) == "accepted", timeout=5000)
    win.state.set_active_run(None)  # no run: nothing is proposed
    assert model.shown_status(win.dataset.items[3]) == "unlabelled"


def test_enter_accepts_a_proposal_and_undo_restores_it(qtbot, win) -> None:
    names = _names(win)
    _show(qtbot, win, names[4])
    assert "Accept proposal" in [a.text().replace("&", "") for a in win.menus["Edit"].actions()]
    QTest.keyClick(win.canvas, Qt.Key.Key_Return)
    rec = win.store.record(names[4])
    assert rec.effective == (34.0, 25.0) and rec.source == "prediction"
    assert not win.canvas.proposal  # now a label, drawn as one
    win.editor.undo()
    assert win.store.record(names[4]).effective is None
    assert win.state.annotations(names[4]).proposal


def test_enter_on_a_labelled_item_keeps_the_human_label(qtbot, win) -> None:
    names = _names(win)
    _show(qtbot, win, names[1])
    QTest.keyClick(win.canvas, Qt.Key.Key_Return)
    assert win.store.record(names[1]).effective == (20.0, 20.0)
    assert win.undo_stack.count() == 0


def test_dragging_a_proposal_is_a_correction(qtbot, win) -> None:
    names = _names(win)
    _show(qtbot, win, names[5])
    c = win.canvas
    vp = c.viewport()
    a = c.mapFromScene(35.0, 25.0)
    b = c.mapFromScene(50.0, 40.0)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for t in (0.25, 0.5, 0.75, 1.0):
        QTest.mouseMove(vp, QPoint(round(a.x() + (b.x() - a.x()) * t), round(a.y() + (b.y() - a.y()) * t)))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    rec = win.store.record(names[5])
    end = c.mapToScene(b)
    assert rec.source == "corrected"
    assert rec.effective == pytest.approx((end.x(), end.y()), abs=0.01)
    assert rec.effective != (35.0, 25.0)


def test_bulk_accept_is_one_undo_step_and_skips_labelled_items(qtbot, win) -> None:
    names = _names(win)
    dlg = AcceptWithinDialog(win.state, win)
    dlg.bound.setValue(4.5)  # radii 2..7: items 0-2 are within, 0 and 1 are labelled
    assert [r.item for r in dlg.rows] == [names[2]] and "1 proposal" in dlg.count.text()
    dlg.bound.setValue(100.0)
    assert [r.item for r in dlg.rows] == names[2:]

    def answer() -> None:
        d = win.labelling.dialog
        if d is None:
            QTimer.singleShot(20, answer)
            return
        d.bound.setValue(6.5)  # items 2, 3, 4
        d.ok.click()

    QTimer.singleShot(0, answer)
    assert win.labelling.ask_accept_within() == 3
    assert win.undo_stack.count() == 1
    assert [win.store.record(n).source for n in names] == ["corrected"] * 2 + ["prediction"] * 3 + [
        "original"
    ]
    assert win.store.record(names[0]).effective == (20.0, 20.0)  # the human label stands
    win.editor.undo()
    assert [win.store.record(n).effective for n in names[2:]] == [None] * 4
    assert win.store.record(names[0]).effective == (20.0, 20.0)
    win.editor.redo()
    assert win.store.record(names[3]).effective == (33.0, 25.0)
    # The bound is remembered for next time.
    assert AcceptWithinDialog(win.state, win).bound.value() == 6.5


def test_suggest_child_fills_the_suggested_filter_in_order_and_the_keys_walk_it(qtbot, win) -> None:
    names = _names(win)
    want = [names[5], names[2], names[4]]
    flow = win.labelling
    got: list = []
    flow.make_suggest_command = lambda ds, n, run: (
        got.append((ds, n, run)) or [sys.executable, FAKE, "suggest", "--items", ",".join(want)]
    )
    with qtbot.waitSignal(flow.suggested, timeout=20000):
        assert flow.suggest(3)
    assert got == [(str(win.dataset.root), 3, RUN)]
    assert win.panel.model.filter_choice == "suggested"
    assert win.panel.model.names_in_view() == want
    assert win.current_item_name() == want[0]
    _show(qtbot, win, want[0])
    QTest.keyClick(win.canvas, Qt.Key.Key_J)
    assert win.current_item_name() == want[1]
    QTest.keyClick(win.canvas, Qt.Key.Key_J)
    assert win.current_item_name() == want[2]
    QTest.keyClick(win.canvas, Qt.Key.Key_J, Qt.KeyboardModifier.ShiftModifier)
    assert win.current_item_name() == want[1]
    texts = [a.text().replace("&", "") for a in win.menus["Label"].actions()]
    assert "Next suggestion" in texts and "Suggest next to label…" in texts


def test_suggest_command_and_summary_parsing() -> None:
    from imgreg_gui.labelling import suggest_command

    cmd = suggest_command("/d", 20, "r1")
    assert cmd[-8:] == ["suggest", "/d", "--n", "20", "--run", "r1", "--json", "--control-stdin"]
    assert "--run" not in suggest_command("/d", 5)
    rows = {
        "items": [{"rank": 2, "item": "b", "reason": ""}, {"rank": 1, "item": "a", "reason": ""}, {"x": 1}]
    }
    assert suggested_items(rows) == ["a", "b"]


def test_retrain_builds_train_from_run_and_predict_with_coverage(qtbot, win) -> None:
    run_dir = runfiles.runs_dir(win.store.dir) / RUN
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    ctl = win.training
    ctl.runs.refresh()
    win.labelling.update_actions()
    assert win.labelling.retrain_btn.isEnabled()
    seen: dict = {}

    def maker(ds, opts, kind="point", lr_find=False, init_from=None):
        seen["cmd"] = train_command(ds, opts, kind, lr_find, init_from=init_from)
        return [sys.executable, FAKE, "train", "--epochs", "1", "--run-id", "r2"]

    ctl.train.make_command = maker
    ctl.train.refusal = None
    with qtbot.waitSignal(ctl.train.run_finished, timeout=20000):
        assert win.labelling.retrain()
    cmd = seen["cmd"]
    assert cmd[cmd.index("--from") + 1] == str(run_dir)
    pred = ctl.runs.predict_command(run_dir, str(win.dataset.root))
    assert pred[pred.index("--coverage") + 1] == "0.9"


def test_retrain_after_every_n_new_labels_is_off_by_default(qtbot, win, monkeypatch) -> None:
    names = _names(win)
    flow = win.labelling
    calls: list = []
    monkeypatch.setattr(flow, "retrain", lambda: calls.append(1) or True)
    monkeypatch.setattr(flow, "_retrain_refusal", lambda: None)
    assert flow.retrain_every == 0
    win.store.correct(names[2], (10.0, 10.0))
    QApplication.instance().processEvents()
    assert calls == []
    flow.set_retrain_every(2)
    win.store.correct(names[3], (10.0, 10.0))
    QApplication.instance().processEvents()
    assert calls == []
    win.store.correct(names[4], (10.0, 10.0))
    qtbot.waitUntil(lambda: calls == [1], timeout=5000)


def test_predict_all_falls_back_without_intervals_when_too_few_items_calibrate(qtbot, win) -> None:
    run_dir = runfiles.runs_dir(win.store.dir) / RUN
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    runs = win.training.runs
    runs.refresh()
    cmds: list[list[str]] = []
    few = f"{TOO_FEW}: intervals need at least 10 labelled ones (the run's validation items), found 2"

    def maker(run_dir, ds):
        cmd = runs.predict_command(run_dir, ds)
        cmds.append(cmd)
        fail = ["--fail", "event", "--fail-message", few] if "--coverage" in cmd else []
        return [sys.executable, FAKE, "predict", "--run-id", RUN, *fail]

    runs.make_command = maker
    with qtbot.waitSignal(runs.predictions_stored, timeout=20000):
        assert runs.predict(RUN)
    assert ["--coverage" in c for c in cmds] == [True, False]
    assert runs.coverage == 0.9  # the next prediction asks for intervals again
    # A retry that fails too is reported, not retried again.
    runs.make_command = lambda run_dir, ds: cmds.append([]) or [sys.executable, FAKE, "predict", "--fail", "event",
                                                                 "--fail-message", few]  # fmt: skip
    assert runs.predict(RUN)
    qtbot.waitUntil(lambda: len(cmds) == 4 and not runs.child.running, timeout=20000)
    qtbot.waitUntil(lambda: runs.status.text() == "Prediction failed.", timeout=20000)
    runs.error_box.close()
    assert len(cmds) == 4
