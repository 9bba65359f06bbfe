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
    found = records(priced)
    finished = [r for r in found if r["outcome"] != "error"]
    assert 3 <= len(finished) <= (3 if not xdist else 6)  # under -n 2 the tasks already running finish
    # Every task not started is accounted for: an error of kind budget, which a resumed run starts.
    assert len(found) == 12 and {r["task_id"] for r in found} == {f"good{i}" for i in range(12)}
    assert all(
        r["error_kind"] == "budget" and r["reason"].startswith("not started: cost limit")
        for r in found[len(finished) :]
    )
    (summary,) = priced.path.glob(".benchflow/*/summary.json")
    bench = json.loads(summary.read_text())["benches"]["ToyBench"]
    assert bench["error_kinds"] == {"budget": 12 - len(finished)} and bench["resolution_rate_without_infra"] == 1.0


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


class UsageAgent:
    """A real agent on loopback that answers each question upper-cased, with ``usage`` as its
    ``X-Benchflow-Usage`` header, sent exactly as given (so it can be a number no BaseAgent would send)."""

    def __init__(self, usage: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, value: object, headers: dict[str, str]) -> None:
                body = json.dumps(value).encode()
                self.send_response(200)
                for name, text in headers.items():
                    self.send_header(name, text)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer({"status": "ok"}, {})

            def do_POST(self) -> None:
                question = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["question"]
                self._answer(question.upper(), {"X-Benchflow-Usage": usage})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _summary(pytester: pytest.Pytester) -> dict:  # type: ignore[type-arg]
    (summary,) = pytester.path.glob(".benchflow/*/summary.json")
    return json.loads(summary.read_text())


HUGE = "9" * 400


@pytest.mark.parametrize(
    ("usage", "xdist"),
    [
        (f'{{"input_tokens": {HUGE}, "output_tokens": 5}}', []),
        (f'{{"input_tokens": {HUGE}, "output_tokens": 5}}', ["-n", "2"]),
        ('{"input_tokens": 1e999, "output_tokens": 5}', []),
        ('{"input_tokens": 1000000000000000, "output_tokens": 5}', []),  # 10**15: over the bound
        ('{"input_tokens": -3, "output_tokens": 5}', []),
        ('{"input_tokens": "12", "output_tokens": true}', []),
        (f'{{"input_tokens": {"9" * 5000}}}', []),  # longer than Python converts to int
    ],
    ids=["400-digits", "400-digits-xdist", "1e999", "over-bound", "negative", "not-numbers", "5000-digits"],
)
def test_an_unreadable_usage_header_is_ignored_with_a_note(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, usage: str, xdist: list[str]
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good", "good2"]))
    agent = UsageAgent(usage)
    try:
        result = toy.runpytest_subprocess(*BENCH, f"--agent-url={agent.url}", "--benchflow-price=2.5,10", *xdist)
    finally:
        agent.close()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    result.assert_outcomes(passed=2)
    for record in records(toy):
        assert record["outcome"] == "passed"
        assert record["usage"] == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "requests": 1}
        assert record["notes"] == [
            "usage of 1 answer ignored: X-Benchflow-Usage unreadable "
            "(token counts must be whole numbers from 0 to below 1e+15)"
        ]
    assert _summary(toy)["benches"]["ToyBench"]["usage"]["cost"] == 0.0


def test_a_readable_usage_header_at_the_bound_counts(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good"]))
    agent = UsageAgent('{"input_tokens": 999999999999999, "output_tokens": 2.0}')
    try:
        result = toy.runpytest(*BENCH, f"--agent-url={agent.url}", "--benchflow-price=1,1")
    finally:
        agent.close()
    result.assert_outcomes(passed=1)
    (record,) = records(toy)
    assert record["usage"]["input_tokens"] == 999_999_999_999_999 and record["usage"]["output_tokens"] == 2
    assert "notes" not in record


USAGE_FILE_BENCH = """
def evaluate(env):
    # What a container's client leaves for the runner: its task's usage, in the log directory.
    Path(env["BENCHFLOW_LOG_DIR"], "usage.json").write_text(os.environ["USAGE_JSON"])
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": int(HUGE), "output_tokens": 1, "total_tokens": 1, "requests": 1},
        {"input_tokens": 1e999, "output_tokens": 1, "total_tokens": 1, "requests": 1},
        {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2, "requests": [1]},
    ],
    ids=["400-digits", "1e999", "not-a-number"],
)
def test_an_unreadable_usage_file_is_ignored_with_a_note(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    echo_agent: str,
    usage: dict,
    xdist: list[str],  # type: ignore[type-arg]
) -> None:
    from conftest import in_process_bench

    # json.dumps writes 1e999 as Infinity; the file says it as a number, as a hostile container would.
    monkeypatch.setenv("USAGE_JSON", json.dumps(usage).replace("Infinity", "1e999"))
    pytester.makepyfile(
        usagefile=in_process_bench(
            "UsageFile", USAGE_FILE_BENCH, 'return {"is_resolved": True, "metrics": {}}', tasks=("a", "b")
        )
    )
    result = pytester.runpytest_subprocess(
        "--benchflow=usagefile.py:UsageFile", f"--agent-url={echo_agent}", "--benchflow-price=2.5,10", *xdist
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    found = records(pytester)
    assert len(found) == 2
    for record in found:
        assert record["outcome"] == "passed" and "usage" not in record
        assert record["notes"] == ["usage.json ignored: token counts must be whole numbers from 0 to below 1e+15"]
    assert _summary(pytester)["benches"]["UsageFile"]["tasks"] == 2


ASKS_THEN_CRASHES = """
from pytest_benchflow import BaseBench, BenchArgs, BenchClient

class Client(BenchClient):
    def prepare_input(self, raw):
        return {"question": raw}
    def parse_response(self, raw):
        return {"answer": raw}

def evaluate(env):
    client = Client(env["INTELLIGENCE_URL"], retries=0)
    for question in ("a", "b", "c"):
        client.get_response(question)
    raise RuntimeError("the bench crashed after asking")

class Crashes(BaseBench):
    def get_args(self, task_id):
        return BenchArgs(None)
    def get_all_tasks(self, split):
        return {"task_ids": ["paid"], "error_message": None}
    def get_entrypoint(self):
        return evaluate
    def get_result(self, task_id):
        return {"is_resolved": True}
"""


def test_an_errored_task_keeps_the_usage_it_paid_for(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(crashes=ASKS_THEN_CRASHES, priced=PRICED_AGENT)
    result = pytester.runpytest(
        "--benchflow=crashes.py:Crashes", "--agent=priced:Priced", "--benchflow-price=1,0", "-p", "no:randomly"
    )
    result.assert_outcomes(errors=1)
    (record,) = records(pytester)
    assert record["outcome"] == "error"
    assert record["usage"] == {
        "input_tokens": 3_000_000,
        "output_tokens": 750_000,
        "total_tokens": 3_750_000,
        "requests": 3,
    }
    (summary,) = pytester.path.glob(".benchflow/*/summary.json")
    assert json.loads(summary.read_text())["benches"]["Crashes"]["usage"]["cost"] == 3.0
