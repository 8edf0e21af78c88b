"""Rule 1: the engine never imports Qt; the GUI imports torch/fastai only where it trains or predicts."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "PyQt5", "PyQt6", "qtpy", "shiboken6", "pyqtgraph", "qimage2ndarray")
HEAVY = ("torch", "torchvision", "fastai")


def _imports(path: Path, top_level_only: bool) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_engine_never_imports_qt() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in (ROOT / "engine").rglob("*.py")
        for name in _imports(p, top_level_only=False)
        if name.split(".")[0] in QT
    ]
    assert bad == []


def test_gui_has_no_module_level_torch_or_fastai() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in (ROOT / "imgreg_gui").rglob("*.py")
        for name in _imports(p, top_level_only=True)
        if name.split(".")[0] in HEAVY
    ]
    assert bad == []


def test_importing_the_engine_core_loads_no_qt() -> None:
    code = (
        "import sys, engine.core, engine.cli, engine.formats, engine.store, engine.images, engine.synth;"
        f"print([m for m in {QT!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_and_the_modules_the_gui_reads_do_not_load_torch() -> None:
    code = (
        "import sys, engine.cli, engine.runfiles, engine.heatmaps; engine.cli.build_parser();"
        "print([m for m in ('torch', 'fastai') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
