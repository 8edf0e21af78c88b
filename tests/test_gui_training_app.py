"""The training UI inside the real main window: a tiny real training, failures, cancel, and the review queue."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.data.synth import make_biwi  # noqa: E402
from engine.labels.store import PredictionRow  # noqa: E402
from imgreg_gui.training.controller import TrainingController  # noqa: E402
from imgreg_gui.training.options import TrainOptions  # noqa: E402

FAKE = str(Path(__file__).with_name("fake_child.py"))
HAS_TRAIN_CLI = importlib.util.find_spec("engine.cli.model") is not None


@pytest.fixture
def window(training_window, tmp_path: Path):
    return training_window(make_biwi(tmp_path / "biwi", groups=2, frames=5, size=(64, 48), corrupt=2).root)


def fake_maker(*args: str):
    return lambda ds, opts, kind="point", lr_find=False: [sys.executable, FAKE, "train", *args]


def test_installed_docks_and_menu(window) -> None:
    ctl = window.training
    assert isinstance(ctl, TrainingController)
    assert set(ctl.docks) == {"Train", "Training curves", "Runs", "Review"}
    assert "Training" in window.menus
    assert ctl.train.start_btn.isEnabled()
    assert [ctl.train.form.groups.item(i).text() for i in range(ctl.train.form.groups.count())] == [
        "01",
        "02",
    ]


def test_failing_training_shows_error_and_app_survives(qtbot, window) -> None:
    panel = window.training.train
    panel.make_command = fake_maker("--fail", "event")
    panel.start()
    qtbot.waitUntil(lambda: panel.error_box is not None, timeout=20000)
    assert "out of memory" in panel.error_box.text()
    panel.error_box.close()
    # The window still works: browse and edit.
    names = [it.name for it in window.dataset.items]
    window.go_to_item(names[3])
    assert window.current_item_name() == names[3]
    window.mark_verified()
    assert window.store.record(names[3]).verified


def test_cancel_from_the_window(qtbot, window) -> None:
    panel = window.training.train
    panel.make_command = fake_maker("--epochs", "100", "--sleep", "0.02")
    panel.start()
    qtbot.waitUntil(lambda: len(panel.live.curves.batch_loss) > 2, timeout=20000)
    window.go_to_item(window.dataset.items[1].name)  # browsing while it trains
    with qtbot.waitSignal(panel.child.ended, timeout=20000):
        window.training.actions["Cancel training"].trigger()
    assert panel.last_result.status == "cancelled" and panel.error_box is None
    assert panel.start_btn.isEnabled()


def test_closing_the_window_stops_the_child(qtbot, window) -> None:
    panel = window.training.train
    panel.make_command = fake_maker("--ignore-cancel")
    panel.start()
    qtbot.waitUntil(lambda: panel.epoch_bar.maximum() == 2, timeout=20000)  # 'prepared' arrived
    window.close()
    assert not panel.busy


def test_label_counts_follow_corrections(qtbot, window) -> None:
    info = window.training.train.labels_info
    assert "0 corrections" in info.text()
    window.go_to_item(window.dataset.items[0].name)
    window.store.correct(window.dataset.items[0].name, (10.0, 10.0))
    qtbot.waitUntil(lambda: "1 correction," in info.text(), timeout=5000)


def test_review_queue_in_the_window(qtbot, window) -> None:
    ds, store = window.dataset, window.store
    rows = [
        PredictionRow(it.name, (it.label[0] + 2 * i, it.label[1]), None, None)
        for i, it in enumerate(ds.items)
    ]
    store.put_predictions("manual", rows)
    ctl = window.training
    ctl.review.refresh(prefer="manual")
    ctl.state.set_active_run("manual")
    assert window.active_run == "manual"
    review = ctl.review
    expected = [it.name for it in reversed(ds.items)]
    assert review.names() == expected
    assert review.counter.text() == f"reviewed 0 of {len(expected)}"
    assert review.next_suspect() == expected[0] and window.current_item_name() == expected[0]
    review.accept()
    qtbot.waitUntil(lambda: review.rows[0].reviewed, timeout=5000)
    assert store.record(expected[0]).source == "prediction"
    assert window.current_item_name() == expected[1]
    review.verify()
    qtbot.waitUntil(lambda: store.record(expected[1]).verified, timeout=5000)
    qtbot.waitUntil(lambda: review.counter.text() == f"reviewed 2 of {len(expected)}", timeout=5000)
    # Accepting is undoable through the window's undo stack.
    window.undo()
    window.undo()
    qtbot.waitUntil(lambda: store.record(expected[0]).source == "original", timeout=5000)
    qtbot.waitUntil(lambda: review.counter.text() == f"reviewed 0 of {len(expected)}", timeout=5000)
    # Shift+N goes back, N goes to the next suspect.
    window.go_to_item(expected[2])
    assert review.previous() == expected[1]
    assert review.next_suspect() == expected[2]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAIN_CLI, reason="engine.cli.model (imgreg train) not available yet")
def test_tiny_real_training_from_the_panel(qtbot, window) -> None:
    ctl = window.training
    panel = ctl.train
    panel.form.set_options(
        TrainOptions(
            arch="resnet18",
            epochs=1,
            lr=2e-3,
            size="48x64",
            bs=4,
            head="pooled",
            weights="scratch",
            device="cpu",
            valid_groups=["02"],
        )
    )
    with qtbot.waitSignal(ctl.runs.predictions_stored, timeout=240000) as sig:
        assert panel.start()
    res = panel.last_result
    assert res is not None and res.status == "finished", res and res.message
    run_id = sig.args[0]
    assert ctl.runs.run(run_id) is not None
    assert len(panel.live.curves.valid_loss) == 1 and panel.live.curves.errors
    assert window.active_run == run_id
    assert len(ctl.review.rows) == len(window.dataset.items)
    assert ctl.runs.tree.topLevelItemCount() == 1


def _tiny_options(epochs: int) -> TrainOptions:
    return TrainOptions(arch="resnet18", epochs=epochs, lr=2e-3, size="48x64", bs=4, head="pooled",
                        weights="scratch", device="cpu", valid_groups=["02"])  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAIN_CLI, reason="engine.cli.model (imgreg train) not available yet")
def test_real_training_stop_after_epoch_and_cancel(qtbot, window) -> None:
    ctl = window.training
    panel = ctl.train
    ctl.predict_after.setChecked(False)
    batches: list[dict] = []
    panel.child.event.connect(lambda ev: batches.append(ev) if ev.get("type") == "batch" else None)
    # Stop after this epoch: the child finishes the epoch, saves the run, and it appears in the list.
    panel.form.set_options(_tiny_options(30))
    with qtbot.waitSignal(panel.run_finished, timeout=240000) as sig:
        panel.start()
        qtbot.waitUntil(lambda: len(batches) > 0, timeout=120000)
        panel.stop_after_epoch()
    assert panel.status.text().startswith(("Stopped early", "Finished"))
    assert ctl.runs.run(sig.args[0]) is not None
    assert len(panel.live.curves.valid_loss) < 30
    # Cancel: the child stops within a batch (or is killed) and no error is shown.
    batches.clear()
    with qtbot.waitSignal(panel.child.ended, timeout=240000):
        panel.start()
        qtbot.waitUntil(lambda: len(batches) > 0, timeout=120000)
        panel.cancel()
    assert panel.last_result.status == "cancelled" and panel.error_box is None
    assert panel.start_btn.isEnabled()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAIN_CLI, reason="engine.cli.model (imgreg rank) not available yet")
def test_real_out_of_fold_ranking_fills_the_review_queue(qtbot, window) -> None:
    ctl = window.training
    ctl.train.form.set_options(_tiny_options(1))
    ctl.review.repeats.setValue(2)  # two rounds, averaged: four models
    folds_seen: list[int] = []
    ctl.review.child.event.connect(
        lambda ev: folds_seen.append(ev["fold"]) if ev.get("type") == "fold" else None
    )
    with qtbot.waitSignal(ctl.review.child.ended, timeout=300000) as sig:
        assert ctl.review.rank(2)
        assert "2 rounds (trains 4 models)" in ctl.review.status.text()
    assert sig.args[0].ok, sig.args[0].message
    assert folds_seen == [1, 2, 3, 4]
    qtbot.waitUntil(lambda: (ctl.review.source or "").startswith("oof-"), timeout=5000)
    assert window.active_run == ctl.review.source
    assert len(ctl.review.rows) == len(window.dataset.items)
    scores = [
        r.score for r in ctl.review.rows
    ]  # out-of-fold rows carry label-quality scores: the default order
    assert None not in scores and scores == sorted(scores, reverse=True)
    ctl.review.set_order("error")
    errors = [r.error for r in ctl.review.rows]
    assert errors == sorted(errors, reverse=True)
    rec = ctl.runs.run(ctl.review.source)
    assert rec is not None and rec.is_oof and not rec.has_model
    ctl.runs.select(rec.run_id)
    assert not ctl.runs.predict_btn.isEnabled()


def test_n_key_goes_to_the_next_suspect(qtbot, window) -> None:
    ds, store = window.dataset, window.store
    rows = [
        PredictionRow(it.name, (it.label[0], it.label[1] + i), None, None) for i, it in enumerate(ds.items)
    ]
    store.put_predictions("keys", rows)
    window.training.review.refresh(prefer="keys")
    window.state.set_active_run("keys")
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    window.canvas.setFocus()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)
    qtbot.wait(50)  # activation and focus arrive asynchronously; shortcuts need both
    qtbot.keyClick(window.canvas, Qt.Key.Key_N)
    qtbot.waitUntil(lambda: window.current_item_name() == ds.items[-1].name, timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_N)
    qtbot.waitUntil(lambda: window.current_item_name() == ds.items[-2].name, timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: window.current_item_name() == ds.items[-1].name, timeout=5000)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAIN_CLI, reason="engine.cli.model (imgreg train) not available yet")
def test_real_retrain_fine_tunes_the_active_run_and_predicts_again(qtbot, window) -> None:
    """Label ▸ Retrain, end to end with real children: train --from RUN, then Predict all of the new run."""
    ctl = window.training
    ctl.train.form.set_options(_tiny_options(1))
    with qtbot.waitSignal(ctl.runs.predictions_stored, timeout=240000) as first:
        assert ctl.train.start()
    qtbot.waitUntil(lambda: window.active_run == first.args[0], timeout=10000)
    with qtbot.waitSignal(ctl.runs.predictions_stored, timeout=240000) as second:
        assert window.labelling.retrain()
    new = second.args[0]
    assert new != first.args[0]
    summary = json.loads((ctl.runs.run(new).run_dir / "summary.json").read_text())
    assert Path(summary["init_from"]).name == first.args[0]
    assert set(window.state.store.predictions(new)) >= {
        it.name for it in window.dataset.items if not it.problem
    }
