"""The published BenchFlow SDK 0.1.13, installed from PyPI into its own virtual environment for interop tests."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
LEGACY_VENV = CACHE / "benchflow-0.1.13"
# benchflow 0.1.13 pulls in datasets, openai and ruff for modules these tests never import.
LEGACY_REQUIREMENTS = ["benchflow==0.1.13", "fastapi", "uvicorn", "requests", "pydantic>=2", "pyyaml", "docker"]


def legacy_python() -> Path:
    """The interpreter of the 0.1.13 environment, created on first use (safe under xdist)."""
    python = LEGACY_VENV / "bin" / "python"
    CACHE.mkdir(exist_ok=True)
    with open(CACHE / "legacy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (LEGACY_VENV / ".ready").exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(LEGACY_VENV)
            pip = [str(python), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, "--no-deps", LEGACY_REQUIREMENTS[0]], check=True)
            subprocess.run([*pip, *LEGACY_REQUIREMENTS[1:]], check=True)
            (LEGACY_VENV / ".ready").write_text(sys.version)
    return python


def legacy_wheel(directory: Path) -> Path:
    """The published 0.1.13 wheel itself, downloaded into ``directory`` (for container images)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(directory), "benchflow==0.1.13"],
        check=True,
    )
    return next(directory.glob("benchflow-0.1.13-*.whl"))
