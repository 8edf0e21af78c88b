"""Spatial soft-argmax (DSNT) point head: a backbone cut at stride 8/16, one heatmap per point, expected coords.

The pooled head of ``vision_learner`` averages the features over the image and regresses (x, y) from that vector,
throwing away where things are. This head keeps a spatial map, turns it into one probability heatmap per point
(softmax over all cells) and returns the expected position under it (DSNT, Nibali et al. 2018), which is
differentiable and translation-equivariant.

Coordinates follow fastai's ``PointScaler``: ``x_norm = 2 * x_px / W - 1`` with ``x_px`` continuous pixels whose
left image edge is 0, so the centre of heatmap cell (i, j) of an (H, W) map is ``((2j+1)/W - 1, (2i+1)/H - 1)``.
The model outputs ``(bs, n_points*2)`` flattened as ``x1, y1, x2, y2, ...`` like the pooled head, which is what
``MSELossFlat`` against ``TensorPoint`` targets of shape ``(bs, n_points, 2)`` expects.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.learn.backbones import torchvision_model

STRIDE = 16
"""Default backbone output stride (the head upsamples x2, so heatmaps are at stride 8)."""

HIDDEN = 128
"""Channels of the head's hidden convolutions."""


def cell_centres(n: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised centres ``(2k+1)/n - 1`` of ``n`` cells spanning [-1, 1] (fastai PointScaler convention)."""
    return (2 * torch.arange(n, device=device, dtype=dtype) + 1) / n - 1


def spatial_softmax(logits: Tensor) -> Tensor:
    """Softmax of ``(bs, n, H, W)`` logits over each map's H*W cells."""
    bs, n, h, w = logits.shape
    return F.softmax(logits.reshape(bs, n, h * w).float(), dim=-1).reshape(bs, n, h, w)


def soft_argmax(hm: Tensor) -> Tensor:
    """Expected ``(x, y)`` in [-1, 1] under normalised heatmaps ``(bs, n, H, W)``; returns ``(bs, n, 2)``."""
    _, _, h, w = hm.shape
    xs, ys = cell_centres(w, hm.device, hm.dtype), cell_centres(h, hm.device, hm.dtype)
    x = (hm.sum(2) * xs).sum(-1)
    y = (hm.sum(3) * ys).sum(-1)
    return torch.stack([x, y], dim=-1)


def heatmap_spread(hm: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Standard deviation ``(bs, n)`` of each heatmap: RMS of the x and y std, in pixels of an image ``(w, h)``.

    Without ``size`` it is in normalised units (the [-1, 1] span is 2 units in each direction).
    """
    _, _, h, w = hm.shape
    xs, ys = cell_centres(w, hm.device, hm.dtype), cell_centres(h, hm.device, hm.dtype)
    px, py = hm.sum(2), hm.sum(3)
    mx, my = (px * xs).sum(-1, keepdim=True), (py * ys).sum(-1, keepdim=True)
    vx, vy = (px * (xs - mx) ** 2).sum(-1), (py * (ys - my) ** 2).sum(-1)
    if size is not None:
        vx, vy = vx * (size[0] / 2) ** 2, vy * (size[1] / 2) ** 2
    return ((vx + vy) / 2).clamp_min(0).sqrt()


def _flatten(module: nn.Module) -> list[nn.Module]:
    """Sequential containers expanded into their children (recursively), other modules kept whole."""
    if isinstance(module, nn.Sequential):
        return [m for child in module.children() for m in _flatten(child)]
    return [module]


def _trunk(model: nn.Module) -> list[nn.Module]:
    """The convolutional part of a torchvision classifier as a flat list of modules, pooling and classifier dropped."""
    feats = getattr(model, "features", None)
    if isinstance(feats, nn.Module):
        return _flatten(feats)
    drop = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten, nn.Dropout)
    mods = [m for name, m in model.named_children() if name not in ("fc", "classifier", "head", "avgpool")]
    return [m for child in mods for m in _flatten(child) if not isinstance(m, drop)]


@torch.no_grad()
def cut_backbone(model: nn.Module, stride: int = STRIDE, probe: int = 128) -> tuple[nn.Sequential, int]:
    """The longest prefix of a torchvision classifier's trunk whose output stride is at most ``stride``.

    Returns the prefix and its number of output channels (found by a forward pass on a ``probe``-pixel square).
    """
    mods = _trunk(model)
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, probe, probe)
    keep, channels = 0, 3
    for i, m in enumerate(mods):
        x = m(x)
        if x.dim() != 4 or probe / x.shape[-1] > stride:
            break
        keep, channels = i + 1, x.shape[1]
    model.train(was_training)
    if keep == 0:
        raise ValueError(f"no part of {type(model).__name__} has output stride <= {stride}")
    return nn.Sequential(*mods[:keep]), int(channels)


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class HeatmapHead(nn.Module):
    """conv3x3-BN-ReLU, optional bilinear upsample x2, conv3x3-BN-ReLU, then 1x1 to one logit map per point."""

    def __init__(self, c_in: int, n_points: int, hidden: int = HIDDEN, upsample: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(c_in, hidden)
        self.up = (
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False) if upsample else nn.Identity()
        )
        self.conv2 = _conv_bn_relu(hidden, hidden)
        self.out = nn.Conv2d(hidden, n_points, 1)
        # Near-zero logits start every heatmap almost uniform (predictions near the image centre) while still
        # letting gradients reach the backbone from the first step (exact zeros would block them).
        nn.init.normal_(self.out.weight, std=1e-3)
        if self.out.bias is not None:
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(bs, n_points, H, W)``."""
        return self.out(self.conv2(self.up(self.conv1(x))))


class SpatialPointModel(nn.Module):
    """Backbone + heatmap head; ``forward`` gives ``(bs, n_points*2)`` coords in [-1, 1], order x1, y1, x2, ...

    The returned tensor also carries the softmaxed maps as ``.heatmaps`` so ``DSNTLoss`` can regularise them.
    """

    def __init__(
        self, body: nn.Module, channels: int, n_points: int, hidden: int = HIDDEN, upsample: bool = True
    ):
        super().__init__()
        self.n_points = n_points
        self.body = body
        self.head = HeatmapHead(channels, n_points, hidden, upsample)

    def heatmaps(self, x: Tensor) -> Tensor:
        """Softmaxed heatmaps ``(bs, n_points, H, W)``, each summing to 1, covering the whole input image."""
        return spatial_softmax(self.head(self.body(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Coordinates ``(bs, n_points*2)`` in [-1, 1] (fastai TensorPoint order), with ``.heatmaps`` attached."""
        hm = self.heatmaps(x)
        coords = soft_argmax(hm).reshape(x.shape[0], -1).to(x.dtype)
        coords.heatmaps = hm  # type: ignore[attr-defined]  # the loss and predict read the maps off the output
        return coords

    def forward_with_spread(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Coords ``(bs, n_points*2)`` in [-1, 1] and each point's heatmap std ``(bs, n_points)`` in input pixels."""
        hm = self.heatmaps(x)
        coords = soft_argmax(hm).reshape(x.shape[0], -1).to(x.dtype)
        return coords, heatmap_spread(hm, (x.shape[-1], x.shape[-2]))


def spatial_splitter(model: SpatialPointModel) -> list[list[nn.Parameter]]:
    """fastai splitter: backbone parameters, then head parameters (so ``freeze()`` trains only the head)."""
    return [list(model.body.parameters()), list(model.head.parameters())]


def heatmaps(model: nn.Module, x: Tensor) -> Tensor:
    """The softmaxed heatmaps ``(bs, n_points, H, W)`` of a spatial model for a batch (no grad), for overlays.

    Each map spans the whole network input: cell (i, j) of an (H, W) map covers input pixels
    ``[j*w/W, (j+1)*w/W) x [i*h/H, (i+1)*h/H)``.
    """
    with torch.no_grad():
        return cast(SpatialPointModel, model).heatmaps(x)


def gaussian_maps(targ: Tensor, h: int, w: int, sigma: float) -> Tensor:
    """Normalised Gaussians ``(bs, n, h, w)`` centred on targets ``(bs, n, 2)`` in [-1, 1]; ``sigma`` in cells."""
    xs, ys = cell_centres(w, targ.device, targ.dtype), cell_centres(h, targ.device, targ.dtype)
    gx = torch.exp(-(((xs - targ[..., 0:1]) * (w / 2)) ** 2) / (2 * sigma**2))
    gy = torch.exp(-(((ys - targ[..., 1:2]) * (h / 2)) ** 2) / (2 * sigma**2))
    g = gy[..., :, None] * gx[..., None, :]
    return g / g.sum((-2, -1), keepdim=True).clamp_min(1e-12)


def js_divergence(p: Tensor, q: Tensor, eps: float = 1e-12) -> Tensor:
    """Jensen-Shannon divergence between maps ``(bs, n, H, W)``, per map ``(bs, n)``."""
    m = (p + q) / 2
    kl_pm = (p * (torch.log(p + eps) - torch.log(m + eps))).sum((-2, -1))
    kl_qm = (q * (torch.log(q + eps) - torch.log(m + eps))).sum((-2, -1))
    return (kl_pm + kl_qm) / 2


class DSNTLoss:
    """MSE on [-1, 1] coordinates plus ``reg`` x the Jensen-Shannon divergence of each heatmap to a Gaussian at
    its target (``sigma`` in heatmap cells). With ``reg=0`` it equals ``MSELossFlat``. Picklable for fastai."""

    def __init__(self, reg: float = 1.0, sigma: float = 1.0) -> None:
        self.reg, self.sigma = reg, sigma

    def __call__(self, pred: Tensor, targ: Tensor) -> Tensor:
        """Loss for predictions ``(bs, n*2)`` (with ``.heatmaps`` when regularised) and targets ``(bs, n, 2)``."""
        hm = getattr(pred, "heatmaps", None)
        pred, targ = torch.as_tensor(pred).float(), torch.as_tensor(targ).float()
        loss = F.mse_loss(pred.reshape(-1), targ.reshape(-1))
        if self.reg and hm is not None:
            t = targ.reshape(hm.shape[0], hm.shape[1], 2)
            loss = (
                loss
                + self.reg * js_divergence(hm, gaussian_maps(t, hm.shape[2], hm.shape[3], self.sigma)).mean()
            )
        return loss

    def activation(self, x: Tensor) -> Tensor:
        """fastai hook: predictions need no activation."""
        return x

    def decodes(self, x: Tensor) -> Tensor:
        """fastai hook: predictions need no decoding."""
        return x


def spatial_model(cfg: Any, n_points: int) -> tuple[SpatialPointModel, Any]:
    """Build the spatial model for ``cfg.arch`` (``cfg.pretrained``, ``cfg.weights``) and its splitter.

    Optional config fields: ``spatial_stride`` (8 or 16, default 16), ``spatial_hidden`` (head channels).
    """
    net = torchvision_model(cfg.arch, getattr(cfg, "pretrained", False), getattr(cfg, "weights", None))
    body, channels = cut_backbone(net, int(getattr(cfg, "spatial_stride", STRIDE) or STRIDE))
    hidden = int(getattr(cfg, "spatial_hidden", HIDDEN) or HIDDEN)
    return SpatialPointModel(body, channels, n_points, hidden), spatial_splitter
