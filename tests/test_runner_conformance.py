"""The runner conformance kit (pytest_benchflow.testing) against both shipped runners, and against broken ones."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from images import conformance_image, engine

from pytest_benchflow.bench import BaseBench
from pytest_benchflow.environment import TaskEnvironment
from pytest_benchflow.runners import LocalRunner, Runner, TaskSpec
from pytest_benchflow.runners.docker import DockerRunner
from pytest_benchflow.runners.labels import run_selector
from pytest_benchflow.testing import CHECKS, check_runner


def test_the_local_runner_conforms(tmp_path: Path) -> None:
    report = check_runner(lambda run_id: LocalRunner(), tmp_path)
    report.assert_passed()
    assert report["hostile_archive"].status == "skipped"  # in-process: nothing is copied
    assert [o.name for o in report.outcomes] == list(CHECKS)


def docker_leftovers(run_id: str) -> list[str]:
    """The containers of run ``run_id`` on the engine, by the run label every container carries."""
    return [c["Id"][:12] for c in engine().api.containers(all=True, filters={"label": run_selector(run_id)})]


@pytest.mark.docker
def test_the_docker_runner_conforms(tmp_path: Path) -> None:
    client = engine()
    image = conformance_image(client)
    report = check_runner(lambda run_id: DockerRunner(run_id), tmp_path, image=image, leftovers=docker_leftovers)
    report.assert_passed()
    assert all(o.status == "passed" for o in report.outcomes), str(report)


class _Sloppy(Runner):
    """Runs nothing, and says it did: every check that looks at what a task left must fail."""

    name = "sloppy"

    @classmethod
    def from_options(cls, values: Mapping[str, str], run_id: str) -> _Sloppy:
        return cls()

    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None:
        pass


def test_a_runner_that_breaks_the_contract_fails_each_check_it_breaks(tmp_path: Path) -> None:
    report = check_runner(lambda run_id: _Sloppy(), tmp_path, checks=["results", "logs", "progress", "failure"])
    assert [o.status for o in report.outcomes] == ["failed"] * 4, str(report)
    assert "the results did not arrive" in report["results"].detail
    assert "expected a TaskError" in report["failure"].detail
    with pytest.raises(AssertionError, match="4 conformance check"):
        report.assert_passed()


class _NoTimeout(LocalRunner):
    """Ignores the task's timeout: the kit must report it instead of hanging."""

    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None:
        spec.timeout = None
        super().execute(bench, spec, env)


def test_a_runner_ignoring_timeouts_fails_the_timeout_check_and_the_kit_goes_on(tmp_path: Path) -> None:
    report = check_runner(lambda run_id: _NoTimeout(), tmp_path, checks=["timeout", "logs"], patience=5)
    assert report["timeout"].status == "failed"
    assert "past the task's" in report["timeout"].detail
    assert report["logs"].status == "passed", str(report)


def test_an_unknown_check_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown conformance check.*resluts"):
        check_runner(lambda run_id: LocalRunner(), tmp_path, checks=["resluts"])
