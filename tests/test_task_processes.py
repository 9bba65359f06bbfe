"""``--benchflow-task-processes P``: the in-process tasks of ``--benchflow-concurrency N`` run in P processes
forked from the pytest process; reporting, records and stopping stay in it."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from container_toy import junit
from test_concurrency import STARTS, STARTS_ARGS, records_of, timeless
from test_mmlu_pro import CS, HISTORY, replay_args
from test_secrets import LEAKY_BENCH, SECRET, assert_no_secret

from conftest import INTERRUPTIBLE, TOY, runs_by_start
from pytest_benchflow.plugin.session import INTERRUPTED

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="task processes are forked (Linux)")


def test_mmlu_pro_replay_is_the_same_in_threads_and_in_two_task_processes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_FILE", f"{HISTORY}{os.pathsep}{CS}")
    common = replay_args("--benchflow-arg=TASK_UNIT=question", "-k", "history", "--benchflow-concurrency=16")
    threads = pytester.runpytest_subprocess(*common, "--junitxml=threads.xml")
    processes = pytester.runpytest_subprocess(*common, "--junitxml=processes.xml", "--benchflow-task-processes=2")
    outcomes = threads.parseoutcomes()
    outcomes.pop("seconds", None)
    processes.assert_outcomes(**outcomes)
    assert "tasks run in this process" not in processes.stdout.str()
    first, second = runs_by_start(pytester)
    assert len(records_of(first)) == 381
    assert [timeless(r) for r in records_of(first)] == [timeless(r) for r in records_of(second)]
    assert (first / "samples.jsonl").read_text() == (second / "samples.jsonl").read_text()
    assert junit(pytester.path / "threads.xml") == junit(pytester.path / "processes.xml")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("0", "*--benchflow-task-processes 0: at least 1 (this process) runs the tasks*"),
        ("-2", "*--benchflow-task-processes -2: at least 1*"),
        ("some", "*--benchflow-task-processes 'some': give a whole number of processes*or auto*"),
        ("1.5", "*--benchflow-task-processes '1.5': give a whole number*"),
        ("257", "*--benchflow-task-processes 257: at most 256*try auto*"),
    ],
)
def test_bad_task_processes_is_a_usage_error(toy: pytest.Pytester, given: str, message: str) -> None:
    result = toy.runpytest(*TOY, "--benchflow-concurrency=2", f"--benchflow-task-processes={given}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_task_processes_without_concurrency_run_here_with_a_note(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY, "--benchflow-task-processes=2")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*--benchflow-task-processes 2: only tasks run at once (--benchflow-concurrency above 1)*; tasks run in this process"
        ]
    )


@pytest.fixture
def starts(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, echo_agent: str) -> pytest.Pytester:
    # A task "die-…" kills the process it runs in.
    pytester.makepyfile(
        starts_bench=STARTS.replace(
            'if task == "boom":', 'if task.startswith("die"):\n        os.kill(os.getpid(), 9)\n    if task == "boom":'
        )
    )
    monkeypatch.setenv("PYTHONPATH", f"{pytester.path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("STARTS_FILE", str(pytester.path / "started.txt"))
    monkeypatch.setenv("INTELLIGENCE_URL", echo_agent)
    return pytester


def test_a_task_process_that_dies_takes_only_its_running_tasks(
    starts: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = ["die-0", *[f"t{i}-0.3" for i in range(8)]]
    monkeypatch.setenv("STARTS_TASKS", json.dumps(tasks))
    result = starts.runpytest_subprocess(*STARTS_ARGS, "--benchflow-concurrency=2", "--benchflow-task-processes=2")
    (run,) = runs_by_start(starts)
    found = {r["task_id"]: r for r in records_of(run)}
    assert set(found) == set(tasks)  # every task is accounted for
    assert (found["die-0"]["outcome"], found["die-0"]["error_kind"]) == ("error", "infra")
    assert (
        "its task process (pid" in found["die-0"]["reason"]
        and "ended before the task finished" in found["die-0"]["reason"]
    )
    # The other process ran the rest: no task was sent to the dead one again.
    assert sum(r["outcome"] == "passed" for r in found.values()) >= len(tasks) - 2
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_bench_error_in_a_task_process_is_recorded_as_in_a_thread(
    starts: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARTS_TASKS", json.dumps(["boom", "t1-0.1"]))
    common = [*STARTS_ARGS, "--benchflow-concurrency=2"]
    starts.runpytest_subprocess(*common).assert_outcomes(passed=1, errors=1)
    starts.runpytest_subprocess(*common, "--benchflow-task-processes=2").assert_outcomes(passed=1, errors=1)
    threads, processes = ({r["task_id"]: r for r in records_of(run)}["boom"] for run in runs_by_start(starts))
    assert "RuntimeError: boom" in processes["reason"]
    assert [processes[k] for k in ("outcome", "reason", "details", "error_kind")] == [
        threads[k] for k in ("outcome", "reason", "details", "error_kind")
    ]


def test_ctrl_c_with_task_processes_leaves_a_record_per_started_task_and_no_process(
    starts: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARTS_TASKS", json.dumps([f"t{i}-10" for i in range(12)]))
    proc = starts.popen(
        [sys.executable, "-m", "pytest", *STARTS_ARGS, "--benchflow-concurrency=4", "--benchflow-task-processes=2"],
        **INTERRUPTIBLE,
    )
    started = starts.path / "started.txt"
    deadline = time.monotonic() + 120
    while not started.exists() or len(started.read_text().split()) < 4:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    children = _children_of(proc.pid)
    assert len(children) == 2
    # Each holds its own connection only: one holding a sibling's would keep it from seeing that pytest ended.
    assert [_sockets(pid) for pid in children] == [1, 1]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    (run,) = runs_by_start(starts)
    found = {r["task_id"]: r for r in records_of(run)}
    assert set(found) == set(started.read_text().split())
    assert {r["reason"] for r in found.values()} == {INTERRUPTED}
    assert all(not Path(f"/proc/{pid}").exists() for pid in children)


def _sockets(pid: int) -> int:
    return sum(os.readlink(fd).startswith("socket:") for fd in Path(f"/proc/{pid}/fd").iterdir())


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_x_starts_no_new_task_and_stops_the_ones_in_task_processes(
    starts: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = ["boom", "long-4", *[f"later{i}-0.5" for i in range(30)]]
    monkeypatch.setenv("STARTS_TASKS", json.dumps(tasks))
    result = starts.runpytest_subprocess(
        *STARTS_ARGS, "--benchflow-concurrency=2", "--benchflow-task-processes=2", "-x"
    )
    result.assert_outcomes(errors=1)
    started = (starts.path / "started.txt").read_text().split()
    assert "boom" in started and "long-4" in started and len(started) < 8
    (run,) = runs_by_start(starts)
    found = {r["task_id"]: r for r in records_of(run)}
    assert set(found) == set(started)
    assert (found["long-4"]["outcome"], found["long-4"]["reason"]) == ("error", INTERRUPTED)


def test_no_secret_leaves_a_task_process(pytester: pytest.Pytester, echo_agent: str) -> None:
    pytester.makepyfile(leaky=LEAKY_BENCH)
    url = echo_agent.replace("http://", "http://alice:pw-Zq81xx@")
    result = pytester.runpytest_subprocess(
        "--benchflow=leaky.py:Leaky",
        f"--agent-url={url}",
        f"--benchflow-arg=LEAKY_API_KEY={SECRET}",
        "--benchflow-concurrency=2",
        "--benchflow-task-processes=2",
        "--log-cli-level=INFO",
        "-rA",
    )
    result.assert_outcomes(failed=1)
    shown = result.stdout.str() + result.stderr.str()
    assert "calling http://" in shown  # the task process's logging reached the terminal, masked
    assert_no_secret(shown, pytester.path / ".benchflow")
    (record,) = records_of(next(pytester.path.glob(".benchflow/*/")))
    assert record["metrics"]["echo"] == "used ***"


UNSENDABLE = """
import json, os
from pytest_benchflow import BaseBench, BenchArgs


class TwoArgs(Exception):  # pickles, but does not load again: __init__ wants two arguments
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def evaluate(env):
    if env["TEST_START_ID"] == "raises":
        raise TwoArgs(1, 2)


class Unsendable(BaseBench):
    def get_args(self, task_id):
        return BenchArgs(None)

    def get_all_tasks(self, split):
        return {"task_ids": json.loads(os.environ["UNSENDABLE_TASKS"]), "error_message": None}

    def get_entrypoint(self):
        return evaluate

    def get_result(self, task_id):
        if task_id == "result-raises":
            raise TwoArgs("x", "y")
        other = {"error": TwoArgs(3, 4)} if task_id == "other-holds-it" else {"lambda": lambda: 1}
        return {"is_resolved": True, "metrics": {}, "other": other if task_id.startswith("other") else {}}
"""


@pytest.fixture
def unsendable(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, echo_agent: str) -> pytest.Pytester:
    pytester.makepyfile(unsendable_bench=UNSENDABLE)
    monkeypatch.setenv("PYTHONPATH", f"{pytester.path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("INTELLIGENCE_URL", echo_agent)
    return pytester


UNSENDABLE_ARGS = [
    "--benchflow=unsendable_bench.py:Unsendable",
    "-p",
    "no:randomly",
    "--benchflow-runner=local",
    "--benchflow-concurrency=2",
]


def test_a_bench_error_that_does_not_unpickle_is_recorded_as_in_a_thread(
    unsendable: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNSENDABLE_TASKS", json.dumps(["raises", "result-raises", "fine"]))
    unsendable.runpytest_subprocess(*UNSENDABLE_ARGS, timeout=120).assert_outcomes(passed=1, errors=2)
    processes = unsendable.runpytest_subprocess(*UNSENDABLE_ARGS, "--benchflow-task-processes=2", timeout=120)
    processes.assert_outcomes(passed=1, errors=2)
    threads, forked = ({r["task_id"]: r for r in records_of(run)} for run in runs_by_start(unsendable))
    assert "TwoArgs: 1/2" in forked["raises"]["details"] and "TwoArgs: x/y" in forked["result-raises"]["details"]
    for task in ("raises", "result-raises"):
        assert [forked[task][k] for k in ("outcome", "reason", "details", "error_kind")] == [
            threads[task][k] for k in ("outcome", "reason", "details", "error_kind")
        ]


def test_a_result_that_does_not_travel_back_is_an_error_record_not_a_hang(
    unsendable: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An object in `other` that pickles but does not load again, and one that does not pickle at all: the
    # result is refused where it is made (JSON cannot hold either), and no pool thread waits for a lost run.
    monkeypatch.setenv("UNSENDABLE_TASKS", json.dumps(["other-holds-it", "other-lambda", "fine"]))
    result = unsendable.runpytest_subprocess(*UNSENDABLE_ARGS, "--benchflow-task-processes=2", timeout=120)
    result.assert_outcomes(passed=1, errors=2)
    (run,) = runs_by_start(unsendable)
    found = {r["task_id"]: r for r in records_of(run)}
    for task, kind in (("other-holds-it", "TwoArgs"), ("other-lambda", "function")):
        assert found[task]["reason"].startswith(f"task {task!r}: invalid result: field other: ")
        assert f"Object of type {kind} is not JSON serializable" in found[task]["reason"]
    assert found["fine"]["outcome"] == "passed"
