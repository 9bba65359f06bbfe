"""``RayRunner``: each task as a Ray task on a node of a Ray cluster (``pip install -e '.[ray]'`` in a clone).

An in-process bench's entrance runs on the node the cluster places the task on, in a scratch directory
there; a container bench's container runs on that node's Docker engine (a node with an engine advertises
the custom resource ``docker``, its number of container slots). Either way, the task's results and logs
come back as bounded tar archives through Ray's object store and are unpacked here with the same safe
extraction as a container's; usage, transcripts and progress travel with them. An in-process task's
``get_result`` runs on its node too (its validated result comes back with the archives, in ``spec.result``);
a container task's runs here, as it does for the Docker runner. The node is the task's ``engine`` in its record.

Ray is imported when the runner starts, never when pytest starts: an environment without Ray lists the
runner, and choosing it says how to install Ray.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import secrets
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors as errors_module
from ..bench import BaseBench
from ..environment import TaskEnvironment
from ..envnumbers import in_range, parse_number, shown_value
from ..errors import (
    BenchflowError,
    InfraError,
    RunnerError,
    TaskCancelled,
    TaskError,
    TaskTimeout,
    UnsafeArchive,
    first_line,
)
from ..sandbox import SandboxProvider
from ..sandbox.recipe import ProviderRecipe
from ..schemas import BenchmarkResult
from ..usage import UsageMeter
from .archive import check_links, extract_archive, max_archive_bytes, spool
from .base import Runner, RunnerOption, TaskSpec, collect_result, prepare_task
from .docker import OPTIONS as DOCKER_OPTIONS
from .docker import DockerLimits, DockerRunner, _max_log_bytes
from .labels import RUN_LABEL, run_selector
from .loopback import check_agent_reachable

__all__ = ["DOCKER_RESOURCE", "RayRunner", "RayTaskResources", "connect_ray", "node_name", "sweep_nodes"]

logger = logging.getLogger("pytest_benchflow.ray")

#: The custom resource a node with a Docker engine advertises (its container slots); a container task needs 1.
DOCKER_RESOURCE = "docker"
# How long a container task may run past its own timeout (the node kills the container at the timeout)
# before the runner stops waiting for the node.
_CONTAINER_GRACE = 60.0
# How long a cleanup call to the cluster waits.
_CLEANUP_TIMEOUT = 60.0
# How long the address check waits for the cluster's port to answer.
_ADDRESS_TIMEOUT = 5.0
# How often a waiting task looks whether it was interrupted.
_POLL = 0.2
# The label that tells one attempt's containers (and sandboxes) from the rest of the run's: what a cancelled
# task left on its node is removed at once, not only by the end-of-session sweep.
_ATTEMPT_LABEL = "benchflow.ray-attempt"

# Docker limit settings the Ray runner shares with the Docker runner (same ini names, same meaning).
_SHARED = {"benchflow_pull", "benchflow_max_log_bytes", "benchflow_memory", "benchflow_cpus", "benchflow_pids"}
_SHARED |= {"benchflow_network", "benchflow_user", "benchflow_cap_drop"}

OPTIONS = [
    RunnerOption(
        "benchflow_ray_address",
        "ray runner: the Ray cluster (host:port, ray://host:port or auto); default: auto when RAY_ADDRESS is set "
        "or a local cluster answers, else a local Ray started for the session",
        flag=True,
    ),
    RunnerOption(
        "benchflow_ray_num_cpus",
        "ray runner: CPUs each task reserves on its node (default: 1 for an in-process task, 0 for a container "
        "task, whose container has its own limit)",
    ),
    RunnerOption("benchflow_ray_memory", "ray runner: memory each task reserves on its node, in bytes (default: none)"),
    RunnerOption(
        "benchflow_ray_resources",
        'ray runner: custom resources each task needs, as JSON (e.g. {"gpu_box": 1}); container tasks also need '
        f'{{"{DOCKER_RESOURCE}": 1}}',
    ),
    RunnerOption(
        "benchflow_ray_runtime_env",
        "ray runner: the session's Ray runtime_env as JSON (how the bench's code reaches the nodes when it is not "
        'installed there, e.g. {"py_modules": ["./mybench"]} or {"env_vars": {"PYTHONPATH": "/src"}})',
        flag=True,
    ),
    *(o for o in DOCKER_OPTIONS if o.name in _SHARED),
]


def _ray() -> Any:
    """Ray, imported on first use."""
    try:
        import ray
    except ImportError:
        raise RunnerError(
            "--benchflow-runner ray needs Ray: pip install -e '.[ray]' in the clone of pytest-benchflow"
        ) from None
    return ray


def _json_setting(name: str, raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise RunnerError(f"{name} = {raw!r}: not JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise RunnerError(f"{name} = {raw!r}: expected a JSON object")
    return value


def _amount(name: str, raw: str) -> float | None:
    if not raw.strip():
        return None
    value = parse_number(raw, float)
    if value is None or not in_range(value):
        raise RunnerError(f"{name} = {shown_value(raw)!r}: expected a number of at least 0")
    return value


@dataclass(frozen=True)
class RayTaskResources:
    """What each task asks of its node (ini ``benchflow_ray_num_cpus``, ``_memory``, ``_resources``)."""

    num_cpus: float | None = None
    memory: float | None = None
    resources: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_options(cls, values: Mapping[str, str]) -> RayTaskResources:
        resources = _json_setting("benchflow_ray_resources", values.get("benchflow_ray_resources", ""))
        for key, amount in resources.items():
            if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not in_range(amount):
                raise RunnerError(f"benchflow_ray_resources: {key!r} = {amount!r}: expected a number of at least 0")
        return cls(
            num_cpus=_amount("benchflow_ray_num_cpus", values.get("benchflow_ray_num_cpus", "")),
            memory=_amount("benchflow_ray_memory", values.get("benchflow_ray_memory", "")),
            resources={str(k): float(v) for k, v in resources.items()},
        )

    def options(self, container: bool) -> dict[str, Any]:
        """The Ray task options of an in-process (``container`` False) or container task."""
        cpus = self.num_cpus if self.num_cpus is not None else (0.0 if container else 1.0)
        resources = dict(self.resources)
        if container:
            resources[DOCKER_RESOURCE] = resources.get(DOCKER_RESOURCE, 0.0) or 1.0
        chosen: dict[str, Any] = {"num_cpus": cpus, "resources": resources}
        if self.memory:
            chosen["memory"] = self.memory
        return chosen


def node_name(node_id: str, address: str) -> str:
    """How a node is shown in records and messages: its address and the start of its id (stable per node)."""
    return f"ray node {address} {node_id[:12]}"


def _answers(address: str) -> str | None:
    """None when something listens at ``address`` (host:port, optionally ray://), else why not."""
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return "expected host:port, ray://host:port or auto"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_ADDRESS_TIMEOUT):
            return None
    except OSError as e:
        return e.strerror or str(e)


def _local_cluster() -> str | None:
    """The address of a cluster started on this machine with ``ray start`` that answers, else None."""
    try:
        from ray._private.services import get_ray_address_from_environment

        address: str | None = get_ray_address_from_environment("auto", None)
    except Exception:  # no local cluster recorded (or a Ray whose internals moved): start one
        return None
    return address if address and _answers(address) is None else None


def connect_ray(setting: str, runtime_env: Mapping[str, Any] | None = None) -> tuple[str, bool]:
    """Connect this process to the Ray cluster ``setting`` names (see ``benchflow_ray_address``).

    Returns the address shown to users and whether this call started (so must stop) a local Ray.

    Raises:
        RunnerError: Ray is not installed, or the address does not answer (a usage error, before any task).
    """
    ray = _ray()
    if ray.is_initialized():
        return "the Ray this process is connected to", False
    address = setting.strip() or ("auto" if os.environ.get("RAY_ADDRESS") else (_local_cluster() or ""))
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    if address == "auto":
        found = _local_cluster()
        if found is None:
            raise RunnerError("--benchflow-ray-address auto: no Ray cluster runs on this machine (ray start --head)")
        address = found
    if address:
        why = _answers(address)
        if why is not None:
            raise RunnerError(f"--benchflow-ray-address {address!r}: no Ray cluster answers there ({why})")
    if not address or _answers_on_loopback(address):
        _stay_on_loopback(ray)
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if runtime_env:
        kwargs["runtime_env"] = dict(runtime_env)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    except Exception as e:
        where = address or "a new local Ray"
        raise RunnerError(f"cannot connect to the Ray cluster at {where}: {first_line(str(e))}") from None
    return address or "a local Ray started for this session", not address


def _answers_on_loopback(address: str) -> bool:
    from .loopback import is_loopback_url

    return is_loopback_url("http://" + address.split("://", 1)[-1])


def _stay_on_loopback(ray: Any) -> None:
    """Keep this process's Ray traffic on loopback for a cluster that lives on it (a local Ray, a head at
    127.0.0.1): Ray otherwise replaces 127.0.0.1 by this machine's network address, as it must for a
    cluster of several machines. Ray does the same itself on macOS and Windows, through this switch."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
        constants.ENABLE_RAY_CLUSTER = False


# ---------------------------------------------------------------------------------------------------
# What runs on the node.


@dataclass
class _NodeTask:
    """What the node needs to run one task (picklable: no callbacks, no open files)."""

    run_id: str
    bench_name: str
    task_id: str
    agent_url: str
    args: Any
    split: str
    timeout: float | None
    labels: dict[str, str]
    secret_values: list[str]
    transcripts: bool
    epoch: int
    container: bool
    docker: dict[str, Any]
    #: How the node makes the session's sandbox provider (an in-process task's ``env.sandbox(...)``), or None.
    sandbox: ProviderRecipe | None = None


# What to do when the session's sandbox provider cannot be made on a node (a plugin's hook made it).
_NO_SANDBOX_HERE = "run this bench with another runner, or choose --benchflow-sandbox ray or docker"


def _tar_directory(directory: Path, what: str) -> bytes:
    """``directory`` as an uncompressed tar (links kept as links), refused past the archive cap."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if directory.is_dir():
            tar.add(str(directory), arcname=directory.name, recursive=True)
    data = buffer.getvalue()
    if len(data) > max_archive_bytes():
        raise UnsafeArchive(f"{what} is larger than the {max_archive_bytes()} byte cap (BENCHFLOW_MAX_ARCHIVE_BYTES)")
    return data


def _error_chain(error: BaseException) -> list[tuple[str, str]]:
    """``error`` and its causes as (class name in pytest_benchflow.errors, or "", message)."""
    chain: list[tuple[str, str]] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 8:
        ours = isinstance(current, BenchflowError) and getattr(errors_module, type(current).__name__, None) is type(
            current
        )
        chain.append(
            (type(current).__name__ if ours else "", str(current) if ours else f"{type(current).__name__}: {current}")
        )
        current = current.__cause__
    return chain


def _rebuild(chain: list[tuple[str, str]]) -> BaseException:
    """The error a node reported, as the same classes of ours (others become their text)."""
    built: BaseException | None = None
    for name, message in reversed(chain):
        cls = getattr(errors_module, name, None) if name else None
        if not (isinstance(cls, type) and issubclass(cls, BenchflowError)):
            cls = TaskError if built is None or name else RuntimeError
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        error.__cause__ = built
        built = error
    return built if built is not None else TaskError("the node reported an error without a message")


_DOCKER_RUNNERS: dict[str, DockerRunner] = {}


def _docker_runner(task: _NodeTask) -> DockerRunner:
    """This node process's Docker runner for the run: the node's own engine (its DOCKER_HOST), slots bounded by Ray."""
    runner = _DOCKER_RUNNERS.get(task.run_id)
    if runner is None:
        settings = task.docker
        runner = DockerRunner(
            task.run_id,
            pull=settings["benchflow_pull"],
            limits=DockerLimits.from_options(settings),
            slots=10_000,  # the node's "docker" resource is the bound
            max_log_bytes=_max_log_bytes(settings["benchflow_max_log_bytes"]),
        )
        _DOCKER_RUNNERS[task.run_id] = runner
    return runner


def _node_task(bench: BaseBench, task: _NodeTask) -> Iterator[dict[str, Any]]:
    """Run one task here (a Ray worker on some node); yields where it runs, its progress, then its outcome."""
    ray = _ray()
    context = ray.get_runtime_context()
    node_id = context.get_node_id()
    address = ray.util.get_node_ip_address()
    yield {"node": node_name(node_id, address)}
    scratch = Path(tempfile.mkdtemp(prefix="benchflow-ray-"))
    events: queue.Queue[tuple[int, int] | None] = queue.Queue()
    failure: list[BaseException] = []
    provider: SandboxProvider | None = None
    if task.sandbox is not None and not task.container:
        try:  # the session's provider, made here: its sandboxes are this task's, closed when it ends
            provider = task.sandbox.build(task.run_id, "a Ray node", _NO_SANDBOX_HERE)
        except Exception as e:
            failure.append(e)
    spec = TaskSpec(
        bench_name=task.bench_name,
        task_id=task.task_id,
        agent_url=task.agent_url,
        args=task.args,
        results_dir=scratch / "results",
        log_dir=scratch / "logs",
        split=task.split,
        timeout=task.timeout if task.container else None,  # in-process: the driver's timeout cancels the Ray task
        progress=lambda done, total: events.put((done, total)),
        labels=task.labels,
        secret_values=task.secret_values,
        transcripts=task.transcripts,
        epoch=task.epoch,
        run_dir=scratch,
        sandbox_provider=provider,
    )
    collected: list[BenchmarkResult] = []
    runner: Runner = _docker_runner(task) if task.container else _local_runner()

    def work() -> None:
        try:
            if failure:
                return  # the sandbox provider could not be made here: the task's error
            env = prepare_task(spec)
            try:
                runner.execute(bench, spec, env)
            finally:
                spec.close()
            if not task.container:
                # An in-process task's get_result runs here, where its entrance ran (a container's, on the
                # driver, as with the Docker runner): same validation and errors as the driver's.
                collected.append(collect_result(bench, spec))
        except BaseException as e:
            failure.append(e)
        finally:
            _close_task(spec, provider)
            events.put(None)

    worker = threading.Thread(target=work, name=f"benchflow-ray-{task.task_id}", daemon=True)
    worker.start()
    try:
        while (event := events.get()) is not None:
            yield {"progress": event}
        worker.join()
        outcome: dict[str, Any] = {"usage": spec.usage.snapshot(), "error": None}
        outcome["result"] = collected[0] if collected else None
        if failure:
            outcome["error"] = _error_chain(failure[0])
        for what in ("results", "logs"):
            try:
                outcome[what] = _tar_directory(scratch / what, f"{what} of task {task.task_id!r}")
            except (OSError, UnsafeArchive) as e:
                outcome[what] = b""
                outcome["error"] = outcome["error"] or _error_chain(e)
        yield outcome
    finally:
        # Ray cancels by raising KeyboardInterrupt here (or by killing this process): stop the task's work.
        if worker.is_alive():
            runner.interrupt()
            _close_task(spec, provider)
        shutil.rmtree(scratch, ignore_errors=True)


def _close_task(spec: TaskSpec, provider: SandboxProvider | None) -> None:
    """The task is over (or cancelled): close its sandboxes, then its provider (no container, no actor left)."""
    spec.close()
    if provider is not None:
        try:
            provider.close_all()
        except Exception as e:  # the driver's sweep of this attempt removes what is left
            logger.warning("closing the sandboxes of task %r on this node: %s", spec.task_id, first_line(str(e)))


def _local_runner() -> Runner:
    from .local import LocalRunner

    return LocalRunner()


def sweep_nodes(run_id: str, attempt: str | None = None) -> None:
    """Remove every container of run ``run_id`` (of one ``attempt`` of a task only, when given) on every live
    node with Docker (bounded; logged, never raised)."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    sweep = ray.remote(_sweep_node)
    docker_nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(DOCKER_RESOURCE, 0) > 0]
    refs = [
        sweep.options(
            num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(run_id, attempt)
        for n in docker_nodes
    ]
    try:
        ray.get(refs, timeout=_CLEANUP_TIMEOUT)
    except Exception as e:
        logger.warning("sweeping the containers of run %s on the Ray nodes failed: %s", run_id, e)


def _sweep_node(run_id: str, attempt: str | None = None) -> int:
    """Remove every container of run ``run_id`` (of one attempt, when given) on this node's engine; how many."""
    from .engines import docker_module

    client = docker_module().from_env(timeout=int(_CLEANUP_TIMEOUT))
    try:
        labels = [run_selector(run_id)] + ([f"{_ATTEMPT_LABEL}={attempt}"] if attempt else [])
        found = client.api.containers(all=True, quiet=True, filters={"label": labels})
        for container in found:
            try:
                client.api.remove_container(container["Id"], force=True)
            except Exception:  # gone meanwhile: what counts is that it is not left
                pass
        return len(found)
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------------
# The driver side.


class _Running:
    """One task's Ray task, as the driver tracks it."""

    def __init__(self, generator: Any, container: bool, attempt: str, leaves_containers: bool) -> None:
        self.generator = generator
        self.container = container
        self.attempt = attempt
        #: Whether it may leave containers on a node (a container task, or sandboxes an in-process task opens).
        self.leaves_containers = leaves_containers
        self.node: str | None = None
        self.interrupted = threading.Event()


class RayRunner(Runner):
    """Runs each task as a Ray task on a node of a Ray cluster (see the module's documentation)."""

    name = "ray"

    def __init__(
        self,
        run_id: str,
        address: str = "",
        resources: RayTaskResources | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        docker: Mapping[str, str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.address = address
        self.resources = resources or RayTaskResources()
        self.runtime_env = dict(runtime_env or {})
        self.docker = dict(docker or {o.name: o.default for o in OPTIONS if o.name in _SHARED})
        DockerLimits.from_options(self.docker)  # a bad limit is a usage error here, not on every node
        self.shown = ""
        self._started_ray = False
        self._connected = False
        self._benches: dict[int, Any] = {}
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        # Whether any task may have left containers on a node (a container task's, a sandbox's): swept at the end.
        self._ran_containers = False

    @classmethod
    def options(cls) -> list[RunnerOption]:
        return OPTIONS

    @classmethod
    def from_options(cls, values: Mapping[str, str], run_id: str) -> RayRunner:
        # Only parsing: nothing connects until start (a setting given for another runner must cost nothing).
        _max_log_bytes(values["benchflow_max_log_bytes"])
        return cls(
            run_id,
            address=values["benchflow_ray_address"],
            resources=RayTaskResources.from_options(values),
            runtime_env=_json_setting("benchflow_ray_runtime_env", values["benchflow_ray_runtime_env"]),
            docker={name: values[name] for name in _SHARED},
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect to the cluster once (``start`` does; a worker process of xdist connects on its first task)."""
        if not self._connected:
            self.shown, self._started_ray = connect_ray(self.address, self.runtime_env)
            self._connected = True

    def start(self, agent_url: str) -> None:
        """Connect (a usage error when the address does not answer) and refuse a loopback agent that
        nodes on other machines cannot reach."""
        self.connect()
        remote = [name for name, address in self._nodes().items() if not _is_this_machine(address)]
        check_agent_reachable(agent_url, remote)

    def start_bench(self, bench: BaseBench) -> None:
        """A container bench on a cluster with no node advertising Docker: said once, before any task."""
        if bench.get_entrypoint() is not None:
            return
        try:
            image = bench.get_image_name()
        except Exception:
            return
        if image and not self._docker_nodes():
            raise RunnerError(
                f"no node of the Ray cluster ({self.shown}) has a Docker engine for {image!r}: a node with one "
                f"advertises it, e.g. ray start --resources='{{\"{DOCKER_RESOURCE}\": 4}}' (4 containers at once)"
            )

    def _alive(self) -> list[dict[str, Any]]:
        return [n for n in _ray().nodes() if n.get("Alive")]

    def _nodes(self) -> dict[str, str]:
        """Every live node's name and address."""
        return {node_name(n["NodeID"], n["NodeManagerAddress"]): n["NodeManagerAddress"] for n in self._alive()}

    def _docker_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self._alive() if n.get("Resources", {}).get(DOCKER_RESOURCE, 0) > 0]

    def capacity(self) -> int | None:
        """How many tasks the cluster runs at once: its CPUs over each task's, or its Docker slots."""
        if not self._connected:
            return None
        total = _ray().cluster_resources()
        cpus = self.resources.options(container=False)["num_cpus"]
        by_cpu = int(total.get("CPU", 0) // cpus) if cpus else 0
        return max(by_cpu, int(total.get(DOCKER_RESOURCE, 0))) or None

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: cancel every running Ray task (its worker process is killed, so nothing of an
        in-process task goes on) and remove this run's containers on every node with Docker."""
        with self._lock:
            running = list(self._running.values())
        for task in running:
            task.interrupted.set()
            try:
                _ray().cancel(task.generator, force=True)
            except Exception as e:  # already finished, or the cluster is gone
                logger.info("could not cancel a Ray task: %s", e)
        if any(task.leaves_containers for task in running):
            self._sweep()

    def cleanup(self) -> None:
        pass  # the connection is kept for cleanup_run; Ray's own exit handler disconnects a worker process

    def cleanup_run(self) -> None:
        """Remove every container of this run on every node with Docker (a killed node's too, where its engine
        is shared or back), then disconnect (stopping the local Ray this session started)."""
        if not self._connected:
            return
        try:
            if self._ran_containers:
                self._sweep()
        finally:
            _ray().shutdown()
            self._connected = False

    def _sweep(self) -> None:
        sweep_nodes(self.run_id)

    # -- one task -----------------------------------------------------------------------------------

    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None:
        self.connect()
        container = bench.get_entrypoint() is None
        if container and not bench.get_image_name():
            raise TaskError(f"{spec.bench_name} has neither an in-process entrance nor an image")
        sandbox = None if container or spec.sandbox_provider is None else ProviderRecipe.of(spec.sandbox_provider)
        leaves_containers = container or sandbox is not None
        self._ran_containers = self._ran_containers or leaves_containers
        attempt = secrets.token_hex(8)
        task = _NodeTask(
            run_id=self.run_id,
            bench_name=spec.bench_name,
            task_id=spec.task_id,
            agent_url=spec.agent_url,
            args=spec.args,
            split=spec.split,
            timeout=spec.timeout,
            labels={RUN_LABEL: self.run_id, **spec.labels, _ATTEMPT_LABEL: attempt},
            secret_values=list(spec.secret_values),
            transcripts=spec.transcripts,
            epoch=spec.epoch,
            container=container,
            docker=self.docker,
            sandbox=sandbox,
        )
        generator = self._submit(bench, task, spec.avoid_engines)
        running = _Running(generator, container, attempt, leaves_containers)
        with self._lock:
            self._running[id(running)] = running
        try:
            outcome = self._follow(running, spec, container)
        finally:
            with self._lock:
                self._running.pop(id(running), None)
        self._unpack(outcome, spec)

    def _bench_ref(self, bench: BaseBench) -> Any:
        """The bench in the object store, put once (every task of it reads the same copy)."""
        with self._lock:
            if id(bench) not in self._benches:
                _ship_by_value(type(bench))
                self._benches[id(bench)] = (bench, _ray().put(bench))
            return self._benches[id(bench)][1]

    def _submit(self, bench: BaseBench, task: _NodeTask, avoid: tuple[str, ...]) -> Any:
        ray = _ray()
        options: dict[str, Any] = {
            **self.resources.options(task.container),
            "num_returns": "streaming",
            "max_retries": 0,  # a lost node is our infra error, rerun by --benchflow-rerun-infra elsewhere
            "name": f"benchflow {task.bench_name} {task.task_id}"[:200],
        }
        elsewhere = self._elsewhere(avoid, task.container)
        if elsewhere is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(elsewhere, soft=True)
        return _remote_node_task(ray).options(**options).remote(self._bench_ref(bench), task)

    def _elsewhere(self, avoid: tuple[str, ...], container: bool) -> str | None:
        """A live node other than those an earlier attempt failed on (None: no earlier failure, or no other)."""
        if not avoid:
            return None
        nodes = self._docker_nodes() if container else self._alive()
        for node in nodes:
            if node_name(node["NodeID"], node["NodeManagerAddress"]) not in avoid:
                return str(node["NodeID"])
        return None

    def _follow(self, running: _Running, spec: TaskSpec, container: bool) -> dict[str, Any]:
        """Wait for the task's outcome, passing its progress on; the task's time limit and interrupts apply."""
        ray = _ray()
        limit = None if spec.timeout is None else spec.timeout + (_CONTAINER_GRACE if container else 0.0)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            ready, _ = ray.wait([running.generator], timeout=_POLL, fetch_local=True)
            if running.interrupted.is_set():
                raise TaskCancelled(f"task {spec.task_id!r} stopped: the session was interrupted")
            if ready:
                try:
                    item = ray.get(next(running.generator))
                except StopIteration:
                    raise InfraError(
                        f"task {spec.task_id!r}: {self._where(running)} ended it without an outcome"
                    ) from None
                except Exception as e:
                    raise self._lost(running, spec, e) from None
                if "node" in item:
                    running.node = spec.engine = item["node"]
                elif "progress" in item:
                    if spec.progress is not None:
                        spec.progress(*item["progress"])
                else:
                    return dict(item)
            if deadline is not None and time.monotonic() > deadline:
                self._stop(running)
                raise TaskTimeout(f"task {spec.task_id!r} timed out after {spec.timeout:g} s (Ray task cancelled)")

    def _stop(self, running: _Running) -> None:
        """Cancel a task that ran out of time (its worker process is killed, and with it the sandbox actors it
        owned), then remove what it left on the nodes' engines: its containers and its sandboxes'."""
        ray = _ray()
        ray.cancel(running.generator, force=True)
        if not running.leaves_containers:
            return
        try:  # the worker gone first, so that nothing it was starting outlives the sweep
            ray.wait([running.generator], timeout=_CLEANUP_TIMEOUT / 4)
        except Exception as e:
            logger.info("waiting for a cancelled Ray task: %s", e)
        sweep_nodes(self.run_id, running.attempt)

    def _where(self, running: _Running) -> str:
        return running.node or "the Ray cluster"

    def _lost(self, running: _Running, spec: TaskSpec, error: Exception) -> BenchflowError:
        """What a Ray failure means for the task: its node (or worker process) died: an infra error naming it;
        the node could not start it (the bench's code not there): a task error saying so."""
        if running.interrupted.is_set():
            return TaskCancelled(f"task {spec.task_id!r} stopped: the session was interrupted")
        exceptions = _ray().exceptions
        if isinstance(error, exceptions.RayTaskError):
            lines = [line for line in str(error).splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else type(error).__name__
            return TaskError(
                f"task {spec.task_id!r}: {self._where(running)} could not run it: {reason[:500]} (is the bench's "
                "code installed on the nodes, or given with --benchflow-ray-runtime-env?)"
            )
        reason = first_line(str(error)) or type(error).__name__
        return InfraError(
            f"task {spec.task_id!r}: lost {self._where(running)} while it ran: {type(error).__name__}: {reason[:300]}"
        )

    def _unpack(self, outcome: dict[str, Any], spec: TaskSpec) -> None:
        """Extract the task's archives here (safe extraction, as a container's), add its usage, raise its error."""
        usage = outcome.get("usage")
        if usage:
            _merge_usage(spec.usage, usage)
        for what, dest in (("logs", spec.log_dir), ("results", spec.results_dir)):
            data = outcome.get(what) or b""
            if not data:
                continue
            with tempfile.TemporaryFile() as archive:
                spool([data], archive, f"{what} archive of task {spec.task_id!r}")
                extract_archive(archive, dest, f"{what} archive of task {spec.task_id!r} from {spec.engine}")
            check_links(dest, f"{what} of task {spec.task_id!r}")
        if outcome.get("error"):
            raise _rebuild(outcome["error"])
        spec.result = outcome.get("result")  # the node's get_result (an in-process task's), validated there


def _ship_by_value(cls: type) -> None:
    """A bench loaded from a file (``--benchflow=path.py:Class``) lives in a module no node can import by
    name: its module travels by value with the bench, so that its code needs nothing on the nodes."""
    import sys
    from importlib.machinery import PathFinder

    module = sys.modules.get(cls.__module__)
    if module is None or "." in cls.__module__:
        return  # a package's module: installed (or in the runtime_env) like the package
    # Found on sys.path by its name (not only in sys.modules, where a file loaded by path also is)?
    if cls.__module__ == "__main__" or PathFinder.find_spec(cls.__module__) is None:
        _ray().cloudpickle.register_pickle_by_value(module)


def _merge_usage(meter: UsageMeter, totals: Mapping[str, int]) -> None:
    counted = UsageMeter()
    counted.input_tokens = int(totals.get("input_tokens", 0))
    counted.output_tokens = int(totals.get("output_tokens", 0))
    counted.requests = int(totals.get("requests", 0))
    counted.cache_hits = int(totals.get("cache_hits", 0))
    counted.cache_misses = int(totals.get("cache_misses", 0))
    meter.merge(counted)


def _is_this_machine(address: str) -> bool:
    """Whether a node at ``address`` shares this machine's loopback (it is on this machine)."""
    from .loopback import is_loopback_url

    if is_loopback_url(f"http://{address}"):
        return True
    try:
        return address in {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        return False


_REMOTE: dict[int, Any] = {}


def _remote_node_task(ray: Any) -> Any:
    """``_node_task`` as a Ray remote function (made once per process)."""
    if id(ray) not in _REMOTE:
        _REMOTE[id(ray)] = ray.remote(_node_task)
    return _REMOTE[id(ray)]
