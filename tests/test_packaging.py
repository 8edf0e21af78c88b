"""A non-editable install ships the engine, the app and every resource file, and declares both console scripts."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("src")
    # Build from a copy so the build leaves nothing in the checkout.
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            dst = build / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
        str(build),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return next(out.glob("imgreg-*.whl"))


def test_wheel_holds_packages_and_resources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "engine/cli/__init__.py" in names and "imgreg_gui/__init__.py" in names
    shipped = [p for p in (ROOT / "resources").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    missing = [
        str(p.relative_to(ROOT)) for p in shipped if str(p.relative_to(ROOT)).replace("\\", "/") not in names
    ]
    assert missing == []


def test_installed_wheel_finds_resources(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import importlib.resources as r, resources, engine;"
        "print(resources.__file__.startswith(%r), engine.__file__.startswith(%r),"
        " sum(1 for _ in r.files('resources').iterdir()))" % (str(target), str(target))
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    first, second, count = out.stdout.split()
    assert first == "True" and second == "True" and int(count) >= 1


def test_console_scripts_declared() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"] == {"imgreg": "engine.cli:main", "imgreg-gui": "imgreg_gui.app:main"}
