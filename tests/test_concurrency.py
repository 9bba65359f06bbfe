"""``--benchflow-concurrency N``: many tasks at once from one pytest process, reported one by one in order."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from container_toy import ARGS as DOCKER_ARGS
from container_toy import junit
from test_mmlu_pro import CS, HISTORY, replay_args

from conftest import INTERRUPTIBLE, TOY, runs_by_start
from pytest_benchflow.plugin.session import INTERRUPTED


def records_of(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def timeless(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("duration", "finished_at")}


def test_mmlu_pro_replay_is_the_same_at_1_and_16(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLAY_FILE", f"{HISTORY}{os.pathsep}{CS}")
    replay = pytester
    # 381 questions, one item each: the same records, samples and JUnit one by one and 16 at once.
    common = replay_args("--benchflow-arg=TASK_UNIT=question", "-k", "history", "--benchflow-runner=local")
    one = replay.runpytest(*common, "--junitxml=one.xml")
    many = replay.runpytest(*common, "--junitxml=many.xml", "--benchflow-concurrency=16", "-v")
    outcomes = one.parseoutcomes()
    outcomes.pop("seconds", None)
    many.assert_outcomes(**outcomes)
    first, second = runs_by_start(replay)
    assert [timeless(r) for r in records_of(first)] == [timeless(r) for r in records_of(second)]
    assert len(records_of(first)) == 381
    assert (first / "samples.jsonl").read_text() == (second / "samples.jsonl").read_text()
    assert junit(replay.path / "one.xml") == junit(replay.path / "many.xml")
    # Items are reported in collection order, as with one at a time.
    reported = [line.split()[0] for line in many.outlines if line.startswith("benchflow:") and "PASSED" in line]
    listed = [r["nodeid"] for r in records_of(first) if r["outcome"] == "passed"]
    assert reported == listed


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("0", "*--benchflow-concurrency 0: at least 1 task must run at once*"),
        ("-4", "*--benchflow-concurrency -4: at least 1 task must run at once*"),
        ("many", "*--benchflow-concurrency 'many': give a whole number of tasks at once*or auto*"),
        ("2.5", "*--benchflow-concurrency '2.5': give a whole number*"),
        ("10001", "*--benchflow-concurrency 10001: at most 10,000 tasks at once in one process*"),
    ],
)
def test_bad_concurrency_is_a_usage_error(toy: pytest.Pytester, given: str, message: str) -> None:
    result = toy.runpytest(*TOY, f"--benchflow-concurrency={given}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not (toy.path / ".benchflow").exists() or not list((toy.path / ".benchflow").glob("*/results.jsonl"))


def test_auto_without_a_capacity_runs_one_at_a_time_with_a_note(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY, "--benchflow-concurrency=auto")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*--benchflow-concurrency auto: the runner (local) cannot say*; tasks run one at a time"]
    )


def test_the_ini_setting_is_read(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"t{i}sleep1" for i in range(6)]))
    toy.makeini("[pytest]\nbenchflow_concurrency = 6\n")
    started = time.monotonic()
    toy.runpytest(*TOY).assert_outcomes(passed=6)
    # Six tasks of 1 s, all at once: one process took far less than the 6 s of one by one.
    assert time.monotonic() - started < 6


STARTS = """
import json, os, time
from pathlib import Path
from pytest_benchflow import BaseBench, BenchArgs

STARTED = Path(os.environ["STARTS_FILE"])


def evaluate(env):
    task = env["TEST_START_ID"]
    with STARTED.open("a") as f:
        f.write(task + "\\n")
    if task == "boom":
        raise RuntimeError("boom")
    begun = time.time()
    time.sleep(float(task.split("-")[-1]))
    if os.environ.get("SPANS_FILE"):  # when each task really ran (a record's finished_at is when it was reported)
        with open(os.environ["SPANS_FILE"], "a") as f:
            f.write(f"{begun} {time.time()}\\n")
    Path(env["BENCHFLOW_RESULTS_DIR"], "done").write_text("yes")


class Starts(BaseBench):
    concurrent_safe = os.environ.get("SAFE", "1") == "1"

    def get_args(self, task_id):
        return BenchArgs(None)

    def get_all_tasks(self, split):
        return {"task_ids": json.loads(os.environ["STARTS_TASKS"]), "error_message": None}

    def get_entrypoint(self):
        return evaluate

    def get_result(self, task_id):
        return {"is_resolved": Path(self.results_dir, "done").exists(), "metrics": {}}
"""


@pytest.fixture
def starts(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, echo_agent: str) -> pytest.Pytester:
    pytester.makepyfile(starts_bench=STARTS)
    monkeypatch.syspath_prepend(pytester.path)
    monkeypatch.setenv("STARTS_FILE", str(pytester.path / "started.txt"))
    monkeypatch.setenv("INTELLIGENCE_URL", echo_agent)
    return pytester


STARTS_ARGS = ["--benchflow=starts_bench.py:Starts", "-p", "no:randomly", "--benchflow-runner=local"]


def test_x_starts_no_new_task_and_records_the_running_ones(
    starts: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = ["boom", "long-4", *[f"later{i}-0.5" for i in range(30)]]
    monkeypatch.setenv("STARTS_TASKS", json.dumps(tasks))
    result = starts.runpytest(*STARTS_ARGS, "--benchflow-concurrency=2", "-x")
    result.assert_outcomes(errors=1)  # the running task is not reported as a test outcome
    started = (starts.path / "started.txt").read_text().split()
    assert "boom" in started and "long-4" in started
    assert len(started) < 8  # the stop came after boom's report: the rest never started
    (run,) = runs_by_start(starts)
    found = {r["task_id"]: r for r in records_of(run)}
    assert set(found) == set(started)  # every started task is accounted for
    assert found["boom"]["outcome"] == "error"
    assert (found["long-4"]["outcome"], found["long-4"]["reason"]) == ("error", INTERRUPTED)


def test_a_bench_that_is_not_concurrent_safe_runs_one_at_a_time(
    starts: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARTS_TASKS", json.dumps([f"t{i}-0.5" for i in range(4)]))
    monkeypatch.setenv("SAFE", "0")
    monkeypatch.setenv("SPANS_FILE", str(starts.path / "spans.txt"))
    result = starts.runpytest(*STARTS_ARGS, "--benchflow-concurrency=4")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["--benchflow-concurrency 4: Starts declares concurrent_safe = False; its tasks run one at a time"]
    )
    spans = sorted(tuple(map(float, line.split())) for line in (starts.path / "spans.txt").read_text().splitlines())
    assert len(spans) == 4
    assert all(later[0] >= earlier[1] - 0.05 for earlier, later in itertools.pairwise(spans))  # never two at once


def test_xdist_workers_each_run_many(starts: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # -n 2 with 4 at once per worker: 16 tasks of 1 s take far less than 8 s (what -n 2 alone would take).
    monkeypatch.setenv("STARTS_TASKS", json.dumps([f"t{i}-1" for i in range(16)]))
    result = starts.runpytest_subprocess(*STARTS_ARGS, "-n", "2", "--benchflow-concurrency=4")
    result.assert_outcomes(passed=16)
    (run,) = runs_by_start(starts)
    spans = [(r["finished_at"] - r["duration"], r["finished_at"]) for r in records_of(run)]
    peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert peak > 2  # more than one task per process at some moment


# --- In containers ---------------------------------------------------------------------------


@pytest.mark.docker
def test_16_container_tasks_of_2_s_from_one_process(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"nap{i}" for i in range(16)]))
    result = docker_toy.runpytest_subprocess(*DOCKER_ARGS, "--benchflow-concurrency=16", "--benchflow-docker-slots=16")
    result.assert_outcomes(passed=16)
    (run,) = runs_by_start(docker_toy)
    spans = [(r["finished_at"] - r["duration"], r["finished_at"]) for r in records_of(run)]
    # From one process, the 16 containers ran at once: on an idle machine the run takes ~2 s more than one
    # task; on a loaded one each task takes longer, but all of them together still take a fraction of
    # their sum (one by one, the span is the sum of the durations).
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    assert wall < sum(e - s for s, e in spans) / 4
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) >= 8


@pytest.mark.docker
def test_ctrl_c_at_16_leaves_no_container_and_a_record_per_started_task(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from images import engine

    monkeypatch.setenv("TOY_TASKS", json.dumps(["sleep", *[f"nap{i}" for i in range(40)]]))
    monkeypatch.setenv("NAP", "30")
    proc = docker_toy.popen(
        [sys.executable, "-m", "pytest", *DOCKER_ARGS, "--benchflow-concurrency=16", "--benchflow-docker-slots=16"],
        **INTERRUPTIBLE,
    )
    output = docker_toy.path / ".benchflow"
    deadline = time.monotonic() + 120
    client = engine()
    while True:  # until the run has several containers running
        assert time.monotonic() < deadline and proc.poll() is None
        runs = [p.name for p in output.iterdir() if p.is_dir()] if output.exists() else []
        if runs and len(client.api.containers(filters={"label": f"benchflow.run={runs[0]}"})) >= 4:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    (run,) = [p for p in output.iterdir() if p.is_dir()]
    assert client.api.containers(all=True, filters={"label": f"benchflow.run={run.name}"}) == []
    found = {r["task_id"]: r for r in records_of(run)}
    # Every task whose directory was made (it started) has a record; none ran to its end.
    began = {p.name for p in (run / "DockerToy" / "logs").iterdir()}
    assert began and set(found) == began
    assert {r["reason"] for r in found.values()} == {INTERRUPTED}
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True


PEAK_AGENT = """
import threading, time
from pathlib import Path
from pytest_benchflow import BaseAgent

_lock = threading.Lock()
_in_flight = [0, 0]


class PeakAgent(BaseAgent):
    def call_api(self, inputs):
        with _lock:
            _in_flight[0] += 1
            _in_flight[1] = max(_in_flight)
            Path("peak.txt").write_text(str(_in_flight[1]))
        time.sleep(0.5)
        with _lock:
            _in_flight[0] -= 1
        return inputs["question"].upper()
"""


def test_n_tasks_at_once_may_have_n_requests_in_flight_to_the_agent(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each task's client asks for 8 requests in flight at most (its default), yet 24 tasks at once
    of one request each must not queue behind 8: the agent's limit in the process is at least N."""
    toy.makepyfile(peak_agent=PEAK_AGENT)
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"good{i}" for i in range(24)]))
    args = [a for a in TOY if not a.startswith("--agent=")]
    result = toy.runpytest(*args, "--agent=peak_agent:PeakAgent", "--benchflow-concurrency=24")
    result.assert_outcomes(passed=24)
    assert int((toy.path / "peak.txt").read_text()) > 8
