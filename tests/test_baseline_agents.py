"""A baseline whose agent set differs from the new run's: one agent against several and back, and runs that share
no bench. Every case either compares (saying who with whom) or stops with one line; none passes silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quiz import QUIZ_ARGS

from conftest import runs_by_start
from pytest_benchflow.results.cli import EXIT_ERROR, EXIT_REGRESSION
from pytest_benchflow.results.cli import main as benchflow
from pytest_benchflow.results.compare import check_run_data, compare_runs
from pytest_benchflow.results.reader import RunData
from pytest_benchflow.results.records import SampleRecord, TaskRecord

# An agent that answers 6 of each task's 25 questions wrong: every task still resolved, a drop only samples show.
SLOPPY = """
from quiz_bench import QuizAgent

class Sloppy(QuizAgent):
    def call_api(self, inputs):
        question = inputs["question"]
        return "wrong" if int(question.split("q")[1]) < 6 else super().call_api(inputs)
"""

# The same quiz under another bench name.
OTHER = """
from quiz_bench import QuizBench

class OtherQuiz(QuizBench):
    pass
"""

BENCH = QUIZ_ARGS[0]
TWO = ["--agent=good=quiz_bench:QuizAgent", "--agent=sloppy=quiz_agents:Sloppy"]
PLAIN = ["-p", "no:randomly", "-p", "no:cacheprovider"]


@pytest.fixture
def quiz100(quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("QUIZ_TASKS", "4")
    monkeypatch.setenv("QUIZ_PER_TASK", "25")
    quiz.makepyfile(quiz_agents=SLOPPY, other_bench=OTHER)
    return quiz


def newest(pytester: pytest.Pytester) -> Path:
    return runs_by_start(pytester)[-1]


def run_two(pytester: pytest.Pytester, *extra: str) -> pytest.RunResult:
    return pytester.runpytest(BENCH, *TWO, *PLAIN, *extra)


def run_one(pytester: pytest.Pytester, agent: str, *extra: str) -> pytest.RunResult:
    return pytester.runpytest(BENCH, f"--agent={agent}", *PLAIN, *extra)


def test_each_agent_of_several_is_compared_with_a_baseline_of_one(
    quiz100: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    run_one(quiz100, "quiz_bench:QuizAgent").assert_outcomes(passed=4)
    base = newest(quiz100)
    result = run_two(quiz100, f"--benchflow-baseline={base}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every task passed: the sloppy agent's samples fail the gate
    result.stdout.fnmatch_lines(
        [
            "QuizBench[[]good] vs baseline QuizBench: resolution rate 100.0% -> 100.0% *: no significant regression",
            "*samples: 100 in both runs (in 4 tasks): mean score 100.0% -> 100.0%*0 worse, 0 better*",
            "QuizBench[[]sloppy] vs baseline QuizBench: *REGRESSION (at sample level*",
            "*samples: 100 in both runs (in 4 tasks): mean score 100.0% -> 76.0%*24 worse, 0 better*",
            f"session failed: QuizBench[[]sloppy] vs baseline QuizBench regressed against the baseline {base} "
            "(at sample level)",
        ]
    )
    new = str(newest(quiz100))
    capsys.readouterr()  # the in-process sessions' output
    # The command compares the same way, and its JSON names the baseline's key of each comparison.
    assert benchflow(["compare", str(base), new, "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)["benches"]
    assert [(c["bench"], c["base_bench"], c["regression"]) for c in compared] == [
        ("QuizBench[good]", "QuizBench", False),
        ("QuizBench[sloppy]", "QuizBench", True),
    ]
    assert benchflow(["compare", str(base), new, "--fail-on-regression"]) == EXIT_REGRESSION
    assert "QuizBench[sloppy] vs baseline QuizBench: " in capsys.readouterr().out
    report = quiz100.path / "r.html"
    assert benchflow(["report", new, "--baseline", str(base), "-o", str(report)]) == 0
    assert "<b>QuizBench[sloppy] vs baseline QuizBench</b>" in report.read_text()


def test_one_agent_against_a_baseline_of_several_needs_a_choice(
    quiz100: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    run_two(quiz100).assert_outcomes(passed=8)
    base = newest(quiz100)
    runs = len(runs_by_start(quiz100))
    unchosen = run_one(quiz100, "quiz_bench:QuizAgent", f"--benchflow-baseline={base}")
    assert unchosen.ret == pytest.ExitCode.USAGE_ERROR
    unchosen.stderr.fnmatch_lines(
        [
            "ERROR: --benchflow-baseline: the baseline evaluated several agents on QuizBench (good, sloppy) and this "
            "run one: choose the one to compare with by --benchflow-baseline-agent NAME"
        ]
    )
    other = run_one(quiz100, "other=quiz_bench:QuizAgent", f"--benchflow-baseline={base}")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    other.stderr.fnmatch_lines(["ERROR: *(good, sloppy) and this run one (none is named 'other', this run's agent)*"])
    nobody = run_one(
        quiz100, "quiz_bench:QuizAgent", f"--benchflow-baseline={base}", "--benchflow-baseline-agent=nobody"
    )
    assert nobody.ret == pytest.ExitCode.USAGE_ERROR
    nobody.stderr.fnmatch_lines(
        [
            "ERROR: --benchflow-baseline: --benchflow-baseline-agent 'nobody': the baseline has no such agent on "
            "QuizBench (its agents: good, sloppy)"
        ]
    )
    alone = run_one(quiz100, "quiz_bench:QuizAgent", "--benchflow-baseline-agent=good")
    assert alone.ret == pytest.ExitCode.USAGE_ERROR
    alone.stderr.fnmatch_lines(["ERROR: --benchflow-baseline-agent good: give --benchflow-baseline DIR too"])
    assert len(runs_by_start(quiz100)) == runs  # none of them ran a task

    # Named like a baseline agent: compared with it (the sloppy agent, named "good", regressed).
    named = run_one(quiz100, "good=quiz_agents:Sloppy", f"--benchflow-baseline={base}")
    assert named.ret == pytest.ExitCode.TESTS_FAILED
    named.stdout.fnmatch_lines(
        [f"session failed: QuizBench vs baseline QuizBench[[]good] regressed against the baseline {base} (at sample*"]
    )
    # Chosen by the option: the good agent against the sloppy one improved.
    chosen = run_one(
        quiz100, "quiz_bench:QuizAgent", f"--benchflow-baseline={base}", "--benchflow-baseline-agent=sloppy"
    )
    assert chosen.ret == pytest.ExitCode.OK
    chosen.stdout.fnmatch_lines(
        [
            "QuizBench vs baseline QuizBench[[]sloppy]: *no significant regression",
            "*samples: 100 in both runs (in 4 tasks): mean score 76.0% -> 100.0%*0 worse, 24 better*",
        ]
    )

    # The command: a choice needed (exit 2, one line), then made.
    new = str(newest(quiz100))
    capsys.readouterr()  # the in-process sessions' output
    assert benchflow(["compare", str(base), new]) == EXIT_ERROR
    assert capsys.readouterr().err.splitlines() == [
        "pytest-benchflow compare: the baseline evaluated several agents on QuizBench (good, sloppy) and this run "
        "one: choose the one to compare with by --baseline-agent NAME"
    ]
    assert benchflow(["compare", str(base), new, "--baseline-agent", "good", "--fail-on-regression"]) == 0
    assert "QuizBench vs baseline QuizBench[good]: " in capsys.readouterr().out
    assert benchflow(["report", new, "--baseline", str(base), "-o", str(quiz100.path / "r.html")]) == EXIT_ERROR
    assert "choose the one to compare with by --baseline-agent NAME" in capsys.readouterr().err


def test_runs_that_share_no_bench_are_refused_with_one_line(
    quiz100: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    quiz100.runpytest("--benchflow=other_bench.py:OtherQuiz", "--agent=quiz_bench:QuizAgent", *PLAIN)
    base = newest(quiz100)
    gated = run_one(quiz100, "quiz_bench:QuizAgent", f"--benchflow-baseline={base}")
    assert gated.ret == pytest.ExitCode.USAGE_ERROR
    gated.stderr.fnmatch_lines(
        [
            f"ERROR: --benchflow-baseline {base}: no benchmark appears in both runs: nothing compared "
            "(the baseline's benches: OtherQuiz; this session's: QuizBench)"
        ]
    )
    run_one(quiz100, "quiz_bench:QuizAgent").assert_outcomes(passed=4)
    new = str(newest(quiz100))
    capsys.readouterr()  # the in-process sessions' output
    assert benchflow(["compare", str(base), new]) == EXIT_ERROR
    assert capsys.readouterr().err.splitlines()[-1] == "no benchmark appears in both runs: nothing compared"
    report = quiz100.path / "r.html"
    assert benchflow(["report", new, "--baseline", str(base), "-o", str(report)]) == EXIT_ERROR
    assert capsys.readouterr().err.splitlines() == [
        f"pytest-benchflow report: --baseline {base}: no benchmark appears in both runs: nothing compared"
    ]
    assert not report.exists()


def _run(tmp_path: Path, agents: dict[str, set[int]]) -> RunData:
    """A run of one task of 20 samples per agent, ``agents`` mapping each name to the samples it got wrong."""
    records, samples = [], []
    for agent, wrong in agents.items():
        records.append(TaskRecord(bench="q", task_id="t", outcome="passed", agent=agent or None))
        samples += [SampleRecord("q", "t", str(i), 0.0 if i in wrong else 1.0, agent=agent or None) for i in range(20)]
    return RunData(tmp_path, {}, records, {}, samples=samples)


def test_an_agent_the_baseline_did_not_evaluate_is_noted_and_the_others_compared(tmp_path: Path) -> None:
    base = _run(tmp_path, {"a": set(), "b": {1}})
    new = _run(tmp_path, {"a": set(range(10)), "c": set()})
    data = check_run_data(base, new)
    assert data.notes == ["q[c] not compared: the baseline did not evaluate agent c"]
    (compared,) = compare_runs(base, new)
    assert (compared.label, compared.regression) == ("q[a]", True)
    # With a choice, every agent of the new run is compared with that baseline agent.
    chosen = compare_runs(base, new, base_agent="b")
    assert [(c.label, c.regression) for c in chosen] == [
        ("q[a] vs baseline q[b]", True),
        ("q[c] vs baseline q[b]", False),
    ]


def test_a_baseline_of_several_agents_on_other_data_stops_the_session_before_any_task(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_data_fingerprints import FILE_BENCH, FILES

    pytester.makepyfile(file_bench=FILE_BENCH)
    words = pytester.path / "words.json"
    words.write_text(json.dumps(["alpha", "beta", "gamma"]))
    monkeypatch.syspath_prepend(pytester.path)
    monkeypatch.delenv("FP_MODE", raising=False)
    several = [*FILES[:1], "--agent=u1=file_bench:Upper", "--agent=u2=file_bench:Upper", *FILES[2:]]
    pytester.runpytest(*several, "--benchflow-output=base").assert_outcomes(passed=6)
    words.write_text(json.dumps(["alpha", "beta", "delta"]))
    # The data is checked before any agent starts, whatever the agents: the baseline's keys are FileBench[u1] …
    gated = pytester.runpytest(*FILES, "--benchflow-output=gated", "--benchflow-baseline=base")
    assert gated.ret == pytest.ExitCode.USAGE_ERROR
    gated.stderr.fnmatch_lines(
        [
            "ERROR: --benchflow-baseline: FileBench's data differs between the runs (base sha256:*, new sha256:*); "
            "not compared: *"
        ]
    )
    assert not list((pytester.path / "gated").glob("*/results.jsonl"))
