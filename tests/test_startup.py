"""Start-up as a new user meets it: usage errors with and without xdist, references from the current
directory, bench methods returning the wrong thing, splits, and node ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TOY

MMLU = ["--benchflow=mmlu_pro", "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent", "-p", "no:cacheprovider"]


def assert_usage_error_and_nothing_written(result: pytest.RunResult, where: Path, message: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (where / "j.xml").exists()
    assert not (where / ".benchflow").exists() or not any((where / ".benchflow").iterdir())


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_a_data_file_that_is_missing_is_one_usage_error(pytester: pytest.Pytester, xdist: list[str]) -> None:
    result = pytester.runpytest_subprocess(
        *MMLU, "--benchflow-arg=DATA_FILE=/nonexistent.json", "--benchflow-arg=NUM_SHOTS=0", "--junitxml=j.xml", *xdist
    )
    assert_usage_error_and_nothing_written(
        result, pytester.path, "mmlu_pro: *get_all_tasks('test') reported: MMLU-Pro data file not found: /nonexistent.json"
    )


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_hugging_face_data_without_datasets_is_one_usage_error(pytester: pytest.Pytester, xdist: list[str]) -> None:
    # As if `datasets` were not installed (the current directory comes first on the path of every process).
    pytester.makepyfile(datasets="raise ImportError('No module named datasets')")
    result = pytester.runpytest_subprocess(
        *MMLU,
        "--benchflow-arg=DATA_FILE=hf:TIGER-Lab/MMLU-Pro",
        "--benchflow-arg=FEWSHOT_FILE=hf:TIGER-Lab/MMLU-Pro",
        "--junitxml=j.xml",
        *xdist,
    )
    assert_usage_error_and_nothing_written(result, pytester.path, "mmlu_pro: *needs the datasets library: pip install*")


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_a_node_id_naming_no_task_is_one_usage_error(toy: pytest.Pytester, xdist: list[str]) -> None:
    result = toy.runpytest_subprocess(*TOY, "benchflow:ToyBench::nope", "--junitxml=j.xml", *xdist)
    assert_usage_error_and_nothing_written(result, toy.path, "benchflow:ToyBench::nope: no such task in ToyBench*")
