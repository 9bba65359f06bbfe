"""The task record declared once (its JSON and its read-back checks derived from the dataclass), and the
``pytest_benchflow_record`` hook through which plugins add fields to it."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from conftest import TOY
from pytest_benchflow.errors import ResultsFormatError
from pytest_benchflow.results.records import SampleRecord, TaskRecord


def records(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    (jsonl,) = pytester.path.glob(".benchflow/*/results.jsonl")
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


ADD_FIELDS = """
def pytest_benchflow_record(record, item):
    record.extra["shouted"] = item.task_id.upper()
    record.extra["resolved_twice"] = [record.is_resolved, item.result.is_resolved if item.result else None]
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_conftest_adds_fields_to_results_jsonl(toy: pytest.Pytester, xdist: list[str]) -> None:
    toy.makeconftest(ADD_FIELDS)
    result = toy.runpytest_subprocess(*TOY, *xdist)
    result.assert_outcomes(passed=1, failed=1, errors=1)
    found = {r["task_id"]: r for r in records(toy)}
    assert {t: (r["shouted"], r["resolved_twice"]) for t, r in found.items()} == {
        "good": ("GOOD", [True, True]),
        "bad": ("BAD", [False, False]),
        "boom": ("BOOM", [None, None]),
    }
    # Declared fields first, then the plugin's, in the order it added them.
    assert list(found["good"])[-2:] == ["shouted", "resolved_twice"]
    assert "PytestWarning" not in result.stdout.str()


def test_plugin_fields_are_masked_and_read_back(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_API_KEY", "sk-toy-secret-1234567890")
    toy.makeconftest(
        """
import os
def pytest_benchflow_record(record, item):
    record.extra["key_seen"] = "key " + os.environ["TOY_API_KEY"]
"""
    )
    toy.runpytest(*TOY, "-k", "good")
    (line,) = records(toy)
    assert "sk-toy-secret" not in json.dumps(line) and line["key_seen"].startswith("key ")
    assert TaskRecord.from_json(line, "results.jsonl:1").extra == {"key_seen": line["key_seen"]}


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        ('record.extra["outcome"] = "passed"', "'outcome' (a declared field)"),
        ('record.outcome = "passed"; record.is_resolved = True', "'outcome' (a declared field)"),
        ('record.extra["schema_version"] = 99', "'schema_version' (a declared field)"),
        ('record.extra["when"] = object()', "'when' (not JSON: object)"),
        ('record.extra["ratio"] = float("nan")', "'ratio' (not JSON: float)"),
        ("record.gpu = 'A100'", "'gpu' (an attribute: use record.extra['gpu'])"),
    ],
)
def test_a_plugin_cannot_overwrite_declared_fields(toy: pytest.Pytester, body: str, refused: str) -> None:
    toy.makeconftest(
        f"""
def pytest_benchflow_record(record, item):
    record.extra["kept"] = 1
    {body}
"""
    )
    result = toy.runpytest(*TOY, "-k", "bad")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*PytestWarning: pytest_benchflow_record (*conftest.py) may only add fields to record.extra*"
            f"refused: {refused.replace('[', '[[]')}*"
        ]
    )
    (line,) = records(toy)
    assert (line["outcome"], line["is_resolved"], line["schema_version"], line["kept"]) == ("failed", False, 1, 1)
    assert refused in line["notes"][-1]
    assert not {"when", "ratio", "gpu"} & line.keys()


def test_no_hook_no_extra_fields(toy: pytest.Pytester) -> None:
    toy.runpytest(*TOY, "-k", "good")
    (line,) = records(toy)
    assert set(line) == {"schema_version"} | {f.name for f in fields(TaskRecord) if f.name != "extra"} - {
        "details",
        "other",
        "notes",
        "samples",
        "engine",
        "error_kind",
        "attempts",
        "agent",
    }


# The record classes, without a session -------------------------------------------------------------


def test_json_is_derived_from_the_declaration() -> None:
    record = TaskRecord("b", "t", "passed", usage={"input_tokens": 3}, extra={"gpu": "A100"})
    data = record.to_json()
    assert list(data)[:4] == ["schema_version", "bench", "task_id", "outcome"]
    assert data["usage"] == {"input_tokens": 3} and data["gpu"] == "A100" and "extra" not in data
    # Empty optional fields are left out; the others are written even when null.
    assert not {"details", "other", "notes", "samples", "engine"} & data.keys()
    assert data["reason"] is None and data["is_resolved"] is None
    assert TaskRecord.from_json(json.loads(json.dumps(data)), "x") == record
    assert TaskRecord.from_written(dict(data)) == record
    assert SampleRecord("b", "t", "s", 1).to_json() == {
        "bench": "b",
        "task_id": "t",
        "sample_id": "s",
        "score": 1,
        "epoch": 1,
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            {"bench": "b", "task_id": "t", "outcome": "passed", "epoch": "2"},
            "x: 'epoch' must be a number, not a string",
        ),
        (
            {"bench": "b", "task_id": "t", "outcome": "passed", "epoch": True},
            "x: 'epoch' must be a number, not a boolean",
        ),
        (
            {"bench": "b", "task_id": "t", "outcome": "passed", "engine": 3},
            "x: 'engine' must be a string, not a number",
        ),
        ({"bench": "b", "task_id": "t", "outcome": "passed", "notes": "n"}, "x: 'notes' must be a list, not a string"),
        ({"bench": "b", "outcome": "passed"}, "x: record lacks bench, task_id or outcome (strings)"),
    ],
)
def test_read_back_checks_follow_the_declaration(line: dict[str, Any], message: str) -> None:
    with pytest.raises(ResultsFormatError) as caught:
        TaskRecord.from_json(line, "x")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"bench": "b", "task_id": "t", "score": 1}, "x: sample lacks bench, task_id or sample_id (strings)"),
        (
            {"bench": "b", "task_id": "t", "sample_id": "s", "score": 2},
            "x: 'score' must be a number from 0 to 1, not 2",
        ),
        ({"bench": "b", "task_id": "t", "sample_id": "s"}, "x: 'score' must be a number from 0 to 1, not None"),
        (
            {"bench": "b", "task_id": "t", "sample_id": "s", "score": 1, "metadata": []},
            "x: 'metadata' must be an object, not a list",
        ),
    ],
)
def test_sample_checks_follow_the_declaration(line: dict[str, Any], message: str) -> None:
    with pytest.raises(ResultsFormatError) as caught:
        SampleRecord.from_json(line, "x")
    assert str(caught.value) == message


def test_sample_score_read_as_a_float(tmp_path: Path) -> None:
    sample = SampleRecord.from_json({"bench": "b", "task_id": "t", "sample_id": "s", "score": 1, "other": 1}, "x")
    assert sample == SampleRecord("b", "t", "s", 1.0) and type(sample.score) is float


TASK_RUN_FIELDS = """
def pytest_benchflow_record(record, item):
    run = item.task_run
    record.extra["run"] = {
        "duration": run.duration == record.duration or round(run.duration, 6) == record.duration,
        "error": type(run.error).__name__ if run.error else None,
        "samples": len(run.samples),
        "usage": run.usage == record.usage,
    }
"""


def test_the_record_is_built_from_the_task_run_the_hook_sees(toy: pytest.Pytester) -> None:
    # The run returns one TaskRun (result, usage, duration, engine, error, samples): the record is made from it.
    toy.makeconftest(TASK_RUN_FIELDS)
    toy.runpytest(*TOY).assert_outcomes(passed=1, failed=1, errors=1)
    found = {r["task_id"]: r["run"] for r in records(toy)}
    assert found == {
        "good": {"duration": True, "error": None, "samples": 0, "usage": True},
        "bad": {"duration": True, "error": None, "samples": 0, "usage": True},
        "boom": {"duration": True, "error": "TaskError", "samples": 0, "usage": True},
    }
