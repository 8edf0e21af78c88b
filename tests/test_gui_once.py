"""Each value computed once (issue 23): an edit hands back the record it wrote and the app uses it (one read of the
row, inside the edit), counts are kept rather than recounted, the annotations are built once per change, and the
label error, label text and spatial check each have one definition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from engine.data import open_dataset  # noqa: E402
from engine.data.synth import make_biwi  # noqa: E402
from engine.labels.store import LabelStore  # noqa: E402
from engine.runs import files as runfiles  # noqa: E402
from imgreg_gui import similar_panel  # noqa: E402
from imgreg_gui.model.editing import Editor  # noqa: E402
from imgreg_gui.model.items import format_label  # noqa: E402
from imgreg_gui.model.state import AppState, counts_of  # noqa: E402
from imgreg_gui.training import review_model, runs  # noqa: E402


@pytest.fixture
def opened(tmp_path: Path):
    ds = open_dataset(make_biwi(tmp_path / "biwi", groups=2, frames=3, size=(64, 48)).root)
    store = LabelStore.open(ds)
    state = AppState()
    state.set_opened(ds, store, store.records())
    state.set_current(ds.items[0].name)
    yield ds, store, state, Editor(state)
    state.close()


def test_each_edit_returns_the_record_the_next_read_sees(opened) -> None:
    ds, store, _state, _ed = opened
    name = ds.items[1].name
    for edit in (
        lambda: store.correct(name, (3.0, 4.0)),
        lambda: store.set_verified(name, True),
        lambda: store.correct(name, (5.0, 6.0), source="prediction"),
        lambda: store.revert(name),
        lambda: store.set_state(name, (7.0, 8.0), "corrected", False),
    ):
        assert edit() == store.record(name)


def _label_reads(store: LabelStore) -> list[str]:
    seen: list[str] = []
    store._conn().set_trace_callback(seen.append)  # this thread's connection: the one the GUI edits through
    return seen


def test_an_edit_reads_its_row_once_and_the_state_takes_the_written_record(qtbot, opened) -> None:
    ds, store, state, editor = opened
    name = state.current
    seen = _label_reads(store)
    changed: list[list[str]] = []
    state.records_changed.connect(changed.append)
    editor.set_label(name, (10.0, 20.0))
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT") and " labels " in f"{s} "]
    assert len(reads) == 1  # inside the edit's transaction; not before (the command) nor after (the state)
    assert changed == [[name]] and state.record(name) == store.record(name)
    assert state.effective(name) == (10.0, 20.0)
    seen.clear()
    editor.undo()
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1
    assert state.record(name) == store.record(name)


def test_counts_are_kept_not_recounted(qtbot, opened, monkeypatch) -> None:
    ds, store, state, editor = opened
    calls: list[int] = []
    real = store.counts
    monkeypatch.setattr(store, "counts", lambda: calls.append(1) or real())
    assert state.counts == real()
    editor.set_label(state.current, (1.0, 2.0))
    editor.mark_verified()
    state.set_current(ds.items[2].name)
    editor.revert_label()  # nothing to revert: no edit
    editor.mark_verified()
    assert not calls and state.counts == real() == {"items": 6, "labelled": 6, "corrected": 1, "verified": 2}
    assert counts_of(store.records().values()) == real()


def test_the_window_uses_the_kept_counts(qtbot, training_window, tmp_path: Path, monkeypatch) -> None:
    win = training_window(make_biwi(tmp_path / "biwi", groups=2, frames=3, size=(64, 48)).root)
    calls: list[int] = []
    real = win.store.counts
    monkeypatch.setattr(win.store, "counts", lambda: calls.append(1) or real())
    win.editor.set_label(win.state.current, (5.0, 6.0))
    assert not calls
    assert (
        "1 corrected" in win.status.summary.text() or "1 correction" in win.training.train.labels_info.text()
    )


def test_annotations_are_built_once_per_change(qtbot, training_window, tmp_path: Path, monkeypatch) -> None:
    win = training_window(make_biwi(tmp_path / "biwi", groups=2, frames=3, size=(64, 48)).root)
    built: list[str] = []
    real = AppState._annotations
    monkeypatch.setattr(AppState, "_annotations", lambda self, name: built.append(name) or real(self, name))
    win.editor.nudge(1, 0)
    assert built == [win.state.current]  # canvas, window and actions share one build
    built.clear()
    win.go_to_item(win.dataset.items[1].name)
    assert built == [win.dataset.items[1].name]


def test_one_definition_each(tmp_path: Path) -> None:
    # The label error: engine.core.label_distance (the queue's own copy is gone).
    assert not hasattr(review_model, "disagreement")
    # The label text: format_label, short form for thumbnails.
    assert not hasattr(similar_panel, "fmt_label")
    assert format_label((120.4, 88.0), short=True) == "(120, 88)"
    assert format_label((1.0, 2.0, 3.0, 4.0), short=True) == "2 points"
    assert format_label(None, short=True, missing="no label") == "no label"
    assert similar_panel.query_text("a/b.png", (34.0,), None) == "Similar to b.png: label 34"
    # Whether a run is spatial: engine.runs.files.is_spatial, for the app and the CLI.
    assert not hasattr(runs, "is_spatial")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"head": "spatial"}))
    assert runfiles.is_spatial(tmp_path / "run")
