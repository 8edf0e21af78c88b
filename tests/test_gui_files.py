"""File menu work in the real window: export in every format, ONNX export of a run, Reload, orphans, a recovered
store's message, stale predictions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from engine.data import open_dataset
from engine.data.synth import make_biwi, make_folder, make_scalar_csv
from engine.labels.store import PredictionRow
from imgreg_gui import files as files_mod
from imgreg_gui.app import is_loaded
from imgreg_gui.files import FORMAT_FILTERS
from imgreg_gui.main_window import MainWindow

FAKE_EXPORT = str(Path(__file__).with_name("fake_export.py"))


@pytest.fixture
def win(qtbot):
    """A shown main window, closed at the end."""
    w = MainWindow()
    w.persist = False
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.training.runs.shutdown()
    w.close()


def open_ds(qtbot, w: MainWindow, root: Path) -> None:
    """Open ``root`` and wait until the first image is shown."""
    with qtbot.waitSignal(w.dataset_opened, timeout=15000):
        w.open_dataset(root)
    qtbot.waitUntil(lambda: is_loaded(w), timeout=15000)


def test_export_coco_from_the_file_menu_reads_back(qtbot, win, tmp_path, monkeypatch):
    root = make_biwi(tmp_path / "biwi", groups=2, frames=3, size=(64, 48)).root
    open_ds(qtbot, win, root)
    first = win.current_item_name()
    win.editor.set_label(first, (10.0, 20.0))
    out = tmp_path / "out" / "keypoints"  # no suffix: the dialog's format adds .json
    out.parent.mkdir()
    chosen = FORMAT_FILTERS["coco"][0]
    monkeypatch.setattr(files_mod.QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), chosen))
    with qtbot.waitSignal(win.files.exported, timeout=15000):
        win.acts.export.trigger()
    assert not win.acts.export.isEnabled() or not win.files.running
    back = open_dataset(out.with_suffix(".json"))
    labels = {Path(it.path).resolve(): it.label for it in back.items}
    assert back.format == "coco" and len(back.items) == 6
    assert labels[(root / first).resolve()] == pytest.approx((10.0, 20.0))
    qtbot.waitUntil(lambda: "Exported 6 labels (coco)" in win.status.currentMessage(), timeout=5000)


def test_export_yolo_pose_folder_and_csv(qtbot, win, tmp_path):
    root = make_biwi(tmp_path / "biwi", groups=1, frames=3, size=(64, 48)).root
    open_ds(qtbot, win, root)
    folder = tmp_path / "yolo"
    with qtbot.waitSignal(win.files.exported, timeout=15000) as sig:
        assert win.files.export("yolo-pose", folder)
    assert sig.args[0].n_labels == 3
    assert (folder / "data.yaml").is_file() and len(list((folder / "labels").rglob("*.txt"))) == 3
    with qtbot.waitSignal(win.files.exported, timeout=15000):
        win.files.export("csv", tmp_path / "l.csv")
    assert len((tmp_path / "l.csv").read_text().splitlines()) == 4


def test_export_keypoints_of_scalars_is_a_one_line_error(qtbot, win, tmp_path):
    root = make_scalar_csv(tmp_path / "ages", n=4).root
    open_ds(qtbot, win, root)
    win.files.export("coco", tmp_path / "k.json")
    qtbot.waitUntil(lambda: win.files.error_box is not None, timeout=15000)
    box = win.files.error_box
    assert box.icon() == QMessageBox.Icon.Critical and "scalars" in box.text()
    assert "\n" not in box.text() and "Traceback" not in box.text() and not box.detailedText()
    assert not (tmp_path / "k.json").exists()
    box.close()


def make_run(win: MainWindow) -> str:
    """A run folder the runs list shows with a model (config.json)."""
    run = win.store.dir / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": "tiny"}))
    (run / "summary.json").write_text(json.dumps({"run_id": run.name, "metrics": {"mean_px": 3.0}}))
    win.training.runs.refresh()
    return run.name


def test_runs_list_exports_onnx_in_a_child(qtbot, win, tmp_path):
    root = make_folder(tmp_path / "pics", n=3).root
    open_ds(qtbot, win, root)
    runs = win.training.runs
    run_id = make_run(win)
    runs.select(run_id)
    assert runs.export_btn.isEnabled() and "ONNX" in runs.export_btn.toolTip()
    runs.make_export_command = lambda run_dir, out: [sys.executable, FAKE_EXPORT, str(run_dir), "--out", out]
    out = tmp_path / "m.onnx"
    with qtbot.waitSignal(runs.onnx_exported, timeout=15000) as sig:
        assert runs.export_onnx(run_id, out)
        assert runs.progress.isVisible() and not runs.export_btn.isEnabled()
    assert sig.args == [str(out)] and out.read_bytes() == b"onnx"
    assert str(out) in win.status.currentMessage() and not runs.progress.isVisible()
    runs.make_export_command = lambda run_dir, out: [
        sys.executable, FAKE_EXPORT, str(run_dir), "--out", out, "--fail"
    ]  # fmt: skip
    assert runs.export_onnx(run_id, tmp_path / "bad.onnx")
    qtbot.waitUntil(lambda: runs.error_box is not None, timeout=15000)
    assert runs.error_box.text() == "this run's head cannot be exported as ONNX"
    runs.error_box.close()


def test_reload_adds_and_removes_files_and_lists_orphans(qtbot, win, tmp_path):
    root = make_folder(tmp_path / "pics", n=4).root
    open_ds(qtbot, win, root)
    win.go_to_item("img_001.png")
    win.editor.set_label("img_001.png", (5.0, 6.0))
    win.go_to_item("img_002.png")
    shutil.copy(root / "img_000.png", root / "new.png")
    gone = root / "img_001.png"
    kept = gone.read_bytes()
    gone.unlink()
    assert win.acts.reload.isEnabled() and "Ctrl+R" in win.acts.reload.toolTip()
    with qtbot.waitSignal(win.files.reloaded, timeout=15000):
        win.acts.reload.trigger()
    names = {it.name for it in win.state.items}
    assert "new.png" in names and "img_001.png" not in names
    assert win.current_item_name() == "img_002.png"  # kept where it still exists
    assert "1 orphan" in win.status.summary.text()
    win.panel.set_filter_choice("orphans")
    assert win.panel.orphan_names() == ["img_001.png"]
    win.panel.orphan_view.setCurrentItem(win.panel.orphan_view.topLevelItem(0))
    title, detail = win.canvas.problem
    assert "gone" in title and "5.0" in detail and "Reload" in detail
    win.panel.set_filter_choice("all")
    qtbot.waitUntil(lambda: win.canvas.problem is None and win.canvas.name == "img_002.png", timeout=5000)
    win.panel.set_filter_choice("orphans")
    gone.write_bytes(kept)
    with qtbot.waitSignal(win.files.reloaded, timeout=15000):
        win.files.reload()
    assert win.panel.orphan_names() == [] and "orphan" not in win.status.summary.text()
    assert win.state.effective("img_001.png") == (5.0, 6.0)
    win.panel.set_filter_choice("all")
    assert win.panel.model.row_of("img_001.png") is not None


def test_damaged_store_opens_with_the_recovery_message(qtbot, win, tmp_path):
    root = make_folder(tmp_path / "pics", n=3).root
    open_ds(qtbot, win, root)
    win.go_to_item("img_002.png")
    win.editor.set_label("img_002.png", (7.0, 8.0))
    db = win.store.db_path
    win.close_dataset()
    with open(db, "r+b") as f:  # bytes overwritten in the middle
        f.seek(db.stat().st_size // 3)
        f.write(b"\xa5" * 8192)
    open_ds(qtbot, win, root)
    msg = win.store.recovery_message
    assert msg and "recovered" in msg
    assert win.files.info_box is not None and win.files.info_box.text() == msg
    assert msg in win.status.currentMessage()
    assert win.state.effective("img_002.png") == (7.0, 8.0)
    assert "Cannot" not in (win.canvas.problem or ("", ""))[0]
    win.files.info_box.close()


def test_stale_prediction_reads_stale_on_the_canvas(qtbot, win, tmp_path):
    root = make_folder(tmp_path / "pics", n=2).root
    open_ds(qtbot, win, root)
    win.store.put_predictions("run1", [PredictionRow("img_000.png", (3.0, 3.0))])
    win.go_to_item("img_000.png")
    win.state.set_active_run("run1")
    assert not win.canvas.stale
    with open(root / "img_000.png", "ab") as f:
        f.write(b"changed")
    win.state.set_active_run("run1")
    assert win.canvas.stale and "stale" in win.canvas.toolTip().lower()
    assert any("stale" in text for _, text in win.canvas._legend_rows())


MAKE_RUN = """
import sys, torch
from pathlib import Path
from engine.learn.arch import ModelConfig, build_model
from engine.learn.models import save_run
torch.manual_seed(0)
cfg = ModelConfig(arch="tiny", kind="point", n_points=1, head="spatial", size=(32, 32), pretrained=False)
model, _ = build_model(cfg)
run = Path(sys.argv[1])
save_run(run, cfg, model.state_dict(), [], {"run_id": run.name, "metrics": {"mean_px": 1.0}})
"""


def test_runs_list_export_runs_the_real_imgreg_export(qtbot, win, tmp_path):
    pytest.importorskip("onnx")
    root = make_folder(tmp_path / "pics", n=2).root
    open_ds(qtbot, win, root)
    run_dir = win.store.dir / "runs" / "20260102-000000"
    subprocess.run([sys.executable, "-c", MAKE_RUN, str(run_dir)], check=True, timeout=300)
    runs = win.training.runs
    runs.refresh(select=run_dir.name)
    out = tmp_path / "tiny.onnx"
    with qtbot.waitSignal(runs.onnx_exported, timeout=300000) as sig:
        assert runs.export_onnx(run_dir.name, out)
    assert sig.args == [str(out)] and out.stat().st_size > 1000
    assert f"Exported run {run_dir.name} as ONNX" in win.status.currentMessage()


def test_export_offers_what_applies_and_remembers_its_folder(qtbot, win, tmp_path, monkeypatch):
    seen = []

    def dialog(_parent, _title, default, filters, _selected):
        seen.append((default, filters.split(";;")))
        return str(tmp_path / "exports" / "ages.csv"), FORMAT_FILTERS["csv"][0]

    monkeypatch.setattr(files_mod.QFileDialog, "getSaveFileName", dialog)
    (tmp_path / "exports").mkdir()
    open_ds(qtbot, win, make_scalar_csv(tmp_path / "ages", n=4).root)
    with qtbot.waitSignal(win.files.exported, timeout=15000):
        win.acts.export.trigger()
    assert seen[0][1] == [FORMAT_FILTERS["csv"][0], FORMAT_FILTERS["json"][0]]  # no COCO / YOLO for scalars
    open_ds(qtbot, win, make_biwi(tmp_path / "biwi", groups=1, frames=2, size=(64, 48)).root)
    with qtbot.waitSignal(win.files.exported, timeout=15000):
        win.acts.export.trigger()
    assert len(seen[1][1]) == 4 and Path(seen[1][0]).parent == tmp_path / "exports"
