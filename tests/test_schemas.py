"""BenchmarkResult and BenchArgs: validation, defaults, compatibility with 0.1.x and secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import in_process_bench
from pytest_benchflow import ArgumentError, BenchArgs, BenchmarkResult, ResultError
from pytest_benchflow.schemas import to_result


class TestBenchmarkResult:
    def test_string_log_is_kept_as_text(self) -> None:
        r = BenchmarkResult(task_id="t", is_resolved=True, log="trace here", metrics={"score": 1})
        assert r.log == {"text": "trace here"}

    def test_defaults(self) -> None:
        r = BenchmarkResult(is_resolved=False, metrics={})
        assert (r.task_id, r.log, r.other) == ("", {}, {})

    def test_metric_types_are_kept(self) -> None:
        r = BenchmarkResult(is_resolved=True, metrics={"b": True, "i": 3, "f": 0.5, "s": "OK"})
        assert [type(v) for v in r.metrics.values()] == [bool, int, float, str]

    def test_dict_is_validated_and_task_id_filled(self) -> None:
        r = to_result({"is_resolved": True, "metrics": {"acc": 0.9}, "log": "x"}, "law")
        assert r.task_id == "law" and r.log == {"text": "x"}

    def test_result_without_task_id_gets_it(self) -> None:
        assert to_result(BenchmarkResult(is_resolved=True, metrics={}), "t9").task_id == "t9"

    def test_not_a_result_names_type_and_task(self) -> None:
        with pytest.raises(
            ResultError, match=r"task 'law': get_result returned list, expected a BenchmarkResult or a dict"
        ):
            to_result([1, 2], "law")

    def test_missing_field_is_named(self) -> None:
        with pytest.raises(ResultError, match=r"task 'x': invalid result: field metrics: Field required"):
            to_result({"is_resolved": True}, "x")

    def test_mistyped_field_is_named(self) -> None:
        with pytest.raises(ResultError, match=r"task 'x': .*field is_resolved"):
            to_result({"is_resolved": "maybe", "metrics": {}}, "x")

    def test_mistyped_metric_is_named(self) -> None:
        with pytest.raises(ResultError, match=r"field metrics\.score"):
            to_result({"is_resolved": True, "metrics": {"score": [1]}}, "x")


class TestBenchArgs:
    def test_compat_forms(self, tmp_path: Path) -> None:
        as_list = BenchArgs({"required": ["A"], "optional": [{"B": 1}, {"C": "x"}], "choices": {"C": ["x", "y"]}})
        as_dict = BenchArgs({"required": ["A"], "optional": {"B": 1, "C": "x"}, "choices": {"C": ["x", "y"]}})
        yaml_file = tmp_path / "args.yaml"
        yaml_file.write_text("required: [A]\noptional:\n  - B: 1\n  - C: x\nchoices:\n  C: [x, y]\n")
        from_yaml = BenchArgs(str(yaml_file))
        assert as_list == as_dict == from_yaml
        assert BenchArgs(None).names == []

    def test_resolve_applies_defaults_and_stringifies(self) -> None:
        args = BenchArgs({"optional": {"N": 5, "FLAG": True, "NONE": None}}).resolve({})
        assert dict(args) == {"N": "5", "FLAG": "true"}

    def test_all_missing_required_reported_at_once(self) -> None:
        with pytest.raises(ArgumentError, match=r"missing required arguments A, B"):
            BenchArgs({"required": ["A", "B", "C"]}).resolve({"C": "1"})

    def test_choice_violated(self) -> None:
        with pytest.raises(ArgumentError, match=r"MODE='z' is not one of a, b"):
            BenchArgs({"optional": {"MODE": "a"}, "choices": {"MODE": ["a", "b"]}}).resolve({"MODE": "z"})

    def test_choices_compare_as_environment_strings(self) -> None:
        args = BenchArgs({"optional": {"N": 1}, "choices": {"N": [1, 2]}}).resolve({"N": "2"})
        assert args["N"] == "2"

    def test_unknown_names_rejected_with_known_list(self) -> None:
        with pytest.raises(ArgumentError, match=r"unknown argument NUM \(known: N\)"):
            BenchArgs({"optional": {"N": 1}}).resolve({"NUM": "3"})

    def test_get_args_is_the_lenient_compat_name(self) -> None:
        assert dict(BenchArgs({"optional": {"N": 1}}).get_args({"OTHER": "x"})) == {"N": "1"}

    def test_missing_yaml_file(self, tmp_path: Path) -> None:
        with pytest.raises(ArgumentError, match="cannot read benchmark arguments file"):
            BenchArgs(str(tmp_path / "nope.yaml"))

    def test_secret_values_never_in_repr_or_errors(self) -> None:
        spec = BenchArgs(
            {"required": ["OPENAI_API_KEY", "HOST_PASS"], "secret": ["HOST_PASS"], "choices": {"DB_TOKEN": ["a"]}}
        )
        args = spec.resolve({"OPENAI_API_KEY": "sk-verysecret", "HOST_PASS": "hunter2hunter2"})
        assert args["OPENAI_API_KEY"] == "sk-verysecret"
        for text in (repr(args), str(args), str(args.public())):
            assert "sk-verysecret" not in text and "hunter2hunter2" not in text
        with pytest.raises(ArgumentError) as info:
            spec.resolve({"OPENAI_API_KEY": "k", "HOST_PASS": "p", "DB_TOKEN": "tok-leaked"})
        assert "tok-leaked" not in str(info.value) and "DB_TOKEN=***" in str(info.value)


class _Thing:
    pass


@pytest.mark.parametrize("field", ["log", "other"])
def test_a_result_holding_what_json_cannot_is_refused_naming_the_field(field: str) -> None:
    with pytest.raises(ResultError, match=r"field samples\.0\.metadata: .*Object of type _Thing is not JSON"):
        to_result(
            {
                "is_resolved": True,
                "metrics": {},
                "samples": [{"sample_id": 1, "score": 1, "metadata": {"x": _Thing()}}],
            },
            "t",
        )
    with pytest.raises(
        ResultError, match=rf"task 't': invalid result: field {field}: .*Object of type _Thing is not JSON"
    ):
        to_result({"is_resolved": True, "metrics": {}, field: {"thing": _Thing()}}, "t")


def test_a_result_holding_an_object_is_an_error_record_not_an_internal_error(
    pytester: pytest.Pytester, echo_agent: str
) -> None:
    result_body = 'return {"is_resolved": True, "metrics": {}, "other": {"when": {1, 2}}}'
    pytester.makepyfile(odd=in_process_bench("Odd", "def evaluate(env):\n    pass", result_body))
    result = pytester.runpytest("--benchflow=odd.py:Odd", f"--agent-url={echo_agent}")
    assert "INTERNALERROR" not in result.stdout.str()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*invalid result: field other: *Object of type set is not JSON serializable*"])
