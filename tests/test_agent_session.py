"""An agentic task in a real pytest session: OpenAIChatAgent served by the plugin (--agent), a scripted
tool-calling model behind it, the task's commands in a real container; the cache replays a resumed
task's steps, the report shows its trajectory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_html_report import browse, elements
from tool_model import ToolModel

AGENT_BENCH = """
import json, os, uuid
from pathlib import Path
from pytest_benchflow import BaseBench, BenchArgs, BenchmarkResult, SampleResult
from pytest_benchflow.agent_loop import record_verification, run_agent
from pytest_benchflow.sandbox import SandboxSpec
from pytest_benchflow.runners.docker_sandbox import DockerSandboxProvider


def evaluate(env):
    provider = DockerSandboxProvider("agentloop-session-" + uuid.uuid4().hex[:8])
    try:
        with provider.open(SandboxSpec(image=os.environ["BENCHFLOW_BASE_IMAGE"])) as box:
            run = run_agent(env["INTELLIGENCE_URL"], box, "Write 21 doubled to /work/answer.", sample_id="solve")
            check = box.exec('test "$(cat /work/answer)" = 42 && echo verified 42')
            record_verification("check /work/answer", check, sample_id="solve")
    finally:
        provider.close_all()
    result = {"stop": run.stop_reason, "turns": run.turns, "ok": check.exit_code == 0}
    Path(env["BENCHFLOW_RESULTS_DIR"], "result.json").write_text(json.dumps(result))


class AgentBench(BaseBench):
    def get_args(self, task_id):
        return BenchArgs(None)

    def get_all_tasks(self, split):
        return {"task_ids": ["double"], "error_message": None}

    def get_entrypoint(self):
        return evaluate

    def get_result(self, task_id):
        r = json.loads(Path(self.results_dir, "result.json").read_text())
        return BenchmarkResult(is_resolved=r["ok"], metrics={"turns": r["turns"]}, log=r["stop"],
                               samples=[SampleResult(sample_id="solve", score=float(r["ok"]))])
"""

SCRIPT = [
    [("bash", {"command": "mkdir -p /work && echo 21 > /work/n"})],
    [("bash", {"command": "echo $(( $(cat /work/n) * 2 )) > /work/answer"})],
    [("submit", {"answer": "done"})],
]
ARGS = [
    "--benchflow=agent_bench.py:AgentBench",
    "--agent=pytest_benchflow.agents:OpenAIChatAgent",
    "--benchflow-cache=use",
    "--benchflow-html=report.html",
    "-p",
    "no:cacheprovider",
]


@pytest.fixture
def model() -> Iterator[ToolModel]:
    fake = ToolModel(SCRIPT)
    yield fake
    fake.stop()


@pytest.fixture
def session(pytester: pytest.Pytester, model: ToolModel, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    from images import base_image, engine

    monkeypatch.setenv("BENCHFLOW_BASE_IMAGE", base_image(engine()))  # a skip without an engine
    pytester.makepyfile(agent_bench=AGENT_BENCH)
    monkeypatch.setenv("OPENAI_BASE_URL", model.url)
    monkeypatch.setenv("OPENAI_MODEL", "tool-model")
    monkeypatch.setenv("OPENAI_MAX_RETRY_SECONDS", "0")
    monkeypatch.setenv("BENCHFLOW_RETRIES", "0")
    monkeypatch.delenv("INTELLIGENCE_URL", raising=False)
    return pytester


def record_of(run_dir: Path) -> dict:
    """The task's latest record (a resumed run appends the new one)."""
    return json.loads((run_dir / "results.jsonl").read_text().splitlines()[-1])


def test_a_resumed_agentic_task_replays_its_cached_steps_and_asks_only_from_where_it_left(
    session: pytest.Pytester, model: ToolModel
) -> None:
    model.fail_from = 2  # the provider goes down before the last step: the task errors
    first = session.runpytest_subprocess(*ARGS, timeout=600)
    first.assert_outcomes(errors=1)
    assert model.turns_asked() == [0, 1, 2]
    (run_dir,) = session.path.glob(".benchflow/2*")
    usage = record_of(run_dir)["usage"]
    # Usage is summed over the turns: the provider counts 100 + step input and 10 output tokens.
    assert (usage["requests"], usage["input_tokens"], usage["output_tokens"]) == (2, 100 + 101, 20)

    model.fail_from = None
    resumed = session.runpytest_subprocess(*ARGS, f"--benchflow-resume={run_dir}", timeout=600)
    resumed.assert_outcomes(passed=1)
    # Steps 0 and 1 came from the cache (their commands ran again in a fresh sandbox, so the history
    # matched); the model was asked only the step the first run did not get.
    assert model.turns_asked() == [0, 1, 2, 2]
    usage = record_of(run_dir)["usage"]
    assert (usage["cache_hits"], usage["requests"]) == (2, 1)
    assert (usage["input_tokens"], usage["output_tokens"]) == (102, 10)  # only what the model was asked

    lines = [json.loads(x) for x in (run_dir / "AgentBench/logs/double/transcript.jsonl").read_text().splitlines()]
    steps = [(x["step"], x["cached"], x["error"] is not None) for x in lines if "step" in x]
    # The first attempt's turns (the last one failed), then the resumed attempt's.
    assert steps == [
        (0, False, False),
        (1, False, False),
        (2, False, True),
        (0, True, False),
        (1, True, False),
        (2, False, False),
    ]
    assert lines[0]["tool_calls"][0]["exit_code"] == 0
    assert lines[-1]["verifier"] is True and lines[-1]["exit_code"] == 0


def test_the_report_shows_the_whole_trajectory_and_the_verifiers_output(
    session: pytest.Pytester, model: ToolModel
) -> None:
    session.runpytest_subprocess(*ARGS, timeout=600).assert_outcomes(passed=1)
    dom = browse(session.path / "report.html", fragment="#q=double&open=1&sample=1")
    steps = elements(dom, "step-index")
    assert len(steps) == 3  # every step, not only the last exchange
    assert len(elements(dom, "tool-call")) == 3
    assert "echo 21 &gt; /work/n" in dom and "verified 42" in dom
    assert len(elements(dom, "verifier")) == 1
