"""Building the test suite's images on the real engine, offline: project wheels built on the host."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import docker
import docker.errors
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DEPS = ["requests", "pydantic>=2.5", "PyYAML>=6"]


def engine() -> docker.DockerClient:
    """The engine, or a skip — a failure when ``BENCHFLOW_REQUIRE_DOCKER=1`` (as in CI)."""
    try:
        client = docker.from_env()
        client.ping()
        return client
    except docker.errors.DockerException as e:
        _unavailable(f"no Docker engine answers ({type(e).__name__})")


def _unavailable(reason: str) -> NoReturn:
    """Skip with one line — a failure where the container tests are mandatory (``BENCHFLOW_REQUIRE_DOCKER=1``, CI)."""
    if os.environ.get("BENCHFLOW_REQUIRE_DOCKER") == "1":
        pytest.fail(f"BENCHFLOW_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


def base_image(client: docker.DockerClient) -> str:
    for name in (os.environ.get("BENCHFLOW_BASE_IMAGE"), "benchflow/base:bookworm", "python:3.11-slim"):
        if name:
            try:
                client.images.get(name)
                return name
            except docker.errors.ImageNotFound:
                pass
    _unavailable("no Python base image on the engine: `python3 dev.py test` builds it (scripts/build-images.sh)")


def wheels(directory: Path, *requirements: str) -> None:
    """The project's wheel and its runtime dependencies (plus ``requirements``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    # One build at a time: setuptools builds in the checkout's build/, and two images may be built at once.
    with open(Path(tempfile.gettempdir()) / "benchflow-wheel-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(directory), str(ROOT)], check=True)
    subprocess.run([*pip, "download", "-q", "-d", str(directory), *RUNTIME_DEPS, *requirements], check=True)


def build(
    client: docker.DockerClient,
    tag: str,
    files: dict[str, str],
    wheel_requirements: list[str] | None = None,
    extra: dict[str, Path] | None = None,
) -> str:
    """Build ``tag`` from a Dockerfile and files (once per session, safe under xdist)."""
    lock_path = Path(tempfile.gettempdir()) / f"benchflow-image-{tag.replace('/', '_').replace(':', '_')}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = Path(str(lock_path) + ".built")
        # Once per test session: xdist workers of one run share PYTEST_XDIST_TESTRUNUID.
        session = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
        if stamp.exists() and stamp.read_text() == session:
            return tag
        with tempfile.TemporaryDirectory() as ctx:
            for name, text in files.items():
                (Path(ctx) / name).write_text(text)
            if wheel_requirements is not None:
                wheels(Path(ctx) / "wheels", *wheel_requirements)
            for name, source in (extra or {}).items():
                (Path(ctx) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(ctx) / name).write_bytes(source.read_bytes())
            client.images.build(path=ctx, tag=tag, buildargs={"BASE_IMAGE": base_image(client)}, rm=True)
        stamp.write_text(session)
    return tag
