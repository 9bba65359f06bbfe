#!/usr/bin/env python3
"""Set up the project in ./.venv and run its main job or its tests: `python3 dev.py demo|test|bench [args]`."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
# What each command needs installed: the demo only the package, the tests and performance benchmarks also their tools.
EXTRAS = {"demo": "", "test": "[test]", "bench": "[test]", "setup": "[test]"}
# Images the container tests build on: the first one present is used (tests/images.py).
BASE_IMAGES = ("benchflow/base:bookworm", "python:3.11-slim")


def _quiet(command: list[str], what: str) -> None:
    """Run ``command`` showing nothing unless it fails (pip's notices are not the user's business)."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        sys.exit(f"dev.py: {what} failed (output above)")


def setup(extras: str) -> None:
    """Create the virtual environment and install the project with ``extras`` (skipped when current)."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this script may meet an older interpreter
        sys.exit(f"pytest-benchflow needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    # The test install is a superset of the demo's: either one serves the demo.
    stamps = [VENV / ".installed[test]"] + ([VENV / ".installed"] if not extras else [])
    if PYTHON.exists() and any(s.exists() and s.read_text() == wanted for s in stamps):
        return
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        import venv  # only here: every later run skips its imports

        venv.EnvBuilder(with_pip=False).create(VENV)
    print(f"installing pytest-benchflow{extras} into .venv ...", flush=True)
    pip = [*_pip(needs_own=bool(extras)), "install", "-q", "--disable-pip-version-check", "--no-input"]
    _quiet([*pip, "-e", f"{ROOT}{extras}"], "pip install")
    stamps[0 if extras else -1].write_text(wanted)


def _pip(needs_own: bool) -> list[str]:
    """How to run pip on .venv.

    The venv is created without pip: bootstrapping it (ensurepip) costs a first demo ~4 s of CPU
    and installs nothing the demo uses. This interpreter's pip (22.3 or newer) installs into the
    venv with ``--python``. The tests and benchmarks run pip from the venv (they build wheels), so
    for them, or where no usable pip is at hand, the venv gets its own.
    """
    if subprocess.run([str(PYTHON), "-c", "import pip"], capture_output=True).returncode == 0:
        return [str(PYTHON), "-m", "pip"]
    if not needs_own and _pip_version() >= (22, 3):
        return [sys.executable, "-m", "pip", "--python", str(PYTHON)]
    _quiet([str(PYTHON), "-m", "ensurepip", "--default-pip"], "installing pip into .venv")
    return [str(PYTHON), "-m", "pip"]


def _pip_version() -> tuple[int, ...]:
    """This interpreter's pip version ((0,) without pip)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("pip")
    except PackageNotFoundError:
        return (0,)
    return tuple(int(part) for part in found.split(".")[:2] if part.isdigit())


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


def _engine_answers() -> bool:
    probe = "import docker; docker.from_env(timeout=10).ping()"
    return subprocess.run([str(PYTHON), "-c", probe], capture_output=True).returncode == 0


def _has_image(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def ensure_images() -> None:
    """Build the container tests' base image on first use, where a Docker engine answers."""
    if not _engine_answers():
        print("no Docker engine answers: the container tests will be skipped", flush=True)
        return
    if os.environ.get("BENCHFLOW_BASE_IMAGE") or any(map(_has_image, BASE_IMAGES)) or not shutil.which("docker"):
        return
    print("Docker engine found but no base image: building it with scripts/build-images.sh (once) ...", flush=True)
    env = {**os.environ, "PYTHON": str(PYTHON)}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "build-images.sh")], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"image build failed, the container tests will be skipped:\n{done.stderr.strip()}", flush=True)


def test(extra: list[str]) -> int:
    """The whole test suite (Docker tests skip without an engine unless BENCHFLOW_REQUIRE_DOCKER=1)."""
    ensure_images()
    if os.environ.get("BENCHFLOW_TEST_EXTRA_ENGINES") != "1":
        # pytest lists skip reasons only when asked: say here the one thing a user may want to turn on.
        print("tests that start Docker engines of their own skip: BENCHFLOW_TEST_EXTRA_ENGINES=1 runs them", flush=True)
    return subprocess.run([str(PYTHON), "-m", "pytest", "-n", "2", "--dist", "loadgroup", *extra], cwd=ROOT).returncode


def bench(extra: list[str]) -> int:
    """The performance benchmarks (docs/performance.md): `python3 dev.py bench [section ...]`."""
    return subprocess.run([str(PYTHON), str(ROOT / "perf" / "run.py"), *extra], cwd=ROOT).returncode


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in EXTRAS:
        print(__doc__)
        return 2
    command, extra = sys.argv[1], sys.argv[2:]
    setup(EXTRAS[command])
    return 0 if command == "setup" else {"demo": demo, "test": test, "bench": bench}[command](extra)


if __name__ == "__main__":
    sys.exit(main())
