"""Label-quality scores, Find similar and the embedding map in the real window: score column and queue order,
the Similar items dock from its key with click-through, the map's click and selection, embeddings computed by a
child when missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtGui import QPolygonF  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.data import open_dataset  # noqa: E402
from engine.data.synth import make_utkface  # noqa: E402
from engine.labels.store import LabelStore, PredictionRow  # noqa: E402
from engine.runs.embeddings import Embeddings, embeddings_path, item_key, save_embeddings  # noqa: E402
from imgreg_gui.model.items import COL_SCORE  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_child import clustered  # noqa: E402

N = 16


def make_dataset(tmp_path: Path, embeddings: bool = True) -> tuple[Path, list[str]]:
    """A small UTKFace folder whose store holds scored predictions (score order differs from error order) and,
    optionally, clustered embeddings (items 4k..4k+3 are each other's nearest)."""
    syn = make_utkface(tmp_path / "utk", n=N, size=32)
    ds = open_dataset(syn.root)
    store = LabelStore.open(ds)
    names = [it.name for it in ds.items]
    rows = [
        PredictionRow(it.name, (it.label[0] + i,), float(i), None, float(N - i))
        for i, it in enumerate(ds.items)
    ]
    store.put_predictions("run-a", rows)
    if embeddings:
        emb = Embeddings(
            names, clustered(N), [item_key(it.path) for it in ds.items], {"source": "imagenet-t"}
        )
        save_embeddings(embeddings_path(store.dir, "imagenet-t"), emb)
    store.close()
    return syn.root, names


def test_score_column_and_queue_order(training_window, tmp_path: Path) -> None:
    root, names = make_dataset(tmp_path, embeddings=False)
    win = training_window(root)
    review = win.training.review
    assert win.state.active_run == "run-a"
    # The queue's default order is the score: item 0 has the largest score (N), the smallest error.
    assert review.order == "score"
    assert review.names() == names
    assert not review.table.isColumnHidden(3)
    # The raw error is one choice away.
    review.set_order("error")
    assert review.names() == list(reversed(names))
    review.set_order("score")
    # The item list has a Score column; sorting by score puts the largest doubt first.
    model = win.panel.model
    assert model.columnCount() == 4 and model.headerData(COL_SCORE, Qt.Orientation.Horizontal) == "Score"
    assert win.acts.sort_score.isEnabled()
    model.sort(-1)
    win.acts.sort_score.trigger()
    assert model.names_in_view() == names
    assert model.data(model.index(0, COL_SCORE)) == f"{float(N):.2f}"
    # Without scores there is no Score column.
    win.state.show_predictions("none", {n: PredictionRow(n, (1.0,), 1.0, None, None) for n in names})
    assert model.columnCount() == 3 and not win.acts.sort_score.isEnabled()


def test_find_similar_from_key_and_click_through(training_window, qtbot, tmp_path: Path) -> None:
    root, names = make_dataset(tmp_path)
    win = training_window(root)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    win.canvas.setFocus()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    win.go_to_item(names[5])
    qtbot.keyClick(win.canvas, Qt.Key.Key_S)
    panel = win.explore.similar
    assert win.explore.docks["Similar items"].isVisible()
    qtbot.waitUntil(lambda: len(panel.names()) > 0, timeout=10000)
    assert panel.query == names[5]
    assert set(panel.names()[:3]) == {names[4], names[6], names[7]}  # its cluster mates first
    assert "error" in panel.list.item(0).text()
    item = panel.list.item(1)
    qtbot.mouseClick(
        panel.list.viewport(), Qt.MouseButton.LeftButton, pos=panel.list.visualItemRect(item).center()
    )
    assert win.state.current == panel.names()[1]
    # Show in item list: the query and its neighbours only; pressed again, every item.
    panel.list_btn.click()
    assert set(win.panel.model.names_in_view()) == {names[5], *panel.names()}
    panel.list_btn.click()
    assert len(win.panel.model.names_in_view()) == N
    # The review queue's button does the same.
    win.go_to_item(names[0])
    win.training.review.similar_btn.click()
    qtbot.waitUntil(lambda: panel.query == names[0] and len(panel.names()) > 0, timeout=10000)
    assert set(panel.names()[:3]) == {names[1], names[2], names[3]}


def test_embedding_map_click_and_selection_filter(training_window, qtbot, tmp_path: Path) -> None:
    root, names = make_dataset(tmp_path)
    win = training_window(root)
    win.show()
    win.acts.embedding_map.trigger()
    m = win.explore.map
    qtbot.waitUntil(lambda: len(m.xy) == N, timeout=15000)
    assert sorted(m.names) == sorted(names)
    assert m.values["score"][names[0]] == pytest.approx(N)
    m.set_colouring("score")
    # A click on a point opens its item.
    target = names[9]
    i = m.names.index(target)
    with qtbot.waitSignal(m.item_clicked) as sig:
        m._clicked(m.scatter, m.scatter.pointsAt(QPointF(*map(float, m.xy[i]))))
    assert sig.args == [target] and win.state.current == target
    # An edit recolours the map (once, shortly after).
    win.editor.set_value(99.0)
    qtbot.waitUntil(lambda: m.values["label"][target] == pytest.approx(99.0), timeout=5000)
    # A box around some points filters the item list to them.
    x0, y0 = m.xy.min(0) - 1
    xm = float(np.median(m.xy[:, 0]))
    poly = QPolygonF([QPointF(x0, y0), QPointF(xm, y0), QPointF(xm, 1e6), QPointF(x0, 1e6)])
    m.select_polygon(poly)
    inside = {n for n, (x, _y) in zip(m.names, m.xy, strict=True) if x <= xm}
    assert inside and set(win.panel.model.names_in_view()) == inside
    assert "embedding map" in win.state.item_filter_label
    m.clear_selection()
    assert len(win.panel.model.names_in_view()) == N


def test_missing_embeddings_are_computed_by_a_child(training_window, qtbot, tmp_path: Path) -> None:
    root, names = make_dataset(tmp_path, embeddings=False)
    win = training_window(root)
    win.show()
    child = str(Path(__file__).resolve().parent / "embed_child.py")
    win.explore.source.make_command = lambda r, _src, _sd: [sys.executable, child, str(r)]
    progress = []
    win.explore.source.progress.connect(lambda d, t: progress.append((d, t)))
    win.go_to_item(names[2])
    win.acts.similar.trigger()
    panel = win.explore.similar
    qtbot.waitUntil(lambda: len(panel.names()) > 0, timeout=20000)
    assert progress and progress[-1] == (N, N)
    assert set(panel.names()[:3]) == {names[0], names[1], names[3]}
    assert "imagenet-fake" in panel.title.text()


def test_computing_embeddings_can_be_cancelled(training_window, qtbot, tmp_path: Path) -> None:
    root, names = make_dataset(tmp_path, embeddings=False)
    win = training_window(root)
    win.show()
    child = str(Path(__file__).resolve().parent / "embed_child.py")
    win.explore.source.make_command = lambda r, _src, _sd: [sys.executable, child, str(r), "--slow"]
    win.acts.similar.trigger()
    panel = win.explore.similar
    qtbot.waitUntil(lambda: panel.cancel_btn.isVisible() and panel.progress.maximum() == N, timeout=20000)
    panel.cancel_btn.click()
    qtbot.waitUntil(lambda: "cancelled" in panel.title.text(), timeout=10000)
    assert not panel.cancel_btn.isVisible() and not win.explore.source.busy and panel.names() == []


def test_similar_panel_follows_label_edits_and_undo(training_window, qtbot, tmp_path: Path) -> None:
    root, names = make_dataset(tmp_path)
    win = training_window(root)
    win.show()
    win.go_to_item(names[5])
    assert win.explore.find_similar()
    panel = win.explore.similar
    qtbot.waitUntil(lambda: len(panel.names()) > 0, timeout=10000)
    target = panel.names()[0]
    caption, title = panel.list.item(0).text(), panel.title.text()
    pred = win.state.preds[target].pred[0]
    # A neighbour's label corrected in the editor: its caption shows the new label and error at once.
    win.go_to_item(target)
    win.editor.set_value(77.0)
    assert panel.list.item(0).text() == f"d {float(caption.split()[1]):.3f}\n77\nerror {abs(77 - pred):.3g}"
    assert "label 77" in panel.list.item(0).toolTip()
    assert panel.title.text() == title  # the query did not change
    win.undo()
    assert panel.list.item(0).text() == caption
    # The query's own label is in the title and follows its edits too.
    win.go_to_item(names[5])
    win.editor.set_value(55.0)
    assert "Similar to" in panel.title.text() and ": label 55, error" in panel.title.text()
    win.undo()
    assert panel.title.text() == title
    assert panel.names()[0] == target and panel.list.item(0).text() == caption
