"""Hook specifications of pytest-benchflow, for conftest.py files and plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .bench import BaseBench
    from .environment import TaskEnvironment
    from .schemas import BenchmarkResult


@pytest.hookspec
def pytest_benchflow_task_environment(bench: BaseBench, task_id: str, env: TaskEnvironment) -> None:
    """Called before a task runs, in the process that runs it; change ``env`` in place.

    ``env`` is what the benchmark receives (in-process mapping or container environment).
    """


@pytest.hookspec
def pytest_benchflow_task_result(bench: BaseBench, task_id: str, result: BenchmarkResult) -> None:
    """Called with each task's validated result, in the process that ran it, before pass/fail is decided."""
