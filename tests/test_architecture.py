"""Architecture rules: the engine never imports Qt; torch stays on its side of the line; no import circles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "PyQt5", "PyQt6", "qtpy", "shiboken6", "pyqtgraph", "qimage2ndarray")
HEAVY = ("torch", "torchvision", "fastai", "fastcore")
TORCH_FREE = (
    "engine.core",
    "engine.events",
    "engine.atomic",
    "engine.inputs",
    "engine.weights",
    "engine.options",
    "engine.data",
    "engine.labels",
    "engine.runs",
    "engine.audit",
)
PACKAGES = ("engine", "imgreg_gui")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool) -> list[str]:
    """Absolute names imported by a file (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    pkg = _module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names.append(base)
            names += [f"{base}.{a.name}" for a in node.names]
    return names


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    """Our modules and the modules of ours each imports, counting imports inside functions."""
    mods = _modules()
    return {
        name: {n for n in _imports(p, top_level_only=False) if n in mods and n != name}
        for name, p in mods.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _is_under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_circles_in_the_engine_counting_imports_inside_functions() -> None:
    graph = _graph()
    assert (
        _cycle(
            {n: {m for m in e if m.startswith("engine")} for n, e in graph.items() if n.startswith("engine")}
        )
        is None
    )


def test_no_import_circles_anywhere_counting_imports_inside_functions() -> None:
    assert _cycle(_graph()) is None


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_engine_never_imports_qt() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in (ROOT / "engine").rglob("*.py")
        for name in _imports(p, top_level_only=False)
        if name.split(".")[0] in QT
    ]
    assert bad == []


def test_torch_free_modules_never_import_the_torch_side() -> None:
    bad = [
        f"{name}: {imp}"
        for name, p in _modules().items()
        if _is_under(name, TORCH_FREE)
        for imp in _imports(p, top_level_only=False)
        if imp.split(".")[0] in HEAVY or _is_under(imp, ("engine.learn", "engine.cli"))
    ]
    assert bad == []


def test_cli_imports_the_torch_side_only_inside_commands() -> None:
    bad = [
        f"{name}: {imp}"
        for name, p in _modules().items()
        if _is_under(name, ("engine.cli",))
        for imp in _imports(p, top_level_only=True)
        if imp.split(".")[0] in HEAVY or _is_under(imp, ("engine.learn",))
    ]
    assert bad == []


def test_gui_takes_nothing_from_the_torch_side_or_the_cli() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in (ROOT / "imgreg_gui").rglob("*.py")
        for name in _imports(p, top_level_only=False)
        if name.split(".")[0] in HEAVY or _is_under(name, ("engine.learn", "engine.cli"))
    ]
    assert bad == []


def test_importing_the_engine_core_loads_no_qt() -> None:
    code = (
        "import sys, engine.core, engine.cli, engine.data, engine.labels.store, engine.data.images, "
        f"engine.data.synth; print([m for m in {QT!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_and_the_modules_the_gui_reads_do_not_load_torch() -> None:
    code = (
        "import sys, engine.cli, engine.runs.files, engine.runs.heatmaps, engine.labels.export; "
        "engine.cli.build_parser(); print([m for m in ('torch', 'fastai') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _gui_imports(prefix: str) -> dict[str, list[str]]:
    """Each app module under ``prefix`` and the names it imports (inside functions too)."""
    return {
        name: _imports(p, top_level_only=False)
        for name, p in _modules().items()
        if _is_under(name, (prefix,))
    }


def test_the_app_model_uses_no_widgets() -> None:
    bad = [
        f"{name}: {imp}"
        for name, imps in _gui_imports("imgreg_gui.model").items()
        for imp in imps
        if _is_under(imp, ("PySide6.QtWidgets",))
        or (imp.startswith("imgreg_gui.") and not _is_under(imp, ("imgreg_gui.model", "imgreg_gui.settings")))
    ]
    assert bad == []


def test_only_the_window_imports_the_training_package() -> None:
    bad = [
        f"{name}: {imp}"
        for name, imps in _gui_imports("imgreg_gui").items()
        if not _is_under(name, ("imgreg_gui.training", "imgreg_gui.main_window"))
        for imp in imps
        if _is_under(imp, ("imgreg_gui.training",))
    ]
    assert bad == []


def test_jobs_import_no_panels() -> None:
    allowed = ("imgreg_gui.jobs", "imgreg_gui.model", "imgreg_gui.settings")
    bad = [
        f"{name}: {imp}"
        for name, imps in _gui_imports("imgreg_gui.jobs").items()
        for imp in imps
        if imp.startswith("imgreg_gui.") and not _is_under(imp, allowed)
    ]
    assert bad == []


def test_the_child_launcher_runs_without_qt() -> None:
    code = f"import sys, imgreg_gui.jobs.launch; print([m for m in {QT!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
