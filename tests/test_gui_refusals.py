"""Work that cannot succeed is refused up front, with the reason on the control (not a CLI error later)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data.synth import make_biwi, make_folder
from imgreg_gui.app import is_loaded
from imgreg_gui.main_window import MainWindow


@pytest.fixture
def win(qtbot):
    w = MainWindow()
    w.persist = False
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def open_ds(qtbot, w: MainWindow, root: Path) -> None:
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(root)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)


def test_start_is_refused_without_labels(qtbot, win, tmp_path):
    open_ds(qtbot, win, make_folder(tmp_path / "faces", n=4).root)
    train = win.training.train
    assert not train.start_btn.isEnabled() and not train.form.find_lr.isEnabled()
    tip = train.start_btn.toolTip()
    assert "Cannot train: needs at least 2 labelled items, found 0" in tip.replace("\n", " ")
    assert max(len(line) for line in tip.splitlines()) <= 64 < len(tip)  # in lines, not one long line
    assert train.start() is False and "Cannot train" in train.status.text()
    assert not win.training.review.rank_btn.isEnabled()


def test_rank_is_refused_with_fewer_items_than_folds(qtbot, win, tmp_path):
    open_ds(qtbot, win, make_biwi(tmp_path / "biwi", groups=2, frames=3, size=(64, 48)).root)
    train, review = win.training.train, win.training.review
    assert train.start_btn.isEnabled()
    review.folds.setValue(5)
    assert review.rank_btn.isEnabled()
    review.folds.setValue(7)
    assert not review.rank_btn.isEnabled()
    assert "6 labelled items cannot make 7 folds" in review.rank_btn.toolTip().replace("\n", " ")
    assert review.rank(7) is False and "Cannot rank" in review.status.text()


def test_the_last_datasets_outcome_does_not_stay(qtbot, win, tmp_path):
    open_ds(qtbot, win, make_biwi(tmp_path / "a", groups=1, frames=3, size=(64, 48)).root)
    train, runs = win.training.train, win.training.runs
    train.status.setText("Training failed.")
    train.live.append("error: something of dataset a")
    runs.status.setText("Predictions of run-a stored (1.0 s).")
    open_ds(qtbot, win, make_biwi(tmp_path / "b", groups=1, frames=3, size=(64, 48)).root)
    assert train.status.text() == "Idle" and runs.status.text() == ""
    assert "dataset a" not in train.live.log.toPlainText()


def test_a_degenerate_run_is_flagged_after_its_predictions(qtbot, win, tmp_path):
    from engine.labels.store import PredictionRow

    open_ds(qtbot, win, make_biwi(tmp_path / "biwi", groups=2, frames=4, size=(640, 480)).root)
    rows = [PredictionRow(it.name, (320.0, 240.0), None, 163.0, None) for it in win.dataset.items]
    win.store.put_predictions("flat", rows)
    win.training._on_predictions_stored("flat")
    assert "looks degenerate" in win.training.train.status.text()
    assert "about the same for every image" in win.status.currentMessage()


def test_rank_asks_first_with_the_cost_and_a_time_estimate(qtbot, win, tmp_path):
    import json

    from imgreg_gui.training.rank_confirm import confirm_text, duration_text

    root = make_biwi(tmp_path / "biwi", groups=2, frames=5, size=(64, 48)).root
    open_ds(qtbot, win, root)
    review = win.training.review
    started = []
    review.rank = lambda folds=None: started.append(folds) or True
    run = win.store.dir / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "model.safetensors").write_bytes(b"")
    (run / "summary.json").write_text(json.dumps({"time_s": 60.0, "n_train": 5}))
    review.folds.setValue(5)
    review.repeats.setValue(1)
    box = review.ask_rank()
    assert box is not None and started == []
    assert (
        "trains 5 models" in box.text() and "Estimated time: about 8 min" in box.text()
    )  # 60 s x 8/5 items x 5
    box.accept()
    assert started == [None]
    assert duration_text(30) == "about 30 s" and duration_text(7200) == "about 2.0 h"
    assert "No earlier run" in confirm_text(10, 5, 2, 1, None)
