"""The app on hostile datasets (issue 24): "Opening dataset..." finishes and lists the problems, and a label the
engine's rule refuses is reported, not stored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.data.synth import make_points_csv
from imgreg_gui.app import is_loaded
from imgreg_gui.main_window import MainWindow


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A points CSV listing a FIFO named like an image, /dev/stdin, a NUL byte and an escape sequence."""
    root = make_points_csv(tmp_path / "d", n=3).root
    os.mkfifo(root / "pipe.png")
    with open(root / "labels.csv", "a", encoding="utf-8") as f:
        f.write("pipe.png,1,2\n/dev/stdin,1,2\na\x00b.png,1,2\n\x1b[31mred.png,1,2\n")
    return root


def test_app_opens_a_dataset_with_a_fifo_and_lists_problems(qtbot, hostile: Path) -> None:
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(hostile)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)
    ds = w.state.dataset
    assert ds is not None and len(ds.items) == 6
    reasons = {p.item: p.reason for p in ds.problems}
    assert "not a regular file" in reasons["pipe.png"] and "not a regular file" in reasons["/dev/stdin"]
    store = w.state.store
    w.state.set_current("img/000.png")
    before = store.effective("img/000.png")
    with qtbot.waitSignal(w.state.message, timeout=5000) as said:
        w.editor.set_label("img/000.png", (1e6, 1e6))
    assert "far outside" in said.args[0]
    assert store.effective("img/000.png") == before  # an out-of-image label never reaches the store
    assert w.editor.undo_stack.count() == 0
    w.close()
