"""The review queue and runs list on a real store: order by disagreement, next suspect, accept, verify, counter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from engine.core import label_distance  # noqa: E402
from engine.data import open_dataset  # noqa: E402
from engine.data.synth import make_biwi  # noqa: E402
from engine.labels.store import LabelStore, PredictionRow  # noqa: E402
from imgreg_gui.model.editing import Editor  # noqa: E402
from imgreg_gui.model.state import AppState  # noqa: E402
from imgreg_gui.training.review import ReviewPanel  # noqa: E402
from imgreg_gui.training.review_model import ERROR_COL  # noqa: E402
from imgreg_gui.training.runs import RunsPanel, load_runs, metric_columns  # noqa: E402


def app_state(ds, store) -> tuple[AppState, Editor]:
    """The app model over an open store (what the main window builds), with its editor; the first item current."""
    state = AppState()
    state.set_opened(ds, store, store.records())
    state.set_current(ds.items[0].name)
    return state, Editor(state)


@pytest.fixture
def setup(tmp_path: Path):
    make_biwi(tmp_path / "biwi", groups=2, frames=4, size=(64, 48))
    ds = open_dataset(tmp_path / "biwi")
    store = LabelStore.open(ds)
    # Predictions off by 0, 1, 2, ... px in x: the item with the largest offset comes first.
    rows = [
        PredictionRow(it.name, (it.label[0] + i, it.label[1]), None, None) for i, it in enumerate(ds.items)
    ]
    store.put_predictions("run-a", rows)
    yield ds, store
    store.close()


def test_the_queue_error_is_the_one_label_distance() -> None:
    assert label_distance((0.0, 0.0), (3.0, 4.0)) == 5.0
    assert label_distance((0.0, 0.0, 1.0, 1.0), (3.0, 4.0, 1.0, 1.0)) == 2.5
    assert label_distance((10.0,), (7.0,)) == 3.0
    assert label_distance((1.0, 2.0), None) is None


def test_queue_order_navigation_and_actions(qtbot, setup) -> None:
    ds, store = setup
    win, editor = app_state(ds, store)
    panel = ReviewPanel(win, editor)
    qtbot.addWidget(panel)
    win.set_active_run("run-a")
    names = [it.name for it in ds.items]
    assert panel.names() == list(reversed(names))
    assert panel.rows[0].error == pytest.approx(len(names) - 1)
    assert panel.counter.text() == f"reviewed 0 of {len(names)}"
    # Next suspect from outside the queue's head goes to the worst item.
    win.set_current(panel.names()[-1])
    assert panel.next_suspect() == panel.names()[0]
    assert win.current == panel.names()[0]
    # Accept: the label becomes the prediction (error 0), counted as reviewed, and the queue moves on.
    panel.accept()
    rec = store.record(panel.names()[0])
    assert rec.source == "prediction" and panel.rows[0].error == pytest.approx(0.0)
    assert win.current == panel.names()[1]
    # Keep label and verify.
    panel.verify()
    assert store.record(panel.names()[1]).verified
    assert panel.counter.text() == f"reviewed 2 of {len(names)}"
    assert win.current == panel.names()[2]
    # The order stays put after edits; previous goes back one.
    assert panel.names() == list(reversed(names))
    assert panel.previous() == panel.names()[1]
    # Next suspect skips reviewed items.
    assert panel.next_suspect() == panel.names()[2]
    # Filters: unverified only hides the verified item; one group shows only its items.
    panel.unverified.setChecked(True)
    assert panel.names()[1] != list(reversed(names))[1] and len(panel.names()) == len(names) - 1
    panel.unverified.setChecked(False)
    panel.group_box.setCurrentText(ds.groups[0])
    assert {n.split("/")[0] for n in panel.names()} == {ds.groups[0]}
    assert panel.histogram.bars is not None


def test_queue_ranks_a_fixed_label_lower_after_rebuild(qtbot, setup) -> None:
    ds, store = setup
    win, editor = app_state(ds, store)
    panel = ReviewPanel(win, editor)
    qtbot.addWidget(panel)
    panel.refresh(prefer="run-a")
    worst = panel.names()[0]
    pred = store.predictions("run-a")[worst].pred
    store.correct(worst, pred)
    panel.rebuild()
    assert panel.names()[-1] == worst or panel.rows[-1].error == pytest.approx(0.0)


def write_run(runs_dir: Path, run_id: str, mean_px: float) -> None:
    d = runs_dir / run_id
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"arch": "tiny", "head": "pooled", "size": [48, 64]}))
    (d / "summary.json").write_text(
        json.dumps({"run_id": run_id, "epochs": 1, "metrics": {"mean_px": mean_px}})
    )


def test_runs_list_and_active_run(qtbot, setup) -> None:
    ds, store = setup
    write_run(store.dir / "runs", "run-a", 12.5)
    write_run(store.dir / "runs", "run-b", 7.25)
    (store.dir / "runs" / "junk").mkdir()
    runs = load_runs(store.dir / "runs")
    assert {r.run_id for r in runs} == {"run-a", "run-b"} and metric_columns(runs) == ["mean_px"]
    state = AppState()
    panel = RunsPanel(state)
    qtbot.addWidget(panel)
    state.set_opened(ds, store, store.records())
    assert panel.tree.topLevelItemCount() == 2
    header = [panel.tree.headerItem().text(i) for i in range(panel.tree.columnCount())]
    assert "mean_px" in header and "Preds" in header
    with qtbot.waitSignal(state.active_run_changed) as sig:
        panel.select("run-b")
    assert sig.args == ["run-b"] and state.active_run == "run-b"
    state.set_active_run("run-a")  # the list follows the state
    assert panel.selected_run() == "run-a"
    assert panel.predict_btn.isEnabled()
    row = next(panel.tree.topLevelItem(i) for i in range(2) if panel.tree.topLevelItem(i).text(0) == "run-a")
    assert row.text(header.index("Preds")) == "yes"


def test_scalar_queue(qtbot, tmp_path: Path) -> None:
    from engine.data.synth import make_utkface

    make_utkface(tmp_path / "utk", n=6, size=32)
    ds = open_dataset(tmp_path / "utk")
    with LabelStore.open(ds) as store:
        rows = [
            PredictionRow(it.name, (it.label[0] + (3.0 if i == 2 else 0.5),), None, None)
            for i, it in enumerate(ds.items)
        ]
        store.put_predictions("scalar-run", rows)
        win, editor = app_state(ds, store)
        panel = ReviewPanel(win, editor)
        qtbot.addWidget(panel)
        panel.refresh()
        assert panel.source == "scalar-run"
        assert panel.names()[0] == ds.items[2].name and panel.rows[0].error == pytest.approx(3.0)
        assert panel.model.headerData(ERROR_COL, Qt.Orientation.Horizontal) == "Error (abs)"


def test_rounds_default_by_kind_and_are_remembered_per_kind(qtbot, setup, tmp_path: Path) -> None:
    from engine.data.synth import make_utkface

    ds, store = setup
    state, editor = app_state(ds, store)
    panel = ReviewPanel(state, editor)
    qtbot.addWidget(panel)
    assert panel.repeats.value() == 1  # points: one round finds the planted ones
    make_utkface(tmp_path / "utk", n=6, size=32)
    ages = open_dataset(tmp_path / "utk")
    with LabelStore.open(ages) as age_store:
        state.set_opened(ages, age_store, age_store.records())
        assert panel.repeats.value() == 2  # scalars: a weak model needs a second round
        panel.repeats.setValue(3)
        state.set_opened(ds, store, store.records())
        assert panel.repeats.value() == 1
        state.set_opened(ages, age_store, age_store.records())
        assert panel.repeats.value() == 3
        assert "--repeats 3" in " ".join(panel.make_rank_command(ages.root, 5, panel.repeats.value()))


def test_rank_shows_a_progress_bar_over_all_fold_models(qtbot, setup) -> None:
    import sys

    ds, store = setup
    state, editor = app_state(ds, store)
    panel = ReviewPanel(state, editor)
    qtbot.addWidget(panel)
    panel.show()
    fake = str(Path(__file__).with_name("fake_child.py"))
    panel.make_rank_command = lambda root, k, r=1: [
        sys.executable,
        fake,
        "train",
        "--folds",
        str(k),
        "--epochs",
        "2",
    ]
    seen: list[tuple[int, int, str]] = []
    panel.rank_bar.valueChanged.connect(
        lambda v: seen.append((v, panel.rank_bar.maximum(), panel.rank_bar.text()))
    )
    with qtbot.waitSignal(panel.child.ended, timeout=60000):
        assert panel.rank(3)
        assert panel.rank_bar.isVisible()
    assert seen[-1][:2] == (6, 6)  # 3 models x 2 epochs, all done
    assert [v for v, m, _ in seen if m == 6] == [1, 2, 3, 4, 5, 6]
    assert "6 of 6 epochs" in seen[-1][2]
    assert not panel.rank_bar.isVisible()
