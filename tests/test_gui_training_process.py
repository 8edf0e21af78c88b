"""The training child supervisor and the Train panel, driven by a scripted fake child (no torch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from imgreg_gui.jobs.process import ChildProcess  # noqa: E402
from imgreg_gui.training.options import TrainOptions, parse_nvidia_smi, train_command  # noqa: E402
from imgreg_gui.training.panel import TrainPanel  # noqa: E402
from imgreg_gui.training.plots import ema, pick_error_metric  # noqa: E402

FAKE = str(Path(__file__).with_name("fake_child.py"))


def fake(*args: str) -> list[str]:
    return [sys.executable, FAKE, *args]


def run_child(qtbot, args: list[str], after_start=None, timeout: int = 20000):
    child = ChildProcess()
    events: list[dict] = []
    child.event.connect(events.append)
    with qtbot.waitSignal(child.ended, timeout=timeout) as sig:
        child.start(fake(*args))
        if after_start:
            after_start(child, events)
    return sig.args[0], events


def test_child_success_reports_events_and_summary(qtbot) -> None:
    res, events = run_child(qtbot, ["train", "--epochs", "2", "--batches", "3"])
    assert res.status == "finished" and res.ok
    types = [e["type"] for e in events]
    assert types[0] == "prepared" and types.count("batch") == 6 and types.count("epoch") == 2
    assert types[-2:] == ["finished", "summary"]
    assert res.summary["run_id"] == "fake-run"


def test_child_failed_event_becomes_failure(qtbot) -> None:
    res, _ = run_child(qtbot, ["train", "--fail", "event"])
    assert res.status == "failed" and "out of memory" in res.message


def test_child_traceback_without_event_becomes_failure(qtbot) -> None:
    res, _ = run_child(qtbot, ["train", "--fail", "raise"])
    assert res.status == "failed"
    assert "boom in the fake child" in res.message and "code 1" in res.message


def test_child_killed_by_signal_is_a_crash(qtbot) -> None:
    res, _ = run_child(qtbot, ["train", "--fail", "abort"])
    assert res.status in ("crashed", "failed") and not res.ok


def test_missing_program_fails_cleanly(qtbot) -> None:
    child = ChildProcess()
    with qtbot.waitSignal(child.ended, timeout=10000) as sig:
        child.start(["/nonexistent/program-xyz"])
    assert sig.args[0].status == "failed"


def test_stop_after_epoch_finishes_early(qtbot) -> None:
    def stop(child, events):
        qtbot.waitUntil(lambda: any(e["type"] == "batch" for e in events), timeout=10000)
        child.stop_after_epoch()

    res, events = run_child(qtbot, ["train", "--epochs", "50", "--batches", "5", "--sleep", "0.02"], stop)
    assert res.status == "finished"
    assert 1 <= sum(e["type"] == "epoch" for e in events) < 50


def test_cancel_is_acknowledged(qtbot) -> None:
    def cancel(child, events):
        qtbot.waitUntil(lambda: any(e["type"] == "batch" for e in events), timeout=10000)
        child.cancel()

    res, events = run_child(qtbot, ["train", "--epochs", "50", "--sleep", "0.02"], cancel)
    assert res.status == "cancelled"
    assert any(e["type"] == "cancelled" for e in events)


def test_cancel_kills_a_child_that_ignores_it(qtbot) -> None:
    def cancel(child, events):
        qtbot.waitUntil(lambda: any(e["type"] == "prepared" for e in events), timeout=10000)
        child.cancel(grace_ms=300)

    res, _ = run_child(qtbot, ["train", "--ignore-cancel"], cancel)
    assert res.status == "cancelled"


def test_train_command_flags() -> None:
    opts = TrainOptions(
        arch="tiny",
        epochs=1,
        lr=1e-3,
        size="64",
        bs=4,
        head="pooled",
        valid_groups=["01", "02"],
        folds=3,
        weights="scratch",
        device="cpu",
    )
    cmd = train_command("/data/biwi", opts)
    joined = " ".join(cmd)
    assert "engine.cli train /data/biwi" in joined
    for part in (
        "--arch tiny",
        "--epochs 1",
        "--lr 0.001",
        "--size 64x64",
        "--bs 4",
        "--head pooled",
        "--valid-groups 01,02",
        "--folds 3",
        "--no-pretrained",
        "--device cpu",
        "--json",
        "--control-stdin",
    ):
        assert part in joined
    assert "--head" not in " ".join(train_command("/d", opts, kind="scalar"))
    assert "--lr-find" in train_command("/d", opts, lr_find=True)


def test_helpers() -> None:
    assert parse_nvidia_smi("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)\nGPU 1: Tesla T4 (UUID: x)\n") == [
        ("cuda:0", "NVIDIA H100 80GB HBM3"),
        ("cuda:1", "Tesla T4"),
    ]
    assert ema([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])
    assert pick_error_metric({"valid_loss": 1.0, "mean_px": 3.0}) == ("mean_px", 3.0)
    assert pick_error_metric({"mae": 2.0}) == ("mae", 2.0)


def test_options_remembered(qtbot) -> None:
    opts = TrainOptions(
        arch="tiny", epochs=3, lr=5e-4, size="96x128", bs=8, valid_groups=["02"], weights="scratch"
    )
    opts.save()
    assert TrainOptions.load() == opts
    panel = TrainPanel()
    qtbot.addWidget(panel)
    assert panel.options().arch == "tiny" and panel.options().epochs == 3


def make_panel(qtbot, *args: str) -> TrainPanel:
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.set_dataset("/fake/dataset", ["01", "02"], "point")
    panel.make_command = lambda ds, opts, kind="point", lr_find=False: fake(
        "train", *(["--lr-find"] if lr_find else []), *args
    )
    return panel


def test_panel_runs_to_the_end_and_plots(qtbot) -> None:
    panel = make_panel(qtbot, "--epochs", "3", "--batches", "4")
    with qtbot.waitSignal(panel.run_finished, timeout=20000) as sig:
        assert panel.start()
        assert panel.busy and not panel.start_btn.isEnabled()
    assert sig.args == ["fake-run"]
    assert not panel.busy and panel.start_btn.isEnabled()
    curves = panel.live.curves
    assert (
        len(curves.batch_loss) == 12
        and len(curves.valid_loss) == 3
        and curves.errors[-1] == pytest.approx(20 / 3)
    )
    assert panel.epoch_bar.value() == 3
    assert "epoch 3/3" in panel.live.log.toPlainText()


def test_panel_failure_shows_error_and_survives(qtbot) -> None:
    panel = make_panel(qtbot, "--fail", "raise")
    panel.start()
    qtbot.waitUntil(lambda: panel.error_box is not None, timeout=20000)
    assert "boom in the fake child" in panel.error_box.text()
    assert not panel.busy and panel.start_btn.isEnabled()
    panel.error_box.close()
    panel.make_command = lambda ds, opts, kind="point", lr_find=False: fake("train", "--epochs", "1")
    with qtbot.waitSignal(panel.run_finished, timeout=20000):
        panel.start()


def test_panel_cancel(qtbot) -> None:
    panel = make_panel(qtbot, "--epochs", "100", "--sleep", "0.02")
    panel.start()
    qtbot.waitUntil(lambda: len(panel.live.curves.batch_loss) > 0, timeout=20000)
    with qtbot.waitSignal(panel.child.ended, timeout=20000):
        panel.cancel()
    assert panel.last_result.status == "cancelled"
    assert panel.error_box is None
    assert panel.status.text() == "Cancelled." or panel.status.text().startswith("Stopped early")


def test_panel_lr_finder(qtbot) -> None:
    panel = make_panel(qtbot)
    with qtbot.waitSignal(panel.child.ended, timeout=20000):
        panel.find_lr()
    assert panel.suggestion == pytest.approx(3e-3)
    assert panel.live.use_lr.isEnabled()
    panel.live.use_lr.click()
    assert panel.options().lr == pytest.approx(3e-3)


def test_device_query_lists_cuda_devices(qtbot, tmp_path: Path, monkeypatch) -> None:
    from imgreg_gui.training.options import DeviceQuery, OptionsForm

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Fake GPU 80GB (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    form = OptionsForm()
    qtbot.addWidget(form)
    query = DeviceQuery()
    query.found.connect(form.set_devices)
    with qtbot.waitSignal(query.found, timeout=10000) as sig:
        query.start()
    assert sig.args[0] == [("cuda:0", "Fake GPU 80GB")]
    assert form.device.findData("cuda:0") >= 0 and form.has_gpu
    assert form.device_note.isHidden()
    form.device.setCurrentIndex(form.device.findData("cpu"))
    assert not form.device_note.isHidden()


def test_device_query_without_nvidia_smi(qtbot, monkeypatch) -> None:
    from imgreg_gui.training.options import DeviceQuery

    monkeypatch.setenv("PATH", "/nonexistent")
    query = DeviceQuery()
    with qtbot.waitSignal(query.found, timeout=5000) as sig:
        query.start()
    assert sig.args[0] == []


def test_commands_parse_with_the_real_cli() -> None:
    """Every command line the GUI builds is accepted by ``imgreg``'s own parser (flags stay in sync)."""
    from engine.cli import build_parser
    from imgreg_gui.training.options import normal_size, predict_command, rank_command

    parser = build_parser()
    opts = TrainOptions(arch="resnet18", size="48x64", valid_groups=["01"], folds=3, weights="file",
                        weights_file="/w.pth", device="cpu")  # fmt: skip
    for cmd in (
        train_command("/d", opts),
        train_command("/d", opts, kind="scalar", lr_find=True),
        rank_command("/d", opts, 4),
        predict_command("/d/.imgreg/runs/x", "/d", "auto"),
    ):
        assert cmd[1:5] == ["-m", "imgreg_gui.jobs.launch", "engine.cli", cmd[4]]
        args = parser.parse_args(cmd[4:])
        assert args.json
    args = parser.parse_args(train_command("/d", opts)[4:])
    assert args.size == [48, 64] and args.folds == 3 and args.weights == "/w.pth" and args.control_stdin
    assert parser.parse_args(train_command("/d", opts, lr_find=True)[4:]).lr_find
    assert normal_size(" 240 x 320") == "240x320" and normal_size("224") == "224" and normal_size("x") == ""
    assert normal_size("30000x40000") == "" and normal_size("4x4") == ""  # the declaration's sides


def test_panel_out_of_fold_progress(qtbot) -> None:
    panel = make_panel(qtbot, "--folds", "2", "--epochs", "2", "--batches", "3")
    statuses: list[str] = []
    panel.child.event.connect(lambda ev: statuses.append(panel.status.text()))
    with qtbot.waitSignal(panel.run_finished, timeout=20000):
        panel.start()
    assert any(s.startswith("Fold 2/2, Epoch 2/2") for s in statuses)
    assert len(panel.live.curves.batch_loss) == 6  # the curves show the current fold's model
    assert "fold 2 of 2" in panel.live.log.toPlainText()


def test_every_progress_kind_shows_on_the_progress_bar(qtbot, monkeypatch) -> None:
    from engine import events
    from imgreg_gui.jobs.process import progress_label

    # A kind added to engine/events.py later (a training cache build) shows with no change to the panel.
    monkeypatch.setattr(events, "PROGRESS_TYPES", (*events.PROGRESS_TYPES, "cache_progress"))
    panel = TrainPanel()
    qtbot.addWidget(panel)
    for kind in events.PROGRESS_TYPES:
        panel.on_event({"type": kind, "done": 3, "total": 8})
        bar = panel.batch_bar
        assert (bar.value(), bar.maximum()) == (3, 8)
        assert bar.text() == f"{progress_label(kind)} 3 / 8"
    assert progress_label("lr_find_progress") == "lr find" and progress_label("cache_progress") == "cache"
    panel.on_event({"type": "batch", "epoch": 1, "batch": 2, "n_batches": 4, "loss": 0.5})
    assert panel.batch_bar.text() == "batch 2 / 4"


def test_child_lines_are_read_with_the_engine_event_parser(qtbot) -> None:
    child = ChildProcess()
    seen, out = [], []
    child.event.connect(seen.append)
    child.output.connect(out.append)
    child._line('{"type": "predict_progress", "done": 1, "total": 2}')
    child._line('{"type": "no_such_event", "x": 1}')
    child._line("plain text")
    assert seen == [{"type": "predict_progress", "done": 1, "total": 2}]
    assert out == ['{"type": "no_such_event", "x": 1}', "plain text"]
