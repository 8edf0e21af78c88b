"""``predict --heatmaps``: one grayscale PNG per item for spatial runs, aligned with the original image."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine.cli import main
from engine.core import Item
from engine.data.synth import make_biwi, write_image
from engine.learn.arch import ModelConfig, build_model
from engine.learn.backbones import TinyNet
from engine.learn.models import save_run
from engine.learn.predict import predict_model
from engine.learn.spatial import SpatialPointModel, cut_backbone
from engine.runs.heatmaps import has_heatmaps, heatmap_path, peak_pixel, read_heatmap, to_gray

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class BlobLogits(nn.Module):
    """A fake head: Gaussian-shaped logits around fixed (row, col) cell positions of an (h, w) map."""

    def __init__(self, h: int, w: int, centres: list[tuple[float, float]], sigma: float = 0.7) -> None:
        super().__init__()
        self.h, self.w, self.centres, self.sigma = h, w, centres, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(bs, n, h, w)``."""
        ii = torch.arange(self.h, dtype=torch.float32)[:, None]
        jj = torch.arange(self.w, dtype=torch.float32)[None, :]
        maps = [-((ii - i) ** 2 + (jj - j) ** 2) / (2 * self.sigma**2) for i, j in self.centres]
        return torch.stack(maps)[None].expand(x.shape[0], -1, -1, -1)


def blob_model(centres: list[tuple[float, float]]) -> SpatialPointModel:
    """A spatial model on the tiny CNN whose heatmaps are blobs at ``centres`` (cell units) of a 6x8 map."""
    body, ch = cut_backbone(TinyNet(width=8), 16)
    model = SpatialPointModel(body, ch, len(centres), 16)
    model.head = BlobLogits(6, 8, centres)
    return model


def test_heatmap_path_mirrors_the_item_name(tmp_path: Path) -> None:
    assert (
        heatmap_path(tmp_path, "07/frame_00001_rgb.png") == tmp_path / "heatmaps/07/frame_00001_rgb.png.png"
    )
    assert heatmap_path(tmp_path, "a.jpg") == tmp_path / "heatmaps/a.jpg.png"
    # Never outside the run's heatmap folder.
    assert heatmap_path(tmp_path, "../../x.png") == tmp_path / "heatmaps/x.png.png"
    assert not has_heatmaps(tmp_path) and not has_heatmaps(None)


def test_to_gray_normalises_each_point_then_takes_the_max() -> None:
    maps = np.zeros((2, 3, 4), np.float32)
    maps[0, 1, 2], maps[0, 0, 0] = 0.8, 0.4
    maps[1, 2, 3] = 0.01
    g = to_gray(maps)
    assert g.dtype == np.uint8 and g.shape == (3, 4)
    assert g[1, 2] == 255 and g[2, 3] == 255 and g[0, 0] == 128
    assert to_gray(np.zeros((3, 4))).max() == 0


def test_brightest_cell_maps_back_to_the_prediction(tmp_path: Path) -> None:
    """Non-square images of other aspects than the network input: the peak cell, scaled to the original image,
    lies within a cell of the predicted point; one file per item, at the heatmap's resolution."""
    sizes = [(300, 200), (90, 160), (64, 48)]
    items = []
    for k, (w, h) in enumerate(sizes):
        write_image(tmp_path / "ds" / "sub" / f"{k}.png", np.zeros((h, w, 3), np.uint8))
        items.append(Item(f"sub/{k}.png", "sub", tmp_path / "ds" / "sub" / f"{k}.png"))
    run = tmp_path / "run"
    cfg = ModelConfig(arch="tiny", kind="point", n_points=1, head="spatial", size=(96, 128), pretrained=False)
    rows = predict_model(blob_model([(2.3, 5.6)]), cfg, items, workers=1, heatmaps_to=run)
    assert has_heatmaps(run)
    for row, (w, h) in zip(rows, sizes, strict=True):
        gray = read_heatmap(heatmap_path(run, row.item))
        assert gray is not None and gray.shape == (6, 8) and gray.max() == 255
        px, py = peak_pixel(gray, (w, h))
        assert abs(px - row.pred[0]) <= w / 8 and abs(py - row.pred[1]) <= h / 6
        assert row.spread is not None and row.spread > 0
    # Flip TTA stores the average of the map and the flipped image's map flipped back (this fake model is not
    # flip-equivariant, so both blobs show: columns 5.6 and 7 - 5.6).
    predict_model(blob_model([(2.3, 5.6)]), cfg, items[:1], tta=True, workers=1, heatmaps_to=run)
    gray = read_heatmap(heatmap_path(run, items[0].name))
    assert gray[2, 6] == gray[2, 1] == 255
    # Without the flag nothing is written.
    predict_model(blob_model([(2.3, 5.6)]), cfg, items, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "run"]


def test_rows_are_identical_with_and_without_heatmaps(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", np.full((40, 70, 3), 90, np.uint8))
    items = [Item("a.png", ".", tmp_path / "a.png")]
    cfg = ModelConfig(arch="tiny", kind="point", n_points=2, head="spatial", size=(96, 128), pretrained=False)
    model = blob_model([(1.0, 1.0), (4.2, 6.5)])
    a = predict_model(model, cfg, items, workers=1)
    b = predict_model(model, cfg, items, workers=1, heatmaps_to=tmp_path / "run")
    assert a[0].pred == pytest.approx(b[0].pred, abs=1e-5) and a[0].spread == pytest.approx(b[0].spread)
    gray = read_heatmap(heatmap_path(tmp_path / "run", "a.png"))
    # Two points in one file: both peaks at full brightness.
    assert gray[1, 1] == 255 and gray[4, 6] == 255


def _save(run_dir: Path, head: str) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="tiny", kind="point", n_points=1, head=head, size=(48, 64), pretrained=False)
    model, _ = build_model(cfg)
    save_run(run_dir, cfg, model.state_dict(), [], {"metrics": {}})
    return run_dir


def test_cli_predict_heatmaps_for_a_spatial_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A tiny spatial run's heatmaps: one file per predicted item; their centroid is the prediction."""
    make_biwi(tmp_path / "ds", groups=2, frames=3, size=(64, 48))
    run = _save(tmp_path / "spatial", "spatial")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(tmp_path / "ds"), "--heatmaps", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6
    for r in rows:
        gray = read_heatmap(heatmap_path(run, r["item"]))
        assert gray is not None and gray.shape == (6, 8)
        g = gray.astype(np.float64)
        cx = (g.sum(0) * (np.arange(8) + 0.5)).sum() / g.sum() * 64 / 8
        cy = (g.sum(1) * (np.arange(6) + 0.5)).sum() / g.sum() * 48 / 6
        assert abs(cx - float(r["pred_x"])) < 64 / 8 and abs(cy - float(r["pred_y"])) < 48 / 6


def test_cli_predict_heatmaps_is_a_noop_for_pooled_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    make_biwi(tmp_path / "ds", groups=1, frames=2, size=(64, 48))
    run = _save(tmp_path / "pooled", "pooled")
    assert (
        main(["predict", str(run), str(tmp_path / "ds"), "--heatmaps", "--out", str(tmp_path / "p.csv")]) == 0
    )
    err = capsys.readouterr().err
    assert "--heatmaps ignored" in err and len([ln for ln in err.splitlines() if "note:" in ln]) == 1
    assert not has_heatmaps(run)
