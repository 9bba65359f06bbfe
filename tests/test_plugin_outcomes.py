"""Outcomes (resolved → pass, unresolved → fail, broken → error), JUnit XML, xdist and --lf."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conftest import TOY


def junit_cases(path: Path) -> dict[str, dict[str, Any]]:
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        cases[case.get("classname", "") + "::" + case.get("name", "")] = {"props": props, "kinds": kinds}
    return cases


def test_outcomes_and_exit_code(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY)
    result.assert_outcomes(passed=1, failed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    # unresolved: a short report with the metrics and the log, no traceback
    result.stdout.fnmatch_lines(["*task 'bad' unresolved", "metrics: score=0, mode=normal", "log: agent answered BAD"])
    # broken: the reason, and the benchmark's own traceback
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of ToyBench: boom*",
            "task 'boom': the evaluation raised RuntimeError: evaluation crashed on boom",
        ]
    )
    assert "runner.py" not in out.split("ERROR at setup")[1].split("FAILURES")[0]


def test_all_resolved_exits_zero(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", '["one", "two"]')
    assert toy.runpytest(*TOY).ret == 0


def test_junit_failure_vs_error_and_properties(toy: pytest.Pytester) -> None:
    result = toy.runpytest_subprocess(*TOY, "--junitxml=j.xml", "-W", "error")
    assert "Warning" not in result.stdout.str()
    cases = junit_cases(toy.path / "j.xml")
    good, bad, boom = (cases[f"benchflow:ToyBench::{t}"] for t in ("good", "bad", "boom"))
    assert (good["kinds"], bad["kinds"], boom["kinds"]) == ([], ["failure"], ["error"])
    assert good["props"]["bench"] == "ToyBench" and good["props"]["task_id"] == "good"
    assert good["props"]["is_resolved"] == "true" and bad["props"]["is_resolved"] == "false"
    assert good["props"]["metric.score"] == "1.0" and good["props"]["metric.mode"] == "normal"
    assert float(good["props"]["duration"]) >= 0


def test_xdist_gives_the_same_items_outcomes_and_properties(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"t{i}" for i in range(6)] + ["bad1", "boom1", "bad 2::x"]))
    serial = toy.runpytest_subprocess(*TOY, "--junitxml=serial.xml", "-W", "error")
    parallel = toy.runpytest_subprocess(*TOY, "--junitxml=parallel.xml", "-n", "2", "-W", "error")
    assert serial.ret == parallel.ret == pytest.ExitCode.TESTS_FAILED
    a, b = junit_cases(toy.path / "serial.xml"), junit_cases(toy.path / "parallel.xml")
    assert a.keys() == b.keys() and len(a) == 9
    for key in a:
        assert a[key]["kinds"] == b[key]["kinds"]
        strip = lambda p: {k: v for k, v in p.items() if k != "duration"}  # noqa: E731
        assert strip(a[key]["props"]) == strip(b[key]["props"])
    # the summary is printed once, by the controller
    assert parallel.stdout.str().count("benchflow summary") == 1


def test_last_failed_reruns_only_unresolved_and_errored(toy: pytest.Pytester) -> None:
    toy.runpytest(*TOY, "-p", "cacheprovider").assert_outcomes(passed=1, failed=1, errors=1)
    rerun = toy.runpytest(*TOY, "-p", "cacheprovider", "--lf", "-v")
    rerun.assert_outcomes(failed=1, errors=1)
    assert "::good" not in rerun.stdout.str().split("benchflow summary")[0].replace("deselected", "")


def test_failed_first_runs_unresolved_and_errored_before_the_rest(toy: pytest.Pytester) -> None:
    toy.runpytest(*TOY, "-p", "cacheprovider")
    rerun = toy.runpytest(*TOY, "-p", "cacheprovider", "--ff", "-v")
    rerun.assert_outcomes(passed=1, failed=1, errors=1)
    order = [line.split()[0] for line in rerun.outlines if line.startswith("benchflow:ToyBench::")]
    assert order[-1] == "benchflow:ToyBench::good" and len(order) == 3
