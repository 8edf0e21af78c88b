"""The spatial soft-argmax (DSNT) point head: coordinate convention, gradients, splitter, loss, training, reload."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
import numpy as np
import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import MSELossFlat
from fastai.vision.core import PointScaler, TensorPoint
from torch import nn

from engine.learn.backbones import TinyNet
from engine.learn.spatial import (
    DSNTLoss,
    SpatialPointModel,
    cell_centres,
    cut_backbone,
    gaussian_maps,
    heatmap_spread,
    heatmaps,
    js_divergence,
    soft_argmax,
    spatial_model,
    spatial_splitter,
)


def tiny_model(n_points: int = 1, stride: int = 16, hidden: int = 16) -> SpatialPointModel:
    """A spatial model on the tiny test CNN."""
    torch.manual_seed(0)
    body, ch = cut_backbone(TinyNet(width=8), stride)
    return SpatialPointModel(body, ch, n_points, hidden)


def one_hot_maps(bs: int, n: int, h: int, w: int, cells: list[tuple[int, int]]) -> torch.Tensor:
    """Heatmaps with all mass on cell (i, j) for each point."""
    hm = torch.zeros(bs, n, h, w)
    for k, (i, j) in enumerate(cells):
        hm[:, k, i, j] = 1
    return hm


class PeakLogits(nn.Module):
    """A fake head whose logits peak sharply at fixed cells of an (h, w) map, one per point."""

    def __init__(self, h: int, w: int, cells: list[tuple[int, int]]) -> None:
        super().__init__()
        self.h, self.w, self.cells = h, w, cells

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(bs, n, h, w)`` of -100 everywhere except 0 at the chosen cells."""
        out = torch.full((x.shape[0], len(self.cells), self.h, self.w), -100.0)
        for k, (i, j) in enumerate(self.cells):
            out[:, k, i, j] = 0
        return out


def test_cell_centres_match_pointscaler() -> None:
    """Cell centres are where fastai's PointScaler puts the centre pixel of each cell."""
    w_in, h_in, w, h = 128, 96, 16, 12
    js = torch.arange(w).float()
    px = (js + 0.5) * w_in / w
    pts = TensorPoint(torch.stack([px, torch.full_like(px, h_in / 2)], -1)[None], img_size=(w_in, h_in))
    scaler = PointScaler()
    scaler.sz = None  # set by fastai from the image in a pipeline; here the points carry img_size
    scaled = scaler.encodes(pts)
    assert torch.allclose(scaled[0, :, 0], cell_centres(w), atol=1e-6)
    assert torch.allclose(cell_centres(h), (2 * torch.arange(h) + 1) / h - 1)


@pytest.mark.parametrize("h,w", [(12, 16), (6, 8), (7, 5)])
def test_soft_argmax_of_peak_is_cell_centre(h: int, w: int) -> None:
    """A map peaked at cell (i, j) gives x = (2j+1)/W - 1, y = (2i+1)/H - 1, in (x, y) order."""
    cells = [(i, j) for i in range(h) for j in range(w)][:: max(1, h * w // 7)]
    hm = one_hot_maps(2, len(cells), h, w, cells)
    xy = soft_argmax(hm)
    want = torch.tensor([[(2 * j + 1) / w - 1, (2 * i + 1) / h - 1] for i, j in cells])
    assert xy.shape == (2, len(cells), 2)
    assert torch.allclose(xy[0], want, atol=1e-6) and torch.allclose(xy[1], want, atol=1e-6)


def test_model_forward_convention_and_flat_order() -> None:
    """End to end through the model: (bs, n*2) flattened x1, y1, x2, y2 at the peaked cells' centres."""
    model = tiny_model(n_points=2)
    cells = [(1, 2), (4, 0)]
    model.head = PeakLogits(6, 8, cells)
    x = torch.randn(3, 3, 96, 128)
    out = model(x)
    assert out.shape == (3, 4)
    want = torch.tensor([(2 * 2 + 1) / 8 - 1, (2 * 1 + 1) / 6 - 1, (2 * 0 + 1) / 8 - 1, (2 * 4 + 1) / 6 - 1])
    assert torch.allclose(out[0], want, atol=1e-5)
    coords, spread = model.forward_with_spread(x)
    assert torch.allclose(coords, out) and spread.shape == (3, 2)
    assert spread.max() < 1e-3
    # Decoded like fastai's PointScaler.decodes: the centre of the cell in input pixels.
    pix = (out.view(3, 2, 2) + 1) * torch.tensor([128.0, 96.0]) / 2
    assert torch.allclose(pix[0, 0], torch.tensor([2.5 * 16, 1.5 * 16]), atol=1e-3)


def test_spread_units() -> None:
    """Spread is 0 for a one-hot map and the pixel std of a uniform map (w/sqrt(12) in each direction)."""
    hm = one_hot_maps(1, 1, 6, 8, [(3, 3)])
    assert heatmap_spread(hm, (128, 96)).item() == pytest.approx(0, abs=1e-6)
    uni = torch.full((1, 1, 64, 64), 1 / 64**2)
    # A uniform 64x64 map over a 640x640 image: std of a discrete uniform of 64 cells of 10 px.
    want = 10 * ((64**2 - 1) / 12) ** 0.5
    assert heatmap_spread(uni, (640, 640)).item() == pytest.approx(want, rel=1e-4)
    assert heatmap_spread(uni).item() == pytest.approx(want / 320, rel=1e-4)


def test_heatmaps_helper_normalised() -> None:
    """``heatmaps`` returns softmaxed maps, one per point, each summing to 1."""
    model = tiny_model(n_points=2, stride=8).eval()
    hm = heatmaps(model, torch.randn(2, 3, 48, 64))
    assert hm.shape == (2, 2, 12, 16) and not hm.requires_grad
    assert torch.allclose(hm.sum((-2, -1)), torch.ones(2, 2), atol=1e-5)


def test_gradients_reach_backbone() -> None:
    """Every backbone and head parameter gets a non-zero gradient from the coordinate loss at initialisation."""
    model = tiny_model(n_points=2)
    x, targ = torch.randn(4, 3, 48, 64), torch.rand(4, 2, 2) * 2 - 1
    DSNTLoss(reg=1.0)(model(x), targ).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_splitter_groups_cover_parameters_once() -> None:
    """The splitter gives >= 2 groups (backbone, head) holding every parameter exactly once."""
    model = tiny_model()
    groups = spatial_splitter(model)
    assert len(groups) >= 2
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in groups[-1]} == {id(p) for p in model.head.parameters()}


def test_dsnt_loss() -> None:
    """reg=0 equals MSELossFlat; JS is 0 for identical maps; the regulariser prefers a Gaussian at the target."""
    pred, targ = torch.rand(3, 4) * 2 - 1, TensorPoint(torch.rand(3, 2, 2) * 2 - 1)
    assert DSNTLoss(reg=0)(pred, targ).item() == pytest.approx(MSELossFlat()(pred, targ).item(), rel=1e-6)
    g = gaussian_maps(targ.as_subclass(torch.Tensor), 12, 16, 1.0)
    assert g.shape == (3, 2, 12, 16) and torch.allclose(g.sum((-2, -1)), torch.ones(3, 2), atol=1e-5)
    assert js_divergence(g, g).abs().max() < 1e-6
    exact = soft_argmax(g).reshape(3, 4)
    exact.heatmaps = g
    uniform = exact.detach().clone()
    uniform.heatmaps = torch.full_like(g, 1 / (12 * 16))
    loss = DSNTLoss(reg=1.0, sigma=1.0)
    assert loss(exact, targ) < loss(uniform, targ)
    assert pickle.loads(pickle.dumps(loss)).reg == 1.0


def dots(n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with a red and a green 5x5 square at random places, and their centres in [-1, 1] ``(n, 2, 2)``."""
    x = torch.zeros(n, 3, h, w)
    pts = torch.stack([torch.randint(3, w - 3, (n, 2)), torch.randint(3, h - 3, (n, 2))], -1).float()
    for k in range(n):
        (x1, x2), (y1, y2) = pts[k, :, 0].long().tolist(), pts[k, :, 1].long().tolist()
        x[k, 0, y1 - 2 : y1 + 3, x1 - 2 : x1 + 3] = 3
        x[k, 1, y2 - 2 : y2 + 3, x2 - 2 : x2 + 3] = 3
    return x, (pts + 0.5) * 2 / torch.tensor([w, h]) - 1


class CountingLoss(DSNTLoss):
    """DSNTLoss that counts the batches whose predictions still carried their heatmaps."""

    seen = 0

    def __call__(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        """Count, then the usual loss."""
        CountingLoss.seen += getattr(pred, "heatmaps", None) is not None
        return super().__call__(pred, targ)


def test_freeze_leaves_backbone_frozen() -> None:
    """Through a fastai Learner with the splitter: freeze() trains the head only, unfreeze() everything."""
    torch.manual_seed(0)
    x, targ = dots(32, 32, 48)
    dls = DataLoaders.from_dsets(list(zip(x, targ, strict=True)), [], bs=16, device="cpu")
    model = tiny_model(n_points=2, stride=8)
    learn = Learner(dls, model, loss_func=CountingLoss(reg=1.0), splitter=spatial_splitter)
    learn.freeze()
    convs = [p for m in model.body.modules() if isinstance(m, nn.Conv2d) for p in m.parameters()]
    assert convs and not any(p.requires_grad for p in convs)
    assert all(p.requires_grad for p in model.head.parameters())
    before = [p.detach().clone() for p in convs]
    head_before = [p.detach().clone() for p in model.head.parameters()]
    with learn.no_logging(), learn.no_bar():
        learn.fit(1, 1e-3)
    assert all(torch.equal(a, b) for a, b in zip(before, convs, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(head_before, model.head.parameters(), strict=True))
    assert CountingLoss.seen == 2  # the heatmaps survive fastai's training loop to reach the regulariser
    learn.unfreeze()
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("reg", [0.0, 1.0])
def test_learns_two_points(reg: float) -> None:
    """A short training run (plain Adam) locates two coloured dots to about a pixel, with or without the JS term."""
    torch.manual_seed(0)
    h, w = 32, 48
    x, targ = dots(96, h, w)
    model, loss = tiny_model(n_points=2, stride=8), DSNTLoss(reg=reg)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        i = torch.randint(0, 80, (16,))
        opt.zero_grad()
        loss(model(x[i]), targ[i]).backward()
        opt.step()
    with torch.no_grad():
        pred = model.eval()(x[80:]).view(-1, 2, 2)
    err = ((pred - targ[80:]) * torch.tensor([w, h]) / 2).norm(dim=-1).mean()
    assert err < 2.5, err  # pixels of a 48x32 image; guessing the centre is ~14 px off


def test_state_dict_reload_predicts_the_same() -> None:
    """A model rebuilt from its config and loaded from its state dict predicts exactly what the original did."""
    cfg = SimpleNamespace(arch="tiny", pretrained=False, weights=None)
    model, splitter = spatial_model(cfg, 2)
    assert splitter is spatial_splitter
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    x = torch.randn(2, 3, 48, 64)
    again, _ = spatial_model(cfg, 2)
    again.load_state_dict(model.state_dict())
    again.eval()
    assert torch.allclose(again(x), model(x)) and again(x).shape == (2, 4)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "mobilenet_v3_small"])
def test_cut_strides(arch: str) -> None:
    """Real backbones are cut at stride 16 (heatmaps at stride 8 after the head's upsample) or stride 8."""
    for stride in (16, 8):
        model, _ = spatial_model(
            SimpleNamespace(arch=arch, pretrained=False, weights=None, spatial_stride=stride), 1
        )
        assert model.eval().heatmaps(torch.zeros(1, 3, 64, 96)).shape == (
            1,
            1,
            64 * 2 // stride,
            96 * 2 // stride,
        )


def test_predict_maps_peak_to_original_pixels(tmp_path) -> None:
    """Through the engine's predict: a peak at cell (i, j) comes back as that cell's centre in the original,
    non-square image (squished to a network input of another aspect), with a near-zero spread."""
    from engine.core import Item
    from engine.data.synth import write_image
    from engine.learn.arch import ModelConfig
    from engine.learn.predict import predict_model

    items = []
    for k, (w, h) in enumerate([(300, 200), (90, 160)]):
        write_image(tmp_path / f"{k}.png", np.zeros((h, w, 3), np.uint8))
        items.append(Item(f"{k}.png", ".", tmp_path / f"{k}.png"))
    model = tiny_model(n_points=2)
    model.head = PeakLogits(6, 8, [(2, 5), (0, 7)])
    cfg = ModelConfig(arch="tiny", kind="point", n_points=2, head="spatial", size=(96, 128), pretrained=False)
    rows = predict_model(model, cfg, items, workers=1)
    for row, (w, h) in zip(rows, [(300, 200), (90, 160)], strict=True):
        want = [5.5 * w / 8, 2.5 * h / 6, 7.5 * w / 8, 0.5 * h / 6]
        assert row.pred == pytest.approx(want, abs=1e-3)
        assert row.spread is not None and row.spread < 1e-3


def test_train_spatial_and_reload(tmp_path) -> None:
    """``train(head='spatial')`` runs through fastai with augmentation; the reloaded run predicts the same."""
    from engine.data import open_dataset
    from engine.data.synth import make_biwi
    from engine.learn.models import load_run
    from engine.learn.train import TrainConfig, train

    make_biwi(tmp_path / "data", groups=2, frames=4, size=(64, 48), distractors=1)
    ds = open_dataset(tmp_path / "data")
    cfg = TrainConfig(
        arch="tiny", head="spatial", pretrained=False, size=(48, 64), epochs=1, bs=4, device="cpu"
    )
    info = train(ds, None, cfg, out_dir=tmp_path / "runs")
    assert np.isfinite(info.metrics["mean_px"])
    loaded = load_run(info.run_dir)
    assert isinstance(loaded.model, SpatialPointModel)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), info.model.eval()(x), atol=1e-6)


def test_image_heatmaps_line_up_with_original_image() -> None:
    """``image_heatmaps`` gives one map per point at the original size whose mass sits on the peaked cell."""
    from engine.learn.arch import ModelConfig
    from engine.learn.predict import image_heatmaps

    model = tiny_model(n_points=2)
    model.head = PeakLogits(6, 8, [(2, 5), (0, 0)])
    cfg = ModelConfig(arch="tiny", kind="point", n_points=2, head="spatial", size=(96, 128), pretrained=False)
    hm = image_heatmaps(model, cfg, np.zeros((200, 300, 3), np.uint8))
    assert hm.shape == (2, 200, 300) and hm.dtype == np.float32
    assert np.allclose(hm.sum((1, 2)), 1, atol=1e-4)
    ys, xs = np.unravel_index(hm[0].argmax(), hm[0].shape)
    assert 5 * 300 / 8 <= xs < 6 * 300 / 8 and 2 * 200 / 6 <= ys < 3 * 200 / 6
