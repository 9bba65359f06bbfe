"""Items: one per task id, stable node ids, standard selection options, collection errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TOY


def test_one_item_per_task_in_order(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["zeta", "alpha", "mid"]))
    result = toy.runpytest(*TOY, "--collect-only", "-q")
    assert result.ret == 0
    lines = [line for line in result.outlines if line.startswith("benchflow:")]
    assert lines == ["benchflow:ToyBench::zeta", "benchflow:ToyBench::alpha", "benchflow:ToyBench::mid"]


def test_awkward_task_ids_give_working_stable_node_ids(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    awkward = [
        "with space",
        "a/b/c",
        "x::y",
        "br[a]ckets",
        "ünïcødé",
        "L" * 300,
        "plain-id_1.2",
        "../../escape",
        "/abs",
        "a//b",
        "x",
        "x/y",
        "x%2Fy",
        ".",
    ]
    monkeypatch.setenv("TOY_TASKS", json.dumps(awkward))
    first = toy.runpytest(*TOY, "--collect-only", "-q").outlines
    second = toy.runpytest(*TOY, "--collect-only", "-q").outlines
    ids = [line for line in first if line.startswith("benchflow:")]
    assert ids == [line for line in second if line.startswith("benchflow:")]
    assert len(set(ids)) == len(awkward)
    for node_id in ids:
        name = node_id.split("::", 1)[1]
        assert "::" not in name and "[" not in name and " " not in name and len(name) <= 80
    assert "benchflow:ToyBench::a/b/c" in ids and "benchflow:ToyBench::plain-id_1.2" in ids
    result = toy.runpytest(*TOY, "--junitxml=j.xml", "-q")
    xml = (toy.path / "j.xml").read_text()
    for task_id in awkward:
        assert f'name="task_id" value="{task_id}"' in xml
    result.assert_outcomes(passed=len(awkward))
    # Every task's directories stay inside the run directory.
    (run_dir,) = (toy.path / ".benchflow").iterdir()
    assert not (toy.path / "escape").exists() and not (run_dir / "escape").exists()
    records = list(map(json.loads, (run_dir / "results.jsonl").read_text().splitlines()))
    # One flat directory per task: "x" and "x/y" are siblings, never one inside the other.
    assert len({r["results_dir"] for r in records}) == len(awkward)
    for record in records:
        assert Path(record["results_dir"]).parent == Path("ToyBench/results")
        assert (run_dir / record["results_dir"]).resolve().is_relative_to(run_dir / "ToyBench" / "results")


def test_without_paths_only_benchmark_items_run(toy: pytest.Pytester) -> None:
    toy.makepyfile(test_project="def test_project_unit():\n    pass\n")
    result = toy.runpytest(*TOY, "--collect-only", "-q")
    assert "test_project.py::test_project_unit" not in result.stdout.str()
    explicit = toy.runpytest(*TOY, "test_project.py", "--collect-only", "-q")
    assert "test_project.py::test_project_unit" in explicit.stdout.str()
    assert "benchflow:ToyBench::good" in explicit.stdout.str()


def test_keyword_marker_and_limit_selection(toy: pytest.Pytester) -> None:
    toy.runpytest(*TOY, "-k", "good").assert_outcomes(passed=1)
    toy.runpytest(*TOY, "-k", "not boom", "-m", "benchflow").assert_outcomes(passed=1, failed=1)
    toy.runpytest(*TOY, "--benchflow-limit", "2").assert_outcomes(passed=1, failed=1)


def test_maxfail_stops_early(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["bad1", "bad2", "good"]))
    toy.runpytest(*TOY, "-x").assert_outcomes(failed=1)


def test_unknown_benchmark_lists_installed(toy: pytest.Pytester) -> None:
    result = toy.runpytest("--benchflow=nope", "--agent-url=http://127.0.0.1:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: unknown benchmark 'nope'; installed: *mmlu_pro*"])


def test_class_not_implementing_the_interface(toy: pytest.Pytester) -> None:
    toy.makepyfile(
        half="from pytest_benchflow import BaseBench\nclass Half(BaseBench):\n    def get_args(self, t):\n        return None\n"
    )
    result = toy.runpytest("--benchflow=half.py:Half", "--agent-url=http://127.0.0.1:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: benchmark 'half.py:Half': Half does not implement get_all_tasks, get_result"])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOY_LIST_ERROR": "dataset missing"}, "*get_all_tasks('test') reported: dataset missing"),
        ({"TOY_TASKS": "[]"}, "*get_all_tasks('test') returned no tasks"),
        ({"TOY_TASKS": '["a", "a"]'}, "*get_all_tasks('test'): duplicate task ids: a"),
    ],
)
def test_bad_task_listings(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = toy.runpytest(*TOY)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: ToyBench: {message}"])


def test_loads_with_plugin_autoload_off(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    without = toy.runpytest_subprocess(*TOY)
    assert without.ret == pytest.ExitCode.USAGE_ERROR  # --benchflow is unknown without the plugin
    toy.runpytest_subprocess("-p", "pytest_benchflow", *TOY).assert_outcomes(passed=1, failed=1, errors=1)


def test_dist_loadgroup(toy: pytest.Pytester) -> None:
    toy.runpytest_subprocess(*TOY, "-n", "2", "--dist", "loadgroup").assert_outcomes(passed=1, failed=1, errors=1)


def test_node_ids_from_the_output_work_as_arguments(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "bad", "a/b/c", "with space"]))
    listed = [line for line in toy.runpytest(*TOY, "--collect-only", "-q").outlines if line.startswith("benchflow:")]
    hashed = next(n for n in listed if "with" in n and " " not in n)
    result = toy.runpytest(*TOY, "benchflow:ToyBench::a/b/c", hashed, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*benchflow:ToyBench::a/b/c PASSED*"])
    assert "::good" not in result.stdout.str()
    toy.runpytest(*TOY, "benchflow:ToyBench::bad").assert_outcomes(failed=1)
    toy.runpytest(*TOY, "benchflow:ToyBench").assert_outcomes(passed=3, failed=1)
    toy.runpytest_subprocess(*TOY, "benchflow:ToyBench::good", "benchflow:ToyBench::bad", "-n", "2").assert_outcomes(
        passed=1, failed=1
    )


def test_node_id_naming_an_unknown_task_or_bench(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY, "benchflow:ToyBench::nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: benchflow:ToyBench::nope: no such task in ToyBench (3 tasks;*"])
    other = toy.runpytest(*TOY, "benchflow:Other::x")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    other.stderr.fnmatch_lines(["ERROR: node id benchflow:Other::… names a benchmark this session does not run*"])


def test_node_id_implies_the_registered_benchmark(pytester: pytest.Pytester) -> None:
    agent = "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent"
    result = pytester.runpytest("benchflow:mmlu_pro::philosophy", "benchflow:mmlu_pro::law", agent, "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*benchflow:mmlu_pro::law FAILED*", "*benchflow:mmlu_pro::philosophy PASSED*"])
