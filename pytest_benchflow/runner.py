"""Running one task: directories, environment, the evaluation, then ``get_result``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .bench import BaseBench
from .client import cancel_scope
from .environment import ProgressCallback, TaskEnvironment, task_environment
from .errors import BenchflowError, ResultError, TaskError, TaskTimeout
from .extract import make_task_dir
from .schemas import BenchmarkResult, ResolvedArgs, to_result

__all__ = ["LocalRunner", "Runner", "TaskSpec", "collect_result", "prepare_task", "run_task"]


@dataclass
class TaskSpec:
    """Everything needed to run one task of one bench."""

    bench_name: str
    task_id: str
    agent_url: str
    args: ResolvedArgs
    results_dir: Path
    log_dir: Path
    split: str = "test"
    timeout: float | None = None
    progress: ProgressCallback | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: Values to redact from whatever the runner writes (container logs).
    secret_values: list[str] = field(default_factory=list)


class Runner(Protocol):
    """Runs a task's evaluation so that its results land in ``spec.results_dir``."""

    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None: ...


def _ignore_progress(done: int, total: int) -> None:
    pass


def prepare_task(spec: TaskSpec) -> TaskEnvironment:
    """Create the task's directories (never through a symlink) and build its environment."""
    for directory in (spec.results_dir, spec.log_dir):
        make_task_dir(directory.parent, directory.name)
    env = task_environment(
        agent_url=spec.agent_url,
        task_id=spec.task_id,
        split=spec.split,
        args=spec.args,
        results_dir=str(spec.results_dir),
        log_dir=str(spec.log_dir),
    )
    # In-process, progress goes to the runner's callback, never to stdout.
    env.progress_callback = spec.progress or _ignore_progress
    return env


def collect_result(bench: BaseBench, spec: TaskSpec) -> BenchmarkResult:
    """Point the bench at the task's directories (for this thread) and validate ``get_result``."""
    bench.results_dir = str(spec.results_dir)
    bench.log_files_dir = str(spec.log_dir)
    try:
        raw = bench.get_result(spec.task_id)
    except BenchflowError:
        raise
    except Exception as e:
        raise ResultError(f"task {spec.task_id!r}: get_result raised {type(e).__name__}: {e}") from e
    return to_result(raw, spec.task_id)


class LocalRunner:
    """Runs the bench's in-process entrance in this process.

    ``os.environ`` is never touched: the entrance gets the task's environment as a
    mapping. With a timeout the entrance runs in a daemon thread of its own: at the
    limit the task errors at once, its :class:`BenchClient` calls stop (no new request
    or retry starts; requests in flight are abandoned, in daemon threads), and nothing
    it left running keeps the process from exiting. Threads the bench starts itself are
    its own business: use :meth:`BenchClient.get_responses` for concurrency. Without a
    timeout the entrance runs in the calling thread.
    """

    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None:
        entrance = bench.get_entrypoint()
        if entrance is None:
            raise TaskError(
                f"{spec.bench_name} has no in-process entrance (get_entrypoint returns None); "
                "run it with --benchflow-runner docker"
            )
        if spec.timeout is None:
            try:
                entrance(env)
            except Exception as e:
                raise _evaluation_error(spec, e) from e
            return
        failure: list[BaseException] = []

        def target() -> None:
            try:
                entrance(env)
            except BaseException as e:
                failure.append(e)

        stop = threading.Event()
        thread = threading.Thread(
            target=cancel_scope(stop).run, args=(target,), name=f"benchflow-task-{spec.task_id}", daemon=True
        )
        thread.start()
        thread.join(spec.timeout)
        if thread.is_alive():
            stop.set()
            raise TaskTimeout(f"task {spec.task_id!r} timed out after {spec.timeout:g} s")
        if failure:
            raise _evaluation_error(spec, failure[0]) from failure[0]


def _evaluation_error(spec: TaskSpec, e: BaseException) -> TaskError:
    if isinstance(e, BenchflowError):
        return TaskError(f"task {spec.task_id!r}: {e}")
    return TaskError(f"task {spec.task_id!r}: the evaluation raised {type(e).__name__}: {e}")


def run_task(bench: BaseBench, spec: TaskSpec, runner: Runner | None = None) -> BenchmarkResult:
    """Run one task without pytest: prepare, execute (in-process by default), collect the result."""
    env = prepare_task(spec)
    (runner or LocalRunner()).execute(bench, spec, env)
    return collect_result(bench, spec)
