"""``pytest-benchflow build [PATH]``: a bench's image, built offline.

What goes into the build context is only ``wheels/`` and the project's ``Dockerfile``:

- the bench's wheel, built on this machine from its project directory;
- pytest-benchflow's wheel: ``BENCHFLOW_WHEEL`` when set, else built from the checkout it runs from, else
  re-packed from the installed distribution (it is not on a package index);
- every dependency, downloaded as wheels for the **base image's** Python and platform (asked of the image by
  running ``python3`` in it, never assumed equal to this machine's), from the package index pip is configured for.

The Dockerfile installs from there with ``pip install --no-index --find-links /tmp/wheels`` (the scaffold's
does), so the image build itself fetches nothing. The base image is the Dockerfile's ``ARG BASE_IMAGE``
default unless ``--base-image`` (or ``BENCHFLOW_BASE_IMAGE``) names another; it is pulled only when the
engine lacks it, and a failed pull says to give a local one.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import BenchflowError, first_line
from ..runners.engines import remove_failed_build_layers
from .project import BenchProject

__all__ = ["MIN_PYTHON", "BuildError", "BuiltImage", "build_image", "image_python"]

#: The oldest Python pytest-benchflow runs on (pyproject.toml's requires-python).
MIN_PYTHON = (3, 10)
# Wheels built here get fixed timestamps: the same sources give the same bytes, so the engine's layer cache holds.
_EPOCH = "315532800"
_PROBE = (
    "import platform, sys; "
    "print('%d.%d' % sys.version_info[:2], platform.machine(), *(platform.libc_ver()[1].split('.')[:2] or ['']))"
)


class BuildError(BenchflowError):
    """The image cannot be built; the message says why, on one line."""


@dataclass(frozen=True)
class BuiltImage:
    image: str
    base: str
    python: str


Log = Callable[[str], None]


def build_image(
    project: BenchProject,
    *,
    base_image: str | None = None,
    tag: str | None = None,
    dockerfile: Path | None = None,
    log: Log = lambda line: None,
) -> BuiltImage:
    """Build the image of ``project``'s bench; what was built.

    Raises:
        BuildError: no Dockerfile or image name, no engine, a base image missing or with a Python too old,
            a bench that does not install, dependencies not available as wheels, a failed Docker build.
    """
    if project.directory is None:
        raise BuildError(f"{project.name}: give the bench's project directory (with its Dockerfile) to build it")
    dockerfile = dockerfile or project.dockerfile
    if dockerfile is None or not dockerfile.is_file():
        raise BuildError(
            f"{project.directory} has no Dockerfile: only container benches have an image "
            "(`pytest-benchflow new NAME --container` writes one)"
        )
    image = tag or _image_name(project)
    client = _engine()
    base = base_image or os.environ.get("BENCHFLOW_BASE_IMAGE") or _default_base(dockerfile)
    _ensure_base(client, base, log)
    python, platforms = image_python(client, base)
    log(f"base image {base}: Python {python} ({', '.join(platforms[:1])})")
    with tempfile.TemporaryDirectory(prefix="benchflow-build-") as ctx:
        wheels = Path(ctx) / "wheels"
        wheels.mkdir()
        _bench_wheel(project.directory, wheels, log)
        if _dist_name(project.directory) != "pytest-benchflow":
            benchflow_wheel(wheels, log)
        _dependencies(wheels, python, platforms, log)
        shutil.copyfile(dockerfile, Path(ctx) / "Dockerfile")
        log(f"building {image} on {base}")
        _docker_build(client, ctx, image, base)
    return BuiltImage(image, base, python)


def _image_name(project: BenchProject) -> str:
    try:
        image = project.cls().get_image_name()
    except Exception as e:
        raise BuildError(f"{project.name}: get_image_name raised {type(e).__name__}: {e}") from None
    if not image:
        raise BuildError(f"{project.name}: get_image_name returns no image name: give it one (or --tag)")
    return image


def _engine() -> Any:
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except (docker.errors.DockerException, OSError) as e:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        raise BuildError(
            f"no Docker engine answers at {where}: start one, or set DOCKER_HOST ({first_line(str(e))})"
        ) from None


def _default_base(dockerfile: Path) -> str:
    found = re.search(r"^\s*ARG\s+BASE_IMAGE\s*=\s*(\S+)", dockerfile.read_text(encoding="utf-8"), re.M)
    if found is None:
        raise BuildError(f"{dockerfile} has no `ARG BASE_IMAGE=…` default: give --base-image")
    return found[1]


def _ensure_base(client: Any, base: str, log: Log) -> None:
    import docker.errors

    try:
        client.images.get(base)
        return
    except docker.errors.ImageNotFound:
        pass
    log(f"base image {base} is not on the engine: pulling it")
    try:
        client.images.pull(base)
    except docker.errors.DockerException as e:
        raise BuildError(
            f"base image {base} is not on the engine and cannot be pulled ({first_line(str(e))}): give --base-image "
            "of a local image with python3 >= 3.10 (scripts/build-images.sh builds benchflow/base:bookworm offline)"
        ) from None


def image_python(client: Any, base: str) -> tuple[str, list[str]]:
    """The ``X.Y`` of ``base``'s ``python3`` and the wheel platform tags it accepts (best first).

    Raises:
        BuildError: no ``python3`` in the image, or one older than :data:`MIN_PYTHON`.
    """
    import docker.errors

    try:
        out = client.containers.run(
            base, entrypoint=["python3", "-c", _PROBE], network_mode="none", remove=True, stderr=True
        )
    except docker.errors.DockerException as e:
        raise BuildError(f"base image {base} cannot run python3: {first_line(str(e))}") from None
    fields = out.decode(errors="replace").split()
    if len(fields) < 2 or not re.fullmatch(r"\d+\.\d+", fields[0]):
        raise BuildError(f"base image {base}: python3 did not report its version (it printed {out[:80]!r})")
    version = tuple(int(p) for p in fields[0].split("."))
    if version < MIN_PYTHON:
        raise BuildError(
            f"base image {base} has Python {fields[0]}; pytest-benchflow needs {'.'.join(map(str, MIN_PYTHON))} "
            "or later: give --base-image with a newer python3"
        )
    return fields[0], _platforms(fields[1], fields[2:])


def _platforms(machine: str, glibc: list[str]) -> list[str]:
    """manylinux tags the image's glibc accepts, newest first (none for a musl image: pure wheels only)."""
    if len(glibc) < 2 or not all(p.isdigit() for p in glibc):
        return []
    minor = int(glibc[1])
    tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{machine}", f"linux_{machine}"]


def _pip(*args: str, what: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": _EPOCH},
    )
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines
        raise BuildError(f"{what}: {first_line(errors[-1] if errors else f'pip exited {done.returncode}').strip()}")


def _wheel(directory: Path, wheels: Path, what: str) -> None:
    # One build of a directory at a time on this machine: setuptools builds in the project's own build/.
    with open(Path(tempfile.gettempdir()) / "benchflow-wheel-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _pip("wheel", "--no-deps", "-w", str(wheels), str(directory), what=what)


def _bench_wheel(directory: Path, wheels: Path, log: Log) -> None:
    log(f"building the wheel of {directory}")
    _wheel(directory, wheels, f"the bench at {directory} does not install")


def _dist_name(directory: Path) -> str:
    found = re.search(r'^\s*name\s*=\s*"([^"]+)"', (directory / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    return re.sub(r"[-_.]+", "-", found[1]).lower() if found else ""


def benchflow_wheel(wheels: Path, log: Log = lambda line: None) -> None:
    """pytest-benchflow's wheel into ``wheels``: ``BENCHFLOW_WHEEL``, else built from the checkout this module
    runs from, else re-packed from the installed distribution."""
    given = os.environ.get("BENCHFLOW_WHEEL")
    if given:
        if not Path(given).is_file():
            raise BuildError(f"BENCHFLOW_WHEEL={given}: no such file")
        shutil.copy(given, wheels)
        return
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and _dist_name(checkout) == "pytest-benchflow":
        log(f"building pytest-benchflow's wheel from {checkout}")
        _wheel(checkout, wheels, "pytest-benchflow's wheel does not build")
        return
    log("re-packing the installed pytest-benchflow as a wheel")
    repack_installed(wheels)


def repack_installed(wheels: Path) -> Path:
    """The installed pytest-benchflow as a wheel in ``wheels`` (its files, its metadata, a fresh RECORD)."""
    dist = metadata.distribution("pytest-benchflow")
    files = [f for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in f.parts]
    info = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    if info is None or not any(str(f) == "pytest_benchflow/__init__.py" for f in files):
        raise BuildError("cannot find the installed pytest-benchflow's files: set BENCHFLOW_WHEEL to its wheel")
    skip = {f"{info}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    wheel = wheels / f"pytest_benchflow-{dist.version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as out:
        for f in sorted(files, key=str):
            name = str(f).replace(os.sep, "/")
            if name in skip:
                continue
            data = Path(str(f.locate())).read_bytes()
            out.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        out.writestr(zipfile.ZipInfo(f"{info}/RECORD", (1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return wheel


def _dependencies(wheels: Path, python: str, platforms: list[str], log: Log) -> None:
    log(f"downloading dependencies as wheels for Python {python}")
    tags = [arg for tag in platforms for arg in ("--platform", tag)]
    built = [str(w) for w in sorted(wheels.glob("*.whl"))]
    _pip(
        "download", "-d", str(wheels), "--find-links", str(wheels), "--only-binary=:all:",
        "--python-version", python, *tags, *built,
        what=f"the dependencies are not all available as wheels for Python {python}",
    )  # fmt: skip


def _docker_build(client: Any, ctx: str, image: str, base: str) -> None:
    import docker.errors

    output: list[str] = []
    try:
        stream = client.api.build(
            path=ctx, tag=image, buildargs={"BASE_IMAGE": base}, rm=True, forcerm=True, decode=True
        )
        for chunk in stream:
            if "error" in chunk:
                tail = " | ".join(line for line in output[-3:] if line)
                remove_failed_build_layers(client.api, output)
                raise BuildError(
                    f"the image {image} did not build: {first_line(chunk['error'])}"
                    + (f" (after: {tail})" if tail else "")
                )
            output.extend(line.strip() for line in str(chunk.get("stream", "")).splitlines())
    except docker.errors.DockerException as e:
        raise BuildError(f"the image {image} did not build: {first_line(str(e))}") from None
