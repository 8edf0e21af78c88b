"""Prediction: exact pixel round trips for mixed sizes, reload equality, flip TTA, spread, store rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine.core import Cancelled, CancelToken, Dataset, Item, label_distance
from engine.data import open_dataset
from engine.data.synth import face_image, make_biwi, make_utkface, write_image
from engine.labels.store import LabelStore
from engine.learn.arch import ModelConfig
from engine.learn.predict import predict, predict_model
from engine.learn.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ConstModel(nn.Module):
    """Outputs fixed [-1, 1] coordinates for every image (a model whose output we control)."""

    def __init__(self, out: list[float]) -> None:
        super().__init__()
        self.out = torch.tensor(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out.expand(len(x), -1).clone()


class LeftBright(nn.Module):
    """x = brightness difference of left and right halves (antisymmetric under a flip), y = 0.25 constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1] // 2
        d = (x[..., :w].mean((1, 2, 3)) - x[..., w:].mean((1, 2, 3))).tanh()
        return torch.stack([d, torch.full_like(d, 0.25)], 1)


class WithSpread(ConstModel):
    """A constant model that also reports a per-point spread of 4 input pixels."""

    def forward_with_spread(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(x), torch.full((len(x), 1), 4.0)


def mixed_sizes(root: Path) -> Dataset:
    """Non-square images of different sizes with labels at known pixels."""
    rng = np.random.default_rng(0)
    items = []
    for i, (w, h) in enumerate([(64, 48), (31, 77), (120, 40), (50, 50), (97, 13)]):
        img, cx, cy = face_image(rng, w, h, 0)
        path = root / f"img{i}.png"
        write_image(path, img)
        items.append(Item(path.name, ".", path, (cx, cy)))
    return Dataset(root, "points-csv", "point", items)


def test_pixels_round_trip_exactly_for_mixed_sizes(tmp_path: Path) -> None:
    ds = mixed_sizes(tmp_path)
    u = [0.375, -0.625]
    cfg = ModelConfig(arch="tiny", size=(24, 32))
    rows = predict_model(ConstModel(u), cfg, ds.items, {it.name: it.label for it in ds.items}, bs=2)
    assert [r.item for r in rows] == [it.name for it in ds.items]
    for it, r in zip(ds.items, rows, strict=True):
        w, h = {0: (64, 48), 1: (31, 77), 2: (120, 40), 3: (50, 50), 4: (97, 13)}[int(it.name[3])]
        expect = ((u[0] + 1) * w / 2, (u[1] + 1) * h / 2)
        assert r.pred == pytest.approx(expect, abs=1e-9)
        assert r.error == pytest.approx(np.hypot(expect[0] - it.label[0], expect[1] - it.label[1]), abs=1e-9)
        assert r.spread is None


def test_training_targets_map_back_to_labels(tmp_path: Path) -> None:
    from engine.data.squish import to_pixels
    from engine.learn.dls import make_dls, usable_samples

    ds = mixed_sizes(tmp_path)
    found = usable_samples(ds)
    dls = make_dls(found.samples, [1, 2, 3, 4], "point", (24, 32), 8, torch.device("cpu"), augment=False)
    _, yb = dls.valid.one_batch()
    sizes = np.array([s.size for s in dls.valid.items], dtype=np.float64)
    back = to_pixels(yb.reshape(len(yb), -1).numpy(), sizes)
    assert np.allclose(back, [s.label for s in dls.valid.items], atol=1e-4)


def test_flip_tta_flips_x_back(tmp_path: Path) -> None:
    ds = mixed_sizes(tmp_path)
    cfg = ModelConfig(arch="tiny", size=(24, 32))
    plain = predict_model(LeftBright(), cfg, ds.items)
    tta = predict_model(LeftBright(), cfg, ds.items, tta=True)
    # an antisymmetric x survives flip-and-unflip unchanged; a constant y too
    for a, b in zip(plain, tta, strict=True):
        assert b.pred == pytest.approx(a.pred, abs=1e-5)
    const = predict_model(ConstModel([0.5, 0.1]), cfg, ds.items, tta=True)
    w, h = 64, 48
    # a constant x is averaged with its mirror image: (0.5 + -0.5) / 2 = 0 -> the image centre
    assert const[0].pred == pytest.approx((w / 2, (0.1 + 1) * h / 2), abs=1e-6)


def test_spread_is_reported_in_original_pixels(tmp_path: Path) -> None:
    ds = mixed_sizes(tmp_path)
    cfg = ModelConfig(arch="tiny", size=(24, 32))
    rows = predict_model(WithSpread([0.0, 0.0]), cfg, ds.items[:1])
    # 64x48 image from a 32x24 input: both axes scale by 2
    assert rows[0].spread == pytest.approx(8.0)


def test_unreadable_images_are_skipped(tmp_path: Path) -> None:
    ds = mixed_sizes(tmp_path)
    (tmp_path / "img1.png").write_bytes(b"not an image")
    rows = predict_model(ConstModel([0.0, 0.0]), ModelConfig(arch="tiny", size=(24, 32)), ds.items)
    assert "img1.png" not in {r.item for r in rows} and len(rows) == 4


def test_cancel_now_stops_prediction(tmp_path: Path) -> None:
    ds = mixed_sizes(tmp_path)
    token = CancelToken()
    token.cancel("now")
    with pytest.raises(Cancelled):
        predict_model(ConstModel([0.0, 0.0]), ModelConfig(arch="tiny", size=(24, 32)), ds.items, cancel=token)


def test_label_error() -> None:
    assert label_distance((0.0, 0.0, 10.0, 0.0), (3.0, 4.0, 10.0, 0.0)) == pytest.approx(2.5)
    assert label_distance((30.0,), (42.5,)) == pytest.approx(12.5)
    assert label_distance((30.0,), None) is None


@pytest.mark.slow
def test_reloaded_run_predicts_like_memory_and_stores_rows(tmp_path: Path) -> None:
    make_biwi(tmp_path / "ds", groups=2, frames=5, size=(80, 60))
    ds = open_dataset(tmp_path / "ds")
    store = LabelStore.open(ds)
    cfg = TrainConfig(arch="tiny", pretrained=False, size=(36, 48), bs=4, epochs=1, device="cpu")
    info = train(ds, store, cfg)
    from engine.learn.models import load_run

    run = load_run(info.run_dir)
    labels = store.effective_labels()
    mem = predict_model(info.model, run.cfg, ds.items, labels)
    events: list[dict] = []
    disk = predict(info.run_dir, ds, store, on_event=events.append)
    assert [(r.item, r.pred, r.error) for r in mem] == [(r.item, r.pred, r.error) for r in disk]
    small = predict(info.run_dir, ds, bs=3)  # other batch sizes differ only by float summation order
    assert all(a.pred == pytest.approx(b.pred, abs=1e-3) for a, b in zip(disk, small, strict=True))
    stored = store.predictions(info.run_id)
    assert set(stored) == {it.name for it in ds.items}
    assert stored[disk[0].item].pred == pytest.approx(disk[0].pred)
    progress = [e for e in events if e["type"] == "predict_progress"]
    assert progress[-1] == {"type": "predict_progress", "done": 10, "total": 10}
    store.close()


@pytest.mark.slow
def test_scalar_run_predicts_values(tmp_path: Path) -> None:
    make_utkface(tmp_path / "utk", n=12, size=32)
    ds = open_dataset(tmp_path / "utk")
    cfg = TrainConfig(arch="tiny", pretrained=False, size=(32, 32), bs=4, epochs=1, device="cpu")
    info = train(ds, None, cfg)
    rows = predict(info.run_dir, ds, tta=True)
    lo, hi = info.summary and __import__("json").loads((info.run_dir / "config.json").read_text())["y_range"]
    assert all(len(r.pred) == 1 and lo <= r.pred[0] <= hi for r in rows)
    assert all(r.error == pytest.approx(abs(r.pred[0] - ds.item(r.item).label[0])) for r in rows)
    with pytest.raises(ValueError, match="scalar"):
        predict(info.run_dir, mixed_sizes(tmp_path / "pts"))
