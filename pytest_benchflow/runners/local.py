"""``LocalRunner``: the bench's in-process entrance, in this process."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from ..bench import BaseBench
from ..client._cancel import cancel_scope, current_cancel
from ..environment import TaskEnvironment
from ..errors import BenchflowError, TaskCancelled, TaskError, TaskTimeout
from ..schemas import BenchmarkResult
from .base import Runner, TaskSpec, collect_result, prepare_task

__all__ = ["LocalRunner", "run_task"]


class LocalRunner(Runner):
    """Runs the bench's in-process entrance in this process.

    ``os.environ`` is never touched: the entrance gets the task's environment as a
    mapping. With a timeout the entrance runs in a daemon thread of its own: at the
    limit the task errors at once, its :class:`BenchClient` calls stop (no new request
    or retry starts; requests in flight are abandoned, in daemon threads), and nothing
    it left running keeps the process from exiting. Threads the bench starts itself are
    its own business: use :meth:`BenchClient.get_responses` for concurrency. Without a
    timeout the entrance runs in the calling thread. :meth:`interrupt` stops the
    :class:`BenchClient` calls of every running task as the timeout does.
    """

    name = "local"
    in_process = True

    def __init__(self) -> None:
        self._stops: set[threading.Event] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, values: Mapping[str, str], run_id: str) -> LocalRunner:
        return cls()

    def interrupt(self) -> None:
        """Stop the requests of every task running now: each one's next client call raises, so it unwinds."""
        with self._lock:
            for stop in self._stops:
                stop.set()

    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None:
        stop = threading.Event()
        with self._lock:
            self._stops.add(stop)
        try:
            self._execute(bench, spec, env, stop)
        finally:
            with self._lock:
                self._stops.discard(stop)

    def _execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment, stop: threading.Event) -> None:
        entrance = bench.get_entrypoint()
        if entrance is None:
            raise TaskError(
                f"{spec.bench_name} has no in-process entrance (get_entrypoint returns None); "
                "run it with a container runner (--benchflow-runner)"
            )
        if spec.timeout is None:
            try:
                spec.context(cancel_scope(stop)).run(entrance, env)
            except Exception as e:
                raise _evaluation_error(spec, e) from e
            return
        failure: list[BaseException] = []

        def target() -> None:
            try:
                entrance(env)
            except BaseException as e:
                failure.append(e)

        thread = threading.Thread(
            target=spec.context(cancel_scope(stop)).run,
            args=(target,),
            name=f"benchflow-task-{spec.task_id}",
            daemon=True,
        )
        thread.start()
        _wait(thread, spec.timeout, current_cancel())
        if thread.is_alive():
            stop.set()
            if _session_stopped():
                raise TaskCancelled(f"task {spec.task_id!r} stopped: the session stopped while it ran")
            raise TaskTimeout(f"task {spec.task_id!r} timed out after {spec.timeout:g} s")
        if failure:
            raise _evaluation_error(spec, failure[0]) from failure[0]


# How often a task with a time limit looks whether its session stopped (--benchflow-concurrency's Ctrl-C, -x).
_STOP_POLL = 0.1


def _wait(thread: threading.Thread, timeout: float, session_stop: threading.Event | None) -> None:
    """Wait for ``thread`` at most ``timeout`` seconds, or until ``session_stop`` is set."""
    if session_stop is None:
        thread.join(timeout)
        return
    deadline = time.monotonic() + timeout
    while thread.is_alive() and not session_stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        thread.join(min(left, _STOP_POLL))


def _session_stopped() -> bool:
    """Whether the calling thread's task was stopped by its session."""
    event = current_cancel()
    return event is not None and event.is_set()


def _evaluation_error(spec: TaskSpec, e: BaseException) -> TaskError:
    if isinstance(e, BenchflowError):
        return TaskError(f"task {spec.task_id!r}: {e}")
    return TaskError(f"task {spec.task_id!r}: the evaluation raised {type(e).__name__}: {e}")


def run_task(bench: BaseBench, spec: TaskSpec, runner: Runner | None = None) -> BenchmarkResult:
    """Run one task without pytest: prepare, execute (in-process by default), collect the result."""
    env = prepare_task(spec)
    try:
        (runner or LocalRunner()).execute(bench, spec, env)
    finally:
        spec.close()  # its sandboxes and transcript
    return collect_result(bench, spec)
