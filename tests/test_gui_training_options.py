"""The training form's full option set (Advanced group, auto size), the command it builds, and the validation-leak
warning from stored embeddings; a real tiny scalar training with mixup started from the window."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

from engine.data import open_dataset  # noqa: E402
from engine.labels.location import store_dir  # noqa: E402
from engine.runs.embeddings import Embeddings, embeddings_path, item_key, save_embeddings  # noqa: E402
from imgreg_gui.training.leaks import NO_EMBEDDINGS, check_leaks, valid_split  # noqa: E402
from imgreg_gui.training.options import TrainOptions, predict_command, rank_command, train_command  # noqa: E402
from imgreg_gui.training.panel import TrainPanel  # noqa: E402

HAS_TRAIN_CLI = importlib.util.find_spec("engine.cli.model") is not None
ADVANCED = TrainOptions(
    arch="tiny", epochs=2, lr=1e-3, size="auto", bs=4, head="spatial", valid_groups=["b"], weights="scratch",
    device="cpu", sizes="32x32,48x48", schedule="one_cycle", freeze_epochs=2, lr_ratio=10.0, mixup=0.4,
    scalar_head="custom", stride=8, no_cache=True, advanced_open=True,
)  # fmt: skip


def make_scalar_groups(root: Path, n: int = 6, size: int = 40) -> Path:
    """A scalar CSV dataset with groups ``a`` and ``b`` (distinct random images, values 10..)."""
    rng = np.random.default_rng(0)
    rows = ["image,value"]
    for g in ("a", "b"):
        (root / g).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / g / f"{i:03d}.png")
            rows.append(f"{g}/{i:03d}.png,{10 + i + (20 if g == 'b' else 0)}")
    (root / "values.csv").write_text("\n".join(rows) + "\n")
    return root


def plant_embeddings(root: Path) -> tuple[str, str]:
    """Write embeddings (torch-free storage) where ``b/003.png`` is a near-copy of ``a/001.png``."""
    ds = open_dataset(root)
    rng = np.random.default_rng(1)
    names = [it.name for it in ds.items]
    vecs = rng.normal(size=(len(names), 32)).astype(np.float32)
    a, b = names.index("a/001.png"), names.index("b/003.png")
    vecs[b] = vecs[a] + rng.normal(scale=0.01, size=32)
    emb = Embeddings(names, vecs, [item_key(it.path) for it in ds.items], {"source": "imagenet-test"})
    save_embeddings(embeddings_path(store_dir(ds.root), "imagenet-test"), emb)
    return "a/001.png", "b/003.png"


def args_of(cmd: list[str]) -> str:
    return " ".join(cmd[4:])


def test_command_has_every_advanced_option() -> None:
    from engine.cli import build_parser

    parser = build_parser()
    scalar = train_command("/d", ADVANCED, kind="scalar")
    a = parser.parse_args(scalar[4:])
    assert a.size == "auto" and a.sizes == [(32, 32), (48, 48)] and a.schedule == "one_cycle"
    assert a.freeze_epochs == 2 and a.lr_ratio == 10.0 and a.mixup == 0.4 and a.scalar_head == "custom"
    assert a.no_cache and a.stride is None and a.json and a.control_stdin
    point = args_of(train_command("/d", ADVANCED, kind="point"))
    assert "--stride 8" in point and "--head spatial" in point
    assert "--mixup" not in point and "--scalar-head" not in point  # scalars only
    pooled = TrainOptions(**{**ADVANCED.__dict__, "head": "pooled"})
    assert "--stride" not in args_of(train_command("/d", pooled))
    plain = args_of(train_command("/d", TrainOptions(), kind="scalar"))
    assert "--size auto" in plain and "--mixup" not in plain and "--lr-ratio" not in plain
    assert "--sizes" not in plain and "--no-cache" not in plain and "--schedule" not in plain
    r = parser.parse_args(rank_command("/d", ADVANCED, 3, kind="scalar")[4:])
    assert r.mixup == 0.4 and r.sizes == [(32, 32), (48, 48)] and r.folds == 3


def test_advanced_options_are_remembered_and_shown(qtbot) -> None:
    ADVANCED.save()
    assert TrainOptions.load() == ADVANCED
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.set_dataset("/fake", ["a", "b"], "scalar")
    assert panel.options() == ADVANCED
    assert panel.form.advanced.expanded and panel.form.adv.isVisibleTo(panel.form)
    panel.form.advanced.set_expanded(False)
    assert not panel.form.adv.isVisibleTo(panel.form)
    for form in (panel.form.form, panel.form.adv.form):  # every option says what it does
        for row in range(form.rowCount()):
            item = form.itemAt(row, form.ItemRole.FieldRole) or form.itemAt(row, form.ItemRole.SpanningRole)
            w = item.widget() if item is not None else None
            if w is not None and w not in (panel.form.device_note, panel.form.advanced):
                assert w.toolTip() or all(c.toolTip() for c in w.findChildren(QWidget)), form.labelForField(w)


def test_mixup_and_scalar_head_follow_the_kind(qtbot) -> None:
    panel = TrainPanel()
    qtbot.addWidget(panel)
    adv = panel.form.adv
    panel.set_dataset("/fake", ["01"], "point")
    assert not adv.mixup.isEnabled() and "scalar targets only" in adv.mixup.toolTip()
    assert not adv.scalar_head.isEnabled() and adv.stride.isEnabled()
    panel.set_dataset("/fake", ["a"], "scalar")
    assert adv.mixup.isEnabled() and "Mixup alpha" in adv.mixup.toolTip() and not adv.stride.isEnabled()


def test_one_group_cannot_be_ticked_for_validation(qtbot) -> None:
    """A flat folder has one group: the list says a random 20% validates and offers nothing to tick."""
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.form.set_options(TrainOptions(valid_groups=["."]))
    panel.set_dataset("/fake", ["."], "scalar")
    item = panel.form.groups.item(0)
    assert panel.form.groups.count() == 1 and item.text().startswith("One group")
    assert (
        not item.flags() & Qt.ItemFlag.ItemIsUserCheckable
        and item.data(Qt.ItemDataRole.CheckStateRole) is None
    )
    assert panel.options().valid_groups == []
    panel.set_dataset("/fake", ["01", "12"], "point")
    assert [panel.form.groups.item(i).text() for i in range(2)] == ["01", "12"]


def test_explicit_size_and_auto(qtbot) -> None:
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.form.set_auto_size((208, 208))
    assert panel.form.size_box.currentText() == "auto (208x208)" and panel.options().size == "auto"
    panel.form.size_box.setCurrentText("96x128")
    assert panel.options().size == "96x128"
    panel.form.set_auto_size((240, 320))  # an explicit size stays
    assert panel.options().size == "96x128"


def test_default_arch_and_weights_note_follow_the_weights_here(qtbot, monkeypatch, tmp_path: Path) -> None:
    """With MobileNetV2's ImageNet weights here (and no ResNet's), the form starts on it and says so."""
    from engine import weights

    ckpt = tmp_path / "hub" / "checkpoints" / "mobilenet_v2-7ebf99e0.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "PACKAGES", {})
    assert TrainOptions().arch == "mobilenet_v2"
    panel = TrainPanel()
    qtbot.addWidget(panel)
    form = panel.form
    form.set_options(TrainOptions())
    assert form.options().arch == "mobilenet_v2" and "--pretrained-if-cached" in train_command(
        "/d", TrainOptions()
    )
    assert (
        not form.weights_note.isHidden() and "found (mobilenet_v2-7ebf99e0.pth)" in form.weights_note.text()
    )
    form.arch.setCurrentText("resnet18")
    assert "No ImageNet weights for resnet18" in form.weights_note.text()
    assert "random weights; mobilenet_v2 has them" in form.weights_note.text()
    form.weights.setCurrentIndex(form.weights.findData("scratch"))
    assert form.weights_note.isHidden()


def test_leak_check_finds_the_planted_pair(tmp_path: Path) -> None:
    root = make_scalar_groups(tmp_path / "ds")
    ds = open_dataset(root)
    labels = {it.name: it.label for it in ds.items}
    assert check_leaks(store_dir(ds.root), ds.items, labels, ["b"]) is None  # no embeddings yet
    a, b = plant_embeddings(root)
    leaks = check_leaks(store_dir(ds.root), ds.items, labels, ["b"])
    assert leaks is not None and [(p.a, p.b) for p in leaks.pairs] == [(a, b)]
    assert "1 near-duplicate pair leaks" in leaks.text() and a in leaks.text() and b in leaks.text()
    # Without ticked groups the seeded random split of two groups puts one group in validation: still a leak.
    vg, names = valid_split(ds.items, labels, [])
    assert len(vg) == 1 and names is None
    assert len(check_leaks(store_dir(ds.root), ds.items, labels, []).pairs) == 1


def test_window_warns_of_leaking_duplicates(qtbot, training_window, tmp_path: Path) -> None:
    root = make_scalar_groups(tmp_path / "ds")
    win = training_window(root)
    panel = win.training.train
    qtbot.waitUntil(lambda: panel.form.size_box.itemText(0).startswith("auto ("), timeout=10000)
    assert panel.form.size_box.itemText(0) == "auto (32x48)"  # 40x48 images: engine.data.shape.auto_size
    qtbot.waitUntil(lambda: panel.leak_note.text() == NO_EMBEDDINGS, timeout=10000)
    a, b = plant_embeddings(root)
    win.explore.source.ready.emit(None)  # Find similar stored embeddings: the panel checks again
    qtbot.waitUntil(lambda: "leaks across the random split" in panel.leak_note.text(), timeout=10000)
    panel.form.groups.item(1).setCheckState(panel.form.groups.item(1).checkState().Checked)
    qtbot.waitUntil(lambda: "leaks across this validation split" in panel.leak_note.text(), timeout=10000)
    assert a in panel.leak_note.text() and b in panel.leak_note.text() and panel.leak_note.isVisibleTo(panel)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAIN_CLI, reason="engine.cli.model (imgreg train) not available")
def test_tiny_scalar_training_with_mixup_from_the_window(qtbot, training_window, tmp_path: Path) -> None:
    win = training_window(make_scalar_groups(tmp_path / "ds"))
    ctl = win.training
    panel = ctl.train
    opts = TrainOptions(arch="tiny", epochs=2, lr=1e-3, size="32x32", bs=4, weights="scratch", device="cpu",
                        valid_groups=["b"], mixup=0.4, sizes="24x24,32x32", lr_ratio=10.0)  # fmt: skip
    panel.form.set_options(opts)
    ctl.predict_after.setChecked(False)
    with qtbot.waitSignal(panel.run_finished, timeout=240000) as sig:
        assert panel.start()
    res = panel.last_result
    assert res is not None and res.status == "finished", res and (res.message, res.stderr_tail)
    log = panel.live.log.toPlainText()
    assert "--mixup 0.4" in log and "--sizes 24x24,32x32" in log
    assert ctl.runs.run(sig.args[0]) is not None
    assert len(panel.live.curves.valid_loss) == 4 and panel.epoch_bar.maximum() == 4  # 2 epochs at 2 sizes


def test_several_gpus_all_gpus_choice_and_parallel_folds(qtbot) -> None:
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.set_dataset("/fake", ["01", "02"], "point")
    panel.form.set_devices([("cuda:0", "GPU A"), ("cuda:1", "GPU B")])
    combo = panel.form.device
    assert [combo.itemData(i) for i in range(combo.count())] == ["auto", "cpu", "cuda:0", "cuda:1", "all:2"]
    assert combo.itemText(4) == "All GPUs (2)"
    combo.setCurrentIndex(4)
    opts = panel.options()
    train = args_of(train_command("/d", opts))
    assert "--nproc 2" in train and "--device" not in train
    assert "--nproc" not in args_of(train_command("/d", opts, lr_find=True))
    panel.form.parallel.setValue(2)
    panel.form.folds.setValue(4)
    opts = panel.options()
    folds = args_of(train_command("/d", opts))
    assert "--folds 4 --parallel 2" in folds and "--nproc" not in folds
    assert "--parallel 2" in args_of(rank_command("/d", opts, 5))
    assert "--repeats 3" in args_of(rank_command("/d", opts, 5, repeats=3))
    assert "--repeats" not in args_of(rank_command("/d", opts, 5))
    from engine.cli import build_parser

    parser = build_parser()  # the real CLI accepts them (ddp merged)
    assert parser.parse_args(train_command("/d", TrainOptions(device="all:2"))[4:]).nproc == 2
    assert parser.parse_args(train_command("/d", opts)[4:]).parallel == 2
    assert parser.parse_args(rank_command("/d", opts, 5)[4:]).parallel == 2
    assert parser.parse_args(predict_command("/r", "/d", "all:2")[4:]).device == "auto"
    opts.save()  # the choice is remembered and reselected once the GPUs are found again
    again = TrainPanel()
    qtbot.addWidget(again)
    again.form.set_devices([("cuda:0", "GPU A"), ("cuda:1", "GPU B")])
    assert again.options().device == "all:2" and again.options().parallel == 2
    one = TrainPanel()
    qtbot.addWidget(one)
    one.form.set_devices([("cuda:0", "GPU A")])
    assert one.form.device.findData("all:1") < 0


def fake_panel(qtbot, *args: str) -> TrainPanel:
    import sys

    fake = str(Path(__file__).with_name("fake_child.py"))
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.set_dataset("/fake", ["01", "02"], "point")
    panel.make_command = lambda ds, opts, kind="point", lr_find=False: [sys.executable, fake, "train", *args]
    return panel


def test_folds_side_by_side_show_in_one_view(qtbot) -> None:
    panel = fake_panel(qtbot, "--folds", "4", "--parallel", "2", "--epochs", "2", "--batches", "3")
    panel.form.set_options(TrainOptions(folds=4, parallel=2, epochs=2))
    seen: list[str] = []
    panel.child.event.connect(lambda ev: ev["type"] == "batch" and seen.append(panel.status.text()))
    with qtbot.waitSignal(panel.run_finished, timeout=30000):
        assert panel.start()
    assert panel.last_result.status == "finished"
    assert panel.prog.done == {1, 2, 3, 4} and panel.prog.fraction() == 1.0
    assert any(t.startswith("Folds 1, 2 of 4 (fold 1 shown), fold 2: ") for t in seen)
    assert any(t.startswith("Folds 3, 4 of 4") for t in seen)
    log = panel.live.log.toPlainText()
    assert "fold 2: epoch 2/2" in log and "fold 4: epoch 2/2" in log  # the folds not plotted are logged
    assert len(panel.live.curves.valid_loss) == 2  # the curves follow one fold (the last one plotted: fold 3)


def test_cancel_reaches_folds_side_by_side(qtbot) -> None:
    panel = fake_panel(qtbot, "--folds", "4", "--parallel", "2", "--epochs", "50", "--sleep", "0.02")
    panel.form.set_options(TrainOptions(folds=4, parallel=2))
    with qtbot.waitSignal(panel.child.ended, timeout=30000):
        assert panel.start()
        qtbot.waitUntil(lambda: len(panel.prog.running) == 2 and panel.prog.fraction() > 0, timeout=10000)
        panel.cancel()
    assert panel.last_result.status == "cancelled" and panel.status.text() == "Cancelled."


def test_fold_progress_bookkeeping() -> None:
    from imgreg_gui.training.folds import FoldProgress

    serial = FoldProgress(3)
    assert serial.start(1, 3) and serial.batch(1, 1, 2, 1, 2) and serial.fraction() == pytest.approx(1 / 12)
    assert serial.start(2, 3) and serial.done == {
        1
    }  # fold 1 stopped early: fold 2 took its place and the plot
    side = FoldProgress(4, parallel=2)
    assert side.start(1, 4) and not side.start(2, 4) and side.label() == "Folds 1, 2 of 4 (fold 1 shown), "
    assert not side.batch(2, 1, 1, 1, 1) and side.epoch(1, 1, 1) and side.plotted is None
    assert not side.epoch(2, 1, 1) and side.done == {1, 2} and side.fraction() == 0.5


def _cli_has(flag: str) -> bool:
    from engine.cli import build_parser

    try:
        build_parser().parse_args(["train", "/d", flag, "2"])
    except SystemExit:
        return False
    return True


def _processes_mentioning(text: str) -> list[int]:
    """Process ids whose command line mentions ``text`` (Linux /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and text in (d / "cmdline").read_bytes().decode("utf-8", "replace"):
                out.append(int(d.name))
        except OSError:
            continue
    return out


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAIN_CLI or not _cli_has("--nproc"), reason="imgreg train --nproc not available")
@pytest.mark.parametrize("how", ["stop", "cancel"])
def test_stop_and_cancel_reach_every_process(qtbot, training_window, tmp_path: Path, how: str) -> None:
    """Two CPU processes (torchrun, gloo): Stop ends both after an epoch with a run saved; Cancel ends both now."""
    root = make_scalar_groups(tmp_path / "ds", n=8)
    win = training_window(root)
    panel = win.training.train
    win.training.predict_after.setChecked(False)
    panel.form.set_options(TrainOptions(arch="tiny", epochs=30, lr=1e-3, size="32x32", bs=2, weights="scratch",
                                        device="cpu", valid_groups=["b"]))  # fmt: skip
    panel.make_command = lambda ds, opts, kind="point", lr_find=False: [
        *train_command(ds, opts, kind=kind),
        "--nproc",
        "2",
    ]
    prepared: list[dict] = []
    panel.child.event.connect(lambda ev: ev["type"] == "prepared" and prepared.append(ev))
    with qtbot.waitSignal(panel.child.ended, timeout=300000):
        assert panel.start()
        qtbot.waitUntil(lambda: "Epoch 2/" in panel.status.text(), timeout=240000)
        panel.stop_after_epoch() if how == "stop" else panel.cancel()
    res = panel.last_result
    assert prepared and prepared[0].get("world_size") == 2
    if how == "stop":
        assert res.status in ("finished", "cancelled") and res.final.get("run_id"), (
            res.message,
            res.stderr_tail,
        )
        assert panel.epoch_bar.value() < 30
    else:
        assert res.status == "cancelled", (res.message, res.stderr_tail)
    qtbot.waitUntil(lambda: not _processes_mentioning(str(root)), timeout=30000)  # no rank left behind


def test_leak_check_of_a_random_item_split_and_its_cache(tmp_path: Path) -> None:
    root = make_scalar_groups(tmp_path / "ds")
    ds = open_dataset(root)
    one = [type(it)(it.name, ".", it.path, it.label, it.problem) for it in ds.items]  # a single group
    labels = {it.name: it.label for it in one}
    vg, names = valid_split(one, labels, [])
    assert vg == [] and names is not None and 1 <= len(names) < len(one)
    a, b = plant_embeddings(root)
    cache: dict = {}
    leaks = check_leaks(store_dir(ds.root), one, labels, [], cache)
    assert leaks is not None and leaks.random_items and cache
    assert [(p.a, p.b) for p in leaks.pairs] == ([(a, b)] if (a in names) != (b in names) else [])
    assert "random split" in leaks.text() or not leaks.pairs
    again = check_leaks(store_dir(ds.root), one, labels, [], cache)
    assert again is not None and again.pairs == leaks.pairs


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAIN_CLI or not _cli_has("--parallel"), reason="--parallel not available")
def test_real_parallel_folds_from_the_window(qtbot, training_window, tmp_path: Path) -> None:
    """train --folds 2 --parallel 2 on the CPU: both fold processes' progress in the one panel."""
    win = training_window(make_scalar_groups(tmp_path / "ds", n=6))
    panel = win.training.train
    panel.form.set_options(TrainOptions(arch="tiny", epochs=2, lr=1e-3, size="32x32", bs=2, weights="scratch",
                                        device="cpu", folds=2, parallel=2))  # fmt: skip
    seen: list[tuple[int, str]] = []
    panel.child.event.connect(
        lambda ev: ev["type"] == "batch" and seen.append((ev["fold"], panel.status.text()))
    )
    with qtbot.waitSignal(panel.child.ended, timeout=300000):
        assert panel.start()
    res = panel.last_result
    assert res is not None and res.status == "finished", (res.message, res.stderr_tail)
    assert "--parallel 2" in panel.live.log.toPlainText()
    assert {f for f, _ in seen} == {1, 2}  # both fold processes' batches reached the one panel
    assert panel.prog.done == {1, 2} and panel.prog.fraction() == 1.0
    # Whether the two overlap depends on the machine's load; either way the status names the folds.
    assert all(t.startswith(("Folds 1, 2 of 2", "Fold 1/2", "Fold 2/2")) for _, t in seen), seen[-3:]
