#!/usr/bin/env python3
"""Set up the project in ./.venv and run its main job or its tests: `python3 dev.py demo|test|bench [args]`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def setup() -> None:
    """Create the virtual environment and install the project with its test extras (skipped when current)."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this script may meet an older interpreter
        sys.exit(f"pytest-benchflow needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    stamp = VENV / ".installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing pytest-benchflow and its test dependencies into .venv ...", flush=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"], check=True)
    stamp.write_text(wanted)


def demo(extra: list[str]) -> int:
    """MMLU-Pro on the shipped demo set, against the deterministic baseline agent, no network, no Docker."""
    command = [
        str(PYTHON),
        "-m",
        "pytest",
        "--benchflow=mmlu_pro",
        "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent",
        "--benchflow-runner=local",
        "--junitxml=.benchflow/demo-junit.xml",
        "-p",
        "no:cacheprovider",
        "-q",
        "--tb=no",
        "-rN",
        *extra,
    ]
    print("$ " + " ".join(command[2:]), flush=True)
    code = subprocess.run(command, cwd=ROOT).returncode
    # Unresolved categories are failed tests: the demo still ran to completion.
    if code in (0, 1):
        print("\ndemo finished: per-category results above; files under .benchflow/ (JUnit: .benchflow/demo-junit.xml)")
        return 0
    return code


def test(extra: list[str]) -> int:
    """The whole test suite (Docker tests skip without an engine unless BENCHFLOW_REQUIRE_DOCKER=1)."""
    return subprocess.run([str(PYTHON), "-m", "pytest", "-n", "2", *extra], cwd=ROOT).returncode


def bench(extra: list[str]) -> int:
    """The performance benchmarks (docs/performance.md): `python3 dev.py bench [section ...]`."""
    return subprocess.run([str(PYTHON), str(ROOT / "benchmarks" / "run.py"), *extra], cwd=ROOT).returncode


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test", "bench", "setup"):
        print(__doc__)
        return 2
    setup()
    command, extra = sys.argv[1], sys.argv[2:]
    return 0 if command == "setup" else {"demo": demo, "test": test, "bench": bench}[command](extra)


if __name__ == "__main__":
    sys.exit(main())
