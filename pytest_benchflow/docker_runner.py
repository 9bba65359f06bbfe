"""``DockerRunner``: one container per task on whatever engine ``docker.from_env()`` finds."""

from __future__ import annotations

import ipaddress
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
import pytest
import requests

from .bench import BaseBench
from .environment import TaskEnvironment, parse_progress
from .errors import TaskError, TaskTimeout
from .extract import check_links, extract_archive, spool
from .redaction import redact
from .runner import TaskSpec

__all__ = ["DEFAULT_CAP_DROP", "RUN_LABEL", "DockerLimits", "DockerRunner", "sweep_run"]

logger = logging.getLogger("pytest_benchflow.docker")

RUN_LABEL = "benchflow.run"
#: Capabilities Docker grants by default that benchmarks do not need (ini ``benchflow_cap_drop``).
DEFAULT_CAP_DROP = ("NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE")
_TAIL_LINES = 20
# Every Docker call made while cleaning up gives up after this long (the session sweep retries).
_CLEANUP_TIMEOUT = 30


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DockerLimits:
    """Resource limits and network of task containers (ini options, documented in the README)."""

    def __init__(
        self,
        memory: str = "4g",
        cpus: float = 2.0,
        pids: int = 512,
        network: str = "auto",
        user: str = "",
        cap_drop: tuple[str, ...] = DEFAULT_CAP_DROP,
    ) -> None:
        self.memory = memory
        self.cpus = cpus
        self.pids = pids
        self.network = network
        self.user = user
        self.cap_drop = cap_drop

    @classmethod
    def from_config(cls, config: pytest.Config) -> DockerLimits:
        def ini(name: str, default: str) -> str:
            return str(config.getini(name) or default)

        try:
            return cls(
                memory=ini("benchflow_memory", "4g"),
                cpus=float(ini("benchflow_cpus", "2")),
                pids=int(ini("benchflow_pids", "512")),
                network=ini("benchflow_network", "auto"),
                user=ini("benchflow_user", ""),
                cap_drop=_cap_drop(ini("benchflow_cap_drop", " ".join(DEFAULT_CAP_DROP))),
            )
        except ValueError as e:
            raise pytest.UsageError(f"benchflow_cpus / benchflow_pids: {e}") from None


def _cap_drop(setting: str) -> tuple[str, ...]:
    words = tuple(w.upper().removeprefix("CAP_") for w in setting.split())
    return () if words == ("NONE",) else words


class DockerRunner:
    """Runs each task in a fresh container of the bench's image.

    Nothing is bind-mounted (results and logs are copied out through the Engine API, so a
    remote ``DOCKER_HOST`` works); the Docker socket is never mounted; containers are
    unprivileged, with ``no-new-privileges`` and memory, CPU and process limits; every
    container carries the run's labels and is removed whatever happens.
    """

    def __init__(self, run_id: str, pull: str = "missing", limits: DockerLimits | None = None) -> None:
        if pull not in ("never", "missing", "always"):
            raise ValueError(f"pull policy {pull!r}: choose never, missing or always")
        self.run_id = run_id
        self.pull = pull
        self.limits = limits or DockerLimits()
        self._local = threading.local()
        self._pulled: set[str] = set()
        self._pull_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: pytest.Config, run_id: str) -> DockerRunner:
        from .plugin import option

        return cls(run_id, pull=option(config, "benchflow_pull"), limits=DockerLimits.from_config(config))

    def client(self) -> docker.DockerClient:
        """This thread's engine client (clients are not shared between threads)."""
        client: docker.DockerClient | None = getattr(self._local, "client", None)
        if client is None:
            try:
                client = docker.from_env()
                client.ping()
            except docker.errors.DockerException as e:
                raise TaskError(f"no Docker engine reachable (DOCKER_HOST or /var/run/docker.sock): {e}") from None
            self._local.client = client
        return client

    def ensure_image(self, image: str) -> None:
        client = self.client()
        with self._pull_lock:
            if image in self._pulled:
                return
            present = True
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                present = False
            if self.pull == "always" or (self.pull == "missing" and not present):
                try:
                    client.images.pull(image)
                except docker.errors.DockerException as e:
                    raise TaskError(f"cannot pull image {image!r}: {_first_line(str(e))}") from None
            elif not present:
                raise TaskError(f"image {image!r} is not present and --benchflow-pull=never")
            self._pulled.add(image)

    def container_environment(self, bench: BaseBench, env: TaskEnvironment) -> dict[str, str]:
        environment = dict(env)
        environment["BENCHFLOW_RESULTS_DIR"] = bench.get_results_dir_in_container()
        environment["BENCHFLOW_LOG_DIR"] = bench.get_log_files_dir_in_container()
        return environment

    def network_mode(self, agent_url: str) -> str | None:
        if self.limits.network != "auto":
            return self.limits.network
        # An agent on the host's loopback is reachable only from the host's network namespace.
        return "host" if _is_loopback(agent_url) else None

    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None:
        image = bench.get_image_name()
        self.ensure_image(image)
        client = self.client()
        labels = {RUN_LABEL: self.run_id, **spec.labels}
        try:
            container = client.containers.create(
                image,
                environment=self.container_environment(bench, env),
                labels=labels,
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
        except docker.errors.ImageNotFound:
            raise TaskError(f"image {image!r} not found") from None
        except docker.errors.APIError as e:
            raise TaskError(f"cannot create a container of {image!r}: {_first_line(str(e))}") from None
        stdout_path, stderr_path = spec.log_dir / "container.stdout.log", spec.log_dir / "container.stderr.log"

        def scrub(line: str) -> str:
            return redact(line, spec.secret_values)

        try:
            container.start()
            readers = [
                _start_reader(container, stdout_path, stdout=True, progress=spec.progress, scrub=scrub),
                _start_reader(container, stderr_path, stdout=False, progress=None, scrub=scrub),
            ]
            try:
                status = container.wait(timeout=spec.timeout)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                raise TaskTimeout(
                    f"task {spec.task_id!r} timed out after {spec.timeout:g} s (container killed)"
                ) from None
            for reader in readers:
                reader.join(timeout=10)
            if status != 0:
                raise TaskError(
                    f"task {spec.task_id!r}: container of {image!r} exited with status {status}\n"
                    + _tail(stderr_path, stdout_path)
                )
            self._copy_out(client, container, bench.get_results_dir_in_container(), spec.results_dir, "results")
            self._copy_out(client, container, bench.get_log_files_dir_in_container(), spec.log_dir, "logs")
        finally:
            # Removing also kills a container still running (timeout, interrupt); never raises.
            _remove(str(container.id))

    def _copy_out(self, client: docker.DockerClient, container: Any, path: str, dest: Path, what: str) -> None:
        # The raw request, so that refusing an archive closes its stream: the engine stops sending
        # and the container can be removed at once.
        url = client.api._url("/containers/{0}/archive", container.id)  # type: ignore[attr-defined]
        response = client.api.get(url, params={"path": path}, stream=True)
        with closing(response):
            if response.status_code == 404:
                return  # the bench wrote nothing there: get_result decides what that means
            if response.status_code >= 400:
                reason = f"HTTP {response.status_code}: {_first_line(response.text)}"
                raise TaskError(f"cannot copy {path} out of the container: {reason}")
            with tempfile.TemporaryFile() as archive:
                spool(response.iter_content(1024 * 1024), archive, f"{what} archive of {path}")
                extract_archive(archive, dest, f"{what} archive of {path}")
        # get_result runs on the host and reads this directory: no link in it may lead out.
        check_links(dest, f"{what} of the container")


def _start_reader(
    container: Any, path: Path, *, stdout: bool, progress: Any, scrub: Callable[[str], str]
) -> threading.Thread:
    def read() -> None:
        with open(path, "w", encoding="utf-8") as out:
            for raw in _lines(container.logs(stdout=stdout, stderr=not stdout, stream=True, follow=True)):
                line = raw.decode(errors="replace")
                out.write(scrub(line))
                if progress is not None:
                    parsed = parse_progress(line)
                    if parsed is not None:
                        progress(*parsed)

    thread = threading.Thread(target=read, daemon=True, name="benchflow-container-logs")
    thread.start()
    return thread


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    try:
        for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line + b"\n"
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        pass
    if pending:
        yield pending


def _tail(*paths: Path) -> str:
    lines: list[str] = []
    for path in paths:
        try:
            lines += path.read_text(errors="replace").splitlines()
        except OSError:
            pass
    tail = lines[-_TAIL_LINES:]
    return "last lines of the container's output:\n" + "\n".join(tail) if tail else "(the container printed nothing)"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _cleanup_client() -> docker.DockerClient:
    return docker.from_env(timeout=_CLEANUP_TIMEOUT)


def _remove(container_id: str) -> None:
    """Remove a container (killing it if running), bounded in time; a failure is logged, never raised."""
    try:
        with closing(_cleanup_client()) as client:
            client.api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except Exception as e:  # cleanup must not turn a result into a crash: the session sweep retries
        logger.warning("could not remove container %s: %s: %s", container_id[:12], type(e).__name__, e)


def sweep_run(run_id: str) -> int:
    """Remove every container labelled with ``run_id``; returns how many. Quiet without an engine."""
    try:
        with closing(_cleanup_client()) as client:
            found = client.api.containers(all=True, quiet=True, filters={"label": f"{RUN_LABEL}={run_id}"})
    except Exception as e:
        logger.info("no container sweep for run %s: %s: %s", run_id, type(e).__name__, e)
        return 0
    for container in found:
        _remove(container["Id"])
    return len(found)
