"""The agent loop: run_agent over the messages/tools/task request, OpenAIChatAgent's function calling,
and the attacks an agent can make through tool calls, in real containers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tool_model import ToolModel

from pytest_benchflow import AgentBadResponse, BaseAgent
from pytest_benchflow.agent_loop import ChatClient, Tool, run_agent
from pytest_benchflow.agents import OpenAIChatAgent
from pytest_benchflow.runners.docker_sandbox import DockerSandboxProvider
from pytest_benchflow.sandbox import Sandbox, SandboxSpec
from pytest_benchflow.transcript import Transcript
from pytest_benchflow.usage import UsageMeter


def call(name: str, arguments: Any, call_id: str = "") -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id or f"c{name}", "type": "function", "function": {"name": name, "arguments": text}}


class PolicyAgent(BaseAgent):
    """Answers each multi-step request with ``policy(request)``; keeps every request it received."""

    def __init__(self, policy: Callable[[dict[str, Any]], Any]) -> None:
        self.policy = policy
        self.requests: list[dict[str, Any]] = []

    def call_api(self, task_step_inputs: dict[str, Any]) -> Any:
        self.requests.append(task_step_inputs)
        return self.policy(task_step_inputs)


def turn_of(request: dict[str, Any]) -> int:
    return sum(1 for m in request["messages"] if m["role"] == "assistant")


@pytest.fixture
def serve() -> Iterator[Callable[[BaseAgent], str]]:
    servers = []

    def start(agent: BaseAgent) -> str:
        servers.append(agent.serve())
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def model() -> Iterator[ToolModel]:
    fake = ToolModel([])
    yield fake
    fake.stop()


def test_openai_chat_agent_forwards_the_history_and_tools_and_answers_the_assistant_message(
    model: ToolModel, serve: Callable[[BaseAgent], str]
) -> None:
    model.script = [[("bash", {"command": "ls /"})]]
    url = serve(OpenAIChatAgent(base_url=model.url, model="tool-model", api_key="sk-test-1", temperature=0.2))
    tools = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}]
    history = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "list /"}]
    meter = UsageMeter()
    parsed = meter.scope().run(ChatClient(url).get_response, {"messages": history, "tools": tools, "task": {}})
    sent = model.requests[0]
    assert sent["model"] == "tool-model" and sent["temperature"] == 0.2
    assert sent["messages"] == history and sent["tools"] == tools
    message = parsed["message"]
    assert message["role"] == "assistant" and message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "bash", "arguments": '{"command": "ls /"}'}
    # The provider's usage reaches the benchmark's meter.
    assert (meter.requests, meter.input_tokens, meter.output_tokens) == (1, 100, 10)


def test_openai_chat_agent_answers_a_plain_completion_as_content(
    model: ToolModel, serve: Callable[[BaseAgent], str]
) -> None:
    model.script = ["all done"]
    url = serve(OpenAIChatAgent(base_url=model.url))
    parsed = ChatClient(url).get_response({"messages": [{"role": "user", "content": "hi"}], "tools": [], "task": {}})
    assert parsed["message"] == {"role": "assistant", "content": "all done"}
    assert "tools" not in model.requests[0]  # an empty list is refused by OpenAI: left out


def test_an_answer_that_is_not_a_message_is_a_bad_response(serve: Callable[[BaseAgent], str]) -> None:
    url = serve(PolicyAgent(lambda request: 42))
    with pytest.raises(AgentBadResponse, match="expected an assistant message"):
        ChatClient(url, retries=0).get_response({"messages": [], "tools": [], "task": {}})


# Everything below runs tool calls in a real container.


@pytest.fixture(scope="module")
def provider() -> Iterator[DockerSandboxProvider]:
    from images import base_image, engine

    image = base_image(engine())  # a skip without an engine (a failure with BENCHFLOW_REQUIRE_DOCKER=1)
    opened = DockerSandboxProvider(f"agentloop-test-{uuid.uuid4().hex[:8]}")
    opened.image = image  # type: ignore[attr-defined]
    yield opened
    opened.close_all()


@pytest.fixture
def box(provider: DockerSandboxProvider) -> Iterator[Sandbox]:
    with provider.open(SandboxSpec(image=provider.image)) as sandbox:  # type: ignore[attr-defined]
        yield sandbox


def test_a_scripted_model_solves_a_multi_step_task_through_openai_chat_agent(
    model: ToolModel, serve: Callable[[BaseAgent], str], box: Sandbox
) -> None:
    model.script = [
        [("bash", {"command": "mkdir -p /work && echo 21 > /work/n"})],
        [
            ("bash", {"command": "echo $(( $(cat /work/n) * 2 )) > /work/answer"}),
            ("bash", {"command": "cat /work/answer"}),
        ],
        [("submit", {"answer": "42"})],
    ]
    url = serve(OpenAIChatAgent(base_url=model.url, model="tool-model"))
    run = run_agent(url, box, "Write 21 doubled to /work/answer.")
    assert (run.stop_reason, run.submission, run.turns, run.tool_calls) == ("submitted", "42", 3, 3)
    assert box.read_file("/work/answer") == b"42\n"
    # Each turn the provider got the whole history: the tool results of the turn before included.
    third = model.requests[2]["messages"]
    assert [m["role"] for m in third] == ["system", "user", "assistant", "tool", "assistant", "tool", "tool"]
    assert third[-1] == {"role": "tool", "tool_call_id": "call_1_1", "content": "exit code 0\n42\n"}
    assert [t["function"]["name"] for t in model.requests[0]["tools"]] == ["bash", "submit"]


def test_an_answer_without_a_tool_call_ends_the_loop(serve: Callable[[BaseAgent], str], box: Sandbox) -> None:
    run = run_agent(serve(PolicyAgent(lambda request: "I cannot do that")), box, "do it")
    assert (run.stop_reason, run.turns, run.final_answer, run.submission) == ("answered", 1, "I cannot do that", None)


def test_malformed_tool_calls_are_tool_errors_and_repeated_ones_end_the_loop(
    serve: Callable[[BaseAgent], str], box: Sandbox
) -> None:
    script = [
        # Three malformed calls, then a good one: the count of malformed ones in a row starts again.
        [
            call("rm_rf", {}),
            call("bash", "{not json"),
            call("bash", {"timeout": 5}),
            call("bash", {"command": "echo ok"}),
        ],
        [call("bash", {"command": 7}), call("bash", "[]"), {"type": "function"}],
        [call("nothing", {})],
        [call("submit", {})],
    ]
    agent = PolicyAgent(lambda request: {"role": "assistant", "content": None, "tool_calls": script[turn_of(request)]})
    run = run_agent(serve(agent), box, "do it", max_malformed=4)
    replies = [m["content"] for m in agent.requests[1]["messages"] if m["role"] == "tool"]
    assert replies == [
        "error: unknown tool 'rm_rf'; the tools are: bash, submit",
        "error: the arguments of bash must be a JSON object",
        "error: bash: missing command",
        "exit code 0\nok\n",
    ]
    replies = [m["content"] for m in agent.requests[2]["messages"][-3:]]
    assert replies == [
        "error: bash: command must be a string, not int",
        "error: the arguments of bash must be a JSON object",
        'error: a tool call must be {"id", "type": "function", "function": {"name", "arguments"}}',
    ]
    assert run.stop_reason == "agent_error" and run.turns == 3 and len(agent.requests) == 3
    assert run.error == "4 malformed tool calls in a row; the last: unknown tool 'nothing'; the tools are: bash, submit"


def test_a_bench_tool_runs_in_the_sandbox_and_may_replace_a_standard_one(
    serve: Callable[[BaseAgent], str], box: Sandbox
) -> None:
    def read(sandbox: Sandbox, arguments: dict[str, Any], seconds_left: float) -> str:
        return sandbox.read_file(arguments["path"]).decode()

    reader = Tool("read", "read a file", {"type": "object", "properties": {"path": {"type": "string"}}}, read)
    script = [[call("read", {"path": "/etc/hostname"})], [call("submit", {"answer": "ok"})]]
    agent = PolicyAgent(lambda request: {"role": "assistant", "tool_calls": script[turn_of(request)]})
    run = run_agent(serve(agent), box, "read it", tools=[reader])
    assert run.submitted and agent.requests[1]["messages"][-1]["content"].strip() == box.exec("hostname").stdout.strip()


def test_tool_output_is_cut_head_and_tail_for_the_agent(serve: Callable[[BaseAgent], str], box: Sandbox) -> None:
    # 588,895 bytes: under the sandbox's own cap per exec (1 MiB), so the cut is the loop's.
    script = [[call("bash", {"command": "seq 1 100000"})], [call("submit", {})]]
    agent = PolicyAgent(lambda request: {"role": "assistant", "tool_calls": script[turn_of(request)]})
    run_agent(serve(agent), box, "count")
    shown = agent.requests[1]["messages"][-1]["content"]
    assert len(shown.encode()) <= 16 * 1024 + 100
    assert shown.startswith("exit code 0\n1\n2\n3\n") and shown.rstrip().endswith("99999\n100000")
    total = len("exit code 0\n") + sum(len(f"{i}\n") for i in range(1, 100001))
    assert f"[... {total - 16 * 1024:,} bytes cut ...]" in shown


def test_each_turn_is_one_transcript_line(serve: Callable[[BaseAgent], str], box: Sandbox, tmp_path: Path) -> None:
    script = [[call("bash", {"command": "echo out; echo err >&2; exit 3"})], [call("submit", {"answer": "x"})]]
    agent = PolicyAgent(lambda request: {"role": "assistant", "tool_calls": script[turn_of(request)]})
    transcript = Transcript(tmp_path / "transcript.jsonl")
    transcript.scope().run(run_agent, serve(agent), box, "go", sample_id="task-1")
    transcript.close()
    lines = [json.loads(line) for line in (tmp_path / "transcript.jsonl").read_text().splitlines()]
    assert [(line["step"], line["sample_id"]) for line in lines] == [(0, "task-1"), (1, "task-1")]
    # The request's new messages only: the instruction first, then the tool results of the turn before.
    assert [m["role"] for m in lines[0]["request"]] == ["system", "user"]
    assert [m["role"] for m in lines[1]["request"]] == ["tool"]
    (first,) = lines[0]["tool_calls"]
    assert first["name"] == "bash" and first["exit_code"] == 3 and first["duration"] > 0
    assert first["output"] == "exit code 3\nout\n\n[stderr]\nerr\n"
    assert lines[1]["tool_calls"][0]["name"] == "submit"


# The attacks of issue 24 made through tool calls.


def test_an_agent_answering_1000_tool_calls_in_one_message_gets_64_run(
    serve: Callable[[BaseAgent], str], box: Sandbox
) -> None:
    flood = [call("bash", {"command": f"echo {i} >> /tmp/ran"}, f"c{i}") for i in range(1000)]
    script = [flood, [call("submit", {})]]
    agent = PolicyAgent(lambda request: {"role": "assistant", "tool_calls": script[turn_of(request)]})
    run = run_agent(serve(agent), box, "flood")
    assert run.submitted and run.tool_calls == 64
    assert box.read_file("/tmp/ran").decode().split() == [str(i) for i in range(64)]
    replies = [m for m in agent.requests[1]["messages"] if m["role"] == "tool"]
    # Every call is answered (the chat format needs an answer per id), the ones beyond the cap briefly.
    assert [m["tool_call_id"] for m in replies] == [f"c{i}" for i in range(1000)]
    assert replies[64]["content"] == "error: not run: at most 64 tool calls are run per turn"
    # The next request holds the agent's own 1,000 calls (~155 kB) and a short answer to each: no output.
    assert len(json.dumps(agent.requests[1])) < 2 * len(json.dumps(flood))


def test_a_tool_call_with_a_100_mb_argument_is_refused_and_not_sent_back(
    serve: Callable[[BaseAgent], str], box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = "x" * (100 * 1024 * 1024)
    script = [[call("bash", {"command": "echo " + huge})], [call("submit", {})]]
    agent = PolicyAgent(lambda request: {"role": "assistant", "tool_calls": script[turn_of(request)]})
    url = serve(agent)
    # Within the client's answer cap (64 MiB by default) only for this test: the loop's own limit is tested.
    monkeypatch.setenv("BENCHFLOW_MAX_RESPONSE_BYTES", str(200 * 1024 * 1024))
    run = run_agent(url, box, "big", tools=[])
    assert run.submitted and run.tool_calls == 0
    second = agent.requests[1]
    assert len(json.dumps(second)) < 100_000  # the history the agent gets back does not hold it
    assert second["messages"][-1]["content"].startswith("error: the arguments are 104,857,6")
    monkeypatch.delenv("BENCHFLOW_MAX_RESPONSE_BYTES")
    with pytest.raises(AgentBadResponse, match="more than 67108864 bytes"):
        run_agent(ChatClient(url, retries=0), box, "big")


def test_an_agent_that_never_submits_stops_at_max_turns(serve: Callable[[BaseAgent], str], box: Sandbox) -> None:
    agent = PolicyAgent(lambda request: {"role": "assistant", "tool_calls": [call("bash", {"command": "true"})]})
    run = run_agent(serve(agent), box, "loop", max_turns=5)
    assert (run.stop_reason, run.turns, run.tool_calls, len(agent.requests)) == ("max_turns", 5, 5, 5)


def test_an_agent_that_never_submits_stops_at_the_time_limit(serve: Callable[[BaseAgent], str], box: Sandbox) -> None:
    sleeper = {"role": "assistant", "tool_calls": [call("bash", {"command": "sleep 600", "timeout": 600})]}
    agent = PolicyAgent(lambda request: sleeper)
    started = time.monotonic()
    run = run_agent(serve(agent), box, "sleep", timeout=3)
    # The command was bounded by the time left (at least 1 s), then the loop stopped.
    assert run.stop_reason == "time_limit" and run.turns == 1
    assert agent.requests[0] and time.monotonic() - started < 60


def test_the_readme_scripted_agent_solves_its_task(serve: Callable[[BaseAgent], str], box: Sandbox) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    source = readme.split("class ScriptedAgent(BaseAgent):", 1)[0].rsplit("```python", 1)[1]
    source += "class ScriptedAgent(BaseAgent):" + readme.split("class ScriptedAgent(BaseAgent):", 1)[1].split("```")[0]
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    run = run_agent(serve(namespace["ScriptedAgent"]()), box, "Write 21 doubled to /work/answer.")
    assert run.submitted and run.turns == 3 and box.read_file("/work/answer") == b"42\n"
