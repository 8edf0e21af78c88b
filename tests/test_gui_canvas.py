"""The canvas: the legend never covers a marker; the interaction rules without a widget; the app model's signals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from engine.labels.store import PredictionRow  # noqa: E402
from imgreg_gui import interaction  # noqa: E402
from imgreg_gui.app import is_loaded  # noqa: E402
from imgreg_gui.main_window import MainWindow  # noqa: E402
from imgreg_gui.model.state import AppState  # noqa: E402


def points_csv(root: Path, labels: list[tuple[float, float]], size=(640, 480)) -> Path:
    """A points-CSV dataset of plain grey frames with these labels."""
    root.mkdir(parents=True)
    rows = ["image,x,y"]
    for i, (x, y) in enumerate(labels):
        cv2.imwrite(str(root / f"f{i}.png"), np.full((size[1], size[0], 3), 90, np.uint8))
        rows.append(f"f{i}.png,{x},{y}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def opened(qtbot, root: Path, size=(1100, 700)) -> MainWindow:
    w = MainWindow()
    w.persist = False
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    w.open_dataset(root)
    qtbot.waitUntil(lambda: w.dataset is not None and is_loaded(w), timeout=20000)
    return w


def legend_clear(w: MainWindow) -> bool:
    """Paint, then check that no marker lies inside the legend (with the marker's own size around it)."""
    w.canvas.viewport().repaint()
    r = w.canvas.legend_rect
    pad = interaction.MARKER_RADIUS
    pts = w.canvas.marker_points()
    assert pts, "markers are drawn"
    return r is None or not any(
        r.left() - pad <= x <= r.right() + pad and r.top() - pad <= y <= r.bottom() + pad for x, y in pts
    )


def test_the_legend_never_covers_a_marker(qtbot, tmp_path: Path) -> None:
    # A 640x480 frame whose label lies at y = 468, bottom left: where the legend used to be drawn.
    root = points_csv(tmp_path / "pts", [(20.0, 468.0), (620.0, 470.0), (320.0, 240.0)])
    w = opened(qtbot, root, size=(1700, 640))  # a wide window: the image fills the canvas's height
    assert legend_clear(w) and w.canvas.legend_rect is not None
    r, vp = w.canvas.legend_rect, w.canvas.viewport().rect()
    corner = (10.0, vp.height() - 10.0 - r.height(), r.width(), r.height())
    # Fitting leaves the legend room below the image; where the corner would still cover a marker, it moves.
    if interaction._overlaps(corner, w.canvas.marker_points(), 0.0):
        assert r.left() > 10
    # With a prediction at the other bottom corner too, and zoomed in around them.
    name = w.current_item_name()
    w.store.put_predictions("r", [PredictionRow(name, (630.0, 475.0))])
    w.state.set_active_run("r")
    assert w.canvas.pred is not None and legend_clear(w)
    for _ in range(3):
        w.canvas.zoom_in()
        assert legend_clear(w)
    w.next_item()
    qtbot.waitUntil(lambda: is_loaded(w), timeout=10000)
    assert legend_clear(w)
    w.close()


def test_legend_rect_prefers_the_bottom_left_corner_and_dodges_markers() -> None:
    view, chip = (800.0, 600.0), (300.0, 60.0)
    assert interaction.legend_rect(view, chip, []) == (10.0, 530.0, 300.0, 60.0)
    r = interaction.legend_rect(view, chip, [(50.0, 560.0)])
    assert r is not None and r[0] > 50 + interaction.MARKER_RADIUS
    # Markers everywhere along both edges: no place is free, so no legend rather than a hidden marker.
    crowd = [(x, y) for x in range(0, 801, 20) for y in (560.0, 60.0)]
    assert interaction.legend_rect(view, chip, crowd, top=30.0) is None


def test_press_drag_and_place_without_a_widget() -> None:
    size = (100, 80)
    # Pressing on a point drags it; the label is clamped to the image; an unmoved press changes nothing.
    drag = interaction.press(
        (10.0, 10.0), 0, (10.0, 10.0), size, ctrl=False, place_mode=False, active_point=0
    )
    assert drag is not None and drag.result((10.0, 10.0)) is None
    drag.move((150.0, -5.0), size)
    assert drag.result((10.0, 10.0)) == (100.0, 0.0)
    # Ctrl places the active point at the click; a plain press elsewhere pans (None).
    lab = (1.0, 2.0, 3.0, 4.0)
    drag = interaction.press(lab, -1, (50.0, 40.0), size, ctrl=True, place_mode=False, active_point=1)
    assert drag is not None and drag.result(lab) == (1.0, 2.0, 50.0, 40.0)
    assert interaction.press(lab, -1, (5.0, 5.0), size, ctrl=False, place_mode=False, active_point=0) is None
    # An item without a label: the first click places it.
    drag = interaction.press(None, -1, (7.0, 8.0), size, ctrl=False, place_mode=False, active_point=0)
    assert drag is not None and drag.result(None) == (7.0, 8.0)
    assert interaction.hit([(0.0, 0.0), (30.0, 0.0)], (27.0, 1.0)) == 1
    assert interaction.hit([(0.0, 0.0)], (40.0, 0.0)) == -1


def test_state_signals_each_change_once(qtbot, tmp_path: Path) -> None:
    from engine.data import open_dataset
    from engine.labels.store import LabelStore

    ds = open_dataset(points_csv(tmp_path / "p", [(1.0, 2.0), (3.0, 4.0)], size=(16, 12)))
    store = LabelStore.open(ds)
    st = AppState()
    seen: list[tuple] = []
    st.dataset_changed.connect(lambda: seen.append(("dataset",)))
    st.current_changed.connect(lambda n: seen.append(("current", n)))
    st.active_run_changed.connect(lambda r: seen.append(("run", r)))
    st.item_filter_changed.connect(lambda: seen.append(("filter", st.item_filter)))
    st.records_changed.connect(lambda names: seen.append(("records", tuple(names))))
    st.set_opened(ds, store, store.records())
    assert st.set_current("f1.png") and not st.set_current("f1.png")
    assert not st.set_current("missing.png") and st.current == "f1.png"
    store.put_predictions("r", [PredictionRow("f1.png", (6.0, 8.0))])
    st.set_active_run("r")
    assert st.annotations().pred == (6.0, 8.0) and st.errors["f1.png"] == pytest.approx(5.0)
    st.set_item_filter(["f0.png"], "similar")
    store.correct("f1.png", (6.0, 8.0))
    qtbot.waitUntil(lambda: ("records", ("f1.png",)) in seen, timeout=5000)
    assert st.errors["f1.png"] == pytest.approx(0.0) and st.annotations().source == "corrected"
    assert seen[:5] == [
        ("dataset",),
        ("current", "f1.png"),
        ("run", "r"),
        ("filter", frozenset({"f0.png"})),
        ("records", ("f1.png",)),
    ]
    st.close()
    assert st.dataset is None and st.current is None and st.active_run is None


def test_the_item_list_honours_the_state_item_filter(qtbot, tmp_path: Path) -> None:
    root = points_csv(tmp_path / "f", [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)], size=(16, 12))
    w = opened(qtbot, root, size=(900, 600))
    model = w.panel.model
    assert model.names_in_view() == ["f0.png", "f1.png", "f2.png"]
    w.state.set_item_filter(["f2.png", "f0.png"], "similar to f0.png")
    assert model.names_in_view() == ["f0.png", "f2.png"]
    assert "similar to f0.png" in w.panel.count_label.text()
    w.next_item()  # navigation follows the filtered list
    assert w.current_item_name() == "f2.png"
    w.state.set_item_filter(None)
    assert len(model.names_in_view()) == 3
    w.close()
