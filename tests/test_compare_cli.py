"""`pytest-benchflow compare` / `report` / `list` and --benchflow-baseline: planted regressions, unchanged reruns, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_mmlu_pro import HISTORY

from pytest_benchflow.results import SCHEMA_VERSION, load_run
from pytest_benchflow.results.cli import EXIT_ERROR, EXIT_OK, EXIT_REGRESSION, main


def replay_run(pytester: pytest.Pytester, replay_file: Path, output: str, *extra: str) -> pytest.RunResult:
    os.environ["REPLAY_FILE"] = str(replay_file)
    try:
        return pytester.runpytest(
            "--benchflow=mmlu_pro",
            "--agent=example_bench.mmlu_pro.agents:ReplayAgent",
            f"--benchflow-arg=DATA_FILE={HISTORY}",
            "--benchflow-arg=NUM_SHOTS=0",
            "--benchflow-arg=TASK_UNIT=question",
            f"--benchflow-output={output}",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-q",
            "--tb=no",
            *extra,
        )
    finally:
        del os.environ["REPLAY_FILE"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three real runs of 381 MMLU-Pro history questions: base, an unchanged rerun, and a degraded model."""
    root = tmp_path_factory.mktemp("runs")
    records = json.loads(HISTORY.read_text())
    degraded = [
        dict(r, response="I am not sure.") if r["pred"] == r["answer"] and i % 4 == 0 else r
        for i, r in enumerate(records)
    ]
    degraded_file = root / "degraded.json"
    degraded_file.write_text(json.dumps(degraded))
    return {"records": HISTORY, "degraded": degraded_file, "root": root}


@pytest.fixture
def three_runs(pytester: pytest.Pytester, runs: dict[str, Path]) -> dict[str, Path]:
    out = {}
    for name, replay in (("base", runs["records"]), ("rerun", runs["records"]), ("worse", runs["degraded"])):
        replay_run(pytester, replay, name)
        out[name] = pytester.path / name
    return out


def test_compare_flags_planted_regression_and_passes_rerun(
    three_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(three_runs["base"]), str(three_runs["rerun"]), "--fail-on-regression"]) == EXIT_OK
    same = capsys.readouterr().out
    assert "381 tasks in both runs: 0 resolved -> unresolved, 0 unresolved -> resolved" in same
    assert "no significant regression" in same
    assert (
        main(["compare", str(three_runs["base"]), str(three_runs["worse"]), "--fail-on-regression"]) == EXIT_REGRESSION
    )
    worse = capsys.readouterr().out
    assert "REGRESSION" in worse and "mcnemar-exact" in worse
    assert main(["compare", str(three_runs["base"]), str(three_runs["worse"])]) == EXIT_OK  # reports, does not gate


def test_compare_json(three_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    main(["compare", str(three_runs["base"]), str(three_runs["worse"]), "--json"])
    (bench,) = json.loads(capsys.readouterr().out)["benches"]
    degraded = sum(1 for i, r in enumerate(json.loads(HISTORY.read_text())) if r["pred"] == r["answer"] and i % 4 == 0)
    assert bench["bench"] == "mmlu_pro" and bench["paired_tasks"] == 381
    assert len(bench["regressed"]) == degraded and bench["fixed"] == []
    assert bench["regression"] is True and bench["p_value"] < 1e-6
    assert bench["difference"] == pytest.approx(-degraded / 381)
    low, high = bench["ci95"]
    assert low < bench["difference"] < high < 0


def test_max_drop_tolerates_small_falls(three_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["compare", str(three_runs["base"]), str(three_runs["worse"]), "--fail-on-regression", "--max-drop", "0.5"]
        )
        == EXIT_OK
    )


def test_baseline_inside_pytest(pytester: pytest.Pytester, runs: dict[str, Path]) -> None:
    replay_run(pytester, runs["records"], "base")
    unchanged = replay_run(pytester, runs["records"], "again", "--benchflow-baseline=base", "-k", "not nothing")
    assert "no significant regression" in unchanged.stdout.str()
    worse = replay_run(pytester, runs["degraded"], "worse", "--benchflow-baseline=base")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.stdout.fnmatch_lines(
        ["*benchflow comparison with baseline*", "mmlu_pro: resolution rate 69.6% -> 51.4% *: REGRESSION (at *level*)"]
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_benchflow", *args], capture_output=True, text=True)


def test_bad_results_directories(tmp_path: Path) -> None:
    missing = cli("report", str(tmp_path / "nope"))
    assert missing.returncode == EXIT_ERROR and "no such results directory" in missing.stderr
    empty = cli("compare", str(tmp_path), str(tmp_path))
    assert empty.returncode == EXIT_ERROR and "no benchflow results here" in empty.stderr
    line = '{"bench": "b", "task_id": "t", "outcome": "passed"}\n'
    (tmp_path / "results.jsonl").write_text(line + "{broken\n" + line)
    broken = cli("report", str(tmp_path))
    assert broken.returncode == EXIT_ERROR and "results.jsonl:2: not valid JSON" in broken.stderr
    (tmp_path / "results.jsonl").write_text(
        json.dumps({"schema_version": SCHEMA_VERSION + 1, "bench": "b", "task_id": "t", "outcome": "passed"}) + "\n"
    )
    newer = cli("report", str(tmp_path))
    assert newer.returncode == EXIT_ERROR and f"schema version {SCHEMA_VERSION + 1} is newer" in newer.stderr


@pytest.mark.parametrize("command", ["report", "compare", "list"])
def test_help_for_each_subcommand(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0 and f"usage: pytest-benchflow {command}" in result.stdout


def test_list_shows_installed_benchmarks() -> None:
    out = cli("list").stdout
    assert "mmlu_pro  (example_bench.mmlu_pro.bench:MMLUProBench)" in out
    assert "splits: test, validation" in out and "SCORING: default 'official'; one of official, strict" in out
    assert "runners: docker, local, ray (--benchflow-runner NAME)" in out


def test_report_from_interrupted_run_without_summary(tmp_path: Path) -> None:
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "results.jsonl").write_text(
        json.dumps({"bench": "b", "task_id": "t1", "outcome": "failed", "duration": 1.0}) + "\n"
    )
    result = cli("report", str(tmp_path), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 0 and "run1" in result.stdout
    assert 'data-bench="b"' in (tmp_path / "r.html").read_text()


def write_run(directory: Path, lines: list[str], summary: object | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.jsonl").write_text("".join(line + "\n" for line in lines))
    if summary is not None:
        (directory / "summary.json").write_text(json.dumps(summary))
    return directory


GOOD = json.dumps({"bench": "b", "task_id": "t1", "outcome": "passed", "duration": 1.0, "metrics": {"s": 1.0}})


@pytest.mark.parametrize(
    ("lines", "summary", "message"),
    [
        ([json.dumps(["a", "list"]), GOOD], None, "results.jsonl:1: expected a JSON object, found a list"),
        (
            [json.dumps({"bench": "b", "task_id": "t", "outcome": "passed", "metrics": [1]}), GOOD],
            None,
            "'metrics' must be an object, not a list",
        ),
        (
            [json.dumps({"bench": "b", "task_id": 3, "outcome": "passed"}), GOOD],
            None,
            "record lacks bench, task_id or outcome",
        ),
        (
            [json.dumps({"bench": "b", "task_id": "t", "outcome": "won"}), GOOD],
            None,
            "outcome 'won' is not one of passed, failed, error",
        ),
        (
            [json.dumps({"bench": "b", "task_id": "t", "outcome": "passed", "duration": "long"}), GOOD],
            None,
            "'duration' must be a number, not a string",
        ),
        (
            [json.dumps({"bench": "b", "task_id": "t", "outcome": "passed", "usage": {"input_tokens": 10**400}}), GOOD],
            None,
            "'usage.input_tokens' must be a whole number from 0 to below 1e18",
        ),
        ([GOOD], ["not", "an", "object"], "summary.json: expected a JSON object, found a list"),
        ([GOOD], {"benches": []}, "'benches' must be an object, not a list"),
        ([GOOD], {"benches": {"b": {"breakdown": "x"}}}, "benches.b: 'breakdown' must be an object, not a string"),
    ],
)
def test_type_malformed_results_exit_2_with_a_message(
    tmp_path: Path, lines: list[str], summary: object, message: str
) -> None:
    run = write_run(tmp_path / "run", lines, summary)
    good = write_run(tmp_path / "good", [GOOD])
    for args in (
        ["compare", str(good), str(run), "--fail-on-regression"],
        ["report", str(run), "-o", str(tmp_path / "r.html")],
    ):
        result = cli(*args)
        assert result.returncode == EXIT_ERROR, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    second = json.dumps({"bench": "b", "task_id": "t2", "outcome": "failed", "duration": 1.0})
    run = write_run(tmp_path / "run", [GOOD, second])
    with open(run / "results.jsonl", "a") as f:
        f.write('{"bench": "b", "task_id": "t3", "outc')
    result = cli("compare", str(run), str(run), "--json")
    assert result.returncode == 0, result.stderr
    assert "results.jsonl:3: incomplete last line skipped" in result.stderr
    assert json.loads(result.stdout)["benches"][0]["paired_tasks"] == 2
    (run / "results.jsonl").write_text(GOOD + "\n{broken\n" + second + "\n")
    assert "results.jsonl:2: not valid JSON" in cli("report", str(run)).stderr  # a bad line in the middle is an error


def test_compare_with_nothing_in_common_is_an_input_error(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [GOOD])
    b = write_run(tmp_path / "b", [json.dumps({"bench": "other", "task_id": "t", "outcome": "passed"})])
    result = cli("compare", str(a), str(b), "--fail-on-regression")
    assert result.returncode == EXIT_ERROR and "no benchmark appears in both runs" in result.stderr


def test_newest_run_skips_sessions_that_never_ran(tmp_path: Path) -> None:
    write_run(tmp_path / "20260101T000000-aaaaaa", [GOOD], {"exit_status": 0, "benches": {}})
    write_run(tmp_path / "20260102T000000-bbbbbb", [], {"exit_status": 4, "benches": {}})
    result = cli("compare", str(tmp_path), str(tmp_path), "--json")
    assert result.returncode == 0
    assert "skipped 20260102T000000-bbbbbb" in result.stderr
    assert json.loads(result.stdout)["new"].endswith("20260101T000000-aaaaaa")


def test_runs_started_in_the_same_second_are_ordered_by_their_start(tmp_path: Path) -> None:
    # The random part of the run id sorts "ffffff" last, but "000000" started later.
    write_run(
        tmp_path / "20260101T000000-ffffff",
        [GOOD],
        {"exit_status": 0, "benches": {}, "started_at": "2026-01-01T00:00:00.100+00:00"},
    )
    write_run(
        tmp_path / "20260101T000000-000000",
        [GOOD],
        {"exit_status": 0, "benches": {}, "started_at": "2026-01-01T00:00:00.900+00:00"},
    )
    write_run(tmp_path / "20251231T235959-zzzzzz", [GOOD], {"exit_status": 0, "benches": {}})
    assert load_run(tmp_path).path.name == "20260101T000000-000000"


def test_the_command_is_pytest_benchflow_and_python_m_runs_it() -> None:
    # BenchFlow 0.2+ installs a `benchflow` command of its own: ours must not take (or lose) that name.
    scripts = Path(sys.executable).parent
    assert (scripts / "pytest-benchflow").exists() and not (scripts / "benchflow").exists()
    for command in ([str(scripts / "pytest-benchflow")], [sys.executable, "-m", "pytest_benchflow"]):
        listing = subprocess.run([*command, "list"], capture_output=True, text=True)
        assert listing.returncode == 0 and "mmlu_pro  (example_bench.mmlu_pro.bench:MMLUProBench)" in listing.stdout
        usage = subprocess.run([*command, "compare", "--help"], capture_output=True, text=True)
        assert usage.returncode == 0 and usage.stdout.startswith("usage: pytest-benchflow compare")
    missing = subprocess.run(
        [sys.executable, "-m", "pytest_benchflow", "report", "/nonexistent/run"], capture_output=True, text=True
    )
    assert missing.returncode == EXIT_ERROR and missing.stderr.startswith("pytest-benchflow report: ")


def test_the_old_command_name_is_gone_from_code_and_docs() -> None:
    root = Path(__file__).parent.parent
    files = [root / "README.md", root / "pyproject.toml", *root.glob("docs/*.md"), *root.glob("example_bench/**/*.md")]
    files += [*root.glob("pytest_benchflow/**/*.py"), *root.glob("example_bench/**/*.py"), root / "dev.py"]
    old = re.compile(r"(?<![-\w.])benchflow (list|compare|report)\b|^benchflow = ", re.MULTILINE)
    found = [f"{f.relative_to(root)}: {m.group(0)}" for f in files for m in old.finditer(f.read_text(encoding="utf-8"))]
    assert found == []
