"""The model factory: a backbone plus the pooled head (fastai's or the age write-up's) or the spatial head."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastai.layers import AdaptiveConcatPool2d, Flatten, SigmoidRange
from fastai.vision.learner import create_head
from torch import nn

from engine.learn.backbones import IMAGENET_STATS, arch_spec, backbone
from engine.learn.spatial import spatial_model


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model: architecture, head, target kind and size, output range."""

    arch: str = "resnet18"
    kind: str = "point"
    n_points: int = 1
    head: str = "pooled"
    scalar_head: str = "fastai"
    size: tuple[int, int] = (240, 320)
    y_range: tuple[float, float] | None = None
    ps: float = 0.5
    spatial_stride: int | None = None
    spatial_hidden: int | None = None
    pretrained: bool = True
    weights: str | None = None
    normalize: tuple[list[float], list[float]] = field(default_factory=lambda: IMAGENET_STATS)

    def n_out(self) -> int:
        """Number of model outputs: 2 per point, or 1 for a scalar."""
        return 2 * self.n_points if self.kind == "point" else 1


def custom_scalar_head(nf: int, y_range: tuple[float, float] | None, ps: float = 0.5) -> nn.Sequential:
    """The age write-up's head: concat pool, BN, Dropout, Linear(2nf->512), ReLU, BN, Dropout, 512->16, ReLU, 16->1."""
    layers: list[nn.Module] = [
        AdaptiveConcatPool2d(),
        Flatten(),
        nn.BatchNorm1d(2 * nf),
        nn.Dropout(ps),
        nn.Linear(2 * nf, 512),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(512),
        nn.Dropout(ps),
        nn.Linear(512, 16),
        nn.ReLU(inplace=True),
        nn.Linear(16, 1),
    ]
    if y_range is not None:
        layers.append(SigmoidRange(*y_range))
    return nn.Sequential(*layers)


def build_model(cfg: ModelConfig, n_out: int | None = None) -> tuple[nn.Module, Callable[[nn.Module], list]]:
    """The model for ``cfg`` (body + head, like ``vision_learner``) and its parameter-group splitter."""
    n_out = n_out or cfg.n_out()
    if cfg.head == "spatial":
        return spatial_model(cfg, n_out // 2)
    if cfg.head != "pooled":
        raise ValueError(f"unknown head {cfg.head!r}; use 'pooled' or 'spatial'")
    spec = arch_spec(cfg.arch)
    body, nf = backbone(cfg.arch, cfg.pretrained, cfg.weights)
    y_range = (float(cfg.y_range[0]), float(cfg.y_range[1])) if cfg.y_range is not None else None
    if cfg.kind == "scalar" and cfg.scalar_head == "custom":
        head = custom_scalar_head(nf, y_range, cfg.ps)
    else:
        head = create_head(nf, n_out, ps=cfg.ps, y_range=y_range)
    model = nn.Sequential(body, head)
    # No kaiming re-init of the head (vision_learner does one): with SigmoidRange it saturates outputs and small
    # datasets then barely train; PyTorch's default init learns much faster here.
    return model, spec.split
