"""A bench's own threads run inside its task with TaskExecutor: usage, transcript, cache and time limit follow."""

from __future__ import annotations

import json
import time

import pytest

from conftest import Reply, ScriptedServer, runs_by_start

THREADED_BENCH = """
import concurrent.futures, json, os
from pathlib import Path
from pytest_benchflow import BaseBench, BenchArgs, BenchClient, TaskExecutor

class Client(BenchClient):
    def prepare_input(self, raw):
        return {"question": raw}
    def parse_response(self, raw):
        return {"answer": raw}

def evaluate(env):
    client = Client(env["INTELLIGENCE_URL"], retries=0)
    pool = TaskExecutor if os.environ["POOL"] == "task" else concurrent.futures.ThreadPoolExecutor
    with pool(max_workers=3) as threads:
        answers = list(threads.map(lambda q: client.get_response(q, sample_id=q)["answer"], ["a", "b", "c"]))
    Path(env["BENCHFLOW_RESULTS_DIR"], "answers.json").write_text(json.dumps(answers))

class Threaded(BaseBench):
    def get_args(self, task_id):
        return BenchArgs(None)
    def get_all_tasks(self, split):
        return {"task_ids": ["t"], "error_message": None}
    def get_entrypoint(self):
        return evaluate
    def get_result(self, task_id):
        answers = json.loads(Path(self.results_dir, "answers.json").read_text())
        return {"is_resolved": answers == ["A", "B", "C"], "metrics": {}}
"""

AGENT = """
from pytest_benchflow import AgentAnswer, BaseAgent

class Counted(BaseAgent):
    def call_api(self, inputs):
        return AgentAnswer(inputs["question"].upper(), {"input_tokens": 10, "output_tokens": 1})
"""


@pytest.mark.parametrize("pool", ["task", "plain"])
def test_a_task_executor_keeps_the_task_context_in_the_bench_s_threads(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pool: str
) -> None:
    monkeypatch.setenv("POOL", pool)
    pytester.makepyfile(threaded=THREADED_BENCH, counted=AGENT)
    args = ["--benchflow=threaded.py:Threaded", "--agent=counted:Counted", "-p", "no:randomly"]
    pytester.runpytest(*args, "--benchflow-cache=use").assert_outcomes(passed=1)
    run = runs_by_start(pytester)[-1]
    (record,) = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    transcript = run / "Threaded" / "logs" / "t" / "transcript.jsonl"
    lines = transcript.read_text().splitlines() if transcript.exists() else []
    if pool == "plain":  # what the documentation warns about: a plain pool's threads are outside the task
        assert record.get("usage") is None and lines == []
        return
    assert record["usage"]["requests"] == 3 and record["usage"]["input_tokens"] == 30
    assert sorted(json.loads(line)["sample_id"] for line in lines) == ["a", "b", "c"]
    # The response cache is the task's too: a second run answers from it.
    pytester.runpytest(*args, "--benchflow-cache=use").assert_outcomes(passed=1)
    (again,) = [json.loads(line) for line in (runs_by_start(pytester)[-1] / "results.jsonl").read_text().splitlines()]
    assert again["usage"]["cache_hits"] == 3 and again["usage"]["requests"] == 0


def test_the_time_limit_cancels_requests_from_the_bench_s_threads(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(body=b'"A"', delay=3))
    monkeypatch.setenv("POOL", "task")
    pytester.makepyfile(threaded=THREADED_BENCH.replace("max_workers=3", "max_workers=1"))
    result = pytester.runpytest(
        "--benchflow=threaded.py:Threaded", f"--agent-url={scripted.url}", "--benchflow-timeout=1", "-p", "no:randomly"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*timed out*"])
    time.sleep(5)  # the first request is answered at 3 s: a queued one not cancelled would be sent then
    assert [path for path, _, _ in scripted.requests if path == "/response"] == ["/response"]
