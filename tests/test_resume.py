"""--benchflow-resume: an interrupted run continues in its own directory, and ends as if never interrupted."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import INTERRUPTIBLE, TOY
from pytest_benchflow import BaseAgent

TASKS = ["good", "bad", "slow", "good2", "boom", "flaky"]
# "slow" hangs while the file "hold" exists; "flaky" errors while "broken" exists.
CONTROL = """
import os, time
def pytest_benchflow_task_environment(bench, task_id, env):
    if task_id == "slow" and os.path.exists("hold"):
        time.sleep(60)
    if task_id == "flaky" and os.path.exists("broken"):
        raise RuntimeError("flaky is broken today")
"""


@pytest.fixture
def controlled(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    toy.makeconftest(CONTROL)
    monkeypatch.setenv("TOY_TASKS", json.dumps(TASKS))
    return toy


def lines(run_dir: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def outcomes(summary: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {t["task_id"]: t["outcome"] for t in summary["tasks"]}


def interrupted_run(toy: pytest.Pytester) -> Path:
    (toy.path / "hold").write_text("")
    proc = toy.popen([sys.executable, "-m", "pytest", *TOY, "-p", "no:cacheprovider"], **INTERRUPTIBLE)
    deadline = time.monotonic() + 30
    while not list(toy.path.glob(".benchflow/*/results.jsonl")) or len(lines(next(toy.path.glob(".benchflow/*")))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)  # "slow" is now holding
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    (run_dir,) = toy.path.glob(".benchflow/*")
    (toy.path / "hold").unlink()
    return run_dir


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_a_resumed_run_ends_as_an_uninterrupted_one(controlled: pytest.Pytester, xdist: list[str]) -> None:
    run_dir = interrupted_run(controlled)
    before = lines(run_dir)
    # The task running at Ctrl-C is kept as interrupted (an error, so resuming runs it again).
    assert [r["task_id"] for r in before] == ["good", "bad", "slow"]
    assert (before[2]["outcome"], before[2]["error_kind"]) == ("error", "interrupted")
    result = controlled.runpytest_subprocess(*TOY, "--benchflow-resume=.benchflow", *xdist)
    result.assert_outcomes(passed=3, errors=1)  # slow, good2, flaky pass, boom errors; good and bad do not run again
    assert sorted(p.name for p in (controlled.path / ".benchflow").iterdir()) == [run_dir.name]
    resumed = json.loads((run_dir / "summary.json").read_text())
    # The same tasks, uninterrupted, in a fresh output directory.
    controlled.runpytest_subprocess(*TOY, "--benchflow-output=fresh")
    (fresh_dir,) = (controlled.path / "fresh").iterdir()
    fresh = json.loads((fresh_dir / "summary.json").read_text())
    keys = ("tasks", "resolved", "failed", "errors", "resolution_rate", "resolution_rate_ci95", "metrics")
    assert {k: resumed["benches"]["ToyBench"][k] for k in keys} == {k: fresh["benches"]["ToyBench"][k] for k in keys}
    assert outcomes(resumed) == outcomes(fresh) and len(resumed["tasks"]) == len(TASKS)
    assert "resumed_at" in resumed and resumed["interrupted"] is False


def test_errored_tasks_are_run_again_and_the_last_record_counts(controlled: pytest.Pytester) -> None:
    (controlled.path / "broken").write_text("")
    controlled.runpytest(*TOY).assert_outcomes(passed=3, failed=1, errors=2)
    (controlled.path / "broken").unlink()
    result = controlled.runpytest(*TOY, "--benchflow-resume=.benchflow")
    result.assert_outcomes(passed=1, errors=1)  # flaky now passes; boom errors again
    (run_dir,) = (controlled.path / ".benchflow").iterdir()
    flaky = [r["outcome"] for r in lines(run_dir) if r["task_id"] == "flaky"]
    assert flaky == ["error", "passed"]
    bench = json.loads((run_dir / "summary.json").read_text())["benches"]["ToyBench"]
    assert (bench["tasks"], bench["resolved"], bench["errors"]) == (6, 4, 1)
    from pytest_benchflow.results import load_run

    assert [r.outcome for r in load_run(run_dir).records if r.task_id == "flaky"] == ["passed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--benchflow-arg=MODE=loud"], "*ToyBench ran with other arguments (MODE); resume with the same ones"),
        (["--benchflow-split=validation"], "*that run used split 'test', this session 'validation'"),
        (["--benchflow=mmlu_pro"], "*that run evaluated ToyBench, this session ToyBench, mmlu_pro"),
    ],
)
def test_a_different_session_is_refused(controlled: pytest.Pytester, args: list[str], message: str) -> None:
    controlled.runpytest(*TOY)
    result = controlled.runpytest(*TOY, "--benchflow-resume=.benchflow", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --benchflow-resume {message}"])


def test_nothing_to_resume(controlled: pytest.Pytester) -> None:
    result = controlled.runpytest(*TOY, "--benchflow-resume=nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --benchflow-resume: */nowhere: no such results directory"])


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_mistyped_resume_deletes_nothing(controlled: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted run whose only task never finished (MMLU-Pro's first category, its answers
    kept in the results directory) survives a resume that is a usage error."""
    monkeypatch.setenv("TOY_TASKS", json.dumps(["slow", "good"]))
    (controlled.path / "hold").write_text("")
    proc = controlled.popen([sys.executable, "-m", "pytest", *TOY, "-p", "no:cacheprovider"], **INTERRUPTIBLE)
    task_dir = controlled.path / ".benchflow"
    deadline = time.monotonic() + 30
    while not list(task_dir.glob("*/ToyBench/results/slow")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (paid,) = task_dir.glob("*/ToyBench/results/slow")
    (paid / "law_answers.jsonl").write_text('{"question_id": 1, "response": "paid for"}\n')
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    (controlled.path / "hold").unlink()
    (run_dir,) = task_dir.iterdir()
    before = _files(run_dir)
    assert "ToyBench/results/slow/law_answers.jsonl" in before
    assert [(r["task_id"], r["error_kind"]) for r in lines(run_dir)] == [("slow", "interrupted")]
    result = controlled.runpytest_subprocess(*TOY, "--benchflow-resume=.benchflow", "benchflow:ToyBench::nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: benchflow:ToyBench::nosuch: no such task in ToyBench*"])
    assert _files(run_dir) == before


class ModelAgent(BaseAgent):
    """An agent whose model can change behind the same URL."""

    model = "m1"

    def call_api(self, inputs: dict) -> str:  # type: ignore[type-arg]
        return str(inputs["question"]).upper()

    def info(self) -> dict:  # type: ignore[type-arg]
        return {"name": "ModelAgent", "model": self.model}


def test_another_agent_is_refused(controlled: pytest.Pytester) -> None:
    agent = ModelAgent()
    server = agent.serve()
    bench = [TOY[0], *TOY[2:]]
    try:
        controlled.runpytest_subprocess(*bench, f"--agent-url={server.url}").assert_outcomes(
            passed=4, failed=1, errors=1
        )
        (run_dir,) = (controlled.path / ".benchflow").iterdir()
        before = _files(run_dir)
        other = controlled.runpytest_subprocess(*TOY, "--benchflow-resume=.benchflow")
        assert other.ret == pytest.ExitCode.USAGE_ERROR
        other.stderr.fnmatch_lines(
            [
                f"ERROR: --benchflow-resume *: that run evaluated the agent --agent-url {server.url}, "
                "this session --agent toy_bench:UpperAgent; resume with the same agent"
            ]
        )
        agent.model = "m2"  # another model behind the same URL
        changed = controlled.runpytest_subprocess(*bench, f"--agent-url={server.url}", "--benchflow-resume=.benchflow")
        assert changed.ret == pytest.ExitCode.USAGE_ERROR
        changed.stderr.fnmatch_lines(
            [
                "ERROR: --benchflow-resume *: the agent describes itself differently from that run's (GET /info: "
                f"{server.url}: ModelAgent (model m1) then, {server.url}: ModelAgent (model m2) now)*"
            ]
        )
        assert _files(run_dir) == before
        agent.model = "m1"
        same = controlled.runpytest_subprocess(*bench, f"--agent-url={server.url}", "--benchflow-resume=.benchflow")
        same.assert_outcomes(errors=1)  # boom, again
    finally:
        server.stop()


def test_a_different_bench_of_the_same_class_name_is_refused(controlled: pytest.Pytester) -> None:
    controlled.runpytest(*TOY)
    (controlled.path / "other_bench.py").write_text((controlled.path / "toy_bench.py").read_text())
    result = controlled.runpytest_subprocess(
        "--benchflow=other_bench.py:ToyBench", *TOY[1:], "--benchflow-resume=.benchflow"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --benchflow-resume *: that run's ToyBench was benchflow_bench_*:ToyBench, this session's is "
            "benchflow_bench_*:ToyBench; resume with the same benchmark"
        ]
    )
    # The same file in another process is the same bench.
    controlled.runpytest_subprocess(*TOY, "--benchflow-resume=.benchflow").assert_outcomes(errors=1)


def test_records_of_tasks_the_bench_does_not_have_are_not_counted(controlled: pytest.Pytester) -> None:
    controlled.runpytest(*TOY).assert_outcomes(passed=4, failed=1, errors=1)
    (run_dir,) = (controlled.path / ".benchflow").iterdir()
    ghosts = [{**lines(run_dir)[0], "task_id": f"ghost{i}", "outcome": "passed"} for i in range(5)]
    with open(run_dir / "results.jsonl", "a") as f:
        f.writelines(json.dumps(g) + "\n" for g in ghosts)
    controlled.runpytest(*TOY, "--benchflow-resume=.benchflow").assert_outcomes(errors=1)
    summary = json.loads((run_dir / "summary.json").read_text())
    bench = summary["benches"]["ToyBench"]
    assert (bench["tasks"], bench["resolved"]) == (len(TASKS), 4)
    assert sorted(outcomes(summary)) == sorted(TASKS)
