"""Host files a task reads, packed for its container: ``BaseBench.get_input_files`` as every container runner uses it.

A container runner calls :func:`task_inputs` before it creates the task's container, gives the
container :attr:`TaskInputs.environment` (each file argument naming its copy), and copies
:meth:`TaskInputs.archive` in through its platform's API before the container starts (the Docker
runner: ``put_archive`` on the created container). Nothing is bind-mounted, so remote engines and
cluster runners work the same way.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..bench import BaseBench
from ..envnumbers import env_number
from ..errors import TaskError
from .base import TaskSpec

__all__ = ["INPUTS_DIR", "MAX_INPUT_BYTES", "TaskInputs", "task_inputs"]

#: Where the files are in the container: ``<INPUTS_DIR>/<argument>/<file name>``.
INPUTS_DIR = "/benchflow/inputs"
#: Most bytes of input files one task may copy into its container (``BENCHFLOW_MAX_INPUT_BYTES``).
MAX_INPUT_BYTES = 1024**3
# Files are read in pieces (a data set of gigabytes is never read whole); a secret spanning two pieces is found
# because each piece is searched together with the tail of the one before.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One host file and where its copy is in the container."""

    host: Path
    container: str
    size: int


@dataclass
class TaskInputs:
    """A task's input files: the environment naming their copies, and the files themselves."""

    files: list[InputFile] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def archive(self) -> Iterator[IO[bytes]]:
        """A tar stream of the files at their container paths (relative to ``/``), readable by any user.

        Spooled to a temporary file: an input of a gigabyte is not held in memory."""
        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w") as tar:
                for directory in _parents([f.container for f in self.files]):
                    info = tarfile.TarInfo(directory.lstrip("/"))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                for item in self.files:
                    info = tarfile.TarInfo(item.container.lstrip("/"))
                    info.size, info.mode = item.size, 0o644
                    with item.host.open("rb") as source:
                        try:
                            tar.addfile(info, source)  # reads exactly info.size bytes
                        except OSError as e:
                            raise TaskError(f"input file {item.host} changed while it was copied: {e}") from None
            spool.seek(0)
            yield spool


def _parents(paths: Sequence[str]) -> list[str]:
    found: set[str] = set()
    for path in paths:
        parent = Path(path).parent
        while str(parent) != "/":
            found.add(str(parent))
            parent = parent.parent
    return sorted(found)


def max_input_bytes() -> int:
    try:
        return env_number("BENCHFLOW_MAX_INPUT_BYTES", MAX_INPUT_BYTES, minimum=1)
    except ValueError as e:
        raise TaskError(str(e)) from None


def task_inputs(bench: BaseBench, spec: TaskSpec) -> TaskInputs:
    """The input files ``bench`` declares for ``spec``'s task, checked.

    Raises:
        TaskError: one line naming the argument or file: ``get_input_files`` raised or returned something
            else than ``{name: path or paths}``; a file missing, not a regular file, holding a secret
            argument's value; all of them more than ``BENCHFLOW_MAX_INPUT_BYTES``.
    """
    declared = _declared(bench, spec)
    inputs, total, cap = TaskInputs(), 0, max_input_bytes()
    for name, given in declared.items():
        paths = [given] if isinstance(given, (str, os.PathLike)) else list(given)
        copies = []
        for index, raw in enumerate(paths):
            host = _regular_file(name, raw)
            container = (
                f"{INPUTS_DIR}/{name}/{index}/{host.name}" if len(paths) > 1 else f"{INPUTS_DIR}/{name}/{host.name}"
            )
            size = host.stat().st_size
            total += size
            if total > cap:
                raise TaskError(
                    f"task {spec.task_id!r}: input files add up to more than {cap:,} bytes at {name}={host} "
                    "(BENCHFLOW_MAX_INPUT_BYTES raises the cap)"
                )
            _refuse_secrets(name, host, spec.secret_values)
            inputs.files.append(InputFile(host, container, size))
            copies.append(container)
        inputs.environment[name] = ":".join(copies)
    return inputs


def _declared(bench: BaseBench, spec: TaskSpec) -> Mapping[str, Any]:
    bench_name = type(bench).__name__
    try:
        declared = bench.get_input_files(spec.task_id)
    except Exception as e:
        raise TaskError(f"{bench_name}.get_input_files({spec.task_id!r}) raised {type(e).__name__}: {e}") from e
    if not isinstance(declared, Mapping):
        raise TaskError(
            f"{bench_name}.get_input_files returned {type(declared).__name__}: expected {{argument name: path(s)}}"
        )
    for name, given in declared.items():
        paths = [given] if isinstance(given, (str, os.PathLike)) else given
        if not isinstance(name, str) or not name.isidentifier():
            raise TaskError(f"{bench_name}.get_input_files: {name!r} is not an argument name")
        if not isinstance(paths, Sequence) or not paths or not all(isinstance(p, (str, os.PathLike)) for p in paths):
            raise TaskError(f"{bench_name}.get_input_files: {name} must be a path or a non-empty list of paths")
    return declared


def _regular_file(name: str, raw: str | os.PathLike[str]) -> Path:
    path = Path(raw).expanduser()
    if not path.exists():
        raise TaskError(f"input file {name}={path}: no such file on this machine")
    if not path.resolve().is_file():
        raise TaskError(f"input file {name}={path}: not a regular file (give a file, not a directory or device)")
    return path.resolve()


def _refuse_secrets(name: str, path: Path, secrets: Sequence[str]) -> None:
    """A file holding a secret argument's value would carry it into the container (and its logs): refuse it."""
    needles = [s.encode() for s in secrets if len(s) >= 4]
    if not needles:
        return
    overlap = max(map(len, needles)) - 1
    tail = b""
    with path.open("rb") as f:
        while piece := f.read(_CHUNK):
            window = tail + piece
            if any(n in window for n in needles):
                raise TaskError(
                    f"input file {name}={path} holds the value of a secret argument: not copied into the container"
                )
            tail = window[-overlap:] if overlap else b""
