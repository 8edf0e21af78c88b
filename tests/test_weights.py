"""Finding ImageNet weights without torch: torchvision's cache, offline packages, the app's default architecture."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import weights


def test_checkpoint_names_are_torchvisions():
    """Each architecture's file names are torchvision's, DEFAULT first (a torchvision update shows up here)."""
    tvm = pytest.importorskip("torchvision.models")
    for arch, names in weights.CHECKPOINTS.items():
        enum = tvm.get_model_weights(arch)
        urls = [enum.DEFAULT.url] + [w.url for w in enum if w is not enum.DEFAULT]
        assert names == tuple(u.rsplit("/", 1)[-1] for u in urls)


def test_checkpoint_dir_is_torch_hubs(monkeypatch, tmp_path):
    """The folder is the one torch.hub.get_dir() names, with TORCH_HOME, XDG_CACHE_HOME or neither."""
    torch = pytest.importorskip("torch")
    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {}):
        monkeypatch.delenv("TORCH_HOME", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert weights.checkpoint_dir() == Path(torch.hub.get_dir()) / "checkpoints"


def test_local_weights_from_the_cache_and_the_default_arch(monkeypatch, tmp_path):
    """A checkpoint in the cache is found; the default architecture is the preferred one with weights here."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "PACKAGES", {})
    assert weights.local_weights("resnet34") is None
    assert weights.archs_with_weights() == []
    assert weights.default_arch() == "resnet18"
    ckpt = tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    assert weights.local_weights("resnet34") == ckpt
    assert weights.default_arch() == "resnet34"
    assert weights.local_weights("tiny") is None


def test_offline_package(monkeypatch, tmp_path):
    """An installed package's state dict counts; a missing package or file does not."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    pkg = tmp_path / "site" / "fake_weights_pkg"
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(weights, "PACKAGES", {"mobilenet_v2": ("fake_weights_pkg", "weights/m.pth")})
    assert weights.local_weights("mobilenet_v2") is None
    (pkg / "weights" / "m.pth").write_bytes(b"x")
    assert weights.local_weights("mobilenet_v2") == pkg / "weights" / "m.pth"
    assert weights.default_arch() == "mobilenet_v2"
    monkeypatch.setattr(weights, "PACKAGES", {"mobilenet_v2": ("no_such_pkg_here", "w.pth")})
    assert weights.local_weights("mobilenet_v2") is None
