"""--benchflow-epochs: each task N times as items of their own; pass@k, pass^k and flaky tasks; epochs re-ask."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from quiz import QUIZ_ARGS

from conftest import runs_by_start
from pytest_benchflow.results.cli import main as benchflow


def run_dir(pytester: pytest.Pytester) -> Path:
    return runs_by_start(pytester)[-1]


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def test_each_epoch_is_an_item_with_its_own_node_id_record_and_directories(quiz: pytest.Pytester) -> None:
    collected = quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-epochs=3", "--collect-only", "-q")
    ids = [line for line in collected.outlines if line.startswith("benchflow:")]
    assert ids[:5] == [
        "benchflow:QuizBench::t0[epoch1]",
        "benchflow:QuizBench::t1[epoch1]",
        "benchflow:QuizBench::t2[epoch1]",
        "benchflow:QuizBench::t3[epoch1]",
        "benchflow:QuizBench::t0[epoch2]",
    ]
    assert len(ids) == len(set(ids)) == 12
    quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-epochs=3", "-n", "2").assert_outcomes(passed=12)
    run = run_dir(quiz)
    found = records(run)
    assert sorted((r["task_id"], r["epoch"]) for r in found) == [(f"t{t}", e) for t in range(4) for e in (1, 2, 3)]
    assert len({r["log_dir"] for r in found}) == 12
    assert all((run / r["log_dir"] / "transcript.jsonl").exists() for r in found)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert sorted({(s["sample_id"], s["epoch"]) for s in samples}) == sorted(
        (f"t{t}q{i}", e) for t in range(4) for i in range(5) for e in (1, 2, 3)
    )


def test_epochs_are_selectable_by_keyword_and_node_id(quiz: pytest.Pytester) -> None:
    quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-epochs=3", "-k", "epoch2").assert_outcomes(passed=4)
    assert {r["epoch"] for r in records(run_dir(quiz))} == {2}
    chosen = quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-epochs=3", "benchflow:QuizBench::t1[epoch3]")
    chosen.assert_outcomes(passed=1)
    second = run_dir(quiz)
    assert [(r["task_id"], r["epoch"]) for r in records(second)] == [("t1", 3)]


def brute_force(outcomes: list[bool], k: int) -> tuple[float, float]:
    """pass@k and pass^k of one task by enumerating every k of its n epochs."""
    draws = list(itertools.combinations(outcomes, k))
    return sum(any(d) for d in draws) / len(draws), sum(all(d) for d in draws) / len(draws)


def test_pass_at_k_and_pass_hat_k_on_a_stochastic_agent(quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUIZ_TASKS", "12")
    monkeypatch.setenv("QUIZ_PER_TASK", "1")
    monkeypatch.setenv("QUIZ_P", "0.5")
    result = quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-epochs=4")
    run = run_dir(quiz)
    by_task: dict[str, list[bool]] = {}
    for r in records(run):
        by_task.setdefault(r["task_id"], []).append(r["outcome"] == "passed")
    epochs = json.loads((run / "summary.json").read_text())["benches"]["QuizBench"]["epochs"]
    assert epochs["epochs"] == 4 and set(epochs["pass_at_k"]) == {"1", "2", "4"}
    for k in (1, 2, 4):
        at = sum(brute_force(o, k)[0] for o in by_task.values()) / 12
        hat = sum(brute_force(o, k)[1] for o in by_task.values()) / 12
        assert epochs["pass_at_k"][str(k)] == pytest.approx(at) and epochs["pass_hat_k"][str(k)] == pytest.approx(hat)
    assert epochs["flaky"] == sorted(t for t, o in by_task.items() if len(set(o)) > 1)
    assert epochs["flaky"], "with p=0.5 over 12 tasks x 4 epochs, some task must differ between epochs"
    per_epoch = [sum(o[e] for o in by_task.values()) / 12 for e in range(4)]
    assert epochs["per_epoch"] == pytest.approx(per_epoch)
    result.stdout.fnmatch_lines(
        ["*4 epochs: resolution rate per epoch *; pass@1 *, pass@2 *, pass@4 *; pass^1 *flaky task*"]
    )


def test_with_the_cache_each_epoch_asks_again_and_a_rerun_asks_nothing(
    quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = quiz.path / "asked.log"
    monkeypatch.setenv("QUIZ_LOG", str(log))
    args = [*QUIZ_ARGS, "--benchflow-epochs=2", "--benchflow-cache=use"]
    quiz.runpytest_subprocess(*args).assert_outcomes(passed=8)
    asked = log.read_text().splitlines()
    assert len(asked) == 40 and len(set(asked)) == 20  # every question once per epoch
    quiz.runpytest_subprocess(*args).assert_outcomes(passed=8)
    assert len(log.read_text().splitlines()) == 40
    run = run_dir(quiz)
    lines = [json.loads(line) for p in run.glob("*/logs/*/transcript.jsonl") for line in p.read_text().splitlines()]
    assert len(lines) == 40 and all(line["cached"] for line in lines)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--benchflow-epochs must be a positive finite number, got 0"),
        ("-2", "--benchflow-epochs must be a positive finite number, got -2"),
        ("two", "--benchflow-epochs 'two' is not a whole number"),
        ("1.5", "--benchflow-epochs '1.5' is not a whole number"),
        ("100000", "--benchflow-epochs 100000: at most 1000 (each epoch is an item per task)"),
    ],
)
def test_bad_epochs_are_usage_errors(quiz: pytest.Pytester, value: str, message: str) -> None:
    result = quiz.runpytest_subprocess(*QUIZ_ARGS, f"--benchflow-epochs={value}")
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert not list(quiz.path.glob(".benchflow/2*"))


def test_compare_pairs_epochs(quiz: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-epochs=2").assert_outcomes(passed=8)
    quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-epochs=2").assert_outcomes(passed=8)
    base, new = (str(p) for p in runs_by_start(quiz))
    capsys.readouterr()
    assert benchflow(["compare", base, new, "--json"]) == 0
    (bench,) = json.loads(capsys.readouterr().out)["benches"]
    assert bench["paired_tasks"] == 8 and bench["samples"]["paired"] == 40


def test_resuming_with_more_epochs_adds_them(quiz: pytest.Pytester) -> None:
    quiz.runpytest_subprocess(*QUIZ_ARGS).assert_outcomes(passed=4)
    first = run_dir(quiz)
    result = quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-epochs=2", f"--benchflow-resume={first}")
    result.assert_outcomes(passed=4)  # only epoch 2 runs
    assert sorted((r["task_id"], r["epoch"]) for r in records(first)) == [
        (f"t{t}", e) for t in range(4) for e in (1, 2)
    ]
    summary = json.loads((first / "summary.json").read_text())["benches"]["QuizBench"]
    assert summary["tasks"] == 8 and summary["samples"]["samples"] == 40 and summary["epochs"]["epochs"] == 2


def test_epochs_from_the_ini_file(quiz: pytest.Pytester) -> None:
    quiz.makeini("[pytest]\nbenchflow_epochs = 2\n")
    quiz.runpytest_subprocess(*QUIZ_ARGS).assert_outcomes(passed=8)
    assert json.loads((run_dir(quiz) / "summary.json").read_text())["epochs"] == 2


def test_epochs_of_a_task_are_one_cluster_in_the_resolution_rate_interval(
    quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUIZ_TASKS", "2")
    once = quiz.runpytest_subprocess(*QUIZ_ARGS)
    once.stdout.fnmatch_lines(
        ["*2 tasks, 2 resolved, 0 failed, 0 errors; resolution rate 100.0% (95% CI 34.2%–100.0%)"]
    )
    twice = quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-epochs=2")
    # The same two tasks twice are not four independent tasks: the interval stays that of two.
    twice.stdout.fnmatch_lines(
        [
            "*QuizBench (test): 2 tasks × 2 epochs, 4 resolved, 0 failed, 0 errors; "
            "resolution rate 100.0% (95% CI 34.2%–100.0%, clustered by task)"
        ]
    )
    first, second = (json.loads((run / "summary.json").read_text()) for run in runs_by_start(quiz))
    bench = second["benches"]["QuizBench"]
    assert bench["resolution_rate_ci95"] == first["benches"]["QuizBench"]["resolution_rate_ci95"]
    assert (bench["tasks"], bench["task_ids"], bench["epochs_per_task"]) == (4, 2, 2)
