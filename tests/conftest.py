"""Shared test set-up: headless Qt, isolated user data and settings, paths to the optional real sample data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Every event the engine builds in a test (here and in child processes) is checked against engine/events.py.
os.environ["IMGREG_CHECK_EVENTS"] = "1"

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


def run_headless(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run Python ``code`` in a fresh process at the repo root: offscreen Qt, its own settings and data folders."""
    env = {
        "QT_QPA_PLATFORM": "offscreen",
        "IMGREG_SETTINGS_DIR": str(tmp_path / "s"),
        "IMGREG_DATA_DIR": str(tmp_path / "d"),
        "PATH": "/usr/bin:/bin",
    }
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def training_window(qtbot):
    """A factory: the main window opened on a dataset, its training UI ready; shut down at the end."""
    from imgreg_gui.main_window import MainWindow

    wins = []

    def open_window(root: Path) -> MainWindow:
        win = MainWindow()
        qtbot.addWidget(win)
        win.open_dataset(root)
        qtbot.waitUntil(
            lambda: win.dataset is not None and win.current_item_name() is not None, timeout=20000
        )
        qtbot.waitUntil(lambda: win.training.train.dataset_path is not None, timeout=5000)
        wins.append(win)
        return win

    yield open_window
    for win in wins:
        win.training.shutdown()
        win.close()
