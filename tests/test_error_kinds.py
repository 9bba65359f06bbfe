"""Why a task errored: each kind from a real fault, in the record, JUnit, summary and terminal; infra reruns."""

from __future__ import annotations

import json
import signal
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import INTERRUPTIBLE, TOY
from pytest_benchflow import InfraError, TaskError, VerifierError
from pytest_benchflow.errors import ERROR_KINDS, AgentUnreachable, TaskTimeout, error_kind


def records(pytester: pytest.Pytester) -> list[dict]:  # type: ignore[type-arg]
    (jsonl,) = pytester.path.glob(".benchflow/*/results.jsonl")
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def summary(pytester: pytest.Pytester) -> dict:  # type: ignore[type-arg]
    (path,) = pytester.path.glob(".benchflow/*/summary.json")
    return json.loads(path.read_text())["benches"]  # type: ignore[no-any-return]


def test_each_class_has_its_kind_and_others_are_the_bench() -> None:
    assert error_kind(AgentUnreachable("down", url="http://x")) == "agent"
    assert error_kind(InfraError("engine lost")) == "infra"
    assert error_kind(TaskTimeout("late")) == "timeout"
    assert error_kind(VerifierError("crashed")) == "verifier"
    assert error_kind(RuntimeError("bug")) == "bench"
    assert error_kind(KeyboardInterrupt()) == "interrupted"
    try:  # a runner's wrapper adds words, not a kind
        try:
            raise AgentUnreachable("down", url="http://x")
        except AgentUnreachable as e:
            raise TaskError(f"task 't': {e}") from e
    except TaskError as wrapped:
        assert error_kind(wrapped) == "agent"
    assert ERROR_KINDS == ("agent", "infra", "bench", "verifier", "timeout", "budget", "interrupted")


DOWN_AGENT = """
from pytest_benchflow import BaseAgent

class Down(BaseAgent):
    def call_api(self, inputs):
        if "down" in inputs["question"]:
            raise RuntimeError("the model is down")
        return inputs["question"].upper()
"""

VERIFIED = """
from toy_bench import ToyBench
from pytest_benchflow import VerifierError

class Verified(ToyBench):
    def get_result(self, task_id):
        if task_id == "check":
            raise VerifierError("the verifier crashed on " + task_id)
        return super().get_result(task_id)
"""


def test_bench_agent_and_timeout_errors_carry_their_kind_everywhere(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy.makepyfile(down=DOWN_AGENT)
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "bad", "boom", "down", "sleep30"]))
    result = toy.runpytest(
        "--benchflow=toy_bench.py:ToyBench",
        "--agent=down:Down",
        "-p",
        "no:randomly",
        "--benchflow-timeout=2",
        "--junitxml=j.xml",
    )
    result.assert_outcomes(passed=1, failed=1, errors=3)
    kinds = {r["task_id"]: r.get("error_kind") for r in records(toy)}
    assert kinds == {"good": None, "bad": None, "boom": "bench", "down": "agent", "sleep30": "timeout"}
    cases = {c.get("name"): c for c in ET.parse(toy.path / "j.xml").getroot().iter("testcase")}
    for task in ("boom", "down", "sleep30"):
        (error,) = cases[task].findall("error")
        assert error.get("type") == kinds[task]
        props = {p.get("name"): p.get("value") for p in cases[task].iter("property")}
        assert props["error_kind"] == kinds[task]
    assert cases["bad"].find("failure") is not None and cases["bad"].find("failure").get("type") is None  # type: ignore[union-attr]
    bench = summary(toy)["ToyBench"]
    assert bench["error_kinds"] == {"agent": 1, "bench": 1, "timeout": 1}
    # No infrastructure error: the two rates are the same, and the terminal shows one.
    assert bench["resolution_rate_without_infra"] == bench["resolution_rate"] == 0.2
    assert bench["infra_errors"] == 0
    result.stdout.fnmatch_lines(
        [
            "ToyBench (test): 5 tasks, 1 resolved, 1 failed, 3 errors (1 agent, 1 bench, 1 timeout); resolution rate 20.0% *"
        ]
    )
    assert "without infrastructure errors" not in result.stdout.str()


def test_a_bench_raising_verifier_error_records_verifier(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    toy.makepyfile(verified=VERIFIED)
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "check"]))
    result = toy.runpytest("--benchflow=verified.py:Verified", "--agent=toy_bench:UpperAgent", "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    (errored,) = [r for r in records(toy) if r["outcome"] == "error"]
    assert (errored["error_kind"], errored["reason"]) == ("verifier", "the verifier crashed on check")


# The sandbox dies once per task, after the agent answered (so that attempt was paid for): an infrastructure fault.
FLAKY_SANDBOX = """
from pathlib import Path
import toy_bench
from pytest_benchflow import InfraError

def evaluate(env):
    toy_bench.evaluate(env)
    died = Path(env["BENCHFLOW_LOG_DIR"], "died")
    count = int(died.read_text()) if died.exists() else 0
    if count < int(env.get("DEATHS", "1")) and "solid" not in env["TEST_START_ID"]:
        died.write_text(str(count + 1))
        raise InfraError("the sandbox died")

class Flaky(toy_bench.ToyBench):
    def get_args(self, task_id):
        from pytest_benchflow import BenchArgs
        return BenchArgs({"optional": [{"MODE": "normal"}, {"DEATHS": "1"}]})

    def get_entrypoint(self):
        return evaluate
"""
PRICED = """
from pytest_benchflow import AgentAnswer, BaseAgent

class Priced(BaseAgent):
    def call_api(self, inputs):
        return AgentAnswer(inputs["question"].upper(), {"input_tokens": 1000, "output_tokens": 10})
"""
FLAKY = ["--benchflow=flaky.py:Flaky", "--agent=priced:Priced", "-p", "no:randomly", "--benchflow-price=1,1"]
# Without a price: a baseline read back from a priced run's summary is refused today ('usage.cost' is not whole).
UNPRICED = FLAKY[:-1]


def test_an_infra_error_is_rerun_and_every_attempts_usage_counts_once(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy.makepyfile(flaky=FLAKY_SANDBOX, priced=PRICED)
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "good2"]))
    result = toy.runpytest(*FLAKY, "--junitxml=j.xml")  # the default: one rerun of infra errors
    result.assert_outcomes(passed=2)
    for record in records(toy):
        assert record["outcome"] == "passed" and "error_kind" not in record
        (attempt,) = record["attempts"]
        assert (attempt["error_kind"], attempt["reason"]) == ("infra", f"task {record['task_id']!r}: the sandbox died")
        assert attempt["usage"]["requests"] == 1
        assert record["usage"]["requests"] == 2 and record["usage"]["input_tokens"] == 2000
    bench = summary(toy)["Flaky"]
    assert bench["reruns"] == 2 and bench["usage"]["requests"] == 4 and bench["usage"]["input_tokens"] == 4000
    result.stdout.fnmatch_lines(["  usage: 4,000 input + 40 output tokens, 4 requests; cost *; 2 reruns included*"])
    props = {p.get("name"): p.get("value") for p in ET.parse(toy.path / "j.xml").getroot().iter("property")}
    assert props["attempts"] == "2"


def test_reruns_stop_at_n_and_zero_turns_them_off(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    toy.makepyfile(flaky=FLAKY_SANDBOX, priced=PRICED)
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good"]))
    monkeypatch.setenv("DEATHS", "3")
    result = toy.runpytest(*FLAKY, "--benchflow-rerun-infra=2")
    result.assert_outcomes(errors=1)
    (record,) = records(toy)
    assert record["error_kind"] == "infra" and len(record["attempts"]) == 2 and record["usage"]["requests"] == 3
    bench = summary(toy)["Flaky"]
    assert (bench["infra_errors"], bench["resolution_rate"], bench["resolution_rate_without_infra"]) == (1, 0.0, None)
    result.stdout.fnmatch_lines(
        [
            "Flaky (test): 1 task, 0 resolved, 0 failed, 1 error (1 infra); resolution rate (strict: every error unresolved) 0.0% *",
            "  resolution rate without infrastructure errors n/a: 1 task run with infrastructure errors * left out",
        ]
    )


def test_only_infra_is_rerun_unless_the_kinds_say_so(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    toy.makepyfile(down=DOWN_AGENT)
    monkeypatch.setenv("TOY_TASKS", json.dumps(["down"]))
    common = ["--benchflow=toy_bench.py:ToyBench", "--agent=down:Down", "-p", "no:randomly"]
    toy.runpytest(*common).assert_outcomes(errors=1)
    (record,) = records(toy)
    assert record["error_kind"] == "agent" and "attempts" not in record
    toy.runpytest(*common, "--benchflow-rerun-kinds=agent,infra", "--benchflow-output=wide").assert_outcomes(errors=1)
    (jsonl,) = toy.path.glob("wide/*/results.jsonl")
    (record,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [a["error_kind"] for a in record["attempts"]] == ["agent"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--benchflow-rerun-kinds=infra,network"],
            "ERROR: --benchflow-rerun-kinds: 'network' is not a kind that can be rerun; choose among agent, infra, bench, verifier, timeout (comma-separated)",
        ),
        (
            ["--benchflow-rerun-kinds=budget"],
            "ERROR: --benchflow-rerun-kinds: 'budget' is not a kind that can be rerun*",
        ),
        (
            ["--benchflow-rerun-infra=-1"],
            "ERROR: --benchflow-rerun-infra '-1': give how many times an errored task is run again, a whole number from 0 to 10",
        ),
        (["--benchflow-rerun-infra=1000000"], "ERROR: --benchflow-rerun-infra '1000000': *a whole number from 0 to 10"),
        (
            ["--benchflow-rerun-infra=" + "9" * 400],
            "ERROR: --benchflow-rerun-infra '9999999999999999999999999999999999999999… (400 characters)': *",
        ),
        (["-o", "benchflow_rerun_infra=two"], "ERROR: --benchflow-rerun-infra 'two': *"),
    ],
)
def test_bad_rerun_settings_are_one_line_usage_errors(toy: pytest.Pytester, args: list[str], message: str) -> None:
    result = toy.runpytest(*TOY, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert len([line for line in result.stderr.lines if line.strip()]) == 1


def test_ctrl_c_records_the_running_task_as_interrupted(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "sleep60", "good2"]))
    proc = toy.popen([sys.executable, "-m", "pytest", *TOY, "--junitxml=j.xml"], **INTERRUPTIBLE)
    try:
        # The task is running once its log directory exists (made before it starts).
        deadline = time.monotonic() + 60
        while not list(toy.path.glob(".benchflow/*/ToyBench/logs/sleep60")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == pytest.ExitCode.INTERRUPTED
    finally:
        if proc.poll() is None:
            proc.kill()
    by_task = {r["task_id"]: r for r in records(toy)}
    assert set(by_task) == {"good", "sleep60"}  # good2 never started
    assert by_task["sleep60"]["outcome"] == "error" and by_task["sleep60"]["error_kind"] == "interrupted"
    bench = summary(toy)["ToyBench"]
    assert bench["error_kinds"] == {"interrupted": 1} and bench["resolution_rate_without_infra"] == 1.0


def test_the_baseline_gate_compares_both_runs_on_the_same_basis_and_says_which(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy.makepyfile(flaky=FLAKY_SANDBOX, priced=PRICED)
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "solid"]))
    monkeypatch.setenv("DEATHS", "0")
    toy.runpytest(*UNPRICED, "--benchflow-output=base").assert_outcomes(passed=2)
    (base,) = toy.path.glob("base/2*")
    strict = toy.runpytest(*UNPRICED, f"--benchflow-baseline={base}", "--benchflow-output=same")
    strict.stdout.fnmatch_lines(
        [
            "Flaky: resolution rate 100.0% -> 100.0% *",
            "  compared strictly in both runs: every error counts as unresolved",
        ]
    )
    monkeypatch.setenv("DEATHS", "1")
    result = toy.runpytest(
        *UNPRICED, "--benchflow-rerun-infra=0", f"--benchflow-baseline={base}", "--benchflow-output=new"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "Flaky: resolution rate without infrastructure errors 100.0% -> 100.0% *: no significant regression",
            "  1 tasks in both runs: 0 resolved -> unresolved, 0 unresolved -> resolved; *",
            "  compared without infrastructure errors in both runs (infra, budget, interrupted left out: 0 task runs of the base, 1 of the new run)",
        ]
    )
