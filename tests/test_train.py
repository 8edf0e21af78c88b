"""Training engine: learning on easy synthetic data, splits, events, cancel, NaN, weights, run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.core import Cancelled, CancelToken, Dataset, Item
from engine.data import open_dataset
from engine.data.squish import to_pixels, to_unit
from engine.data.synth import make_biwi, make_utkface
from engine.labels.store import LabelStore
from engine.learn.arch import ModelConfig, build_model
from engine.learn.backbones import ARCHS, PretrainedUnavailable, WeightsError, torchvision_model
from engine.learn.device import DeviceError, resolve_device
from engine.learn.dls import Sample, split_groups, usable_samples
from engine.learn.models import load_run
from engine.learn.train import TrainConfig, TrainingError, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def easy_points(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 faces (64x48, no distractors) in 4 Biwi folders."""
    root = tmp_path_factory.mktemp("easy_biwi")
    make_biwi(root, groups=4, frames=40, size=(64, 48), distractors=0, seed=1)
    return root


def tiny_cfg(**kw) -> TrainConfig:
    """A fast CPU config on the tiny CoordConv net."""
    base = dict(
        arch="tiny",
        head="pooled",
        pretrained=False,
        size=(48, 64),
        bs=8,
        lr=3e-3,
        ps=0.0,
        epochs=2,
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def small_points(tmp_path: Path, groups: int = 2, frames: int = 6) -> tuple[Dataset, LabelStore]:
    """A small Biwi set and its store."""
    make_biwi(tmp_path / "ds", groups=groups, frames=frames, size=(64, 48))
    ds = open_dataset(tmp_path / "ds")
    return ds, LabelStore.open(ds)


@pytest.mark.slow
def test_points_beat_mean_baseline(easy_points: Path) -> None:
    ds = open_dataset(easy_points)
    store = LabelStore.open(ds)
    events: list[dict] = []
    info = train(ds, store, tiny_cfg(epochs=12, valid_groups=["04"]), events.append)
    lab = {it.name: it.label for it in ds.items}
    train_pts = np.array([lab[it.name] for it in ds.items if it.group != "04"])
    valid_pts = np.array([lab[it.name] for it in ds.items if it.group == "04"])
    baseline = np.sqrt(((valid_pts - train_pts.mean(0)) ** 2).sum(1)).mean()
    assert info.metrics["mean_px"] < 0.7 * baseline, (info.metrics, baseline)
    # the pixel metric seen during fit equals an exact predict pass over the validation items
    from engine.learn.predict import predict

    rows = predict(info.run_dir, ds, items=[it.name for it in ds.items if it.group == "04"])
    assert np.mean([r.error for r in rows]) == pytest.approx(info.metrics["mean_px"], rel=1e-3)
    # building the image cache (progress and a note) comes before training is prepared
    events = [e for e in events if e["type"] not in ("cache_progress", "note")]
    types = [e["type"] for e in events]
    assert types[0] == "prepared" and types[-1] == "finished"
    assert types.count("epoch") == 12
    prepared = events[0]
    assert prepared["on_cpu"] is True and "CPU" in prepared["message"]
    assert {
        "device",
        "arch",
        "head",
        "kind",
        "n_train",
        "n_valid",
        "size",
        "bs",
        "epochs",
        "n_batches",
    } <= set(prepared)
    batches = [e for e in events if e["type"] == "batch"]
    # the last batch of every epoch is always reported
    assert {e["epoch"] for e in batches if e["batch"] == e["n_batches"]} == set(range(1, 13))
    json.dumps(events)
    store.close()


@pytest.mark.slow
def test_scalars_beat_mean_baseline(tmp_path: Path) -> None:
    syn = make_utkface(tmp_path / "utk", n=150, size=48, seed=3)
    ds = open_dataset(tmp_path / "utk")
    assert ds.kind == "scalar"
    info = train(ds, None, tiny_cfg(size=(48, 48), epochs=10, lr=1e-2))
    vals = np.array([v[0] for v in syn.truth.values()])
    baseline = np.abs(vals - vals.mean()).mean()
    assert info.metrics["mae"] < 0.5 * baseline, (info.metrics, baseline)
    conf = json.loads((info.run_dir / "config.json").read_text())
    lo, hi = conf["y_range"]
    assert lo < vals.min() and hi > vals.max()


def test_custom_scalar_head_trains_and_reloads(tmp_path: Path) -> None:
    make_utkface(tmp_path / "utk", n=24, size=32)
    ds = open_dataset(tmp_path / "utk")
    info = train(ds, None, tiny_cfg(size=(32, 32), epochs=1, scalar_head="custom", bs=4))
    run = load_run(info.run_dir)
    assert run.cfg.scalar_head == "custom"
    lin = [m for m in run.model[1] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin][1:] == [(512, 16), (16, 1)]


def test_split_keeps_groups_whole() -> None:
    samples = [Sample(f"{g}/{i}.png", g, Path("x"), (1.0, 2.0), (10, 10)) for g in "abcde" for i in range(3)]
    tr, va, vg = split_groups(samples, None, 0.4, seed=1)
    assert len(vg) == 2
    assert {samples[i].group for i in va} == set(vg)
    assert not {samples[i].group for i in tr} & set(vg)
    assert split_groups(samples, None, 0.4, seed=1) == (tr, va, vg)
    tr, va, vg = split_groups(samples, ["c"])
    assert vg == ["c"] and {samples[i].group for i in va} == {"c"}
    with pytest.raises(ValueError, match="zz"):
        split_groups(samples, ["zz"])
    one = [Sample(f"{i}.png", ".", Path("x"), (1.0,), (10, 10)) for i in range(10)]
    tr, va, vg = split_groups(one, None, 0.2)
    assert len(va) == 2 and vg == [] and sorted(tr + va) == list(range(10))


def test_store_corrections_and_problems_are_respected(tmp_path: Path) -> None:
    ds, store = small_points(tmp_path)
    a, b = ds.items[0].name, ds.items[1].name
    store.correct(a, (5.0, 6.0))
    ds.items[1].problem = "broken"
    found = usable_samples(ds, store)
    by = {s.name: s for s in found.samples}
    assert by[a].label == (5.0, 6.0)
    assert b not in by and found.skipped[b] == "broken"
    assert by[a].size == (64, 48)
    store.close()


def test_point_units_round_trip_exactly() -> None:
    sizes = np.array([[64, 48], [33, 97], [1000, 7]], dtype=np.float64)
    pts = np.array([[0.0, 0.0], [12.25, 96.5], [999.9, 3.3]])
    assert np.allclose(to_pixels(to_unit(pts, sizes), sizes), pts, rtol=0, atol=1e-9)
    assert np.allclose(to_pixels(np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]), sizes)[2], [500, 3.5])


def test_cancel_now_stops_within_a_batch(tmp_path: Path) -> None:
    ds, store = small_points(tmp_path, frames=12)
    token = CancelToken()
    events: list[dict] = []

    def on_event(e: dict) -> None:
        events.append(e)
        if e["type"] == "batch":
            token.cancel("now")

    with pytest.raises(Cancelled):
        train(ds, store, tiny_cfg(bs=2, epochs=3, max_event_rate=1e9), on_event, token)
    assert [e["type"] for e in events].count("batch") == 1
    assert events[-1]["type"] == "cancelled" and "run_id" not in events[-1]
    assert not list((store.dir / "runs").glob("*/summary.json"))
    store.close()


def test_cancel_epoch_finishes_epoch_and_saves_best(tmp_path: Path) -> None:
    ds, store = small_points(tmp_path, frames=8)
    token = CancelToken()
    events: list[dict] = []

    def on_event(e: dict) -> None:
        events.append(e)
        if e["type"] == "batch" and e["epoch"] == 2:
            token.cancel("epoch")

    info = train(ds, store, tiny_cfg(bs=2, epochs=5, max_event_rate=1e9), on_event, token)
    assert info.cancelled
    epochs = [e["epoch"] for e in events if e["type"] == "epoch"]
    assert epochs == [1, 2]
    batches = [e for e in events if e["type"] == "batch" and e["epoch"] == 2]
    assert batches[-1]["batch"] == batches[-1]["n_batches"]
    assert events[-1]["type"] == "cancelled" and events[-1]["run_id"] == info.run_id
    assert info.best_epoch in (1, 2)
    assert (info.run_dir / "model.safetensors").is_file()
    summary = json.loads((info.run_dir / "summary.json").read_text())
    assert summary["cancelled"] is True and summary["epochs_run"] == 2
    store.close()


def test_nan_loss_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds, store = small_points(tmp_path)
    import engine.learn.train as tr

    calls = {"n": 0}
    real = tr.MSELossFlat()

    def nan_after_two(inp, targ):
        calls["n"] += 1
        loss = real(inp, targ)
        return loss * float("nan") if calls["n"] > 2 else loss

    monkeypatch.setattr(tr, "MSELossFlat", lambda: nan_after_two)
    events: list[dict] = []
    with pytest.raises(TrainingError, match="NaN|nan"):
        train(ds, store, tiny_cfg(bs=2, epochs=2), events.append)
    assert events[-1]["type"] == "failed" and "learning rate" in events[-1]["message"]
    assert not list((store.dir / "runs").glob("*/summary.json"))
    store.close()


def test_huge_lr_never_crashes(tmp_path: Path) -> None:
    ds, store = small_points(tmp_path)
    try:
        info = train(ds, store, tiny_cfg(bs=2, epochs=2, lr=1e6))
    except TrainingError as e:
        assert "NaN" in str(e) or "nan" in str(e) or "infinite" in str(e)
    else:
        assert math.isfinite(info.metrics["valid_loss"])
    store.close()


def test_run_folder_rebuilds_the_model(tmp_path: Path) -> None:
    ds, store = small_points(tmp_path)
    info = train(ds, store, tiny_cfg(epochs=1))
    assert info.run_dir.parent == store.dir / "runs"
    names = {p.name for p in info.run_dir.iterdir()}
    assert {"config.json", "history.csv", "model.safetensors", "summary.json"} <= names
    conf = json.loads((info.run_dir / "config.json").read_text())
    assert conf["arch"] == "tiny" and conf["kind"] == "point" and conf["size"] == [48, 64]
    assert conf["y_range"] == [-1.0, 1.0] and conf["n_points"] == 1
    summary = json.loads((info.run_dir / "summary.json").read_text())
    assert summary["n_train"] + summary["n_valid"] == len(ds.items)
    assert set(summary["valid_groups"]) | set(summary["train_groups"]) == {"01", "02"}
    assert not set(summary["valid_groups"]) & set(summary["train_groups"])
    run = load_run(info.run_dir)
    sd0, sd1 = info.model.state_dict(), run.model.state_dict()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    store.close()


def test_lr_find_and_progressive_resizing(tmp_path: Path) -> None:
    ds, store = small_points(tmp_path)
    events: list[dict] = []
    info = train(ds, store, tiny_cfg(lr=None, epochs=1, sizes=[(24, 32), (48, 64)]), events.append)
    lf = [e for e in events if e["type"] == "lr_find"]
    assert len(lf) == 1 and lf[0]["suggestion"] > 0 and len(lf[0]["lrs"]) == len(lf[0]["losses"]) > 0
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]
    # the panel's status line shows the stage: batch events carry its size
    stages = [e["size"] for e in events if e["type"] == "batch"]
    assert stages[0] == "24x32" and stages[-1] == "48x64"
    assert json.loads((info.run_dir / "config.json").read_text())["size"] == [48, 64]
    store.close()


def test_fine_tune_schedule_counts_frozen_epochs(tmp_path: Path) -> None:
    ds, store = small_points(tmp_path)
    events: list[dict] = []
    train(ds, store, tiny_cfg(epochs=1, schedule="fine_tune", freeze_epochs=1), events.append)
    events = [e for e in events if e["type"] not in ("cache_progress", "note")]
    assert events[0]["epochs"] == 2 and events[0]["schedule"] == "fine_tune"
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]
    store.close()


def test_nothing_printed(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    ds, store = small_points(tmp_path)
    train(ds, store, tiny_cfg(epochs=1))
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    store.close()


def test_pretrained_unavailable_and_weights_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedUnavailable, match="--weights FILE or --no-pretrained"):
        torchvision_model("mobilenet_v3_small", pretrained=True)
    with pytest.raises(WeightsError, match="does not exist"):
        torchvision_model("resnet18", weights=tmp_path / "missing.pth")
    ref = torchvision_model("mobilenet_v3_small")
    ckpt = tmp_path / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt)
    cached = torchvision_model("mobilenet_v3_small", pretrained=True)
    assert torch.equal(cached.features[0][0].weight, ref.features[0][0].weight)
    from_file = torchvision_model("mobilenet_v3_small", weights=ckpt)
    assert torch.equal(from_file.classifier[-1].weight, ref.classifier[-1].weight)
    with pytest.raises(WeightsError, match="does not fit"):
        torchvision_model("mobilenet_v2", weights=ckpt)
    bad = tmp_path / "evil.pth"
    torch.save({"x": Path("/etc/passwd")}, bad)  # a pickled non-tensor object: refused by weights_only
    with pytest.raises(WeightsError, match="not a readable state dict"):
        torchvision_model("mobilenet_v3_small", weights=bad)


def test_every_arch_builds_with_split(tmp_path: Path) -> None:
    for name in ARCHS:
        if name in ("resnet50", "mobilenet_v3_large"):
            continue  # same code paths as their smaller siblings, just slower to build
        model, split = build_model(ModelConfig(arch=name, pretrained=False, y_range=(-1, 1)))
        groups = split(model)
        assert len(groups) == 3 and sum(len(g) for g in groups) == len(list(model.parameters()))
        assert model.eval()(torch.zeros(1, 3, 48, 64)).shape == (1, 2)


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError):
        resolve_device("cuda:99")
    with pytest.raises(DeviceError):
        resolve_device("toaster")


def test_too_little_data(tmp_path: Path) -> None:
    make_biwi(tmp_path / "ds", groups=1, frames=1, size=(64, 48))
    ds = open_dataset(tmp_path / "ds")
    with pytest.raises(TrainingError, match="at least 2"):
        train(ds, None, tiny_cfg())


def test_items_without_store_use_dataset_labels(tmp_path: Path) -> None:
    make_biwi(tmp_path / "ds", groups=2, frames=3, size=(64, 48))
    ds = open_dataset(tmp_path / "ds")
    ds.items.append(Item("none.png", "01", tmp_path / "none.png", None))
    found = usable_samples(ds)
    assert len(found.samples) == 6 and found.skipped == {"none.png": "no label"}


def test_cancel_during_lr_find(tmp_path: Path) -> None:
    ds, store = small_points(tmp_path)
    token = CancelToken()
    token.cancel("now")
    events: list[dict] = []
    with pytest.raises(Cancelled):
        train(ds, store, tiny_cfg(lr=None), events.append, token)
    assert events[-1]["type"] == "cancelled"
    store.close()


def test_fastai_model_meta_registered_for_mobilenets() -> None:
    import torchvision.models as tvm
    from fastai.vision.learner import create_vision_model, model_meta

    assert model_meta[tvm.mobilenet_v2]["cut"] == -1 and model_meta[tvm.mobilenet_v3_small]["cut"] == -2
    model = create_vision_model(tvm.mobilenet_v3_small, 2, pretrained=False)
    assert isinstance(model[0][0], torch.nn.Sequential) and len(model[0]) == 1  # body = features only
    assert len(model_meta[tvm.mobilenet_v3_small]["split"](model)) == 3


def test_a_corrected_problem_item_is_used_for_training(tmp_path: Path) -> None:
    make_biwi(tmp_path / "ds", groups=2, frames=3, size=(64, 48))
    (tmp_path / "ds" / "01" / "frame_00003_pose.txt").write_text("not a pose\n")
    (tmp_path / "ds" / "02" / "frame_00003_rgb.png").write_bytes(b"")
    ds = open_dataset(tmp_path / "ds")
    with LabelStore.open(ds) as store:
        assert "01/frame_00003_rgb.png" in usable_samples(ds, store).skipped
        store.correct("01/frame_00003_rgb.png", (30.0, 20.0))
        store.correct("02/frame_00003_rgb.png", (30.0, 20.0))
        found = usable_samples(ds, store)
    assert "01/frame_00003_rgb.png" in {s.name for s in found.samples}
    assert "02/frame_00003_rgb.png" in found.skipped  # a zero-byte image stays out, corrected or not
