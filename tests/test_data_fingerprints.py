"""Data fingerprints: what a run's data was, in summary.json and the report; runs of other data are not compared or
resumed; a bench whose fingerprint breaks errors its tasks once, in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_benchflow.bench import read_fingerprint
from pytest_benchflow.results.cli import EXIT_ERROR, EXIT_OK

DEMO = Path(__file__).parent.parent / "example_bench" / "mmlu_pro" / "data"

# A bench whose data is a file: each word of words.json is a task, resolved when the agent says it in capitals.
# FP_MODE breaks its data_fingerprint in the ways a bench's author might.
FILE_BENCH = """
import json, os
from pathlib import Path
from pytest_benchflow import BaseAgent, BaseBench, BenchArgs, BenchClient, fingerprint_files

DATA = Path(__file__).parent / "words.json"


class Client(BenchClient):
    def prepare_input(self, raw):
        return {"question": raw}

    def parse_response(self, raw):
        return {"answer": raw}


def evaluate(env):
    answer = Client(env["INTELLIGENCE_URL"], retries=0).get_response(env["TEST_START_ID"])["answer"]
    Path(env["BENCHFLOW_RESULTS_DIR"], "answer.txt").write_text(answer)


class FileBench(BaseBench):
    def get_args(self, task_id):
        return BenchArgs(None)

    def get_all_tasks(self, split):
        return {"task_ids": json.loads(DATA.read_text()), "error_message": None}

    def get_entrypoint(self):
        return evaluate

    def data_fingerprint(self, split):
        mode = os.environ.get("FP_MODE", "")
        if mode == "raise":
            open("/nonexistent/words-index.bin")
        if mode == "huge":
            return ("0" * 3_000_000, "the data itself")
        if mode == "int":
            return 1234
        return fingerprint_files([DATA])

    def get_result(self, task_id):
        answer = Path(self.results_dir, "answer.txt").read_text()
        return {"is_resolved": answer == task_id.upper(), "metrics": {}}


class Upper(BaseAgent):
    def call_api(self, inputs):
        return inputs["question"].upper()
"""

FILES = [
    "--benchflow=file_bench.py:FileBench",
    "--agent=file_bench:Upper",
    "-p",
    "no:randomly",
    "-p",
    "no:cacheprovider",
]


@pytest.fixture
def words(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(file_bench=FILE_BENCH)
    (pytester.path / "words.json").write_text(json.dumps(["alpha", "beta", "gamma"]))
    monkeypatch.syspath_prepend(pytester.path)
    monkeypatch.delenv("FP_MODE", raising=False)
    return pytester


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_benchflow", *args], capture_output=True, text=True)


def summary(run: Path) -> dict:  # type: ignore[type-arg]
    (found,) = run.glob("*/summary.json")
    return json.loads(found.read_text())


def mmlu(pytester: pytest.Pytester, output: str, data: Path, *extra: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--benchflow=mmlu_pro",
        "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent",
        f"--benchflow-arg=DATA_FILE={data}",
        f"--benchflow-arg=FEWSHOT_FILE={DEMO / 'demo_fewshot.json'}",
        "--benchflow-limit=2",
        f"--benchflow-output={output}",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "-q",
        *extra,
    )


def test_mmlu_pro_fingerprint_in_summary_and_report_and_a_changed_question_stops_compare(
    pytester: pytest.Pytester,
) -> None:
    data = pytester.path / "questions.json"
    data.write_text((DEMO / "demo_test.json").read_text())
    mmlu(pytester, "base", data, "--benchflow-html=base.html")
    base = summary(pytester.path / "base")["benches"]["mmlu_pro"]["data_fingerprint"]
    assert base["digest"].startswith("sha256:") and len(base["digest"]) == 71
    assert base["label"] == "sha256 of 42 questions (questions.json) and 14 few-shot examples (demo_fewshot.json)"
    assert base["digest"] in (pytester.path / "base.html").read_text()
    # The same questions: compared as before.
    mmlu(pytester, "same", data)
    assert cli("compare", "base", "same").returncode == EXIT_OK
    # One question reworded in the data file: a different data set.
    questions = json.loads(data.read_text())
    questions["data"][0]["question"] += " (reworded)"
    data.write_text(json.dumps(questions))
    mmlu(pytester, "new", data)
    new = summary(pytester.path / "new")["benches"]["mmlu_pro"]["data_fingerprint"]
    assert new["digest"] != base["digest"]
    refused = cli("compare", "base", "new")
    assert refused.returncode == EXIT_ERROR and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert line.startswith("pytest-benchflow compare: mmlu_pro's data differs between the runs")
    assert base["digest"] in line and new["digest"] in line and "--allow-data-change" in line
    assert cli("report", "new", "--baseline", "base", "-o", "r.html").returncode == EXIT_ERROR
    allowed = cli("compare", "base", "new", "--allow-data-change")
    assert allowed.returncode == EXIT_OK
    first = allowed.stdout.splitlines()[0]
    assert first.startswith("DATA CHANGED: mmlu_pro's data differs between the runs") and new["digest"] in first
    as_json = json.loads(cli("compare", "base", "new", "--allow-data-change", "--json").stdout)
    assert next(iter(as_json)) == "data_changed"
    assert as_json["data_changed"] == [{"bench": "mmlu_pro", "base": base, "new": new}]
    report = cli("report", "new", "--baseline", "base", "--allow-data-change", "-o", "r.html")
    assert report.returncode == EXIT_OK
    page = (pytester.path / "r.html").read_text()
    assert 'class="data-changed verdict error">DATA CHANGED: mmlu_pro' in page


def test_a_changed_data_file_stops_compare_and_the_baseline_gate_before_any_task(words: pytest.Pytester) -> None:
    words.runpytest(*FILES, "--benchflow-output=base").assert_outcomes(passed=3)
    fingerprint = summary(words.path / "base")["benches"]["FileBench"]["data_fingerprint"]
    assert fingerprint["label"] == "sha256 of 1 file: words.json"
    (words.path / "words.json").write_text(json.dumps(["alpha", "beta", "delta"]))
    words.runpytest(*FILES, "--benchflow-output=new").assert_outcomes(passed=3)
    refused = cli("compare", "base", "new")
    assert refused.returncode == EXIT_ERROR and "FileBench's data differs between the runs" in refused.stderr
    # Inside pytest the gate is checked before any agent or task: a usage error, nothing run or written.
    gated = words.runpytest(*FILES, "--benchflow-output=gated", "--benchflow-baseline=base")
    assert gated.ret == pytest.ExitCode.USAGE_ERROR
    gated.stderr.fnmatch_lines(
        [
            "ERROR: --benchflow-baseline: FileBench's data differs between the runs (base sha256:*, new sha256:*); "
            "not compared: compare with a run of the same data (pytest-benchflow compare --allow-data-change *"
        ]
    )
    assert not list((words.path / "gated").glob("*/results.jsonl"))
    # A baseline of the same data is compared as before.
    same = words.runpytest(*FILES, "--benchflow-output=same", "--benchflow-baseline=new")
    assert same.ret == pytest.ExitCode.OK and "no significant regression" in same.stdout.str()


def test_a_baseline_without_fingerprints_is_compared_with_a_note(words: pytest.Pytester) -> None:
    words.runpytest(*FILES, "--benchflow-output=old").assert_outcomes(passed=3)
    (written,) = (words.path / "old").glob("*/summary.json")
    older = json.loads(written.read_text())
    del older["benches"]["FileBench"]["data_fingerprint"]  # as a run from before fingerprints has it
    written.write_text(json.dumps(older))
    words.runpytest(*FILES, "--benchflow-output=new").assert_outcomes(passed=3)
    compared = cli("compare", "old", "new")
    assert compared.returncode == EXIT_OK and "no significant regression" in compared.stdout
    assert compared.stderr.splitlines() == [
        "pytest-benchflow: note: the base run kept no data fingerprint for FileBench (a run from before "
        "fingerprints, or one cut off before its summary): compared without knowing whether both evaluated "
        "the same data"
    ]
    gated = words.runpytest(*FILES, "--benchflow-output=gated", "--benchflow-baseline=old")
    assert gated.ret == pytest.ExitCode.OK
    gated.stdout.fnmatch_lines(["*benchflow comparison with baseline*", "note: the base run kept no data fingerprint*"])


def test_resume_refuses_a_run_whose_data_changed(words: pytest.Pytester) -> None:
    words.runpytest(*FILES, "--benchflow-output=out").assert_outcomes(passed=3)
    (run,) = (words.path / "out").iterdir()
    (words.path / "words.json").write_text(json.dumps(["alpha", "beta", "gamma", "delta"]))
    resumed = words.runpytest(*FILES, f"--benchflow-resume={run}")
    assert resumed.ret == pytest.ExitCode.USAGE_ERROR
    resumed.stderr.fnmatch_lines(
        [
            f"ERROR: --benchflow-resume {run}: FileBench's data changed since that run (sha256:* "
            "then, sha256:* now); resume only on the same data, or start a new run"
        ]
    )
    # The same data again: resumed (the one new word runs, the three finished do not).
    (words.path / "words.json").write_text(json.dumps(["alpha", "beta", "gamma"]))
    words.runpytest(*FILES, f"--benchflow-resume={run}").assert_outcomes()


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        (
            "raise",
            "raised FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/words-index.bin'; "
            "the bench's data cannot be identified, so none of its tasks runs",
        ),
        ("huge", "returned a digest of 3,000,000 characters (at most 256); it must return a short digest and a label"),
        ("int", "returned int; it must return a short digest and a label"),
    ],
)
@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_a_broken_fingerprint_errors_each_task_in_one_line_and_runs_none(
    words: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str, problem: str, workers: list[str]
) -> None:
    monkeypatch.setenv("FP_MODE", mode)
    result = words.runpytest_subprocess(*FILES, *workers)
    result.assert_outcomes(errors=3)
    out = result.stdout.str()
    line = f"FileBench: FileBench.data_fingerprint('test') {problem}"
    assert "Traceback" not in out and "file_bench.py" not in out  # no traceback, per task or at all
    # One line per task as its error report, and one note at the end of the benchflow summary.
    assert sum(1 for shown in out.splitlines() if shown.startswith(line)) == 3 + 1
    records = [json.loads(r) for r in next(words.path.glob(".benchflow/*/results.jsonl")).read_text().splitlines()]
    assert [r["outcome"] for r in records] == ["error"] * 3
    assert all(r["reason"].startswith(line) for r in records)
    assert summary(words.path / ".benchflow")["benches"]["FileBench"]["data_fingerprint"] is None
    assert not list(words.path.glob(".benchflow/*/FileBench/results/*/answer.txt"))  # no task asked the agent


def test_read_fingerprint_accepts_a_digest_alone_and_refuses_unprintable_text() -> None:
    from pytest_benchflow import BaseBench, BenchArgs

    class Bench(BaseBench):
        value: object = None

        def get_args(self, task_id: str | None) -> BenchArgs:
            return BenchArgs(None)

        def get_all_tasks(self, split: str) -> dict[str, object]:
            return {"task_ids": ["t"]}

        def get_result(self, task_id: str) -> dict[str, object]:  # type: ignore[override]
            return {}

        def data_fingerprint(self, split: str) -> object:  # type: ignore[override]
            return self.value

    bench = Bench()
    assert read_fingerprint(bench, "b", "test") is None
    bench.value = "sha256:abc"
    assert read_fingerprint(bench, "b", "test") == ("sha256:abc", "")
    bench.value = ("sha256:abc", "label\x1b[31m")
    with pytest.raises(Exception, match=r"returned a label with unprintable characters"):
        read_fingerprint(bench, "b", "test")
    bench.value = (b"\x00", "bytes")
    with pytest.raises(Exception, match=r"returned a digest of type bytes"):
        read_fingerprint(bench, "b", "test")


def test_a_planted_megabyte_fingerprint_in_a_summary_is_refused_in_one_line(words: pytest.Pytester) -> None:
    words.runpytest(*FILES, "--benchflow-output=base").assert_outcomes(passed=3)
    words.runpytest(*FILES, "--benchflow-output=new").assert_outcomes(passed=3)
    (written,) = (words.path / "base").glob("*/summary.json")
    planted = json.loads(written.read_text())
    planted["benches"]["FileBench"]["data_fingerprint"]["digest"] = "f" * 2_000_000
    written.write_text(json.dumps(planted))
    refused = cli("compare", "base", "new")
    assert refused.returncode == EXIT_ERROR
    assert refused.stderr.splitlines() == [
        f"pytest-benchflow compare: {written.relative_to(words.path)}: benches.FileBench: 'data_fingerprint' must be an object of two "
        "strings, 'digest' and 'label', of at most 256 characters each"
    ]
