"""Hook specifications of pytest-benchflow, for conftest.py files and plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..bench import BaseBench
    from ..environment import TaskEnvironment
    from ..runners import Runner
    from ..schemas import BenchmarkResult


@pytest.hookspec(firstresult=True)
def pytest_benchflow_make_runner(config: pytest.Config, name: str, run_id: str) -> Runner | None:
    """Build the runner named ``name`` for run ``run_id``, or return None to leave it to others.

    Called once per process and runner name, before any task runs. The plugin's own
    implementation (run last) builds the runners registered under the ``pytest_benchflow.runners``
    entry point group from their ini settings; implement this hook to supply a runner that is
    not registered that way (it then reads its own settings from ``config``).
    """


@pytest.hookspec
def pytest_benchflow_task_environment(bench: BaseBench, task_id: str, env: TaskEnvironment) -> None:
    """Called before a task runs, in the process that runs it; change ``env`` in place.

    ``env`` is what the benchmark receives (in-process mapping or container environment).
    """


@pytest.hookspec
def pytest_benchflow_task_result(bench: BaseBench, task_id: str, result: BenchmarkResult) -> None:
    """Called with each task's validated result, in the process that ran it, before pass/fail is decided."""
