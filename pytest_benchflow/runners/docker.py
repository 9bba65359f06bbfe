"""``DockerRunner``: one container per task on whatever engine ``docker.from_env()`` finds."""

from __future__ import annotations

import ipaddress
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from ..bench import BaseBench
from ..environment import TaskEnvironment, parse_progress
from ..envnumbers import in_range, parse_number
from ..errors import RunnerError, TaskError, TaskTimeout, first_line
from ..redaction import redact
from .archive import check_links, extract_archive, spool
from .base import Runner, RunnerOption, TaskSpec
from .logs import lines, tail

if TYPE_CHECKING:
    import docker

__all__ = ["DEFAULT_CAP_DROP", "RUN_LABEL", "DockerLimits", "DockerRunner"]

logger = logging.getLogger("pytest_benchflow.docker")

RUN_LABEL = "benchflow.run"
#: Capabilities Docker grants by default that benchmarks do not need (ini ``benchflow_cap_drop``).
DEFAULT_CAP_DROP = ("NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE")
PULL_POLICIES = ("never", "missing", "always")
# Every Docker call made while cleaning up gives up after this long (the session sweep retries).
_CLEANUP_TIMEOUT = 30

OPTIONS = [
    RunnerOption("benchflow_pull", "docker runner: pull images never, missing or always", "missing", flag=True),
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


def _docker() -> Any:
    # Imported on first use: pytest starts without it when no task runs in a container.
    import docker
    import docker.errors

    return docker


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def _positive(name: str, raw: str, kind: type[float] | type[int]) -> float:
    value = parse_number(raw, kind)
    if value is None or not in_range(value, 0, above=True):
        raise RunnerError(f"{name} = {raw!r}: expected a positive {'whole ' if kind is int else ''}number")
    return value


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

    def __init__(self, run_id: str, pull: str = "missing", limits: DockerLimits | None = None) -> None:
        if pull not in PULL_POLICIES:
            raise RunnerError(
                f"--benchflow-pull {pull!r}: choose {', '.join(PULL_POLICIES[:-1])} or {PULL_POLICIES[-1]}"
            )
        self.run_id = run_id
        self.pull = pull
        self.limits = limits or DockerLimits.from_options()
        self._local = threading.local()
        self._pulled: set[str] = set()
        self._pull_lock = threading.Lock()
        self._running: set[str] = set()

    @classmethod
    def options(cls) -> list[RunnerOption]:
        return OPTIONS

    @classmethod
    def from_options(cls, values: Mapping[str, str], run_id: str) -> DockerRunner:
        return cls(run_id, pull=values["benchflow_pull"], limits=DockerLimits.from_options(values))

    def client(self) -> docker.DockerClient:
        """This thread's engine client (clients are not shared between threads)."""
        client: docker.DockerClient | None = getattr(self._local, "client", None)
        if client is None:
            docker = _docker()
            try:
                client = docker.from_env()
                client.ping()
            except docker.errors.DockerException as e:
                raise TaskError(f"no Docker engine reachable (DOCKER_HOST or /var/run/docker.sock): {e}") from None
            self._local.client = client
        return client

    def ensure_image(self, image: str) -> None:
        client, errors = self.client(), _docker().errors
        with self._pull_lock:
            if image in self._pulled:
                return
            present = True
            try:
                client.images.get(image)
            except errors.ImageNotFound:
                present = False
            if self.pull == "always" or (self.pull == "missing" and not present):
                try:
                    client.images.pull(image)
                except errors.DockerException as e:
                    raise TaskError(f"cannot pull image {image!r}: {first_line(str(e))}") from None
            elif not present:
                raise TaskError(f"image {image!r} is not present and --benchflow-pull=never")
            self._pulled.add(image)

    def network_mode(self, agent_url: str) -> str | None:
        if self.limits.network != "auto":
            return self.limits.network
        # An agent on the host's loopback is reachable only from the host's network namespace.
        return "host" if _is_loopback(agent_url) else None

    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None:
        image = bench.get_image_name()
        results_dir, log_dir = bench.get_results_dir_in_container(), bench.get_log_files_dir_in_container()
        if not image or not results_dir or not log_dir:
            raise TaskError(
                f"{spec.bench_name} has no container (get_image_name, get_results_dir_in_container and "
                "get_log_files_dir_in_container must all be given); run it with --benchflow-runner local"
            )
        self.ensure_image(image)
        client, errors = self.client(), _docker().errors
        try:
            container = client.containers.create(
                image,
                environment={**env, "BENCHFLOW_RESULTS_DIR": results_dir, "BENCHFLOW_LOG_DIR": log_dir},
                labels={RUN_LABEL: self.run_id, **spec.labels},
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
            raise TaskError(f"image {image!r} not found") from None
        except errors.APIError as e:
            raise TaskError(f"cannot create a container of {image!r}: {first_line(str(e))}") from None
        container_id = str(container.id)
        self._running.add(container_id)
        try:
            self._run(container, image, results_dir, log_dir, spec)
        finally:
            # Removing also kills a container still running (timeout, interrupt); never raises.
            _remove(container_id)
            self._running.discard(container_id)

    def _run(self, container: Any, image: str, results_dir: str, log_dir: str, spec: TaskSpec) -> None:
        stdout_path, stderr_path = spec.log_dir / "container.stdout.log", spec.log_dir / "container.stderr.log"

        def scrub(line: str) -> str:
            return redact(line, spec.secret_values)

        container.start()
        readers = [
            _start_reader(container, stdout_path, stdout=True, progress=spec.progress, scrub=scrub),
            _start_reader(container, stderr_path, stdout=False, progress=None, scrub=scrub),
        ]
        try:
            status = container.wait(timeout=spec.timeout)["StatusCode"]
        except requests.exceptions.RequestException as e:
            # The engine's socket reports a read timeout as a connection error; anything else means it went away.
            if not isinstance(e, requests.exceptions.ReadTimeout) and "timed out" not in str(e):
                raise TaskError(
                    f"task {spec.task_id!r}: lost the Docker engine while it ran: {first_line(str(e))}"
                ) from None
            raise TaskTimeout(f"task {spec.task_id!r} timed out after {spec.timeout:g} s (container killed)") from None
        for reader in readers:
            reader.join(timeout=10)
        if status != 0:
            raise TaskError(
                f"task {spec.task_id!r}: container of {image!r} exited with status {status}\n"
                + tail(stderr_path, stdout_path)
            )
        client = self.client()
        self._copy_out(client, container, results_dir, spec.results_dir, "results")
        self._copy_out(client, container, log_dir, spec.log_dir, "logs")

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
                raise TaskError(f"cannot copy {path} out of the container: {reason}")
            with tempfile.TemporaryFile() as archive:
                spool(response.iter_content(1024 * 1024), archive, f"{what} archive of {path}")
                extract_archive(archive, dest, f"{what} archive of {path}")
        # get_result runs on the host and reads this directory: no link in it may lead out.
        check_links(dest, f"{what} of the container")

    def interrupt(self) -> None:
        for container_id in list(self._running):
            _remove(container_id)

    def cleanup(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()

    def cleanup_run(self) -> None:
        """Remove every container labelled with this run (a crashed worker's included). Quiet without an engine."""
        run_id = self.run_id
        try:
            with closing(_cleanup_client()) as client:
                found = client.api.containers(all=True, quiet=True, filters={"label": f"{RUN_LABEL}={run_id}"})
        except Exception as e:
            logger.info("no container sweep for run %s: %s: %s", run_id, type(e).__name__, e)
            return
        for container in found:
            _remove(container["Id"])


def _start_reader(
    container: Any, path: Path, *, stdout: bool, progress: Any, scrub: Callable[[str], str]
) -> threading.Thread:
    def read() -> None:
        with open(path, "w", encoding="utf-8") as out:
            for raw in lines(container.logs(stdout=stdout, stderr=not stdout, stream=True, follow=True)):
                line = raw.decode(errors="replace")
                out.write(scrub(line))
                if progress is not None:
                    parsed = parse_progress(line)
                    if parsed is not None:
                        progress(*parsed)

    thread = threading.Thread(target=read, daemon=True, name="benchflow-container-logs")
    thread.start()
    return thread


def _cleanup_client() -> docker.DockerClient:
    client: docker.DockerClient = _docker().from_env(timeout=_CLEANUP_TIMEOUT)
    return client


def _remove(container_id: str) -> None:
    """Remove a container (killing it if running), bounded in time; a failure is logged, never raised."""
    try:
        with closing(_cleanup_client()) as client:
            client.api.remove_container(container_id, force=True)
    except Exception as e:  # cleanup must not turn a result into a crash: the session sweep retries
        if not isinstance(e, _docker().errors.NotFound):
            logger.warning("could not remove container %s: %s: %s", container_id[:12], type(e).__name__, e)
