"""Sessions that end badly: killed workers, signals, internal and usage errors — every task accounted for."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import INTERRUPTIBLE, TOY

BENCH = ["--benchflow=toy_bench.py:ToyBench", "-p", "no:randomly", "-p", "no:cacheprovider"]
# An agent command that records its pid, then serves UpperAgent (after ``delay`` seconds).
SERVE = """
import os, sys, time, toy_bench
open("agent.pid", "w").write(str(os.getpid()))
time.sleep(float(sys.argv[2]))
toy_bench.UpperAgent().run_with_endpoint("127.0.0.1", int(sys.argv[1]))
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_for(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def agent_pid(toy: pytest.Pytester) -> int:
    wait_for(lambda: (toy.path / "agent.pid").exists() and (toy.path / "agent.pid").read_text())
    return int((toy.path / "agent.pid").read_text())


def records(toy: pytest.Pytester) -> list[dict]:  # type: ignore[type-arg]
    (jsonl,) = toy.path.glob(".benchflow/*/results.jsonl")
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def test_killed_worker_task_is_an_error_everywhere(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    toy.makeconftest(
        "import os, signal\n"
        "def pytest_benchflow_task_environment(bench, task_id, env):\n"
        "    if task_id == 'die':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "die", "bad", "good2"]))
    result = toy.runpytest_subprocess(*TOY, "-n", "2")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    by_task = {r["task_id"]: r for r in records(toy)}
    assert by_task["die"]["outcome"] == "error"
    assert "crashed while running 'benchflow:ToyBench::die'" in by_task["die"]["reason"]
    (summary,) = toy.path.glob(".benchflow/*/summary.json")
    bench = json.loads(summary.read_text())["benches"]["ToyBench"]
    assert (bench["tasks"], bench["resolved"], bench["failed"], bench["errors"]) == (4, 2, 1, 1)


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_sigterm_unwinds_the_local_runner(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    toy.makepyfile(serve=SERVE)
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "sleep60", "good2"]))
    agent = f"--agent-cmd={sys.executable} serve.py {{port}} 0"
    proc = toy.popen(
        [sys.executable, "-m", "pytest", *BENCH, agent, "--junitxml=j.xml", *xdist],
        **INTERRUPTIBLE,
    )
    pid = agent_pid(toy)
    wait_for(lambda: any(toy.path.glob(".benchflow/*/results.jsonl")) and len(records(toy)) >= 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == pytest.ExitCode.INTERRUPTED
    (summary,) = toy.path.glob(".benchflow/*/summary.json")
    assert json.loads(summary.read_text())["interrupted"] is True
    assert "testcase" in (toy.path / "j.xml").read_text()
    wait_for(lambda: not alive(pid), timeout=15)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_agent_cmd_stopped_when_interrupted_during_its_health_check(toy: pytest.Pytester, sig: signal.Signals) -> None:
    toy.makepyfile(serve=SERVE)
    proc = toy.popen(
        [sys.executable, "-m", "pytest", *BENCH, f"--agent-cmd={sys.executable} serve.py {{port}} 60"],
        **INTERRUPTIBLE,
    )
    pid = agent_pid(toy)
    time.sleep(0.5)
    proc.send_signal(sig)
    proc.wait(timeout=50)  # the agent would not answer for 60 s: the signal, not the agent, ended the session
    wait_for(lambda: not alive(pid), timeout=15)
    assert not (toy.path / ".benchflow").exists() or not any((toy.path / ".benchflow").iterdir())


def test_agent_cmd_stopped_after_an_internal_error(toy: pytest.Pytester) -> None:
    toy.makepyfile(serve=SERVE)
    toy.makeconftest("def pytest_collection_finish(session):\n    raise RuntimeError('plugin bug')\n")
    result = toy.runpytest_subprocess(*BENCH, f"--agent-cmd={sys.executable} serve.py {{port}} 0")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    pid = int((toy.path / "agent.pid").read_text())
    wait_for(lambda: not alive(pid), timeout=15)


@pytest.mark.parametrize("kind", ["file", "below a file", "unwritable"])
def test_unusable_output_directory_is_a_usage_error_and_starts_nothing(toy: pytest.Pytester, kind: str) -> None:
    toy.makepyfile(serve=SERVE)
    (toy.path / "taken").write_text("a file")
    output = {"file": "taken", "below a file": "taken/out", "unwritable": "/proc/benchflow-out"}[kind]
    result = toy.runpytest(*BENCH, f"--agent-cmd={sys.executable} serve.py {{port}} 0", f"--benchflow-output={output}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --benchflow-output *: not a writable directory (*); choose another"])
    assert not (toy.path / "agent.pid").exists()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_usage_error_after_start_leaves_no_run_directory(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_LIST_ERROR", "dataset missing")
    result = toy.runpytest(*TOY)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not list((toy.path / ".benchflow").glob("*")) if (toy.path / ".benchflow").exists() else True
    from pytest_benchflow.results.cli import main

    assert main(["compare", str(toy.path / ".benchflow"), str(toy.path / ".benchflow")]) == 2


def test_everything_deselected_still_writes_an_empty_run(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY, "-k", "nothing-matches")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    (summary,) = toy.path.glob(".benchflow/*/summary.json")
    assert json.loads(summary.read_text())["benches"]["ToyBench"]["tasks"] == 0


def test_sys_exit_in_the_bench_is_an_error_not_an_exit(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    toy.makeconftest(
        "import sys\n"
        "def pytest_benchflow_task_environment(bench, task_id, env):\n"
        "    if task_id == 'bad':\n"
        "        sys.exit(0)\n"
    )
    result = toy.runpytest(*TOY)
    result.assert_outcomes(passed=1, errors=2)
    assert len(records(toy)) == 3


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX")
def test_counts_agree_between_files_and_pytest(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"good{i}" for i in range(5)] + ["bad", "boom"]))
    result = toy.runpytest_subprocess(*TOY, "-n", "2")
    outcomes = result.parseoutcomes()
    (summary,) = toy.path.glob(".benchflow/*/summary.json")
    bench = json.loads(summary.read_text())["benches"]["ToyBench"]
    assert (outcomes.get("passed"), outcomes.get("failed"), outcomes.get("errors")) == (
        bench["resolved"],
        bench["failed"],
        bench["errors"],
    )
    assert len(records(toy)) == bench["tasks"] == 7


def test_a_killed_worker_names_the_epoch_it_was_running(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    toy.makeconftest(
        "import os, signal\n"
        "def pytest_benchflow_task_environment(bench, task_id, env):\n"
        "    if task_id == 'die' and env['BENCHFLOW_LOG_DIR'].endswith('%epoch2'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "die"]))
    toy.runpytest_subprocess(*TOY, "-n", "2", "--benchflow-epochs=2").assert_outcomes(passed=3, errors=1)
    by_run = {(r["task_id"], r["epoch"]): r for r in records(toy)}
    assert set(by_run) == {("good", 1), ("good", 2), ("die", 1), ("die", 2)}
    crashed = by_run["die", 2]
    assert (
        crashed["outcome"] == "error" and "crashed while running 'benchflow:ToyBench::die[epoch2]'" in crashed["reason"]
    )
    assert crashed["log_dir"] == "ToyBench/logs/die%epoch2" and by_run["die", 1]["outcome"] == "passed"


LINELESS_INTERRUPT = """
import sys, types

def pytest_runtest_logfinish(nodeid, location):
    # A signal can land on an instruction with no line number (Python 3.11+): tb_lineno is then None.
    lineless = types.TracebackType(None, sys._getframe(), 10**6, -1)
    raise KeyboardInterrupt("signal 15").with_traceback(lineless)
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_an_interrupt_on_a_lineless_instruction_still_ends_as_interrupted(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "good2", "good3"]))
    toy.makeconftest(LINELESS_INTERRUPT)
    result = toy.runpytest_subprocess(*TOY, "--junitxml=j.xml", *xdist)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*signal 15*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    (summary,) = toy.path.glob(".benchflow/*/summary.json")
    assert json.loads(summary.read_text())["interrupted"] is True
    assert 1 <= len(records(toy)) < 3 and "testcase" in (toy.path / "j.xml").read_text()
