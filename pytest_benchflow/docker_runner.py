"""``DockerRunner``: one container per task on whatever engine ``docker.from_env()`` finds."""

from __future__ import annotations

import ipaddress
import tempfile
import threading
from collections.abc import Iterator
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
from .extract import extract_archive, spool
from .runner import TaskSpec

__all__ = ["RUN_LABEL", "DockerLimits", "DockerRunner", "sweep_run"]

RUN_LABEL = "benchflow.run"
_TAIL_LINES = 20


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

    def __init__(self, memory: str = "4g", cpus: float = 2.0, pids: int = 512, network: str = "auto") -> None:
        self.memory = memory
        self.cpus = cpus
        self.pids = pids
        self.network = network

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
            )
        except ValueError as e:
            raise pytest.UsageError(f"benchflow_cpus / benchflow_pids: {e}") from None


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
        try:
            container.start()
            readers = [
                _start_reader(container, stdout_path, stdout=True, progress=spec.progress),
                _start_reader(container, stderr_path, stdout=False, progress=None),
            ]
            try:
                status = container.wait(timeout=spec.timeout)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                container.kill()
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
            self._copy_out(container, bench.get_results_dir_in_container(), spec.results_dir, "results")
            self._copy_out(container, bench.get_log_files_dir_in_container(), spec.log_dir, "logs")
        finally:
            try:
                container.remove(force=True)
            except docker.errors.DockerException:
                pass  # the session-end sweep removes it

    def _copy_out(self, container: Any, path: str, dest: Path, what: str) -> None:
        try:
            chunks, _ = container.get_archive(path)
        except docker.errors.NotFound:
            return  # the bench wrote nothing there: get_result decides what that means
        with tempfile.TemporaryFile() as archive:
            spool(chunks, archive, f"{what} archive of {path}")
            extract_archive(archive, dest, f"{what} archive of {path}")


def _start_reader(container: Any, path: Path, *, stdout: bool, progress: Any) -> threading.Thread:
    def read() -> None:
        with open(path, "wb") as out:
            for line in _lines(container.logs(stdout=stdout, stderr=not stdout, stream=True, follow=True)):
                out.write(line)
                if progress is not None:
                    parsed = parse_progress(line.decode(errors="replace"))
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


def sweep_run(run_id: str) -> int:
    """Remove every container labelled with ``run_id``; returns how many. Quiet without an engine."""
    try:
        client = docker.from_env()
        containers = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
    except docker.errors.DockerException:
        return 0
    for container in containers:
        try:
            container.remove(force=True)
        except docker.errors.DockerException:
            pass
    return len(containers)
