"""Usage and cost: agents report tokens, tasks add them up, the summary prices them, a budget stops the run."""

from __future__ import annotations

import json

import pytest

from conftest import ScriptedServer, json_reply

PRICED_AGENT = """
from pytest_benchflow import AgentAnswer, BaseAgent

class Priced(BaseAgent):
    def call_api(self, inputs):
        return AgentAnswer(inputs["question"].upper(), {"input_tokens": 1_000_000, "output_tokens": 250_000})
"""
BENCH = ["--benchflow=toy_bench.py:ToyBench", "-p", "no:randomly", "-p", "no:cacheprovider"]


@pytest.fixture
def priced(toy: pytest.Pytester) -> pytest.Pytester:
    toy.makepyfile(priced=PRICED_AGENT)
    return toy


def records(pytester: pytest.Pytester) -> list[dict]:  # type: ignore[type-arg]
    (jsonl,) = pytester.path.glob(".benchflow/*/results.jsonl")
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def test_usage_per_task_and_bench_with_cost(priced: pytest.Pytester) -> None:
    result = priced.runpytest(*BENCH, "--agent=priced:Priced", "--benchflow-price=2.5,10")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    by_task = {r["task_id"]: r for r in records(priced)}
    assert by_task["good"]["usage"] == {
        "input_tokens": 1_000_000,
        "output_tokens": 250_000,
        "total_tokens": 1_250_000,
        "requests": 1,
    }
    assert "usage" not in by_task["boom"]  # it crashed before asking
    (summary,) = priced.path.glob(".benchflow/*/summary.json")
    data = json.loads(summary.read_text())
    assert data["benches"]["ToyBench"]["usage"] == {
        "input_tokens": 2_000_000,
        "output_tokens": 500_000,
        "total_tokens": 2_500_000,
        "requests": 2,
        "cost": 10.0,
    }
    assert data["price"] == {"input_per_million": 2.5, "output_per_million": 10.0}
    result.stdout.fnmatch_lines(
        ["  usage: 2,000,000 input + 500,000 output tokens, 2 requests; cost $10.0000 (at $2.5 / $10 per million *"]
    )


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_a_cost_limit_starts_no_new_task(
    priced: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"good{i}" for i in range(12)]))
    # Each task costs $1 (a million input tokens at $1); the budget is $2.5.
    result = priced.runpytest_subprocess(
        *BENCH, "--agent=priced:Priced", "--benchflow-price=1,0", "--benchflow-max-cost=2.5", *xdist
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*cost limit $2.5 reached ($3.0000 spent): no new task started*"])
    finished = len(records(priced))
    assert 3 <= finished <= (3 if not xdist else 6)  # under -n 2 the tasks already running finish


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--benchflow-price=cheap"],
            "ERROR: --benchflow-price 'cheap': give INPUT,OUTPUT, the price per million tokens, e.g. 2.5,10",
        ),
        (["--benchflow-price=1,2,3"], "ERROR: --benchflow-price '1,2,3': give INPUT,OUTPUT*"),
        (["--benchflow-price=-1,2"], "ERROR: --benchflow-price '-1,2': give INPUT,OUTPUT*"),
        (
            ["--benchflow-max-cost=5"],
            "ERROR: --benchflow-max-cost needs --benchflow-price INPUT,OUTPUT to know what tokens cost",
        ),
        (
            ["--benchflow-price=1,1", "--benchflow-max-cost=nan"],
            "ERROR: --benchflow-max-cost must be a positive finite number, got nan",
        ),
    ],
)
def test_bad_price_and_budget_values(priced: pytest.Pytester, args: list[str], message: str) -> None:
    result = priced.runpytest(*BENCH, "--agent=priced:Priced", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_openai_agent_forwards_its_providers_usage(
    pytester: pytest.Pytester, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted.script(
        json_reply(
            {
                "choices": [{"message": {"role": "assistant", "content": "The answer is (A)."}}],
                "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
            }
        )
    )
    monkeypatch.setenv("OPENAI_BASE_URL", scripted.url)
    result = pytester.runpytest("--benchflow=mmlu_pro", "--agent=pytest_benchflow.agents:OpenAIChatAgent", "-k", "law")
    assert "errors" not in result.parseoutcomes()
    (jsonl,) = pytester.path.glob(".benchflow/*/results.jsonl")
    (record,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert record["usage"] == {"input_tokens": 360, "output_tokens": 90, "total_tokens": 450, "requests": 3}
