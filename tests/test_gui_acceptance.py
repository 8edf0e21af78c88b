"""Regressions found by hand-testing the app (helper G): layout restore, narrow docks, group ticks, run metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_headless
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from engine.data.synth import make_biwi
from imgreg_gui.app import is_loaded
from imgreg_gui.main_window import MainWindow
from imgreg_gui.model.state import AppState
from imgreg_gui.training.options import OptionsForm
from imgreg_gui.training.runs import BASE_COLUMNS, RunsPanel


@pytest.fixture
def biwi(tmp_path: Path) -> Path:
    """A tiny Biwi-layout dataset: 2 groups x 3 frames of 64x48."""
    return make_biwi(tmp_path / "biwi", groups=2, frames=3, size=(64, 48)).root


def shown_window(qtbot, root: Path | None = None) -> MainWindow:
    """A shown main window (persisting its layout), optionally with ``root`` open."""
    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1100, 720)
    w.show()
    qtbot.waitExposed(w)
    if root is not None:
        with qtbot.waitSignal(w.dataset_opened, timeout=15000):
            w.open_dataset(root)
        qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)
    return w


STRAY_CHECK = """
import time
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QTabBar
from imgreg_gui.app import make_app
from imgreg_gui.main_window import MainWindow
app = make_app()

def pump(s=0.4):
    end = time.monotonic() + s
    while time.monotonic() < end:
        app.processEvents()

def strays(w):
    covered = [d.geometry() for d in w.findChildren(QDockWidget) if d.isVisible() and not d.isFloating()]
    covered.append(w.centralWidget().geometry())
    bars = w.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly)
    return [b for b in bars if b.isVisible() and any(b.geometry().intersects(r) for r in covered)]

w = MainWindow(); w.resize(1100, 720); w.show(); pump(); first = len(strays(w)); w.close(); pump()
w = MainWindow(); w.resize(1100, 720); w.show(); pump()
live = sorted({tuple(b.tabText(i) for i in range(b.count())) for b in w.findChildren(QTabBar) if b.isVisible()})
print(first, len(strays(w)), live)
"""


def test_no_stray_tab_strips_over_the_panels(tmp_path):
    # Docks tabified before show (and a restored layout) left orphan tab bars painted over the dataset list.
    # Seen only in a fresh process with the app's own QApplication, hence the subprocess.
    out = run_headless(STRAY_CHECK, tmp_path)
    assert out.returncode == 0, out.stderr
    first, second, live = out.stdout.strip().splitlines()[-1].split(" ", 2)
    assert (first, second) == ("0", "0")
    assert "('Train', 'Review'" in live and "('Training curves', 'Runs'" in live


def test_review_panel_fits_a_narrow_dock(qtbot):
    w = shown_window(qtbot)
    assert w.training.review.minimumSizeHint().width() <= 420
    w.close()


def test_clicking_a_group_name_ticks_it(qtbot):
    form = OptionsForm()
    qtbot.addWidget(form)
    form.set_dataset(["01", "02"], "point")
    form.show()
    qtbot.waitExposed(form)
    item = form.groups.item(1)
    rect = form.groups.visualItemRect(item)
    on_name = QPoint(rect.right() - 10, rect.center().y())
    QTest.mouseClick(form.groups.viewport(), Qt.MouseButton.LeftButton, pos=on_name)
    assert form.checked_groups() == ["02"]
    QTest.mouseClick(form.groups.viewport(), Qt.MouseButton.LeftButton, pos=on_name)
    assert form.checked_groups() == []


def test_run_metrics_are_shown_next_to_the_run_id(qtbot, tmp_path):
    run = tmp_path / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": "tiny"}))
    (run / "summary.json").write_text(json.dumps({"metrics": {"mean_px": 3.5, "valid_loss": 0.1}}))
    panel = RunsPanel(AppState())
    qtbot.addWidget(panel)
    panel.runs_dir = tmp_path / "runs"
    panel.refresh()
    head = panel.tree.header()
    first_metric = len(BASE_COLUMNS)
    assert panel.tree.headerItem().text(first_metric) == "mean_px"
    assert head.visualIndex(first_metric) == 1
    panel.refresh()  # idempotent
    assert head.visualIndex(first_metric) == 1


def test_shortcuts_dialog_lists_the_training_keys(qtbot):
    from PySide6.QtWidgets import QTableWidget

    w = shown_window(qtbot)
    w.show_shortcuts()
    table = w._shortcuts.findChild(QTableWidget)
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows["Next suspect"] == "N" and rows["Previous suspect"] == "Shift+N"
    assert rows["Start training"] == "Ctrl+T"
    w._shortcuts.close()
    w.close()
