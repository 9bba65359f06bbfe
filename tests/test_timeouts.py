"""--benchflow-timeout bounds the process, not just the report: a hanging agent cannot keep pytest alive."""

from __future__ import annotations

import json
import sys
import time

import pytest

from conftest import INTERRUPTIBLE, Reply, ScriptedServer, in_process_bench, runs_by_start

HANGING_BENCH = in_process_bench(
    "Hanging",
    """
    def evaluate(env):
        client = Client(env["INTELLIGENCE_URL"], retries=5, backoff=0.2)
        answers = client.get_responses([f"q{i}" for i in range(20)], max_concurrency=2)
        Path(env["BENCHFLOW_RESULTS_DIR"], "done.json").write_text(json.dumps(len(answers)))
    """,
    'return {"is_resolved": True, "metrics": {}}',
    tasks=("slow",),
)


@pytest.fixture
def hanging(pytester: pytest.Pytester, scripted: ScriptedServer) -> ScriptedServer:
    pytester.makepyfile(hanging=HANGING_BENCH)
    # The health check is answered at once, /info is 404 (no info: the start-up does not wait out
    # its 5 s probe deadline); every request after them hangs for a minute.
    scripted.script(Reply(), Reply(status=404), Reply(delay=60))
    return scripted


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_hanging_agent_ends_the_session_within_the_timeout(
    pytester: pytest.Pytester, hanging: ScriptedServer, xdist: list[str]
) -> None:
    started = time.monotonic()
    proc = pytester.popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--benchflow=hanging.py:Hanging",
            f"--agent-url={hanging.url}",
            "--benchflow-timeout=2",
            "-p",
            "no:cacheprovider",
            *xdist,
        ],
        **INTERRUPTIBLE,
    )
    # The agent hangs for 60 s: a session that ends well before that was ended by the timeout (2 s,
    # plus start-up and grace), however loaded the machine; the bound is the behaviour, so it is generous.
    code = proc.wait(timeout=55)
    elapsed = time.monotonic() - started
    assert code == pytest.ExitCode.TESTS_FAILED and elapsed < 45, elapsed
    (record,) = [json.loads(line) for line in (runs_by_start(pytester)[-1] / "results.jsonl").read_text().splitlines()]
    assert record["outcome"] == "error" and "timed out after 2 s" in record["reason"]
    posts = [r for r in hanging.requests if r[0] == "/response"]
    assert len(posts) == 2  # the two in flight at the limit; the other 18 were never sent
    time.sleep(1.5)
    assert len([r for r in hanging.requests if r[0] == "/response"]) == 2
    (jsonl,) = pytester.path.glob(".benchflow/*/results.jsonl")
    (record,) = map(json.loads, jsonl.read_text().splitlines())
    assert record["outcome"] == "error" and record["reason"] == "task 'slow' timed out after 2 s"


def test_retries_stop_at_the_timeout(pytester: pytest.Pytester, scripted: ScriptedServer) -> None:
    pytester.makepyfile(hanging=HANGING_BENCH.replace("max_concurrency=2", "max_concurrency=1"))
    scripted.script(Reply(), Reply(status=503, body=b'"busy"'))
    result = pytester.runpytest_subprocess(
        "--benchflow=hanging.py:Hanging", f"--agent-url={scripted.url}", "--benchflow-timeout=1"
    )
    result.assert_outcomes(errors=1)
    sent = len(scripted.requests)
    time.sleep(2)
    assert len(scripted.requests) == sent  # no retry after the task was declared failed


QUEUED_BENCH = in_process_bench(
    "Queued",
    """
    def evaluate(env):
        Client(env["INTELLIGENCE_URL"], retries=0).get_response(env["TEST_START_ID"])
    """,
    'return {"is_resolved": True, "metrics": {}}',
    tasks=("first", "second"),
)


def test_a_request_queued_for_a_slot_is_not_sent_after_its_task_timed_out(
    pytester: pytest.Pytester, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One request in flight per agent (BENCHFLOW_MAX_CONCURRENCY=1) and an agent that takes 6 s:
    # "first" times out at 1 s with its request still holding the slot, "second" then waits for
    # the slot and times out too. In this process (runpytest) the abandoned threads live on: when
    # the slot frees at 6 s, "second", past its limit, must send nothing.
    pytester.makepyfile(queued=QUEUED_BENCH)
    monkeypatch.setenv("BENCHFLOW_MAX_CONCURRENCY", "1")
    scripted.script(Reply(), Reply(status=404), Reply(delay=6))
    result = pytester.runpytest(
        "--benchflow=queued.py:Queued", f"--agent-url={scripted.url}", "--benchflow-timeout=1", "-p", "no:randomly"
    )
    result.assert_outcomes(errors=2)
    time.sleep(8)  # the first request is answered at 6 s; a queued one would be sent then
    questions = [json.loads(body)["question"] for path, body, _ in scripted.requests if path == "/response"]
    assert questions == ["first"]
