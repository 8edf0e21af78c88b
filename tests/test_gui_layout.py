"""Layout that must hold as the window changes: the item list keeps room for names."""

from __future__ import annotations

from engine.data.synth import make_biwi
from engine.labels.store import PredictionRow
from imgreg_gui.app import is_loaded
from imgreg_gui.main_window import MainWindow
from imgreg_gui.model.items import COL_ERROR, COL_NAME


def test_the_name_column_keeps_its_room_when_the_panel_narrows(qtbot, tmp_path):
    w = MainWindow()
    w.persist = False
    qtbot.addWidget(w)
    w.resize(1200, 700)
    w.show()
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(make_biwi(tmp_path / "biwi", groups=2, frames=3, size=(64, 48)).root)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)
    rows = [PredictionRow(it.name, (1.0, 2.0), 12345.678, None, None) for it in w.dataset.items]
    w.store.put_predictions("r1", rows)
    w.state.set_active_run("r1")
    view = w.panel.view
    assert not view.isColumnHidden(COL_ERROR)
    dock = w.docks.by_title["Dataset"]
    for width in (520, 240):
        w.resizeDocks([dock], [width], w.panel.view.header().orientation())
        qtbot.wait(50)
        room = view.viewport().width()
        assert view.columnWidth(COL_NAME) >= 0.55 * room, (width, room, view.columnWidth(COL_NAME))
    w.close()


def test_reopening_shows_the_last_item_viewed(qtbot, tmp_path):
    root = make_biwi(tmp_path / "biwi", groups=2, frames=3, size=(64, 48)).root

    def opened() -> MainWindow:
        w = MainWindow()
        qtbot.addWidget(w)
        w.show()
        with qtbot.waitSignal(w.dataset_opened, timeout=15000):
            w.open_dataset(root)
        qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)
        return w

    w = opened()
    w.next_item()
    w.next_group()
    seen = w.current_item_name()
    w.close()
    w2 = opened()
    assert w2.current_item_name() == seen
    w2.close()


def test_the_legend_sits_below_a_fitted_image(qtbot, tmp_path):
    from PySide6.QtCore import QRectF

    from engine.data.synth import make_utkface

    w = MainWindow()
    w.persist = False
    qtbot.addWidget(w)
    w.resize(1100, 800)
    w.show()
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(make_utkface(tmp_path / "utk", n=4, size=200).root)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)
    c = w.canvas
    c.resize(520, 540)  # about square: a fitted square image would reach the bottom edge
    c.fit()
    c.viewport().repaint()
    qtbot.waitUntil(lambda: c.legend_rect is not None, timeout=5000)
    image = c.mapFromScene(QRectF(0, 0, *c.image_size)).boundingRect()
    assert not c.legend_rect.intersects(QRectF(image)), (c.legend_rect, image)
    w.close()


def test_results_do_not_widen_panels_or_clip_buttons(qtbot):
    from imgreg_gui.training.panel import LiveView
    from imgreg_gui.training.runs import RunsPanel

    live = LiveView()
    qtbot.addWidget(live)
    live.resize(360, 240)
    live.show()
    live.tabs.setCurrentIndex(1)
    live.lr_note.setText(
        "Suggested learning rate 0.00123 (steepest descent of the smoothed loss, valley at 0.004)"
    )
    qtbot.wait(20)
    assert live.minimumSizeHint().width() <= 360
    assert live.use_lr.width() >= live.use_lr.sizeHint().width()
    assert live.use_lr.geometry().right() <= live.use_lr.parentWidget().width()

    from imgreg_gui.model.state import AppState

    runs = RunsPanel(AppState())
    qtbot.addWidget(runs)
    before = runs.minimumSizeHint().width()
    runs.status.setText("Predictions of 20261202-194400-abcdef stored (12.3 s); " * 3)
    assert runs.minimumSizeHint().width() <= max(before, 420)


def test_the_status_filters_highlighted_entry_is_filled(qtbot):
    from PySide6.QtGui import QColor

    from imgreg_gui.app import make_app

    app = make_app()  # the app's stylesheet, dropped again at the end
    w = MainWindow()
    w.persist = False
    qtbot.addWidget(w)
    w.show()
    combo = w.panel.filter_combo
    combo.showPopup()
    view = combo.view()
    qtbot.waitUntil(view.isVisible, timeout=5000)
    view.setCurrentIndex(view.model().index(2, 0))
    qtbot.wait(50)
    rect = view.visualRect(view.currentIndex())
    img = view.viewport().grab().toImage()
    px = QColor(img.pixel(rect.left() + 2, rect.center().y()))
    combo.hidePopup()
    w.close()
    app.setStyleSheet("")
    assert px.name() == "#dbe6fb", px.name()
