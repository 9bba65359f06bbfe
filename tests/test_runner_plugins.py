"""Runners are plugins: a runner shipped as a separate package, found by its entry point, runs tasks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import TOY_BENCH

RUNNER_PACKAGE = '''
from pathlib import Path
from pytest_benchflow.errors import RunnerError
from pytest_benchflow.runners import LocalRunner, Runner, RunnerOption


class RecordingRunner(Runner):
    """Runs tasks in-process and writes every step of its lifecycle to a log."""

    name = "recording"

    def __init__(self, log, run_id):
        self.log, self.run_id, self.inner = Path(log), run_id, LocalRunner()

    @classmethod
    def options(cls):
        return [RunnerOption("recording_log", "recording runner: file its steps go to", "steps.log")]

    @classmethod
    def from_options(cls, values, run_id):
        if not values["recording_log"].endswith(".log"):
            raise RunnerError(f"recording_log = {values['recording_log']!r}: must end in .log")
        return cls(values["recording_log"], run_id)

    def note(self, text):
        with open(self.log, "a") as f:
            f.write(text + "\\n")

    def execute(self, bench, spec, env):
        self.note(f"execute {spec.task_id}")
        self.inner.execute(bench, spec, env)

    def cleanup(self):
        self.note("cleanup")

    def cleanup_run(self):
        self.note(f"cleanup_run {self.run_id}")
'''


@pytest.fixture
def runner_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester) -> Path:
    """A separately installed runner: a module and its distribution metadata on the path."""
    site = tmp_path / "site"
    info = site / "recording_runner-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "recording_runner.py").write_text(RUNNER_PACKAGE)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: recording-runner\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pytest_benchflow.runners]\nrecording = recording_runner:RecordingRunner\n")
    path = os.pathsep.join([str(site), str(pytester.path), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    return site


def run_with(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(toy_bench=TOY_BENCH)
    return pytester.runpytest_subprocess(
        "--benchflow=toy_bench.py:ToyBench", "--agent=toy_bench:UpperAgent", "-p", "no:randomly", *args
    )


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_a_runner_from_another_package_runs_tasks(
    pytester: pytest.Pytester, runner_package: Path, xdist: list[str]
) -> None:
    result = run_with(pytester, "--benchflow-runner=recording", *xdist)
    result.assert_outcomes(passed=1, failed=1, errors=1)
    steps = (pytester.path / "steps.log").read_text().splitlines()
    assert sorted(s for s in steps if s.startswith("execute")) == ["execute bad", "execute boom", "execute good"]
    (summary,) = pytester.path.glob(".benchflow/*/summary.json")
    run_id = summary.parent.name
    assert steps.count(f"cleanup_run {run_id}") == 1 and steps[-1] == f"cleanup_run {run_id}"
    assert steps.count("cleanup") == (3 if xdist else 1)  # each worker and the controller
    assert json.loads(summary.read_text())["benches"]["ToyBench"]["runner"] == "recording"


def test_runner_settings_are_validated_by_the_runner(pytester: pytest.Pytester, runner_package: Path) -> None:
    pytester.makeini("[pytest]\nrecording_log = steps.txt\n")
    result = run_with(pytester, "--benchflow-runner=recording")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: recording_log = 'steps.txt': must end in .log"])


def test_unknown_runner_lists_the_installed_ones(pytester: pytest.Pytester, runner_package: Path) -> None:
    result = run_with(pytester, "--benchflow-runner=k8s")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --benchflow-runner 'k8s': choose one of docker, local, ray, recording"])


def test_a_runner_from_the_make_runner_hook(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(
        "from pytest_benchflow.runners import LocalRunner\n"
        "class Inline(LocalRunner):\n"
        "    name = 'inline'\n"
        "def pytest_benchflow_make_runner(config, name, run_id):\n"
        "    return Inline() if name == 'inline' else None\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), os.environ.get("PYTHONPATH", "")]))
    result = run_with(pytester, "--benchflow-runner=inline")
    result.assert_outcomes(passed=1, failed=1, errors=1)


def test_a_bench_without_container_methods_runs_in_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        minimal="""
from pathlib import Path
from pytest_benchflow import BaseBench, BenchArgs

def evaluate(env):
    Path(env["BENCHFLOW_RESULTS_DIR"], "done").write_text("yes")

class Minimal(BaseBench):
    def get_args(self, task_id):
        return BenchArgs(None)
    def get_all_tasks(self, split):
        return {"task_ids": ["one"], "error_message": None}
    def get_entrypoint(self):
        return evaluate
    def get_result(self, task_id):
        return {"is_resolved": Path(self.results_dir, "done").read_text() == "yes", "metrics": {}}
"""
    )
    agent = "--agent=conftest:EchoAgent"
    pytester.syspathinsert(Path(__file__).parent)
    pytester.runpytest("--benchflow=minimal.py:Minimal", agent).assert_outcomes(passed=1)
    in_container = pytester.runpytest("--benchflow=minimal.py:Minimal", agent, "--benchflow-runner=docker")
    # Once, before any task (tests/test_startup.py).
    assert in_container.ret == pytest.ExitCode.USAGE_ERROR
    in_container.stderr.fnmatch_lines(
        [
            "ERROR: Minimal has no container for the docker runner (get_image_name, *); run it with --benchflow-runner local"
        ]
    )


def _install(site: Path, dist: str, group: str, entry: str, module: str, source: str) -> None:
    """A distribution on ``site`` registering ``entry`` under ``group``, its module holding ``source``."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    (site / f"{module}.py").write_text(source)


@pytest.fixture
def broken_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester) -> Path:
    """A runner and a bench whose packages are installed but fail to import."""
    site = tmp_path / "site"
    site.mkdir()
    broken = "import no_such_dependency_anywhere\n"
    _install(site, "k8s-runner", "pytest_benchflow.runners", "k8s = k8s_runner:K8sRunner", "k8s_runner", broken)
    _install(site, "bad-bench", "pytest_benchflow.benchmarks", "bad = bad_bench:BadBench", "bad_bench", broken)
    path = os.pathsep.join([str(site), str(pytester.path), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    return site


def test_a_broken_runner_package_breaks_no_other_run(pytester: pytest.Pytester, broken_packages: Path) -> None:
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    plain = pytester.runpytest_subprocess("-p", "no:randomly", "test_plain.py")
    plain.assert_outcomes(passed=1)
    # Reported once, naming the distribution and the error.
    warned = [line for line in plain.outlines if "runner 'k8s' (from k8s-runner 1.0)" in line]
    assert len(warned) == 1 and "no_such_dependency_anywhere" in warned[0]
    # A benchmark session with another runner is not affected either, with xdist too.
    run_with(pytester, "--benchflow-runner=local", "-n", "2").assert_outcomes(passed=1, failed=1, errors=1)


def test_choosing_a_broken_runner_is_a_usage_error_with_its_reason(
    pytester: pytest.Pytester, broken_packages: Path
) -> None:
    result = run_with(pytester, "--benchflow-runner=k8s")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: runner 'k8s' (from k8s-runner 1.0): cannot import k8s_runner: *no_such_dependency_anywhere*"]
    )


def test_a_broken_bench_package_breaks_only_its_own_runs(pytester: pytest.Pytester, broken_packages: Path) -> None:
    run_with(pytester).assert_outcomes(passed=1, failed=1, errors=1)
    result = pytester.runpytest_subprocess("--benchflow=bad", "--agent=toy_bench:UpperAgent", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: benchmark 'bad': cannot import bad_bench: *no_such_dependency_anywhere*"])
