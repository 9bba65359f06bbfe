"""Sandboxes: a live container (or another isolated place) that an agent's commands run in.

A bench's in-process entrance opens one from its task environment::

    with env.sandbox("benchflow/base:bookworm", cpus=1, memory_mb=2048) as box:
        result = box.exec("python3 -V", timeout=30)

Sandboxes come from a *provider* chosen with ``--benchflow-sandbox`` (default ``docker``). This module
is the contract both sides share: what a bench may call (``Sandbox``) and what a provider implements
(``SandboxProvider``). Providers live in their own modules.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ..errors import InfraError, TaskError

if TYPE_CHECKING:
    from ..configuration import Setting

__all__ = [
    "DEFAULT_EXEC_OUTPUT_CAP",
    "DEFAULT_READ_CAP",
    "ExecResult",
    "Sandbox",
    "SandboxError",
    "SandboxProvider",
    "SandboxSpec",
    "SandboxSpecError",
    "TaskSandboxes",
]

#: Bytes of stdout and of stderr an ``exec`` keeps by default (head and tail; the rest is cut and marked).
DEFAULT_EXEC_OUTPUT_CAP = 1024 * 1024
#: Bytes ``read_file`` returns at most by default.
DEFAULT_READ_CAP = 16 * 1024 * 1024

Network = Literal["none", "bridge"]


class SandboxError(InfraError):
    """A sandbox could not be opened or stopped answering: an infrastructure fault (``infra``, rerun by
    default), not the agent's."""


class SandboxSpecError(TaskError):
    """A bench asked for a sandbox that cannot be (no image, an unknown network, a negative limit): the
    bench's fault (``bench``), not rerun."""


@dataclass(frozen=True)
class ExecResult:
    """What one command left: its exit code and output (bytes decoded as UTF-8, invalid bytes replaced)."""

    exit_code: int
    stdout: str
    stderr: str
    #: The command ran past its timeout; its whole process tree was killed (``exit_code`` is then 124).
    timed_out: bool = False
    #: Output beyond the cap was cut (the kept part says where).
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class SandboxSpec:
    """What a bench asks for. Safe by default: no network, no host mounts, bounded resources."""

    image: str
    cpus: float = 1.0
    memory_mb: int = 2048
    pids: int = 512
    network: Network = "none"
    workdir: str = "/"
    env: Mapping[str, str] = field(default_factory=dict)
    #: Largest file a command may write, in MiB (a write past it fails with "File too large").
    max_file_mb: int = 1024
    #: Sandboxes of one group (a task's) share one engine and one of its slots: a task that opens a
    #: verifier sandbox next to its agent's never waits for a slot it already holds.
    group: str = ""
    #: Labels of the task the sandbox belongs to (added to the provider's own, values made safe by it).
    labels: Mapping[str, str] = field(default_factory=dict)


class Sandbox(ABC):
    """One live sandbox. Every method may raise ``SandboxError`` when the sandbox is gone."""

    #: Where the sandbox runs (an engine URL without credentials, a node id), for the task's record.
    engine: str | None = None

    @abstractmethod
    def exec(
        self,
        command: str | list[str],
        *,
        timeout: float | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stdin: str | bytes | None = None,
        output_cap: int = DEFAULT_EXEC_OUTPUT_CAP,
    ) -> ExecResult:
        """Run ``command`` (a string runs under ``sh -c``) and wait for it, at most ``timeout`` seconds."""

    @abstractmethod
    def write_file(self, path: str, data: str | bytes) -> None:
        """Create or replace the file ``path`` (parents created) with ``data``."""

    @abstractmethod
    def read_file(self, path: str, max_bytes: int = DEFAULT_READ_CAP) -> bytes:
        """The first ``max_bytes`` of the regular file ``path``; ``SandboxError`` if there is none."""

    @abstractmethod
    def upload(self, local_dir: str | Path, remote_dir: str) -> None:
        """Copy the host directory ``local_dir`` to ``remote_dir`` inside the sandbox."""

    @abstractmethod
    def download(self, remote_dir: str, local_dir: str | Path) -> None:
        """Copy ``remote_dir`` out to ``local_dir`` through the same safe extraction as a task's results."""

    @abstractmethod
    def snapshot(self) -> Sandbox:
        """A new sandbox started from this one's file system, with none of its processes running."""

    @abstractmethod
    def close(self) -> None:
        """Stop and remove the sandbox. Idempotent; never raises for a sandbox already gone."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SandboxProvider(ABC):
    """Opens sandboxes for a session; registered under the ``pytest_benchflow.sandboxes`` entry point group."""

    #: The name chosen with ``--benchflow-sandbox``.
    name: str = ""
    #: The settings' values the session made this provider from (None: made otherwise), so that a runner
    #: running tasks in other processes makes the same provider there (the Ray runner, on each node).
    made_from: Mapping[str, str] | None = None

    @classmethod
    def options(cls) -> list[Setting]:
        """The settings it reads, registered as ini options (and flags) like a runner's (none by default)."""
        return []

    @classmethod
    def from_options(cls, values: Mapping[str, str], run_id: str) -> SandboxProvider:
        """A provider for run ``run_id`` from its settings' ``values``; ``RunnerError`` (a usage error) when wrong."""
        return cls()

    @abstractmethod
    def open(self, spec: SandboxSpec) -> Sandbox:
        """Start a sandbox as ``spec`` asks; ``SandboxError`` (with a line a user can act on) if it cannot."""

    @abstractmethod
    def close_all(self) -> None:
        """Remove every sandbox this provider opened and has not closed (end of session, Ctrl-C, SIGTERM)."""

    def sweep(self) -> None:  # noqa: B027 - optional: a provider whose sandboxes die with its process has nothing to do
        """In the session's controller at its end: remove whatever any process of the run left (a crashed
        xdist worker's sandboxes), found by the run's labels."""


class TaskSandboxes:
    """The sandboxes one task opened (``env.sandbox(...)``), labelled with the task and closed when it ends."""

    def __init__(self, provider: SandboxProvider | None, labels: Mapping[str, str], group: str) -> None:
        self.provider = provider
        self.labels = dict(labels)
        self.group = group
        self._open: list[Sandbox] = []
        self._lock = threading.Lock()
        self._closed = False

    def open(self, image: str, **settings: Any) -> Sandbox:
        """A new sandbox of ``image`` (``settings``: the fields of :class:`SandboxSpec`)."""
        if self.provider is None:
            raise SandboxError(
                "this task has no sandbox provider: sandboxes open in tasks run by pytest --benchflow "
                "(--benchflow-sandbox chooses the provider), or give TaskSpec(sandbox_provider=...)"
            )
        allowed = set(SandboxSpec.__dataclass_fields__) - {"image", "labels", "group"}
        unknown = sorted(set(settings) - allowed)
        if unknown:
            raise SandboxError(f"env.sandbox(): unknown setting {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
        spec = SandboxSpec(image, labels=self.labels, group=self.group, **settings)
        with self._lock:
            if self._closed:
                raise SandboxError("the task is over: no sandbox opens for it any more")
        sandbox = self.provider.open(spec)
        with self._lock:
            self._open.append(sandbox)
            late = self._closed
        if late:  # the task ended (timed out) while this one was opening
            sandbox.close()
            raise SandboxError("the task is over: no sandbox opens for it any more")
        return sandbox

    def close(self) -> None:
        """Close every sandbox the task left open (a bench that forgot, a timed-out task); never raises."""
        with self._lock:
            self._closed = True
            left, self._open = self._open, []
        for sandbox in left:
            try:
                sandbox.close()
            except Exception:  # the provider's own sweep removes what this could not
                pass
