"""Labels of task containers: values any orchestrator accepts, the raw task id kept in the task's environment."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from images import conformance_image, engine

from pytest_benchflow.agent_server import BaseAgent
from pytest_benchflow.environment import TaskEnvironment
from pytest_benchflow.runners import TaskSpec, prepare_task
from pytest_benchflow.runners.docker import DockerRunner
from pytest_benchflow.runners.labels import LABEL_VALUE_MAX, TASK_LABEL, run_selector, safe_label_value
from pytest_benchflow.schemas import ResolvedArgs
from pytest_benchflow.testing import ConformanceBench

# Kubernetes' rule for a label value (the strictest in common use).
VALID = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?")
AWKWARD_ID = "hang ünïcødé task / with spaces: " + "x" * 200


@pytest.mark.parametrize(
    "raw", [AWKWARD_ID, "a b", "-leading", "trailing.", "日本語", "x" * 64, "../../etc", "", "tab\there"]
)
def test_a_label_value_is_valid_for_any_orchestrator(raw: str) -> None:
    value = safe_label_value(raw)
    assert VALID.fullmatch(value) and len(value) <= LABEL_VALUE_MAX, value


def test_safe_values_stay_and_changed_ones_stay_apart() -> None:
    for raw in ("alpha", "task-1.2_b", "20240101-120000-ab12", "x" * 63):
        assert safe_label_value(raw) == raw
    # Two ids that agree on their first 63 characters, or differ only in characters replaced, keep distinct labels.
    assert safe_label_value("y" * 70 + "1") != safe_label_value("y" * 70 + "2")
    assert safe_label_value("a b") != safe_label_value("a/b")


@pytest.mark.docker
def test_a_task_id_with_spaces_unicode_and_200_characters_labels_its_container_safely(tmp_path: Path) -> None:
    client = engine()
    image = conformance_image(client)
    run_id = f"labels-{time.monotonic_ns()}"
    runner = DockerRunner(run_id)
    with _Echo().serve() as agent:
        bench = ConformanceBench(image)
        spec = TaskSpec(
            bench_name="ConformanceBench",
            task_id=AWKWARD_ID,
            agent_url=agent.url,
            args=ResolvedArgs(),
            results_dir=tmp_path / "results",
            log_dir=tmp_path / "logs",
            labels={"benchflow.bench": "ConformanceBench", TASK_LABEL: AWKWARD_ID},
            transcripts=False,
        )
        env = prepare_task(spec)
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _execute(runner, bench, spec, env, errors), daemon=True)
        thread.start()
        try:
            container = _own_container(run_id, thread)
            labels, environment = container["Config"]["Labels"], container["Config"]["Env"]
            for key in ("benchflow.run", "benchflow.bench", TASK_LABEL):
                assert VALID.fullmatch(labels[key]) and len(labels[key]) <= LABEL_VALUE_MAX, (key, labels[key])
            assert labels[TASK_LABEL] == safe_label_value(AWKWARD_ID) != AWKWARD_ID
            # The raw id is where the task and its record read it.
            assert f"TEST_START_ID={AWKWARD_ID}" in environment
        finally:
            runner.interrupt()
            thread.join(120)
            runner.cleanup_run()
    assert not thread.is_alive() and errors  # interrupted: the task errored, it did not pass


class _Echo(BaseAgent):
    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        return str(task_step_inputs.get("say", "")).upper()


def _execute(
    runner: DockerRunner, bench: ConformanceBench, spec: TaskSpec, env: TaskEnvironment, errors: list[BaseException]
) -> None:
    try:
        runner.execute(bench, spec, env)
    except BaseException as e:
        errors.append(e)


def _own_container(run_id: str, thread: threading.Thread) -> dict[str, Any]:
    """The inspected container of run ``run_id`` once it runs (found by the run's label)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and thread.is_alive():
        found = engine().api.containers(filters={"label": run_selector(run_id)})
        if found:
            inspected: dict[str, Any] = engine().api.inspect_container(found[0]["Id"])
            return inspected
        time.sleep(0.2)
    raise AssertionError("the task's container never ran")
