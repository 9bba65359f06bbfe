"""Benchmark arguments from the command line, the environment and ini files; secrets kept out of reports."""

from __future__ import annotations

import json

import pytest

from conftest import TOY


def modes(toy: pytest.Pytester) -> set[str]:
    lines = next(toy.path.glob(".benchflow/*/results.jsonl")).read_text().splitlines()
    return {json.loads(line)["metrics"].get("mode") for line in lines if json.loads(line)["metrics"]}


def test_cli_arg_overrides_environment(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODE", "loud")
    toy.runpytest(*TOY, "-k", "good")
    assert modes(toy) == {"loud"}
    (toy.path / ".benchflow").rename(toy.path / "old")
    toy.runpytest(*TOY, "-k", "good", "--benchflow-arg", "MODE=normal")
    assert modes(toy) == {"normal"}


def test_ini_options_with_command_line_winning(toy: pytest.Pytester) -> None:
    toy.makeini(
        "[pytest]\nbenchflow = toy_bench.py:ToyBench\nagent = toy_bench:UpperAgent\nbenchflow_arg = MODE=loud\nbenchflow_limit = 1\n"
    )
    toy.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    assert modes(toy) == {"loud"}
    toy.runpytest("-p", "no:randomly", "--benchflow-limit=2").assert_outcomes(passed=1, failed=1)


@pytest.mark.parametrize("arg", ["MODE", "=loud", "  =x"])
def test_malformed_arg(toy: pytest.Pytester, arg: str) -> None:
    result = toy.runpytest(*TOY, "--benchflow-arg", arg)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --benchflow-arg {arg!r} must be NAME=VALUE"])


def test_unknown_arg_name(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY, "--benchflow-arg", "MOOD=loud")
    result.stderr.fnmatch_lines(["ERROR: --benchflow-arg: no selected benchmark takes MOOD (known: MODE, TOY_API_KEY)"])


def test_choice_violated(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY, "--benchflow-arg", "MODE=quiet")
    result.stderr.fnmatch_lines(
        ["ERROR: ToyBench (session): MODE='quiet' is not one of normal, loud; pass --benchflow-arg*"]
    )


def test_all_missing_required_args_named_at_once(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_REQUIRED", json.dumps(["DATASET", "JUDGE_MODEL", "MODE"]))
    monkeypatch.setenv("MODE", "loud")
    result = toy.runpytest(*TOY)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: ToyBench (session): missing required arguments DATASET, JUDGE_MODEL; pass --benchflow-arg NAME=VALUE or set the environment variable"
        ]
    )


def test_secret_reaches_bench_but_no_report(toy: pytest.Pytester) -> None:
    secret = "sk-live-0123456789abcdef"
    result = toy.runpytest_subprocess(*TOY, "--benchflow-arg", f"TOY_API_KEY={secret}", "--junitxml=j.xml", "-rA")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    assert "evaluating with key ***" in result.stdout.str()  # the bench printed it: captured output is redacted
    run_dir = next(toy.path.glob(".benchflow/*"))
    for text in (
        result.stdout.str(),
        result.stderr.str(),
        (toy.path / "j.xml").read_text(),
        (run_dir / "results.jsonl").read_text(),
        (run_dir / "summary.json").read_text(),
    ):
        assert secret not in text
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["benches"]["ToyBench"]["args"]["TOY_API_KEY"] == "***"
    assert "TOY_API_KEY=***" in summary["argv"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--benchflow-runner=podman", "ERROR: --benchflow-runner 'podman': choose one of docker, local, ray"),
        ("--benchflow-timeout=soon", "ERROR: --benchflow-timeout 'soon' is not a number of seconds"),
        ("--benchflow-timeout=nan", "ERROR: --benchflow-timeout must be a positive finite number, got nan"),
        ("--benchflow-timeout=inf", "ERROR: --benchflow-timeout must be a positive finite number, got inf"),
        ("--benchflow-timeout=1e400", "ERROR: --benchflow-timeout must be a positive finite number, got 1e400"),
        ("--benchflow-timeout=-1", "ERROR: --benchflow-timeout must be a positive finite number, got -1"),
        ("--benchflow-limit=0", "ERROR: --benchflow-limit must be a positive finite number, got 0"),
        ("--benchflow-limit=2.5", "ERROR: --benchflow-limit '2.5' is not a whole number"),
        ("--benchflow-pull=sometimes", "ERROR: --benchflow-pull 'sometimes': choose never, missing or always"),
    ],
)
def test_bad_option_values(toy: pytest.Pytester, option: str, message: str) -> None:
    result = toy.runpytest(*TOY, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert not (toy.path / ".benchflow").exists() or not list((toy.path / ".benchflow").iterdir())
