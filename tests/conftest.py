"""Shared test set-up: headless Qt, isolated user data and settings, paths to the optional real sample data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the real per-user data folder and Qt settings."""
    base = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("IMGREG_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("IMGREG_SETTINGS_DIR", str(base / "settings"))


@pytest.fixture
def shared_data() -> Path:
    """The real sample data beside the repo (``../shared/data``); skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: much faster than two busy-waiting ones on a shared 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
