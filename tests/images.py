"""Building the test suite's images on the real engine, offline: project wheels built on the host."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import docker
import docker.errors
import docker.models.images
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


#: Label holding the fingerprint of what a test image was built from (tests/images.py).
INPUTS_LABEL = "benchflow.test.inputs"
# What goes into the project's wheel (pyproject.toml's packages and package data).
_PROJECT = ("pyproject.toml", "pytest_benchflow", "example_bench")


def _project_files() -> list[Path]:
    found = []
    for name in _PROJECT:
        top = ROOT / name
        for path in [top] if top.is_file() else top.rglob("*"):
            relative = path.relative_to(ROOT).parts
            # Caches and build directories (scripts/build-images.sh puts wheels in .build) are not inputs.
            if path.is_file() and not any(p == "__pycache__" or p.startswith(".") for p in relative):
                found.append(path)
    return sorted(found)


def _bases(client: docker.DockerClient, dockerfile: str) -> list[str]:
    """The ids of the images the Dockerfile starts from (a base rebuilt means this one must be too)."""
    names = [line.split()[1] for line in dockerfile.splitlines() if line.strip().upper().startswith("FROM ")]
    return [client.images.get(n.replace("${BASE_IMAGE}", base_image(client))).id for n in names]


def fingerprint(
    client: docker.DockerClient, files: dict[str, str], wheel_requirements: list[str] | None, extra: dict[str, Path]
) -> str:
    """A digest of everything an image is built from: its files, its base images, and the project's sources."""
    digest = hashlib.sha256()

    def add(name: str, data: bytes) -> None:
        digest.update(f"{name}\0{len(data)}\0".encode() + data)

    for name, text in sorted(files.items()):
        add(name, text.encode())
    for name, source in sorted(extra.items()):
        add(name, source.read_bytes())
    for base in _bases(client, files.get("Dockerfile", "")):
        add("FROM", base.encode())
    if wheel_requirements is not None:
        add("requirements", json.dumps([*RUNTIME_DEPS, *wheel_requirements]).encode())
        for path in _project_files():
            add(str(path.relative_to(ROOT)), path.read_bytes())
    return digest.hexdigest()


def build(
    client: docker.DockerClient,
    tag: str,
    files: dict[str, str],
    wheel_requirements: list[str] | None = None,
    extra: dict[str, Path] | None = None,
) -> str:
    """Build ``tag`` from a Dockerfile and files, unless an image of that tag was built from the same
    inputs already (safe under xdist). The version it replaces is removed: no run leaves dangling images."""
    lock_path = Path(tempfile.gettempdir()) / f"benchflow-image-{tag.replace('/', '_').replace(':', '_')}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        inputs = fingerprint(client, files, wheel_requirements, extra or {})
        try:
            old: docker.models.images.Image | None = client.images.get(tag)
        except docker.errors.ImageNotFound:
            old = None
        if old is not None and old.labels.get(INPUTS_LABEL) == inputs:
            return tag
        with tempfile.TemporaryDirectory() as ctx:
            for name, text in files.items():
                (Path(ctx) / name).write_text(text)
            if wheel_requirements is not None:
                wheels(Path(ctx) / "wheels", *wheel_requirements)
            for name, source in (extra or {}).items():
                (Path(ctx) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(ctx) / name).write_bytes(source.read_bytes())
            built, _ = client.images.build(
                path=ctx,
                tag=tag,
                buildargs={"BASE_IMAGE": base_image(client)},
                labels={INPUTS_LABEL: inputs},
                rm=True,
            )
        if old is not None and old.id != built.id:
            # Untagged now; still used by a container or another tag, it stays (and is not dangling).
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(old.id)
    return tag


def conformance_image(client: docker.DockerClient) -> str:
    """The image the runner conformance kit runs its tasks in (``pytest_benchflow.testing``), built once per inputs."""
    from pytest_benchflow.testing import conformance_image_files

    return build(client, "benchflow-test/conformance:1", conformance_image_files(base_image(client)))
