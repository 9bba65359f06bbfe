"""Reading a Harbor task directory: ``task.toml`` into a :class:`HarborTask`, with the subset we support.

The format is Harbor's (Terminal-Bench 2.0's harness; ``harbor.models.task.config.TaskConfig``). What we do
with each field is declared once, in :data:`FIELDS`: ``supported`` fields are honoured, ``warned`` ones are
read and ignored with a warning naming them (once per task), ``refused`` values make the task an error.
docs/harbor.md shows the same table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from ..errors import TaskError

__all__ = [
    "FIELDS",
    "SCHEMA_VERSIONS",
    "HarborTask",
    "HarborTaskError",
    "find_tasks",
    "load_task",
]

#: The ``schema_version`` values (``version`` before Harbor renamed it) this reader understands.
SCHEMA_VERSIONS = ("1.0", "1.1")

Support = Literal["supported", "warned", "refused"]

#: Every field of task.toml we know, by dotted name: what we do with it, and a note for the docs.
FIELDS: dict[str, tuple[Support, str]] = {
    "schema_version": ("supported", "1.0 or 1.1 (`version` is read as its old name); any other is an error"),
    "source": ("supported", "metadata, not used"),
    "metadata": ("supported", "metadata, not used"),
    "task": ("supported", "the package's name, description, authors, keywords: metadata, not used"),
    "agent.timeout_sec": ("supported", "the agent loop's time limit (default 600 s); the oracle's too"),
    "agent.user": ("supported", "the user the agent's commands run as"),
    "agent.env": ("supported", "added to the agent's commands' environment"),
    "agent.network_mode": ("warned", "per-phase network: the environment's mode applies"),
    "agent.allowed_hosts": ("warned", "per-phase network: the environment's mode applies"),
    "verifier.timeout_sec": ("supported", "`bash /tests/test.sh`'s time limit (default 600 s)"),
    "verifier.env": ("supported", "the verifier's environment"),
    "verifier.user": ("supported", "the user test.sh runs as"),
    "verifier.environment_mode": (
        "supported",
        '"separate": test.sh runs in a snapshot of the agent\'s file system, none of its processes running',
    ),
    "verifier.network_mode": ("warned", "per-phase network: the environment's mode applies"),
    "verifier.allowed_hosts": ("warned", "per-phase network: the environment's mode applies"),
    "solution.env": ("supported", "the oracle's (`solve.sh`'s) environment"),
    "environment.docker_image": ("supported", "used instead of building environment/Dockerfile"),
    "environment.build_timeout_sec": ("supported", "the image build's time limit (default 600 s)"),
    "environment.cpus": ("supported", "the sandbox's CPUs (default 1)"),
    "environment.memory_mb": ("supported", "the sandbox's memory (default 2048)"),
    "environment.memory": ("supported", 'the old spelling of memory_mb ("4G", "512M")'),
    "environment.network_mode": ("supported", '"no-network" → no network, "public" → bridge; "allowlist" is refused'),
    "environment.allow_internet": ("supported", "false → no network (the old spelling of network_mode)"),
    "environment.env": ("supported", "the sandbox's environment"),
    "environment.storage_mb": ("warned", "no disk quota is set (the sandbox's file-size limit applies)"),
    "environment.storage": ("warned", "no disk quota is set (the sandbox's file-size limit applies)"),
    "environment.gpus": ("refused", "a task asking for GPUs (> 0) is an error; 0 is accepted"),
    "environment.gpu_types": ("warned", "no GPUs"),
    "environment.allowed_hosts": ("refused", "allowlist networking is not supported yet"),
    "environment.mcp_servers": ("warned", "no MCP servers are started"),
    "environment.skills_dir": ("warned", "not copied"),
    "environment.healthcheck": ("warned", "not run"),
}

_DEFAULT_TIMEOUT = 600.0
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class HarborTaskError(TaskError):
    """A Harbor task that cannot run as written: its task.toml, a refused field, a missing file."""


@dataclass(frozen=True)
class HarborTask:
    """One task directory, as much of it as we honour."""

    path: Path
    task_id: str
    instruction: str
    docker_image: str | None = None
    build_timeout_sec: float = _DEFAULT_TIMEOUT
    cpus: float = 1.0
    memory_mb: int = 2048
    network: Literal["none", "bridge"] = "bridge"
    environment_env: dict[str, str] = field(default_factory=dict)
    agent_timeout_sec: float = _DEFAULT_TIMEOUT
    agent_user: str | None = None
    agent_env: dict[str, str] = field(default_factory=dict)
    verifier_timeout_sec: float = _DEFAULT_TIMEOUT
    verifier_user: str | None = None
    verifier_env: dict[str, str] = field(default_factory=dict)
    separate_verifier: bool = False
    solution_env: dict[str, str] = field(default_factory=dict)
    #: Fields of task.toml we read and ignore (dotted names), for the task's one warning.
    ignored: tuple[str, ...] = ()

    @property
    def environment_dir(self) -> Path:
        return self.path / "environment"

    @property
    def tests_dir(self) -> Path:
        return self.path / "tests"

    @property
    def solution_dir(self) -> Path:
        return self.path / "solution"


def find_tasks(root: Path) -> dict[str, Path]:
    """The task directories at or below ``root`` (those holding a task.toml), by task id: the path relative
    to ``root`` (``root``'s own name when it is a task directory itself). Hidden directories are skipped."""
    if (root / "task.toml").is_file():
        return {root.resolve().name: root}
    found: dict[str, Path] = {}
    for toml in sorted(root.rglob("task.toml")):
        relative = toml.parent.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        # A task directory's own files (tests/, environment/) are never tasks of their own.
        if any((root / Path(*relative.parts[:i]) / "task.toml").is_file() for i in range(len(relative.parts))):
            continue
        found[relative.as_posix()] = toml.parent
    return found


def load_task(path: Path, task_id: str) -> HarborTask:
    """The task in directory ``path``.

    Raises:
        HarborTaskError: task.toml unreadable or of an unknown schema_version, a refused field, a value of the
        wrong type, no instruction.md, no docker_image and no environment/Dockerfile.
    """
    where = f"{task_id}/task.toml"
    try:
        data = tomllib.loads((path / "task.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise HarborTaskError(f"{where}: cannot be read: {e}") from None
    version = str(data.get("schema_version", data.get("version", "1.0")))
    if version not in SCHEMA_VERSIONS:
        raise HarborTaskError(
            f"{where}: schema_version {version!r} is not one this harness reads ({', '.join(SCHEMA_VERSIONS)})"
        )
    reader = _Reader(data, where)
    environment, agent, verifier, solution = (reader.table(n) for n in ("environment", "agent", "verifier", "solution"))
    _refuse(environment, where)
    try:
        instruction = (path / "instruction.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HarborTaskError(f"{task_id}: no readable instruction.md ({e})") from None
    image = reader.text(environment, "environment.docker_image")
    if not image and not (path / "environment" / "Dockerfile").is_file():
        raise HarborTaskError(f"{task_id}: no [environment] docker_image and no environment/Dockerfile")
    return HarborTask(
        path=path,
        task_id=task_id,
        instruction=instruction,
        docker_image=image or None,
        build_timeout_sec=reader.seconds(environment, "environment.build_timeout_sec"),
        cpus=reader.number(environment, "environment.cpus", 1.0),
        memory_mb=_memory_mb(reader, environment),
        network=_network(environment, where),
        environment_env=reader.env(environment, "environment.env"),
        agent_timeout_sec=reader.seconds(agent, "agent.timeout_sec"),
        agent_user=reader.user(agent, "agent.user"),
        agent_env=reader.env(agent, "agent.env"),
        verifier_timeout_sec=reader.seconds(verifier, "verifier.timeout_sec"),
        verifier_user=reader.user(verifier, "verifier.user"),
        verifier_env=reader.env(verifier, "verifier.env"),
        separate_verifier=reader.text(verifier, "verifier.environment_mode") == "separate",
        solution_env=reader.env(solution, "solution.env"),
        ignored=tuple(_ignored(data)),
    )


class _Reader:
    """Typed access to task.toml's values, each wrong one an error naming its field."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def fail(self, name: str, expected: str, value: Any) -> HarborTaskError:
        return HarborTaskError(f"{self.where}: {name} = {value!r:.60}: expected {expected}")

    def table(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(f"[{name}]", "a table", value)
        return value

    def text(self, table: dict[str, Any], name: str) -> str | None:
        value = table.get(name.rpartition(".")[2])
        if value is not None and not isinstance(value, str):
            raise self.fail(name, "a string", value)
        return value

    def number(self, table: dict[str, Any], name: str, default: float) -> float:
        value = table.get(name.rpartition(".")[2], default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise self.fail(name, "a positive number", value)
        return float(value)

    def seconds(self, table: dict[str, Any], name: str) -> float:
        # Harbor's agent.timeout_sec may be absent (None there): its default applies.
        return self.number(table, name, _DEFAULT_TIMEOUT)

    def user(self, table: dict[str, Any], name: str) -> str | None:
        value = table.get(name.rpartition(".")[2])
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.fail(name, "a user name or uid", value)
        return str(value)

    def env(self, table: dict[str, Any], name: str) -> dict[str, str]:
        value = table.get(name.rpartition(".")[2], {})
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise self.fail(name, "a table of strings", value)
        return dict(value)


def _memory_mb(reader: _Reader, environment: dict[str, Any]) -> int:
    old = reader.text(environment, "environment.memory")
    if old is None or "memory_mb" in environment:
        return int(reader.number(environment, "environment.memory_mb", 2048))
    match = re.fullmatch(r"\s*([0-9.]+)\s*([GMK])\s*", old.upper())
    if not match:
        raise reader.fail("environment.memory", 'a size such as "4G" or "512M"', old)
    size = float(match.group(1)) * {"G": 1024, "M": 1, "K": 1 / 1024}[match.group(2)]
    return max(1, int(size))


def _network(environment: dict[str, Any], where: str) -> Literal["none", "bridge"]:
    mode = environment.get("network_mode")
    if mode is None:
        # Harbor's default: the internet is allowed unless the task says otherwise.
        return "none" if environment.get("allow_internet", True) is False else "bridge"
    if mode == "no-network":
        return "none"
    if mode == "public":
        return "bridge"
    if mode == "allowlist":
        raise HarborTaskError(f"{where}: network_mode 'allowlist' is not supported yet; use 'no-network' or 'public'")
    raise HarborTaskError(f"{where}: network_mode {mode!r}: expected 'no-network', 'public' or 'allowlist'")


def _refuse(environment: dict[str, Any], where: str) -> None:
    gpus = environment.get("gpus", 0)
    if gpus not in (0, None):
        raise HarborTaskError(f"{where}: the task asks for {gpus!r} GPUs; sandboxes have none")
    if environment.get("allowed_hosts"):
        raise HarborTaskError(f"{where}: allowed_hosts (allowlist networking) is not supported yet")


def _ignored(data: Mapping[str, Any]) -> list[str]:
    """The fields of ``data`` we do not honour: those declared ``warned`` that are set, and unknown ones."""
    names: list[str] = []
    for key, value in data.items():
        if key in ("version", "schema_version", "task", "metadata", "source"):
            continue
        if isinstance(value, dict) and key in ("environment", "agent", "verifier", "solution"):
            names += [f"{key}.{k}" for k, v in value.items() if FIELDS.get(f"{key}.{k}", ("warned",))[0] == "warned"]
        else:
            names.append(key)
    return names


def substitute(env: Mapping[str, str], allowed: Mapping[str, str], where: str) -> dict[str, str]:
    """``env`` with each ``${VAR}`` (or ``${VAR:-default}``) replaced from ``allowed``: the host variables the
    user named with ``--benchflow-arg pass_env=...``. A variable not named is an error, never read silently;
    one named but unset takes its default, else is an error."""

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in allowed:
            return allowed[name]
        if name not in allowed.get(_NAMED, "").split(","):
            raise HarborTaskError(
                f"{where} uses ${{{name}}}: name it with --benchflow-arg pass_env={name} "
                "to take it from the environment"
            )
        if default is None:
            raise HarborTaskError(f"{where} uses ${{{name}}}, which is not set in the environment")
        return default

    return {key: _VAR.sub(value, text) for key, text in env.items()}


# The key of ``allowed`` that lists every name the user passed (set or not).
_NAMED = "\0named"


def allowed_variables(names: str, environ: Mapping[str, str]) -> dict[str, str]:
    """What :func:`substitute` may read: the named host variables that are set, and the list of names."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    found = {n: environ[n] for n in wanted if n in environ}
    found[_NAMED] = ",".join(wanted)
    return found
