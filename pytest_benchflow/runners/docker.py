"""``DockerRunner``: one container per task, on one engine or spread over several."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from ..bench import BaseBench
from ..environment import TaskEnvironment
from ..envnumbers import in_range, parse_number, shown_value
from ..errors import InfraError, RunnerError, TaskError, TaskTimeout, first_line
from .archive import check_links, extract_archive, spool
from .base import Runner, RunnerOption, TaskSpec
from .bench_container import BenchContainer, bench_container
from .engines import Engine, EnginePool, docker_module, parse_engines, parse_slots
from .input_files import TaskInputs, task_inputs
from .labels import RUN_LABEL, run_selector, safe_labels
from .logs import MAX_LOG_BYTES
from .loopback import check_agent_reachable, is_local_url, network_for_agent
from .task_output import TaskOutput

if TYPE_CHECKING:
    import docker

__all__ = ["DEFAULT_CAP_DROP", "RUN_LABEL", "DockerLimits", "DockerRunner"]

logger = logging.getLogger("pytest_benchflow.docker")

#: Capabilities Docker grants by default that benchmarks do not need (ini ``benchflow_cap_drop``).
DEFAULT_CAP_DROP = ("NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE")
PULL_POLICIES = ("never", "missing", "always")
# Every Docker call made while cleaning up gives up after this long (the session sweep retries).
_CLEANUP_TIMEOUT = 30

OPTIONS = [
    RunnerOption(
        "benchflow_docker_hosts",
        "docker runner: an engine URL (unix://, tcp://, ssh://); repeatable (ini: whitespace-separated); "
        "default: the one DOCKER_HOST names",
        flag=True,
        flag_name="benchflow_docker_host",
        repeatable=True,
    ),
    RunnerOption(
        "benchflow_docker_slots",
        "docker runner: containers each engine runs at once (default: its CPU count)",
        flag=True,
    ),
    RunnerOption("benchflow_pull", "docker runner: pull images never, missing or always", "missing", flag=True),
    RunnerOption(
        "benchflow_max_log_bytes",
        "docker runner: most bytes of a container's stdout (and of its stderr) saved per task; the first and "
        f"last halves are kept (default: BENCHFLOW_MAX_LOG_BYTES, else {MAX_LOG_BYTES})",
    ),
    RunnerOption("benchflow_memory", "docker runner: memory limit per container, e.g. 2g", "4g"),
    RunnerOption("benchflow_cpus", "docker runner: CPUs per container, e.g. 1.5", "2"),
    RunnerOption("benchflow_pids", "docker runner: process limit per container", "512"),
    RunnerOption(
        "benchflow_network",
        "docker runner: network of task containers: auto (host for a loopback agent, else bridge) or a name",
        "auto",
    ),
    RunnerOption("benchflow_user", "docker runner: user (name or uid[:gid]) containers run as (default: the image's)"),
    RunnerOption(
        "benchflow_cap_drop",
        "docker runner: capabilities to drop, whitespace-separated, or none",
        " ".join(DEFAULT_CAP_DROP),
    ),
]


_docker = docker_module


@dataclass(frozen=True)
class DockerLimits:
    """Resource limits, network, user and capabilities of task containers (the runner's ini options)."""

    memory: str
    cpus: float
    pids: int
    network: str
    user: str
    cap_drop: tuple[str, ...]

    @classmethod
    def from_options(cls, values: Mapping[str, str] | None = None) -> DockerLimits:
        """The limits the settings ``values`` give (None: the defaults of ``OPTIONS``).

        Raises:
            RunnerError: naming the setting when a number is not one.
        """
        values = values or {o.name: o.default for o in OPTIONS}
        return cls(
            memory=values["benchflow_memory"],
            cpus=_positive("benchflow_cpus", values["benchflow_cpus"], float),
            pids=int(_positive("benchflow_pids", values["benchflow_pids"], int)),
            network=values["benchflow_network"],
            user=values["benchflow_user"],
            cap_drop=_cap_drop(values["benchflow_cap_drop"]),
        )


def _positive(name: str, raw: str, kind: type[float] | type[int], maximum: float | None = None) -> float:
    value = parse_number(raw, kind)
    if value is None or not in_range(value, 0, above=True, maximum=maximum):
        shown = shown_value(raw)
        most = f" of at most {maximum:,g}" if maximum is not None else ""
        raise RunnerError(f"{name} = {shown!r}: expected a positive {'whole ' if kind is int else ''}number{most}")
    return value


def _max_log_bytes(setting: str) -> int:
    """The ini setting, else ``BENCHFLOW_MAX_LOG_BYTES``, else the default (a bad value is a usage error naming it)."""
    if setting.strip():
        return int(_positive("benchflow_max_log_bytes", setting, int))
    raw = os.environ.get("BENCHFLOW_MAX_LOG_BYTES", "")
    return int(_positive("BENCHFLOW_MAX_LOG_BYTES", raw, int)) if raw.strip() else MAX_LOG_BYTES


def _cap_drop(setting: str) -> tuple[str, ...]:
    words = tuple(w.upper().removeprefix("CAP_") for w in setting.split())
    return () if words == ("NONE",) else words


class DockerRunner(Runner):
    """Runs each task in a fresh container of the bench's image.

    Nothing is bind-mounted (results and logs are copied out through the Engine API, so a
    remote ``DOCKER_HOST`` works); the Docker socket is never mounted; containers are
    unprivileged, with ``no-new-privileges``, dropped capabilities and memory, CPU and
    process limits; every container carries the run's labels and is removed whatever happens.
    """

    name = "docker"
    default_for_images = True

    def __init__(
        self,
        run_id: str,
        pull: str = "missing",
        limits: DockerLimits | None = None,
        engines: list[str] | None = None,
        slots: int | None = None,
        max_log_bytes: int = MAX_LOG_BYTES,
    ) -> None:
        """``engines``: engine URLs (None: the one ``DOCKER_HOST`` names); ``slots``: containers per
        engine at once (None: each engine's CPU count); ``max_log_bytes``: the cap of each saved output stream."""
        if pull not in PULL_POLICIES:
            raise RunnerError(
                f"--benchflow-pull {pull!r}: choose {', '.join(PULL_POLICIES[:-1])} or {PULL_POLICIES[-1]}"
            )
        self.run_id = run_id
        self.pull = pull
        self.limits = limits or DockerLimits.from_options()
        self.pool = EnginePool(engines or parse_engines(""), run_id, slots)
        self.max_log_bytes = max_log_bytes
        self._pulled: set[tuple[int, str]] = set()
        self._unpullable: dict[tuple[int, str], str] = {}
        self._pull_lock = threading.Lock()
        self._running: dict[str, Engine] = {}

    @classmethod
    def options(cls) -> list[RunnerOption]:
        return OPTIONS

    @classmethod
    def from_options(cls, values: Mapping[str, str], run_id: str) -> DockerRunner:
        slots = values["benchflow_docker_slots"]
        return cls(
            run_id,
            pull=values["benchflow_pull"],
            limits=DockerLimits.from_options(values),
            engines=parse_engines(values["benchflow_docker_hosts"]),
            slots=parse_slots(slots),
            max_log_bytes=_max_log_bytes(values["benchflow_max_log_bytes"]),
        )

    def start(self, agent_url: str) -> None:
        """Refuse a loopback agent that containers on another machine cannot reach; ping every engine once."""
        if self.limits.network == "auto":
            check_agent_reachable(agent_url, [e.shown for e in self.pool.engines if not is_local_url(e.url)])
        # A resumed run reuses its id: what a crashed session of it marked lost is not lost now.
        self.pool.remove_directory()
        self.pool.check()

    def start_bench(self, bench: BaseBench) -> None:
        """Make the bench's image present on each engine once, before any task: a usage error naming
        image and engines when no engine has it (one line, instead of the same failure for every task)."""
        try:
            image = bench.get_image_name()
        except Exception:
            return  # the bench's own bug: each task reports it, with its traceback
        if not image:
            return  # each task says what is missing
        failures = []
        for engine in self.pool.engines:
            try:
                self.ensure_image(engine, image)
                return  # tasks can run there; an engine without it fails only its own tasks
            except InfraError as e:
                failures.append(str(e))
        raise RunnerError("; ".join(failures))

    def ensure_image(self, engine: Engine, image: str) -> None:
        """Make ``image`` present on ``engine`` as ``--benchflow-pull`` says (once per engine and image)."""
        errors, key = _docker().errors, (engine.index, image)
        with self._pull_lock:
            if key in self._pulled:
                return
            if key in self._unpullable:
                raise InfraError(self._unpullable[key])  # the next task need not wait for the same failure
            client = engine.client()
            present = True
            try:
                client.images.get(image)
            except errors.ImageNotFound:
                present = False
            if self.pull == "always" or (self.pull == "missing" and not present):
                try:
                    client.images.pull(image)
                except errors.DockerException as e:
                    self._unpullable[key] = f"cannot pull image {image!r} on {engine.shown}: {_reason(e)}"
                    raise InfraError(self._unpullable[key]) from None
            elif not present:
                raise InfraError(f"image {image!r} is not present on {engine.shown} and --benchflow-pull=never")
            self._pulled.add(key)

    def network_mode(self, agent_url: str) -> str | None:
        if self.limits.network != "auto":
            return self.limits.network
        return network_for_agent(agent_url)

    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None:
        box = bench_container(bench, spec)
        inputs = task_inputs(bench, spec)  # checked once, before any engine is asked
        while True:
            with self.pool.slot(spec.avoid_engines) as engine:
                spec.engine = engine.shown
                try:
                    self._execute_on(engine, box, spec, env, inputs)
                    return
                except _EngineDown as down:
                    # Nothing ran there yet: the task goes to another engine, if one remains.
                    self._lose(engine, down.reason)

    def _lose(self, engine: Engine, reason: str) -> None:
        if not self.pool.is_lost(engine):
            self.pool.lost(engine, reason)
            logger.warning("Docker engine %s lost (%s): no further task goes there", engine.shown, reason)

    def _execute_on(
        self, engine: Engine, box: BenchContainer, spec: TaskSpec, env: TaskEnvironment, inputs: TaskInputs
    ) -> None:
        errors, image = _docker().errors, box.image
        try:
            self.ensure_image(engine, image)
            container = engine.client().containers.create(
                image,
                # File arguments name their copies in the container (copied in below, before it starts).
                environment={**box.environment(env), **inputs.environment},
                # Safe values: the raw task id is in the environment (TEST_START_ID) and the task's record.
                labels=safe_labels({RUN_LABEL: self.run_id, **spec.labels}),
                network_mode=self.network_mode(spec.agent_url),
                privileged=False,
                security_opt=["no-new-privileges"],
                cap_drop=list(self.limits.cap_drop) or None,
                user=self.limits.user or None,
                mem_limit=self.limits.memory,
                nano_cpus=int(self.limits.cpus * 1e9),
                pids_limit=self.limits.pids,
                detach=True,
            )
        except errors.ImageNotFound:
            raise InfraError(f"image {image!r} not found on {engine.shown}") from None
        except (errors.DockerException, requests.exceptions.RequestException, TaskError) as e:
            if not engine.answers():
                raise _EngineDown(first_line(str(e))) from None
            if isinstance(e, TaskError):
                raise
            reason = first_line(str(e))
            raise InfraError(f"cannot create a container of {image!r} on {engine.shown}: {reason}") from None
        container_id = str(container.id)
        self._running[container_id] = engine
        try:
            _copy_in(container, inputs)
            self._run(engine, container, box, spec)
        except (errors.DockerException, requests.exceptions.RequestException) as e:
            reason = first_line(str(e))
            if engine.answers():
                raise InfraError(f"task {spec.task_id!r}: Docker engine {engine.shown} failed: {reason}") from None
            self._lose(engine, reason)
            raise InfraError(
                f"task {spec.task_id!r}: lost the Docker engine {engine.shown} while it ran: {reason}"
            ) from None
        finally:
            # Removing also kills a container still running (timeout, interrupt); never raises.
            if not self.pool.is_lost(engine):
                _remove(engine, container_id)
            self._running.pop(container_id, None)

    def _run(self, engine: Engine, container: Any, box: BenchContainer, spec: TaskSpec) -> None:
        output = TaskOutput(spec, self.max_log_bytes)
        try:
            container.start()
        except BaseException:
            output.close()
            raise
        name = f"container {str(container.id)[:12]}"
        for stdout in (True, False):
            stream = partial(container.logs, stdout=stdout, stderr=not stdout, stream=True, follow=True)
            output.read(stream, stdout=stdout, name=name)
        try:
            status = container.wait(timeout=spec.timeout)["StatusCode"]
        except requests.exceptions.RequestException as e:
            # The engine's socket reports a read timeout as a connection error; anything else means it went away.
            if not isinstance(e, requests.exceptions.ReadTimeout) and "timed out" not in str(e):
                raise  # the engine went away (or failed): see _execute_on
            raise TaskTimeout(f"task {spec.task_id!r} timed out after {spec.timeout:g} s (container killed)") from None
        output.finish()
        if status != 0:
            raise TaskError(
                f"task {spec.task_id!r}: container of {box.image!r} exited with status {status}\n" + output.tail()
            )
        client = engine.client()
        self._copy_out(client, container, box.results_dir, spec.results_dir, "results")
        self._copy_out(client, container, box.log_dir, spec.log_dir, "logs")

    def _copy_out(self, client: docker.DockerClient, container: Any, path: str, dest: Path, what: str) -> None:
        # The raw request, so that refusing an archive closes its stream: the engine stops sending
        # and the container can be removed at once.
        url = client.api._url("/containers/{0}/archive", container.id)  # type: ignore[attr-defined]
        response = client.api.get(url, params={"path": path}, stream=True)
        with closing(response):
            if response.status_code == 404:
                return  # the bench wrote nothing there: get_result decides what that means
            if response.status_code >= 400:
                reason = f"HTTP {response.status_code}: {first_line(response.text)}"
                raise InfraError(f"cannot copy {path} out of the container: {reason}")
            with tempfile.TemporaryFile() as archive:
                spool(response.iter_content(1024 * 1024), archive, f"{what} archive of {path}")
                extract_archive(archive, dest, f"{what} archive of {path}")
        # get_result runs on the host and reads this directory: no link in it may lead out.
        check_links(dest, f"{what} of the container")

    def capacity(self) -> int | None:
        """The slots of every engine (each engine's CPU count unless --benchflow-docker-slots says)."""
        slots = [engine.slots for engine in self.pool.engines]
        return sum(s for s in slots if s is not None) if all(s is not None for s in slots) else None

    def interrupt(self) -> None:
        for container_id, engine in list(self._running.items()):
            _remove(engine, container_id)

    def cleanup(self) -> None:
        self.pool.close()

    def cleanup_run(self) -> None:
        """Remove every container labelled with this run (a crashed worker's included) on every engine
        that remains. Quiet without an engine."""
        run_id = self.run_id
        for engine in self.pool.remaining():
            try:
                client = engine.client(_CLEANUP_TIMEOUT)
                found = client.api.containers(all=True, quiet=True, filters={"label": run_selector(run_id)})
            except Exception as e:
                logger.info("no container sweep for run %s on %s: %s: %s", run_id, engine.shown, type(e).__name__, e)
                continue
            for container in found:
                _remove(engine, container["Id"])
        self.pool.close()
        self.pool.remove_directory()


def _copy_in(container: Any, inputs: TaskInputs) -> None:
    """The task's input files into the created container, through the Engine API (no bind mount)."""
    if not inputs.files:
        return
    with inputs.archive() as archive:
        if not container.put_archive("/", archive):
            raise TaskError(f"the engine refused the task's input files ({len(inputs.files)} files)")


class _EngineDown(Exception):
    """The engine stopped answering before the task's container started."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(e: Exception) -> str:
    """The engine's own explanation of a failed call (not the HTTP status line around it)."""
    explanation = getattr(e, "explanation", None)
    return first_line(str(explanation or e))


def _remove(engine: Engine, container_id: str) -> None:
    """Remove a container (killing it if running), bounded in time; a failure is logged, never raised."""
    try:
        engine.client(_CLEANUP_TIMEOUT).api.remove_container(container_id, force=True)
    except Exception as e:  # cleanup must not turn a result into a crash: the session sweep retries
        if not isinstance(e, _docker().errors.NotFound):
            logger.warning(
                "could not remove container %s on %s: %s: %s", container_id[:12], engine.shown, type(e).__name__, e
            )
