"""Per-sample outcomes: validated in results, written to samples.jsonl as tasks finish, summarised with clustered errors."""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from quiz import QUIZ_ARGS

from conftest import INTERRUPTIBLE
from pytest_benchflow import ResultError
from pytest_benchflow.results import load_run
from pytest_benchflow.results.cli import main as benchflow
from pytest_benchflow.schemas import to_result
from pytest_benchflow.stats import Z95, clustered_mean


def run_dir(pytester: pytest.Pytester) -> Path:
    return sorted(pytester.path.glob(".benchflow/2*"))[-1]


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_samples_are_written_per_question_and_summarised(
    quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    monkeypatch.setenv("QUIZ_WRONG", "t0q0,t0q1,t0q2,t1q4")
    result = quiz.runpytest_subprocess(*QUIZ_ARGS, *xdist)
    result.assert_outcomes(passed=3, failed=1)
    run = run_dir(quiz)
    samples = jsonl(run / "samples.jsonl")
    assert len(samples) == 20 and {s["epoch"] for s in samples} == {1}
    wrong = {s["sample_id"] for s in samples if s["score"] == 0}
    assert wrong == {"t0q0", "t0q1", "t0q2", "t1q4"}
    assert all(s["task_id"] == s["sample_id"][:2] and s["bench"] == "QuizBench" for s in samples)
    assert {r["task_id"]: r["samples"] for r in jsonl(run / "results.jsonl")} == {f"t{i}": 5 for i in range(4)}
    stats = json.loads((run / "summary.json").read_text())["benches"]["QuizBench"]["samples"]
    assert stats["samples"] == 20 and stats["clusters"] == 4 and stats["method"] == "clustered"
    assert stats["mean"] == pytest.approx(16 / 20)
    low, high = stats["ci95"]
    assert low < 0.8 < high
    result.stdout.fnmatch_lines(["*samples: mean score 80.0% (95% CI *, 20 samples, clustered by 4 tasks)*"])


def test_clustered_standard_error_by_hand() -> None:
    # Two tasks: scores [1, 1, 0] and [0]; mean 0.5; per-cluster sums of deviations 0.5 and -0.5.
    found = clustered_mean([[1, 1, 0], [0]])
    assert found is not None
    assert found.mean == 0.5 and found.clusters == 2 and found.method == "clustered"
    assert found.stderr == pytest.approx(math.sqrt(2 / 1 * (0.25 + 0.25)) / 4)
    single = clustered_mean([[1, 0, 1, 0]])
    assert single is not None and single.method == "iid"
    assert single.stderr == pytest.approx(math.sqrt((4 * 0.25 / 3) / 4))
    assert clustered_mean([]) is None


def test_clustered_interval_covers_where_the_naive_one_does_not() -> None:
    # Tasks differ in difficulty, so their samples are correlated: the interval that ignores it is too narrow.
    rng = random.Random(7)
    truth = 0.5
    covered = naive_covered = 0
    trials = 400
    for _ in range(trials):
        clusters = []
        for _ in range(30):
            p = min(1.0, max(0.0, rng.gauss(truth, 0.25)))
            clusters.append([float(rng.random() < p) for _ in range(20)])
        found = clustered_mean(clusters)
        assert found is not None
        low, high = found.ci95
        covered += low <= truth <= high
        flat = [x for c in clusters for x in c]
        naive = math.sqrt(found.mean * (1 - found.mean) / len(flat))
        naive_covered += found.mean - Z95 * naive <= truth <= found.mean + Z95 * naive
    assert 0.90 <= covered / trials <= 0.99
    assert naive_covered / trials < 0.8


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"sample_id": "a", "score": 1.5}, "samples.0.score: Input should be less than or equal to 1"),
        ({"sample_id": "a", "score": -0.1}, "samples.0.score: Input should be greater than or equal to 0"),
        ({"sample_id": "a", "score": "high"}, "samples.0.score: Input should be a valid number"),
        ({"sample_id": "a", "score": float("nan")}, "samples.0.score"),
        ({"score": 1}, "samples.0.sample_id: Field required"),
        ({"sample_id": None, "score": 1}, "samples.0.sample_id"),
    ],
)
def test_bad_samples_are_a_result_error_naming_the_field(sample: dict[str, Any], message: str) -> None:
    with pytest.raises(ResultError, match="task 't': invalid result: field " + message.replace(".", r"\.")):
        to_result({"is_resolved": True, "metrics": {}, "samples": [sample]}, "t")


def test_sample_ids_are_unique_in_a_task_and_booleans_and_numbers_are_accepted() -> None:
    with pytest.raises(ResultError, match="sample id '3' appears twice"):
        to_result({"is_resolved": True, "metrics": {}, "samples": [{"sample_id": 3, "score": 1}] * 2}, "t")
    result = to_result({"is_resolved": True, "metrics": {}, "samples": [{"sample_id": 3, "score": True}]}, "t")
    assert result.samples is not None and (result.samples[0].sample_id, result.samples[0].score) == ("3", 1.0)
    # 0.1.x results have no samples and still validate.
    assert to_result({"is_resolved": False, "metrics": {"x": 1}}, "t").samples is None


def test_a_task_with_bad_samples_errors_and_the_others_keep_theirs(
    quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (quiz.path / "quiz_bench.py").read_text()
    (quiz.path / "quiz_bench.py").write_text(
        source.replace(
            '"samples": samples}', '"samples": samples if task_id != "t2" else [{"sample_id": "x", "score": 2}]}'
        )
    )
    result = quiz.runpytest_subprocess(*QUIZ_ARGS)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*task 't2': invalid result: field samples.0.score*"])
    samples = jsonl(run_dir(quiz) / "samples.jsonl")
    assert len(samples) == 15 and "t2" not in {s["task_id"] for s in samples}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"bench": "b", "task_id": "t", "sample_id": "s", "score": 3}', "'score' must be a number from 0 to 1"),
        ('{"bench": "b", "task_id": "t", "score": 1}', "sample lacks bench, task_id or sample_id"),
        ('{"bench": "b", "task_id": "t", "sample_id": "s", "score": 1, "epoch": "2"}', "'epoch' must be a number"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_samples_file_is_an_input_error(
    tmp_path: Path, line: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text('{"bench": "b", "task_id": "t", "outcome": "passed"}\n')
    (run / "samples.jsonl").write_text(line + "\n" + '{"bench": "b", "task_id": "t", "sample_id": "z", "score": 1}\n')
    assert benchflow(["report", str(run), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "samples.jsonl:1" in err and message in err


def test_a_cut_off_last_sample_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text('{"bench": "b", "task_id": "t", "outcome": "passed"}\n')
    (run / "samples.jsonl").write_text(
        '{"bench": "b", "task_id": "t", "sample_id": "a", "score": 1}\n{"bench": "b", "ta'
    )
    loaded = load_run(run)
    assert [s.sample_id for s in loaded.samples] == ["a"]
    assert any("samples.jsonl:2: incomplete last line skipped" in w for w in loaded.warnings)


def test_an_interrupted_run_keeps_the_samples_of_finished_tasks(quiz: pytest.Pytester) -> None:
    quiz.makeconftest(
        "import os, time\n"
        "def pytest_benchflow_task_environment(bench, task_id, env):\n"
        "    while task_id == 't3' and os.path.exists('hold'):\n"
        "        time.sleep(0.05)\n"
    )
    (quiz.path / "hold").write_text("")
    proc = quiz.popen([sys.executable, "-m", "pytest", *QUIZ_ARGS, "-p", "no:cacheprovider"], **INTERRUPTIBLE)
    deadline = time.monotonic() + 30
    while (
        len(list(quiz.path.glob(".benchflow/*/results.jsonl"))) < 1
        or len(jsonl(next(quiz.path.glob(".benchflow/*/results.jsonl")))) < 3
    ):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    run = run_dir(quiz)
    assert len(jsonl(run / "samples.jsonl")) == 15
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["benches"]["QuizBench"]["samples"]["samples"] == 15
