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
    # The health check is answered at once; every request after it hangs for a minute.
    scripted.script(Reply(), Reply(delay=60))
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
