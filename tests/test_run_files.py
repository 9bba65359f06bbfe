"""A run's files: JSON lines stay one line whatever an answer holds, and readers split at ``\\n`` only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_benchflow.results import load_run
from pytest_benchflow.results.transcripts import read_transcript

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


def test_answers_with_line_separators_keep_the_run_readable(quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert {s.metadata["answer"] for s in samples if s.metadata} == {f"t{t}q{q}{BREAKS}" for t in (0, 1) for q in (0, 1)}
    record = load_run(run).records[0]
    assert [e["response"] for e in read_transcript(run, record.log_dir)] == [f"t0q0{BREAKS}", f"t0q1{BREAKS}"]
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
