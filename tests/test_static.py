"""Static checks run with the tests: ruff (lint and format) and mypy, so the README's one test command covers them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINTED = ["engine", "imgreg_gui", "tests", "benchmarks"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing() -> None:
    out = _run("ruff", "check", *LINTED)
    assert out.returncode == 0, out.stdout + out.stderr


def test_code_is_ruff_formatted() -> None:
    out = _run("ruff", "format", "--check", *LINTED)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ci_runs_the_readme_commands() -> None:
    cmds = subprocess.run(
        ["awk", r"/^Install and run the tests/{f=1} f&&/^```bash/{g=1;next} g&&/^```/{exit} g", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert any("pip install" in c and ".[test]" in c for c in cmds)
    assert any("pytest" in c for c in cmds)
    assert "README.md" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
