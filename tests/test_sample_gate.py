"""The paired gate over samples: a drop no task shows still fails it; an identical rerun passes it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from quiz import QUIZ_ARGS

from conftest import runs_by_start
from pytest_benchflow.results import BenchInfo, ResultsWriter, TaskRecord, load_run
from pytest_benchflow.results.cli import main as benchflow
from pytest_benchflow.results.compare import compare_runs, format_comparison
from pytest_benchflow.results.records import SampleRecord

# 10 tasks of 50 questions; 20 more wrong answers (4%) spread unevenly, never enough to flip a task.
PLANTED = [1, 3, 2, 2, 1, 3, 2, 2, 1, 3]
WRONG = ",".join(f"t{t}q{i}" for t, n in enumerate(PLANTED) for i in range(n))


def runs(pytester: pytest.Pytester) -> list[Path]:
    return runs_by_start(pytester)


@pytest.fixture
def quiz500(quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("QUIZ_TASKS", "10")
    monkeypatch.setenv("QUIZ_PER_TASK", "50")
    return quiz


def test_a_planted_four_percent_drop_with_no_task_flip_fails_the_gate(
    quiz500: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    quiz500.runpytest_subprocess(*QUIZ_ARGS).assert_outcomes(passed=10)
    monkeypatch.setenv("QUIZ_WRONG", WRONG)
    quiz500.runpytest_subprocess(*QUIZ_ARGS).assert_outcomes(passed=10)  # every task still resolved
    base, new = (str(p) for p in runs(quiz500))
    assert benchflow(["compare", base, new, "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "0 resolved -> unresolved" in out
    assert "samples: 500 in both runs (in 10 tasks): mean score 100.0% -> 96.0% (-4.0pp" in out
    assert "20 worse, 0 better; mcnemar-exact p=1.91e-06, clustered p=" in out and "REGRESSION" in out
    assert benchflow(["compare", base, new, "--json"]) == 0
    (bench,) = json.loads(capsys.readouterr().out)["benches"]
    assert bench["task_regression"] is False and bench["regression"] is True
    samples = bench["samples"]
    assert (samples["paired"], samples["worse"], samples["better"]) == (500, 20, 0)
    assert samples["difference"] == pytest.approx(-0.04) and samples["ci95"][1] < 0
    assert {tuple(f[:2]) for f in samples["flipped"]} == {(w[:2], w) for w in WRONG.split(",")}
    # A tolerated drop of 5% lets it through.
    assert benchflow(["compare", base, new, "--fail-on-regression", "--max-drop", "0.05"]) == 0


def test_an_identical_rerun_passes_the_gate(quiz500: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUIZ_WRONG", WRONG)
    quiz500.runpytest_subprocess(*QUIZ_ARGS).assert_outcomes(passed=10)
    baseline = runs(quiz500)[0]
    result = quiz500.runpytest_subprocess(*QUIZ_ARGS, f"--benchflow-baseline={baseline}")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*samples: 500 in both runs*0 worse, 0 better*no significant regression*"])


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_the_baseline_option_fails_the_session_on_a_sample_drop(
    quiz500: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    quiz500.runpytest_subprocess(*QUIZ_ARGS).assert_outcomes(passed=10)
    baseline = runs(quiz500)[0]
    monkeypatch.setenv("QUIZ_WRONG", WRONG)
    args = [*QUIZ_ARGS, f"--benchflow-baseline={baseline}", "--benchflow-html=report.html", *xdist]
    result = quiz500.runpytest_subprocess(*args)
    result.assert_outcomes(passed=10)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*QuizBench: resolution rate 100.0% -> 100.0%*REGRESSION*"])
    # Every task passed, yet the session failed: the last lines say why, the files say it failed.
    reason = f"session failed: QuizBench regressed against the baseline {baseline} (at sample level)"
    last, closing = [line for line in result.outlines if line][-2:]
    assert last == reason and re.fullmatch(r"=+ 10 passed, 1 regressed vs baseline in .* =+", closing)
    summary = json.loads((runs(quiz500)[-1] / "summary.json").read_text())
    assert summary["exit_status"] == 1 and summary["exit_reason"] == reason.removeprefix("session failed: ")
    assert "<dt>exit status</dt><dd>1</dd>" in (quiz500.path / "report.html").read_text()


def write_run(path: Path, tasks: dict[str, bool], samples: dict[tuple[str, str], float] | None = None) -> Path:
    writer = ResultsWriter(path, {"run_id": path.name})
    for task, resolved in tasks.items():
        group = [SampleRecord("b", task, sample, score) for (t, sample), score in (samples or {}).items() if t == task]
        writer.add(TaskRecord(bench="b", task_id=task, outcome="passed" if resolved else "failed"), group)
    writer.finish(exit_status=0, interrupted=False, bench_info={"b": BenchInfo()}, breakdown=lambda n, r: None)
    return path


def test_benches_without_samples_keep_the_task_level_gate(tmp_path: Path) -> None:
    before = write_run(tmp_path / "base", {f"t{i}": True for i in range(30)})
    after = write_run(tmp_path / "new", {f"t{i}": i >= 12 for i in range(30)})
    (c,) = compare_runs(load_run(before), load_run(after))
    assert c.samples is None and c.task_regression and c.regression and len(c.regressed) == 12


def test_fractional_scores_use_the_clustered_paired_test(tmp_path: Path) -> None:
    tasks = {f"t{i}": True for i in range(20)}
    base: dict[tuple[str, str], float] = {(t, f"{t}s{j}"): 0.8 for t in tasks for j in range(10)}
    same = write_run(tmp_path / "same", tasks, base)
    worse = write_run(tmp_path / "worse", tasks, {k: v - (0.1 if int(k[0][1:]) % 2 else 0.05) for k, v in base.items()})
    (c,) = compare_runs(load_run(same), load_run(worse))
    assert c.samples is not None and c.samples.test == "paired-z" and c.samples.regression
    assert c.samples.difference == pytest.approx(-0.075)
    (unchanged,) = compare_runs(load_run(same), load_run(same))
    assert unchanged.samples is not None and not unchanged.samples.regression and unchanged.samples.worse == 0


def test_samples_pair_on_sample_id_and_epoch_only(tmp_path: Path) -> None:
    # The same questions regrouped into other tasks still pair; samples only one run has are left out.
    base = write_run(tmp_path / "a", {"x": True}, {("x", "q1"): 1.0, ("x", "q2"): 1.0, ("x", "only-base"): 1.0})
    new = write_run(tmp_path / "b", {"y": True}, {("y", "q1"): 1.0, ("y", "q2"): 0.0, ("y", "only-new"): 0.0})
    (c,) = compare_runs(load_run(base), load_run(new))
    assert c.paired_tasks == 0 and c.samples is not None
    assert (c.samples.paired, c.samples.worse, c.samples.better) == (2, 1, 0)


def flipped_rows(page: str) -> list[Any]:
    return [row for row in page.split('<tr class="flip ')[1:]]


def test_the_html_comparison_lists_flipped_samples(quiz500: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    quiz500.runpytest_subprocess(*QUIZ_ARGS).assert_outcomes(passed=10)
    baseline = runs(quiz500)[0]
    monkeypatch.setenv("QUIZ_WRONG", WRONG)
    quiz500.runpytest_subprocess(*QUIZ_ARGS, f"--benchflow-baseline={baseline}", "--benchflow-html=r.html")
    page = (quiz500.path / "r.html").read_text()
    assert 'id="comparison"' in page and "500 samples in both runs" in page
    rows = flipped_rows(page)
    assert len(rows) == 20 and all(row.startswith('failed"') for row in rows)
    assert all(f"<td>{w}</td>" in page for w in WRONG.split(","))


def test_mmlu_pro_categories_hide_a_drop_that_its_questions_show(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """GPT-4o's recorded answers, then the same with 8% of its right answers made unreadable: both
    categories stay resolved (no task flips), the questions show the fall."""
    from test_mmlu_pro import CS, HISTORY, replay_args

    monkeypatch.setenv("REPLAY_FILE", f"{HISTORY}{os.pathsep}{CS}")
    pytester.runpytest_subprocess(*replay_args()).assert_outcomes(passed=2)
    worse = []
    for path in (HISTORY, CS):
        records = json.loads(path.read_text())
        right = [r for r in records if r["pred"] == r["answer"]]
        for r in right[:: len(right) // (len(right) * 8 // 100)]:
            r["response"] = "I cannot tell. The answer is (Z)."
        worse.append(pytester.path / path.name)
        worse[-1].write_text(json.dumps(records))
    monkeypatch.setenv("REPLAY_FILE", os.pathsep.join(map(str, worse)))
    pytester.runpytest_subprocess(*replay_args()).assert_outcomes(passed=2)
    base, new = runs(pytester)
    capsys.readouterr()
    assert benchflow(["compare", str(base), str(new), "--json", "--fail-on-regression"]) == 1
    (bench,) = json.loads(capsys.readouterr().out)["benches"]
    assert bench["paired_tasks"] == 2 and bench["regressed"] == [] and not bench["task_regression"]
    samples = bench["samples"]
    assert samples["paired"] == 381 + 410 and samples["better"] == 0 and samples["worse"] >= 30
    assert samples["base_mean"] == pytest.approx(588 / 791) and samples["regression"]


def test_a_drop_in_one_task_of_many_fails_the_gate(tmp_path: Path) -> None:
    # 14 tasks of 50 samples; one task loses 20 right answers and stays resolved. Clustering by task
    # calls that a property of one task (it would not carry over to other tasks); for this fixed set
    # of samples it is a regression, and McNemar's test over samples says so.
    tasks = {f"t{i}": True for i in range(14)}
    base = {(t, f"{t}s{j}"): 1.0 for t in tasks for j in range(50)}
    new = {k: 0.0 if k[0] == "t3" and int(k[1].split("s")[1]) < 20 else v for k, v in base.items()}
    (c,) = compare_runs(
        load_run(write_run(tmp_path / "a", tasks, base)), load_run(write_run(tmp_path / "b", tasks, new))
    )
    assert c.samples is not None and c.samples.worse == 20 and c.regressed == []
    assert c.samples.clustered_p > 0.05 and c.samples.p_value < 1e-5 and c.regression


def test_the_comparison_says_which_level_found_the_regression(tmp_path: Path) -> None:
    tasks = {f"t{i}": True for i in range(10)}
    base = {(t, f"{t}s{j}"): 1.0 for t in tasks for j in range(50)}
    new = {k: 0.0 if int(k[1].split("s")[1]) < 2 else v for k, v in base.items()}  # 20 of 500 wrong, no task flips
    before, after = load_run(write_run(tmp_path / "a", tasks, base)), load_run(write_run(tmp_path / "b", tasks, new))
    comparisons = compare_runs(before, after)
    lines = format_comparison(comparisons, before, after).splitlines()
    headline = next(line for line in lines if line.startswith("b: "))
    assert headline.endswith("REGRESSION (at sample level; no significant change at task level)")
    (task_line,) = [line for line in lines if "resolved -> unresolved" in line]
    assert "REGRESSION" not in task_line
    assert task_line.endswith("mcnemar-exact p=1: no significant regression at task level")
    (sample_line,) = [line for line in lines if line.startswith("  samples:")]
    assert sample_line.endswith("REGRESSION")
    (c,) = comparisons
    assert c.to_json()["decided_by"] == ["samples"]
    (same,) = compare_runs(before, before)
    assert same.to_json()["decided_by"] == []


def test_a_rise_from_none_to_all_has_an_interval_of_some_width(tmp_path: Path) -> None:
    before = load_run(write_run(tmp_path / "a", {"x": False, "y": False}))
    after = load_run(write_run(tmp_path / "b", {"x": True, "y": True}))
    (c,) = compare_runs(before, after)
    assert c.difference == 1.0 and c.ci95[1] == 1.0 and 0.0 < c.ci95[0] < 0.5
    assert "(+100.0pp, 95% CI +7.0pp to +100.0pp)" in format_comparison([c], before, after)
