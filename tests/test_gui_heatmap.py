"""The heatmap overlay (View ▸ Show heatmap), the review queue ordered by spread, and V / Ctrl+Enter moving on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.data.synth import make_biwi  # noqa: E402
from engine.labels.store import PredictionRow  # noqa: E402
from engine.runs.heatmaps import heatmap_path, write_heatmap  # noqa: E402
from imgreg_gui import settings  # noqa: E402
from imgreg_gui.training.review_model import SPREAD_COL, ReviewRow, order_key  # noqa: E402


@pytest.fixture
def window(training_window, tmp_path: Path):
    return training_window(make_biwi(tmp_path / "biwi", groups=2, frames=4, size=(64, 48)).root)


def make_run(win, run_id: str, head: str, maps: bool, spreads: bool = True) -> Path:
    """A run folder (config and summary only: no training) with predictions, and heatmap PNGs when ``maps``."""
    run_dir = Path(win.store.dir) / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"arch": "tiny", "head": head, "kind": "point"}))
    (run_dir / "summary.json").write_text(json.dumps({"metrics": {"mean_px": 1.0}}))
    rows = []
    for i, it in enumerate(win.dataset.items):
        rows.append(
            PredictionRow(it.name, (it.label[0] + i, it.label[1]), None, 2.0 + i if spreads else None)
        )
        if maps:
            hm = np.zeros((1, 6, 8), np.float32)
            hm[0, 2, 3] = 1.0
            write_heatmap(heatmap_path(run_dir, it.name), hm)
    win.store.put_predictions(run_id, rows)
    return run_dir


def test_heatmap_toggle_shows_and_hides_the_overlay(qtbot, window) -> None:
    make_run(window, "run-maps", "spatial", maps=True)
    make_run(window, "run-plain", "pooled", maps=False, spreads=False)
    window.training.runs.refresh()
    act = window.acts.all["show_heatmap"]
    assert act.shortcut().toString() == "H" and "(H)" in act.toolTip()
    assert act in window.menus["View"].actions()
    window.state.set_active_run("run-maps")
    qtbot.waitUntil(lambda: window.canvas.image_size is not None, timeout=5000)
    assert act.isEnabled() and not act.isChecked()
    assert not window.canvas.heat_visible()
    # The spread is in the legend whenever it is known.
    assert any("Spread 2.00 px" in t or "Spread 2.0 px" in t for _, t in window.canvas._legend_rows())
    act.setChecked(True)
    assert window.canvas.heat_visible()
    pix = window.canvas.heat_item.pixmap()
    assert not pix.isNull() and window.canvas.heat_item.zValue() < window.canvas.rings[0].zValue()
    # The map is stretched over the whole image.
    rect = window.canvas.heat_item.mapRectToScene(window.canvas.heat_item.boundingRect())
    assert (rect.width(), rect.height()) == pytest.approx(window.canvas.image_size)
    assert any(sym == "heat" for sym, _ in window.canvas._legend_rows())
    assert settings.get_bool("view/show_heatmap", False)
    # Another item: its own heatmap follows.
    window.next_item()
    qtbot.waitUntil(lambda: not window.canvas.pending, timeout=5000)
    assert window.canvas.heat_visible() and window.canvas.heat_key[0] == window.current_item_name()
    act.setChecked(False)
    assert not window.canvas.heat_visible()
    # A run without heatmaps: the action is disabled and says why; nothing is drawn.
    act.setChecked(True)
    window.state.set_active_run("run-plain")
    assert not act.isEnabled() and "no heatmaps" in act.toolTip()
    assert not window.canvas.heat_visible()
    # No active run: nothing either.
    window.state.set_active_run(None)
    assert not window.canvas.heat_visible()


def test_predict_all_asks_for_heatmaps_for_spatial_runs(window) -> None:
    spatial = make_run(window, "run-s", "spatial", maps=False)
    pooled = make_run(window, "run-p", "pooled", maps=False)
    runs = window.training.runs
    assert runs.make_command(spatial, "ds")[-1] == "--heatmaps"
    assert "--heatmaps" not in runs.make_command(pooled, "ds")


def test_shortcuts_dialog_lists_show_heatmap(qtbot, window) -> None:
    from PySide6.QtWidgets import QTableWidget

    window.show_shortcuts()
    table = window._shortcuts.findChild(QTableWidget)
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows["Show heatmap"] == "H"
    window._shortcuts.close()


def test_order_keys() -> None:
    rows = [
        ReviewRow(0, "a", ".", 5.2, spread=1.0),
        ReviewRow(0, "b", ".", 9.0, spread=2.0),
        ReviewRow(0, "c", ".", 5.4, spread=8.0),
        ReviewRow(0, "d", ".", None, spread=3.0),
        ReviewRow(0, "e", ".", 1.0, spread=None),
    ]
    assert [r.name for r in sorted(rows, key=order_key("error"))] == ["b", "c", "a", "e", "d"]
    assert [r.name for r in sorted(rows, key=order_key("spread"))] == ["c", "d", "b", "a", "e"]
    # Errors equal to the whole pixel go by spread; unlabelled items (no error) last, by spread.
    assert [r.name for r in sorted(rows, key=order_key("error_spread"))] == ["b", "c", "a", "e", "d"]
    rows.append(ReviewRow(0, "f", ".", None, spread=9.0))
    assert [r.name for r in sorted(rows, key=order_key("error_spread"))][-2:] == ["f", "d"]


def test_review_queue_ordered_by_spread(qtbot, window) -> None:
    ds = window.dataset
    # Errors grow with the item index; spreads shrink with it: the two orders are reversed.
    rows = [
        PredictionRow(it.name, (it.label[0] + i, it.label[1]), None, 100.0 - i)
        for i, it in enumerate(ds.items)
    ]
    window.store.put_predictions("sp", rows)
    review = window.training.review
    review.refresh(prefer="sp")
    window.state.set_active_run("sp")
    names = [it.name for it in ds.items]
    # The default order is the score; predictions without scores fall back to the error.
    assert review.order == "score" and review.names() == list(reversed(names))
    assert not review.table.isColumnHidden(review.model.columnCount() - 2)
    review.set_order("spread")
    assert review.names() == names
    assert review.model.data(review.model.index(0, SPREAD_COL)) == "100.0"
    assert settings.settings().value("review/order") == "spread"
    # Next suspect walks the queue from the current item (the first item heads this order).
    assert window.state.current == names[0] and review.next_suspect() == names[1]
    review.set_order("error")
    assert review.names() == list(reversed(names))


def _focus(qtbot, win) -> None:
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    win.canvas.setFocus()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    qtbot.wait(50)


def test_v_and_ctrl_enter_move_on_with_then_next(qtbot, window) -> None:
    ds, store = window.dataset, window.store
    rows = [
        PredictionRow(it.name, (it.label[0] + i, it.label[1]), None, None) for i, it in enumerate(ds.items)
    ]
    store.put_predictions("vq", rows)
    ctl = window.training
    ctl.review.refresh(prefer="vq")
    ctl.state.set_active_run("vq")
    _focus(qtbot, window)
    ctl.docks["Review"].raise_()
    qtbot.waitUntil(ctl.review.on_screen, timeout=5000)
    queue = ctl.review.names()
    assert ctl.review.next_suspect() == queue[0]
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_V)
    qtbot.waitUntil(lambda: window.current_item_name() == queue[1], timeout=5000)
    assert store.record(queue[0]).verified
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.current_item_name() == queue[2], timeout=5000)
    assert store.record(queue[1]).source == "prediction"
    # "then next" off: V verifies and stays.
    ctl.review.advance.setChecked(False)
    qtbot.keyClick(window.canvas, Qt.Key.Key_V)
    qtbot.waitUntil(lambda: store.record(queue[2]).verified, timeout=5000)
    assert window.current_item_name() == queue[2]
    # Review panel behind the Train tab: the plain window behaviour (V toggles, no move).
    ctl.review.advance.setChecked(True)
    ctl.docks["Train"].raise_()
    qtbot.waitUntil(lambda: not ctl.review.on_screen(), timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_V)
    qtbot.waitUntil(lambda: not store.record(queue[2]).verified, timeout=5000)
    assert window.current_item_name() == queue[2]


def test_a_flat_heatmap_paints_nothing_and_a_peak_stays_hot() -> None:
    import numpy as np

    from imgreg_gui.overlays import heat_contrast

    assert heat_contrast(np.full((6, 8), 255, np.uint8)).max() == 0
    peaked = np.zeros((6, 8), np.uint8)
    peaked[2, 3] = 255
    out = heat_contrast(peaked)
    assert out[2, 3] == 255 and out.sum() == 255
