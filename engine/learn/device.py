"""Where training and prediction run: the torch device from ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """The device asked for does not exist here."""


def resolve_device(spec: str | None = "auto") -> torch.device:
    """A torch device from 'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'."""
    if spec in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise DeviceError(f"device {spec!r} asked for but no CUDA GPU is available")
        if dev.index is not None and dev.index >= n:
            raise DeviceError(f"device {spec!r} asked for but only {n} CUDA GPU(s) exist")
    elif dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise DeviceError("device 'mps' asked for but MPS is not available")
    return dev
