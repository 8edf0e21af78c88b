"""What the window says: plurals, the logged command, the map's selection line, undo entries' action names."""

from __future__ import annotations

import sys

from PySide6.QtCore import QPointF
from PySide6.QtGui import QPolygonF
from PySide6.QtWidgets import QTableWidget

from engine.data.synth import make_biwi
from imgreg_gui.app import is_loaded
from imgreg_gui.jobs.process import engine_command, shown_command
from imgreg_gui.main_window import MainWindow
from imgreg_gui.words import plural


def test_plural():
    assert plural(1, "group") == "1 group" and plural(2, "group") == "2 groups"
    assert plural(1234, "item") == "1,234 items" and plural(0, "item") == "0 items"


def test_logged_command_names_the_program():
    assert shown_command(engine_command("train", "/data/my set", "--epochs", "3")) == (
        "imgreg train '/data/my set' --epochs 3"
    )
    assert shown_command([sys.executable, "x.py"]) == f"{sys.executable} x.py"


def test_counts_undo_names_and_map_selection(qtbot, tmp_path):
    w = MainWindow()
    w.persist = False
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(make_biwi(tmp_path / "biwi", groups=1, frames=3, size=(64, 48)).root)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)
    assert w.panel.count_label.text() == "3 items · 1 group"
    assert w.acts.undo.text() == "&Undo"
    w.nudge(1, 0)
    assert w.acts.undo.text() == "&Undo Nudge label"
    w.undo()
    assert w.acts.redo.text() == "&Redo Nudge label" and w.acts.undo.text() == "&Undo"
    w.editor.revert_label()  # nothing to revert: no entry
    w.mark_verified()
    assert w.acts.undo.text() == "&Undo Mark verified"
    w.close()


def test_map_clear_selection_says_so(qtbot):
    import numpy as np

    from imgreg_gui.embedding_map import EmbeddingMap

    m = EmbeddingMap()
    qtbot.addWidget(m)
    names = [f"img{i}.jpg" for i in range(6)]
    m.set_items(names, {}, {n: (1.0,) for n in names}, {}, {n: "." for n in names})
    m.set_points(np.array([[i, i] for i in range(6)], np.float32))
    m.select_polygon(QPolygonF([QPointF(-1, -1), QPointF(9, -1), QPointF(9, 9), QPointF(-1, 9)]))
    assert m.status.text() == "6 items selected"
    m.clear_selection()
    assert "selected" not in m.status.text() and m.status.text().startswith("6 items;")


def test_label_history_lists_each_change(qtbot, tmp_path):
    w = MainWindow()
    w.persist = False
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(make_biwi(tmp_path / "biwi", groups=1, frames=3, size=(64, 48)).root)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)
    w.nudge(1, 0)
    w.mark_verified()
    w.acts.history.trigger()
    table = w._history.findChild(QTableWidget, "HistoryTable")
    assert table.rowCount() == 2
    assert {table.item(r, 1).text() for r in range(2)} == {"Corrected", "Marked verified"}
    assert "(corrected)" in table.item(0, 3).text() or "(corrected)" in table.item(1, 3).text()
    w._history.close()
    w.close()


def test_map_has_a_colour_legend_and_marks_the_current_item(qtbot):
    import numpy as np

    from imgreg_gui.embedding_map import EmbeddingMap

    m = EmbeddingMap()
    qtbot.addWidget(m)
    names = [f"g{i % 2}/img{i}.jpg" for i in range(6)]
    m.set_items(names, {}, {n: (float(i),) for i, n in enumerate(names)}, {}, {n: n[:2] for n in names})
    m.set_points(np.array([[i, i] for i in range(6)], np.float32))
    assert "label:" in m.legend.text() and "&#8594;" in m.legend.text()
    m.set_colouring("group")
    assert "g0" in m.legend.text() and "g1" in m.legend.text()
    assert len(m.cur_scatter.data) == 0
    m.set_current(names[3])
    assert len(m.cur_scatter.data) == 1 and tuple(m.cur_scatter.data["x"]) == (3.0,)
    m.set_current(None)
    assert len(m.cur_scatter.data) == 0
