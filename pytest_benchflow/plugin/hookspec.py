"""Hook specifications of pytest-benchflow, for conftest.py files and plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..bench import BaseBench
    from ..environment import TaskEnvironment
    from ..results.records import TaskRecord
    from ..runners import Runner
    from ..sandbox import SandboxProvider
    from ..schemas import BenchmarkResult
    from .items import BenchItem


@pytest.hookspec(firstresult=True)
def pytest_benchflow_make_runner(config: pytest.Config, name: str, run_id: str) -> Runner | None:
    """Build the runner named ``name`` for run ``run_id``, or return None to leave it to others.

    Called once per process and runner name, before any task runs. The plugin's own
    implementation (run last) builds the runners registered under the ``pytest_benchflow.runners``
    entry point group from their ini settings; implement this hook to supply a runner that is
    not registered that way (it then reads its own settings from ``config``).
    """


@pytest.hookspec(firstresult=True)
def pytest_benchflow_make_sandbox_provider(config: pytest.Config, name: str, run_id: str) -> SandboxProvider | None:
    """Build the sandbox provider named ``name`` (``--benchflow-sandbox``) for run ``run_id``, or return None.

    Called once per process, before any task runs. The plugin's own implementation (run last) builds the
    providers registered under the ``pytest_benchflow.sandboxes`` entry point group from their settings.
    """


@pytest.hookspec
def pytest_benchflow_task_environment(bench: BaseBench, task_id: str, env: TaskEnvironment) -> None:
    """Called before a task runs, in the process that runs it; change ``env`` in place.

    ``env`` is what the benchmark receives (in-process mapping or container environment).
    """


@pytest.hookspec
def pytest_benchflow_task_result(bench: BaseBench, task_id: str, result: BenchmarkResult) -> None:
    """Called with each task's validated result, in the process that ran it, before pass/fail is decided."""


@pytest.hookspec
def pytest_benchflow_record(record: TaskRecord, item: BenchItem) -> None:
    """Add fields to a finished task's record before it is written to ``results.jsonl``.

    Called once per task run (each epoch), in the process that ran it (an xdist worker under ``-n``),
    after its outcome is decided; not for a task whose worker process died. Put each field in
    ``record.extra`` (``record.extra["gpu"] = "A100"``): the line carries it at the top level, after
    the declared fields. Only new names and JSON values are taken; a name of a declared field
    (``outcome``, ``usage``…) or ``schema_version``, a value ``json.dumps`` refuses, and any change to
    the declared fields themselves are refused: the record is written as pytest-benchflow made it,
    with a warning and a note in ``notes`` naming what was refused. Secrets are masked in the values.

    ``item`` is the task's pytest item: ``item.bench_name``, ``item.task_id``, ``item.epoch``, ``item.result``
    (its BenchmarkResult, None when the run broke), ``item.task_run`` (the run's ``TaskRun``: usage, duration,
    engine, error),
    ``item.config``, its markers and ``user_properties``.
    """
