"""A run's files: JSON lines stay one line whatever an answer holds, and readers split at ``\\n`` only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TOY
from pytest_benchflow.results import load_run
from pytest_benchflow.results.transcript_reader import read_transcript

# Every character str.splitlines() breaks on that JSON leaves unescaped.
BREAKS = "a\u2028b\u2029c\x85d"

SEPARATOR_AGENT = f"""
from pytest_benchflow import BaseAgent

class Separators(BaseAgent):
    def call_api(self, inputs):
        return inputs["question"] + {BREAKS!r}
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_benchflow.results.cli", *args], capture_output=True, text=True)


def test_answers_with_line_separators_keep_the_run_readable(
    quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUIZ_TASKS", "2")
    monkeypatch.setenv("QUIZ_PER_TASK", "2")
    quiz.makepyfile(separators=SEPARATOR_AGENT)
    args = ["--benchflow=quiz_bench.py:QuizBench", "--agent=separators:Separators", "-p", "no:randomly"]
    result = quiz.runpytest_subprocess(*args, "--benchflow-html=run.html")
    result.assert_outcomes(failed=2)  # every answer is wrong: the gold answer plus separators
    (run,) = quiz.path.glob(".benchflow/2*")
    files = [run / "results.jsonl", run / "samples.jsonl", *run.glob("*/logs/*/transcript.jsonl")]
    assert len(files) == 4
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert text.splitlines() == text.split("\n")[:-1], path  # no line break but \n, even for splitlines
    # The answers come back whole: in samples, in transcripts, in the report.
    samples = load_run(run).samples
    assert {s.metadata["answer"] for s in samples if s.metadata} == {
        f"t{t}q{q}{BREAKS}" for t in (0, 1) for q in (0, 1)
    }
    (record,) = [r for r in load_run(run).records if r.task_id == "t0"]
    # (the two questions are asked at once: their lines may be in either order)
    assert sorted(e["response"] for e in read_transcript(run, record.log_dir)) == [f"t0q0{BREAKS}", f"t0q1{BREAKS}"]
    assert (quiz.path / "run.html").is_file()
    for command in (["report", str(run), "-o", str(quiz.path / "again.html")], ["compare", str(run), str(run)]):
        done = cli(*command)
        assert done.returncode == 0, done.stderr
    resumed = quiz.runpytest_subprocess(*args, "--benchflow-resume=.benchflow")
    assert resumed.ret == pytest.ExitCode.NO_TESTS_COLLECTED, resumed.stderr.str()  # every task is final
    assert "resumed_at" in json.loads((run / "summary.json").read_text())


def test_lines_an_older_writer_left_with_raw_separators_are_read_whole(tmp_path: Path) -> None:
    """Files written before line separators were escaped: a reader splitting at \\n still reads every line."""
    run = tmp_path / "run"
    (run / "b" / "logs" / "t").mkdir(parents=True)
    record = {"bench": "b", "task_id": "t", "outcome": "passed", "log_dir": "b/logs/t", "other": {"note": BREAKS}}
    sample = {"bench": "b", "task_id": "t", "sample_id": "s", "score": 1.0, "metadata": {"answer": BREAKS}}
    exchange = {"sample_id": "s", "request": {"question": "q"}, "response": BREAKS, "parsed": None}
    for name, value in (("results.jsonl", record), ("samples.jsonl", sample), ("b/logs/t/transcript.jsonl", exchange)):
        (run / name).write_text(json.dumps(value, ensure_ascii=False) + "\n", encoding="utf-8")
    loaded = load_run(run)
    assert loaded.records[0].other == {"note": BREAKS}
    assert loaded.samples[0].metadata == {"answer": BREAKS}
    (found,) = read_transcript(run, "b/logs/t")
    assert found["response"] == BREAKS
    done = cli("report", str(run), "-o", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr


# "flaky" errors while the file "broken" exists; the toy bench writes answer.json in its results directory.
FLAKY = """
import os
def pytest_benchflow_task_environment(bench, task_id, env):
    if task_id == "flaky" and os.path.exists("broken"):
        raise RuntimeError("flaky is broken today")
"""


@pytest.fixture
def errored_run(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A finished run of "good" (passed) and "flaky" (errored: a resume runs it again)."""
    toy.makeconftest(FLAKY)
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "flaky"]))
    (toy.path / "broken").write_text("")
    toy.runpytest(*TOY).assert_outcomes(passed=1, errors=1)
    (toy.path / "broken").unlink()
    (run,) = (toy.path / ".benchflow").iterdir()
    return run


def _outside(toy: pytest.Pytester) -> Path:
    outside = toy.path / "outside"
    outside.mkdir()
    for name in ("transcript", "answer", "usage"):
        (outside / name).write_text("ORIGINAL")
    return outside


def test_a_resume_writes_through_no_planted_link(toy: pytest.Pytester, errored_run: Path) -> None:
    outside = _outside(toy)
    logs, results = errored_run / "ToyBench" / "logs" / "flaky", errored_run / "ToyBench" / "results" / "flaky"
    (logs / "transcript.jsonl").symlink_to(outside / "transcript")
    (logs / "usage.json").symlink_to(outside / "usage")
    (results / "answer.json").symlink_to(outside / "answer")  # where the bench itself writes, with a plain open
    (logs / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(logs / "fifo")
    result = toy.runpytest_subprocess(*TOY, "--benchflow-resume=.benchflow", "--benchflow-timeout=60", timeout=120)
    result.assert_outcomes(passed=1)
    assert {p.name: p.read_text() for p in outside.iterdir()} == {
        n: "ORIGINAL" for n in ("transcript", "answer", "usage")
    }
    for path in (logs / "transcript.jsonl", results / "answer.json"):
        assert path.is_file() and not path.is_symlink(), path
    assert not (logs / "fifo").exists() and not (logs / "usage.json").exists()
    assert json.loads((logs / "transcript.jsonl").read_text())["response"] == "FLAKY"


@pytest.mark.parametrize("name", ["results.jsonl", "samples.jsonl", "summary.json.tmp"])
def test_a_link_at_a_run_file_is_never_written_through(toy: pytest.Pytester, errored_run: Path, name: str) -> None:
    target = toy.path / "elsewhere"
    planted = errored_run / name
    planted.unlink(missing_ok=True)
    planted.symlink_to(target)  # dangling: writing through it would create a file outside the run
    result = toy.runpytest_subprocess(*TOY, "--benchflow-resume=.benchflow", timeout=120)
    assert not target.exists()
    if name == "summary.json.tmp":  # a leftover at a name only the writer uses: replaced, not followed
        result.assert_outcomes(passed=1)
        assert not planted.exists() and (errored_run / "summary.json").is_file()
        return
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --benchflow-*{name} is a symbolic link; refusing to use it*"])
    assert planted.is_symlink() and (errored_run / "summary.json").is_file()  # nothing of the run was removed


def test_a_link_at_a_task_directorys_parent_is_refused(toy: pytest.Pytester, errored_run: Path) -> None:
    outside = toy.path / "outside-logs"
    outside.mkdir()
    logs = errored_run / "ToyBench" / "logs"
    logs.rename(toy.path / "old-logs")
    logs.symlink_to(outside, target_is_directory=True)
    result = toy.runpytest_subprocess(*TOY, "--benchflow-resume=.benchflow", timeout=120)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*task directory */ToyBench/logs is a symlink; refusing to use it*"])
    assert list(outside.iterdir()) == []


def report(run: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``pytest-benchflow report`` of ``run`` in a process of its own (a hang ends at 60 s)."""
    command = [sys.executable, "-m", "pytest_benchflow.results.cli", "report", str(run), "-o", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_fifo_in_place_of_a_run_file_never_hangs_a_reader(toy: pytest.Pytester, errored_run: Path) -> None:
    good_logs = errored_run / "ToyBench" / "logs" / "good"
    (good_logs / "transcript.jsonl").unlink()
    os.mkfifo(good_logs / "transcript.jsonl")
    done = report(errored_run, toy.path / "r.html")
    assert done.returncode == 0, done.stderr  # the report, without that task's transcript
    # A resumed session reads the run back, and runs "flaky" again, its own transcript a FIFO too.
    os.mkfifo(errored_run / "ToyBench" / "logs" / "flaky" / "transcript.jsonl")
    result = toy.runpytest_subprocess(*TOY, "--benchflow-resume=.benchflow", "--benchflow-html=r2.html", timeout=120)
    result.assert_outcomes(passed=1)
    # Where a run file must be read, a FIFO is an error naming it, at once.
    (errored_run / "results.jsonl").unlink()
    os.mkfifo(errored_run / "results.jsonl")
    done = report(errored_run, toy.path / "r.html")
    assert done.returncode == 2 and "results.jsonl: cannot be read" in done.stderr, done.stderr
    result = toy.runpytest_subprocess(*TOY, "--benchflow-resume=.benchflow", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --benchflow-resume: *results.jsonl: cannot be read*not a regular file*"])


def test_a_dangling_cache_link_creates_nothing_outside(toy: pytest.Pytester) -> None:
    (toy.path / ".benchflow").mkdir()
    (toy.path / ".benchflow" / "cache.sqlite").symlink_to(toy.path / "elsewhere.sqlite")
    result = toy.runpytest(*TOY, "--benchflow-cache=use")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --benchflow-cache: */cache.sqlite is a link to nothing; remove it or give another path"]
    )
    assert not (toy.path / "elsewhere.sqlite").exists()
