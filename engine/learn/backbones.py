"""Backbones: torchvision models with offline weights (state dicts only), their fastai cut and parameter groups."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from fastai.callback.hook import num_features_model
from fastai.torch_core import params
from fastai.vision.learner import create_body, model_meta
from fastcore.foundation import L
from torch import nn

from engine.weights import checkpoint_dir, local_weights

IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
"""Mean and std of ImageNet (RGB, 0-1), the normalisation every pretrained backbone expects."""


class PretrainedUnavailable(Exception):
    """Pretrained weights were asked for but are not in the local cache (and cannot be downloaded)."""


class WeightsError(Exception):
    """A weights file is missing, unreadable, or does not fit the architecture."""


def _resnet_split(m: Any) -> list:  # a Sequential (body, head) of Sequentials
    """Body stem+layer1-2, layer3-4, head (fastai's resnet split)."""
    return L(m[0][:6], m[0][6:], m[1:]).map(params)


def _features_split(m: Any) -> list:  # a Sequential (body, head) of Sequentials
    """First half of a ``features`` backbone, second half, head (for mobilenets)."""
    feats = m[0][0]
    half = len(feats) // 2
    return L(feats[:half], feats[half:], m[1:]).map(params)


def _tiny_split(m: Any) -> list:  # a Sequential (body, head) of Sequentials
    """Tiny CNN: first two blocks, last two, head."""
    feats = m[0][0]
    return L(feats[:2], feats[2:], m[1:]).map(params)


class CoordConv2d(nn.Module):
    """A 3x3 stride-2 conv whose output also sees the pixel position (x, y in [-1, 1]): CoordConv."""

    def __init__(self, ci: int, co: int, stride: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ci, co, 3, stride=stride, padding=1, bias=False)
        self.coord = nn.Conv2d(2, co, 3, stride=stride, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution of the image plus convolution of the coordinate planes."""
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        return self.conv(x) + self.coord(torch.cat([xs, ys], 1))


class TinyNet(nn.Module):
    """A four-block CoordConv CNN with no pretrained weights, for fast tests and demos (torchvision-like layout)."""

    def __init__(self, num_classes: int = 1000, width: int = 16) -> None:
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 8]
        blocks = [
            nn.Sequential(CoordConv2d(ci, co), nn.BatchNorm2d(co), nn.ReLU(inplace=True))
            for ci, co in zip(chans[:-1], chans[1:], strict=True)
        ]
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(chans[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features, pooling, classifier."""
        return self.classifier(self.avgpool(self.features(x)))


def tiny(weights: Any = None, **kwargs: Any) -> TinyNet:
    """Constructor of ``TinyNet`` with torchvision's signature (``weights`` must be None)."""
    return TinyNet(**kwargs)


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: its torchvision constructor, where to cut the body, and how to split parameter groups."""

    name: str
    fn: Callable[..., nn.Module]
    cut: int
    split: Callable[[nn.Module], list]
    pretrainable: bool = True


ARCHS: dict[str, ArchSpec] = {
    "resnet18": ArchSpec("resnet18", tvm.resnet18, -2, _resnet_split),
    "resnet34": ArchSpec("resnet34", tvm.resnet34, -2, _resnet_split),
    "resnet50": ArchSpec("resnet50", tvm.resnet50, -2, _resnet_split),
    "mobilenet_v2": ArchSpec("mobilenet_v2", tvm.mobilenet_v2, -1, _features_split),
    "mobilenet_v3_small": ArchSpec("mobilenet_v3_small", tvm.mobilenet_v3_small, -2, _features_split),
    "mobilenet_v3_large": ArchSpec("mobilenet_v3_large", tvm.mobilenet_v3_large, -2, _features_split),
    "tiny": ArchSpec("tiny", tiny, -2, _tiny_split, pretrainable=False),
}
"""Architectures by name (``tiny`` is a small untrained CNN for tests)."""

# vision_learner ignores its `cut` argument for known archs and looks up model_meta instead, so register here.
for _spec in ARCHS.values():
    model_meta.setdefault(
        _spec.fn, {"cut": _spec.cut, "split": _spec.split, "stats": IMAGENET_STATS, "weights": "DEFAULT"}
    )


def arch_spec(name: str) -> ArchSpec:
    """The spec of architecture ``name`` (ValueError listing the known names otherwise)."""
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}") from None


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``.pth`` loaded with ``weights_only=True`` (never unpickles code)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any decoding error is the file's fault, not ours
        # torch's weights_only message runs to a page and suggests weights_only=False, which we never do.
        raise WeightsError(
            f"{path} is not a readable state dict: it is corrupt, not a weights file, or holds more than tensors "
            f"({type(e).__name__}); give a .pth saved with torch.save(model.state_dict()) or a .safetensors file"
        ) from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return sd


def torchvision_model(name: str, pretrained: bool = False, weights: Path | str | None = None) -> nn.Module:
    """The full torchvision model ``name``, with weights from ``weights`` or the local cache when ``pretrained``."""
    spec = arch_spec(name)
    model = spec.fn(weights=None)
    path: Path | None = Path(weights) if weights is not None else None
    if path is None and pretrained:
        path = local_weights(name) if spec.pretrainable else None
        if path is None:
            raise PretrainedUnavailable(
                f"pretrained {name} weights are not in {checkpoint_dir()} nor in an offline package, and cannot be "
                "downloaded offline: pass --weights FILE or --no-pretrained"
            )
    if path is not None:
        sd = load_state_dict(path)
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise WeightsError(f"weights file {path} does not fit {name}: {first}") from None
    return model


def backbone(name: str, pretrained: bool = False, weights: Path | str | None = None) -> tuple[nn.Module, int]:
    """The cut body of ``name`` (features without pooling/classifier) and its number of output channels."""
    spec = arch_spec(name)
    body = create_body(torchvision_model(name, pretrained, weights), pretrained=pretrained, cut=spec.cut)
    return body, num_features_model(body)
