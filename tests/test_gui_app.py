"""The app entry point: screenshots, the demo dataset, scalar datasets, export, filters, and no torch at start-up."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import run_headless
from PySide6.QtGui import QImage

from engine.data.synth import make_biwi, make_scalar_csv
from imgreg_gui.app import is_loaded, main
from imgreg_gui.demo import DONE_MARK, ensure_demo
from imgreg_gui.main_window import MainWindow


def open_ds(qtbot, w: MainWindow, root: Path) -> None:
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(root)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)


def test_startup_does_not_import_torch_or_fastai(tmp_path):
    code = (
        "import sys; from imgreg_gui.app import make_app; app = make_app();"
        "from imgreg_gui.main_window import MainWindow; w = MainWindow(); w.show(); app.processEvents();"
        "print([m for m in ('torch', 'fastai', 'torchvision') if m in sys.modules])"
    )
    out = run_headless(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_screenshot_of_a_dataset(qtbot, tmp_path):
    root = make_biwi(tmp_path / "ds", groups=1, frames=3, size=(64, 48)).root
    png = tmp_path / "shot.png"
    assert (
        main([str(root), "--screenshot", str(png), "--size", "800x600", "--item", "01/frame_00004_rgb.png"])
        == 0
    )
    img = QImage(str(png))
    assert not img.isNull() and img.height() == 600 and img.width() >= 800  # docks may set a minimum width


def test_screenshot_of_a_missing_folder_still_exits(qtbot, tmp_path):
    png = tmp_path / "missing.png"
    assert main([str(tmp_path / "nope"), "--screenshot", str(png), "--timeout", "20"]) == 0
    assert png.is_file()


def test_demo_is_created_once(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGREG_DATA_DIR", str(tmp_path / "data"))
    root = ensure_demo()
    assert root == tmp_path / "data" / "demo" and (root / DONE_MARK).is_file()
    frames = sorted(root.glob("*/frame_*_rgb.png"))
    assert len(frames) == 40
    stamp = frames[0].stat().st_mtime_ns
    assert ensure_demo() == root and frames[0].stat().st_mtime_ns == stamp


def test_demo_flag_opens_the_demo(qtbot, tmp_path):
    png = tmp_path / "demo.png"
    assert main(["--demo", "--screenshot", str(png), "--size", "1200x800"]) == 0
    assert png.is_file() and (ensure_demo() / "01").is_dir()


def test_scalar_value_box_corrects(qtbot, tmp_path):
    root = make_scalar_csv(tmp_path / "sc", n=3, size=32).root
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    open_ds(qtbot, w, root)
    name = w.current_item_name()
    assert w.canvas.kind == "scalar" and w.value.actions[1].isVisible()
    w.value.box.setValue(42.5)
    w.value.box.editingFinished.emit()
    assert w.store.effective(name) == (42.5,)
    w.undo()
    assert w.store.effective(name) != (42.5,)
    before = w.store.effective(name)[0]
    w.nudge(0, -1)
    w.nudge(0, -10)
    assert w.store.effective(name) == (before + 11,) and w.value.box.value() == round(before + 11, 2)
    w.close()


def test_export_filter_and_sort(qtbot, tmp_path):
    root = make_biwi(tmp_path / "ds", groups=2, frames=3, size=(64, 48)).root
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    open_ds(qtbot, w, root)
    name = w.current_item_name()
    w.nudge(1, 1)
    assert w.export_labels(tmp_path / "out.csv") == 6
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    got = {r["item"]: r for r in rows}  # the same columns as `imgreg labels`
    assert float(got[name]["x"]) == w.store.effective(name)[0] and got[name]["source"] == "corrected"
    data = json.loads((tmp_path / "out.json").read_text()) if w.export_labels(tmp_path / "out.json") else {}
    assert len(data) == 6 and {"item", "group", "x", "y", "source", "verified"} <= set(data[0])
    panel = w.panel
    panel.set_filter_choice("corrected")
    assert panel.model.names_in_view() == [name]
    panel.set_filter_choice("all")
    panel.filter_edit.setText("02/")
    panel._apply_filter()
    assert all(n.startswith("02/") for n in panel.model.names_in_view()) and len(panel.model.view) == 3
    w.next_item()  # the current item is filtered out: next goes to the first one shown
    assert w.current_item_name().startswith("02/")
    panel.filter_edit.setText("")
    panel._apply_filter()
    panel.view.sortByColumn(0, panel.view.header().sortIndicatorOrder().DescendingOrder)
    names = panel.model.names_in_view()
    assert names == sorted(names, reverse=True)
    w.close()
