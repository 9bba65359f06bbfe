"""``ConcurrentTasks``: the pytest plugin that runs a session's tasks ahead of pytest in a ``TaskPool``
(``--benchflow-concurrency`` above 1), and gives every task it started a record when the session stops."""

from __future__ import annotations

import gc
from collections.abc import Generator
from typing import Any

import pytest

from ..client._limit import limit_for
from .concurrency import TaskPool, concurrent_safe, xdist_upcoming
from .session import BenchflowRun, packed_record
from .task_processes import TaskProcesses

__all__ = ["ConcurrentTasks"]


class ConcurrentTasks:
    """Runs the session's tasks ahead of pytest in a :class:`TaskPool` (registered with N > 1)."""

    def __init__(self, run: BenchflowRun, worker: bool) -> None:
        self.run = run
        self.worker = worker

    # Innermost: the pool (and the task processes forked for it) starts inside pytest's logging setup, so a
    # task's log records reach the same masked handlers from a thread or a task process.
    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        run, config = self.run, session.config
        # The xdist controller runs no task: its workers do, each with a pool of its own.
        if run.concurrency <= 1 or config.option.collectonly or config.pluginmanager.has_plugin("dsession"):
            return (yield)
        upcoming = xdist_upcoming(config) if self.worker else None
        # N tasks at once may each have a request in flight: the agents' shared limit in this process is at
        # least N, whatever each task's client asks for (a per-question task's default is 8).
        for url in {run.agent_url, *run.agents.values()}:
            limit_for(url, run.concurrency)
        # What collection built (items, benches, their data) lives until the session ends. Frozen, the
        # collector stops rescanning it each time the tasks' garbage triggers a collection: with thousands
        # of short tasks sharing one core, that scanning cost ~7% of the CPU (perf/run.py many).
        gc.freeze()
        processes = None
        if run.task_processes > 1:  # forked before the pool's threads exist
            processes = TaskProcesses(run, session.items, run.task_processes, run.concurrency)
        pool = TaskPool(
            run.concurrency,
            processes.execute if processes is not None else run.execute,
            may_start=lambda: not (session.shouldstop or session.shouldfail),
            serial=[name for name, ctx in run.benches.items() if not concurrent_safe(ctx.bench)],
            upcoming=upcoming,
            on_change=run.pool_changed,
        )
        if upcoming is None:
            pool.add(session.items)
        run.pool = pool
        try:
            return (yield)
        finally:
            gc.unfreeze()
            run.pool = None
            self._stop(pool, processes)

    def _stop(self, pool: TaskPool, processes: TaskProcesses | None) -> None:
        """No task starts; the running ones are cancelled (containers removed now); every started task
        pytest did not report gets its record."""
        pool.stopped.set()
        if pool.running:
            for runner in self.run.runners():
                runner.interrupt()
            if processes is not None:
                processes.interrupt()
        try:
            left = pool.stop()
        finally:
            if processes is not None:
                processes.close()
        records = [self.run.unreported_record(item, task_run) for item, task_run in left]
        if not records:
            return
        output: dict[str, Any] | None = getattr(self.run.config, "workeroutput", None)
        if output is not None:  # an xdist worker: its controller writes them (pytest_testnodedown)
            output["benchflow_unreported"] = [packed_record(*taken) for taken in records]
            return
        reporter = self.run.config.pluginmanager.get_plugin("benchflow-results")
        if reporter is not None:
            for taken in records:
                reporter.writer.add(*taken)
