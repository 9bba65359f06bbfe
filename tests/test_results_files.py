"""Results files (JSON lines as tasks finish, summary at the end), interruption, hooks and progress."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import INTERRUPTIBLE, TOY
from pytest_benchflow.results import SCHEMA_VERSION


def run_dir(pytester: pytest.Pytester) -> Path:
    (found,) = (p for p in (pytester.path / ".benchflow").iterdir() if p.is_dir())
    return found


def test_jsonl_and_summary(toy: pytest.Pytester) -> None:
    toy.runpytest(*TOY, "--benchflow-output=out")
    (directory,) = (toy.path / "out").iterdir()
    records = [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["outcome"], r["is_resolved"]) for r in records] == [
        ("good", "passed", True),
        ("bad", "failed", False),
        ("boom", "error", None),
    ]
    assert records[2]["reason"] == "task 'boom': the evaluation raised RuntimeError: evaluation crashed on boom"
    assert all(r["schema_version"] == SCHEMA_VERSION and r["duration"] >= 0 for r in records)
    assert (directory / records[0]["results_dir"] / "answer.json").exists()
    assert (directory / records[0]["log_dir"]).is_dir()
    summary = json.loads((directory / "summary.json").read_text())
    bench = summary["benches"]["ToyBench"]
    assert (bench["tasks"], bench["resolved"], bench["failed"], bench["errors"]) == (3, 1, 1, 1)
    assert bench["resolution_rate"] == pytest.approx(1 / 3)
    low, high = bench["resolution_rate_ci95"]
    assert 0 < low < 1 / 3 < high < 1
    assert bench["metrics"]["score"]["mean"] == 0.5
    assert summary["interrupted"] is False and summary["exit_status"] == 1
    assert summary["split"] == "test" and summary["agent_url"].startswith("http://127.0.0.1:")
    assert {"python", "pytest", "pytest-benchflow"} <= summary["versions"].keys()
    assert [t["task_id"] for t in summary["tasks"]] == ["good", "bad", "boom"]
    assert summary["started_at"] <= summary["finished_at"]


def test_terminal_summary(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY)
    result.stdout.fnmatch_lines(
        [
            "*benchflow summary*",
            "ToyBench (test): 3 tasks, 1 resolved, 1 failed, 1 error (1 bench); resolution rate 33.3% (95% CI 6.1%–79.2%)",
            "  score: 0.5 ± 0.5 (macro mean over 2 tasks, ± one standard error)",
            "results: */.benchflow/* (results.jsonl, summary.json)",
        ]
    )
    one = toy.runpytest(*TOY, "-k", "good")
    one.stdout.fnmatch_lines(
        ["ToyBench (test): 1 task, 1 resolved, 0 failed, 0 errors; *", "  score: 1 ± 0 (macro mean over 1 task, *"]
    )


def test_demo_summary_averages_only_scores(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--benchflow=mmlu_pro", "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent")
    result.stdout.fnmatch_lines(
        [
            "agent: http://127.0.0.1:*: LongestOptionAgent",
            "  accuracy: * (macro mean over 14 tasks, *",
            "  usage: 42 requests (the agent reported no token counts)",
            "  overall (micro) * 42 *",
        ]
    )
    for bookkeeping in ("correct:", "total:", "unparsed:", "stderr:"):
        assert f"  {bookkeeping}" not in result.stdout.str()
    (summary,) = pytester.path.glob(".benchflow/*/summary.json")
    bench = json.loads(summary.read_text())["benches"]["mmlu_pro"]
    assert list(bench["metrics"]) == ["accuracy"] and bench["summary_metrics"] == ["accuracy"]


def test_agent_url_credentials_never_written(toy: pytest.Pytester, echo_agent: str) -> None:
    url = echo_agent.replace("http://", "http://user:pa55word@") + "/"
    toy.runpytest("--benchflow=toy_bench.py:ToyBench", f"--agent-url={url}", "-k", "good").assert_outcomes(passed=1)
    summary = (run_dir(toy) / "summary.json").read_text()
    assert "pa55word" not in summary and json.loads(summary)["agent_url"] == echo_agent


def test_ctrl_c_keeps_finished_results(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["t0", "t1", "sleep30", "t3"]))
    proc = toy.popen([sys.executable, "-m", "pytest", *TOY], **INTERRUPTIBLE)
    jsonl = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = list(toy.path.glob(".benchflow/*/results.jsonl"))
        if found and len(found[0].read_text().splitlines()) == 2:
            jsonl = found[0]
            break
        time.sleep(0.05)
    assert jsonl is not None
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == pytest.ExitCode.INTERRUPTED
    found = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["task_id"] for r in found] == ["t0", "t1", "sleep30"]  # t3 never started
    # The task that was running is an error of its own kind: not evaluated, not the agent's fault.
    assert (found[2]["outcome"], found[2]["error_kind"]) == ("error", "interrupted")
    summary = json.loads((jsonl.parent / "summary.json").read_text())
    bench = summary["benches"]["ToyBench"]
    assert summary["interrupted"] is True and bench["tasks"] == 3 and bench["error_kinds"] == {"interrupted": 1}


def test_hooks_change_environment_and_see_results(toy: pytest.Pytester) -> None:
    toy.makeconftest(
        """
seen = []
def pytest_benchflow_task_environment(bench, task_id, env):
    env["MODE"] = "hooked-" + task_id
def pytest_benchflow_task_result(bench, task_id, result):
    seen.append((task_id, result.is_resolved, result.metrics["mode"]))
def pytest_sessionfinish(session):
    print("SEEN", seen)
"""
    )
    result = toy.runpytest(*TOY, "-s", "-k", "not boom")
    assert "SEEN [('good', True, 'hooked-good'), ('bad', False, 'hooked-bad')]" in result.stdout.str()


def test_progress_lines_when_asked(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY, "--benchflow-progress=always", "-k", "good")
    result.stdout.fnmatch_lines(["ToyBench good: 1/1, *, ~0s left"])
    quiet = toy.runpytest(*TOY, "-k", "good")
    assert "1/1" not in quiet.stdout.str()


def test_bad_progress_mode(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY, "--benchflow-progress=sometimes")
    result.stderr.fnmatch_lines(["ERROR: --benchflow-progress 'sometimes': choose auto, always or never"])
