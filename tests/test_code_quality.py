"""The package type-checks under mypy --strict and passes ruff, as CI requires."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True)


def test_mypy_strict() -> None:
    result = run("mypy", "pytest_benchflow")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_and_format() -> None:
    paths = ["pytest_benchflow", "example_bench", "tests", "perf", "dev.py"]
    lint = run("ruff", "check", *paths)
    assert lint.returncode == 0, lint.stdout
    fmt = run("ruff", "format", "--check", *paths)
    assert fmt.returncode == 0, fmt.stdout
