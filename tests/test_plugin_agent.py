"""Naming the agent: a URL, a served BaseAgent, a command; health checks and an agent that dies."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import TOY

BENCH = ["--benchflow=toy_bench.py:ToyBench", "-p", "no:randomly"]


def test_agent_url(toy: pytest.Pytester, echo_agent: str) -> None:
    toy.runpytest(*BENCH, f"--agent-url={echo_agent}").assert_outcomes(passed=1, failed=1, errors=1)


def test_intelligence_url_environment(toy: pytest.Pytester, echo_agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTELLIGENCE_URL", echo_agent)
    toy.runpytest(*BENCH).assert_outcomes(passed=1, failed=1, errors=1)


def test_agent_cmd_started_and_stopped(toy: pytest.Pytester) -> None:
    toy.makepyfile(
        serve="import sys, toy_bench\ntoy_bench.UpperAgent().run_with_endpoint('127.0.0.1', int(sys.argv[1]))\n"
    )
    result = toy.runpytest_subprocess(*BENCH, f"--agent-cmd={sys.executable} serve.py {{port}}")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    summary = json.loads(next(toy.path.glob(".benchflow/*/summary.json")).read_text())
    import requests

    with pytest.raises(requests.ConnectionError):
        requests.get(summary["agent_url"] + "/health", timeout=1)


def test_agent_cmd_that_exits(toy: pytest.Pytester) -> None:
    result = toy.runpytest(
        *BENCH, f"--agent-cmd={sys.executable} -c 'import sys; print(\"no model {{port}}\"); sys.exit(3)'"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --agent-cmd exited with status 3 before answering: no model *"])


def test_agent_cmd_without_port(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*BENCH, "--agent-cmd=python serve.py")
    result.stderr.fnmatch_lines(["ERROR: --agent-cmd 'python serve.py' must contain {port}*"])


def test_no_agent_is_a_usage_error(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*BENCH)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: no agent: give --agent-url URL*--agent module:Class or --agent-cmd*"])


def test_two_agents_are_each_checked_at_start(toy: pytest.Pytester) -> None:
    # Several agents run side by side (tests/test_multiagent.py); one that does not answer is named.
    result = toy.runpytest(*TOY, "--agent-url=http://127.0.0.1:1")
    result.stderr.fnmatch_lines(["ERROR: agent --agent-url http://127.0.0.1:1: agent at http://127.0.0.1:1 does not*"])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("localhost:8000", "is not an http:// or https:// URL with a host"),
        ("ftp://host/x", "is not an http:// or https:// URL with a host"),
        ("http://:80", "is not an http:// or https:// URL with a host"),
        ("http://host:port", "has an invalid port"),
        ("http://[::1", "is not a valid URL: Invalid IPv6 URL"),
        ("http://host:99999", "has an invalid port"),
    ],
)
def test_malformed_agent_url(toy: pytest.Pytester, url: str, expected: str) -> None:
    result = toy.runpytest(*BENCH, f"--agent-url={url}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: agent URL {url!r} {expected}"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "python 'serve.py {port}",
            'ERROR: --agent-cmd "python \'serve.py {port}": No closing quotation (check the quotes)',
        ),
        ("/no/such/binary {port}", "ERROR: --agent-cmd: cannot start '/no/such/binary': No such file or directory"),
    ],
)
def test_unusable_agent_cmd(toy: pytest.Pytester, command: str, expected: str) -> None:
    result = toy.runpytest(*BENCH, f"--agent-cmd={command}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_agent_down_at_start_is_one_message(
    toy: pytest.Pytester, free_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"t{i}" for i in range(50)]))
    result = toy.runpytest(*BENCH, f"--agent-url={free_url}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: agent at {free_url} does not answer: ConnectionError; start the agent or fix --agent-url*"]
    )
    assert "t49" not in result.stdout.str()


def test_bad_agent_class(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*BENCH, "--agent=toy_bench:ToyBench")
    result.stderr.fnmatch_lines(
        ["ERROR: --agent 'toy_bench:ToyBench': ToyBench is not a subclass of pytest_benchflow.BaseAgent"]
    )


def test_agent_dying_mid_run_errors_later_tasks_and_keeps_earlier(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The agent process exits after its third answer.
    toy.makepyfile(
        mortal="""
import os, sys
from pytest_benchflow import BaseAgent
class Mortal(BaseAgent):
    served = 0
    def call_api(self, inputs):
        Mortal.served += 1
        if Mortal.served > 3:
            os._exit(1)
        return inputs["question"].upper()
Mortal().run_with_endpoint("127.0.0.1", int(sys.argv[1]))
"""
    )
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"t{i}" for i in range(6)]))
    monkeypatch.setenv("BENCHFLOW_RETRIES", "1")
    monkeypatch.setenv("BENCHFLOW_BACKOFF", "0.01")
    result = toy.runpytest_subprocess(*BENCH, f"--agent-cmd={sys.executable} mortal.py {{port}}")
    result.assert_outcomes(passed=3, errors=3)
    result.stdout.fnmatch_lines(["*cannot connect to the agent at http://127.0.0.1:*/response*"])
    lines = next(toy.path.glob(".benchflow/*/results.jsonl")).read_text().splitlines()
    outcomes = [json.loads(line)["outcome"] for line in lines]
    assert outcomes == ["passed"] * 3 + ["error"] * 3
