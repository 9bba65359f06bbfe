"""The agent loop: a multi-step task asks the agent turn by turn and runs its tool calls in a sandbox.

Each turn POSTs ``{"messages": [...], "tools": [...], "task": {...}}`` (OpenAI chat format, the whole
history every time: the agent may be stateless, and each step is cached and replayed on its own) to the
agent's ``/response``; the agent answers an assistant message (``content`` and/or ``tool_calls``) or a plain
string. The protocol is in docs/protocol.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .client import BenchClient
from .sandbox import ExecResult, Sandbox
from .transcript import current_transcript, no_transcript
from .usage import UsageMeter, current_meter

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "TOOL_OUTPUT_LIMIT",
    "AgentRun",
    "ChatClient",
    "StopReason",
    "Tool",
    "bash_tool",
    "record_verification",
    "run_agent",
    "submit_tool",
    "truncate_for_agent",
]

#: Bytes of a tool's result the agent is shown by default (head and tail, with a line saying how much was cut).
TOOL_OUTPUT_LIMIT = 16 * 1024
#: Why a loop ended.
StopReason = Literal["submitted", "answered", "max_turns", "time_limit", "agent_error"]

DEFAULT_SYSTEM_PROMPT = (
    "You are an agent working in a Linux sandbox. Run shell commands with the bash tool; each call starts a "
    "fresh shell in the same machine, so files persist but the working directory and variables do not. "
    "When the task is done, call the submit tool."
)

# Stored in the history in place of an argument string too large to send back to the agent every turn.
_ARGUMENTS_CUT = "<arguments of {size} bytes not kept: the limit is {limit}>"

ToolRunner = Callable[[Sandbox, dict[str, Any], float], "ExecResult | str"]


@dataclass(frozen=True)
class Tool:
    """A tool the agent may call: its name, what it does, its JSON-schema ``parameters`` (an object),
    and ``run(sandbox, arguments, seconds_left)`` returning an ``ExecResult`` or text for the agent.

    ``run`` None marks the ``submit`` tool: calling it ends the loop.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    run: ToolRunner | None = None

    def schema(self) -> dict[str, Any]:
        """The tool as the request's ``tools`` list carries it (OpenAI function-calling format)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


def bash_tool(default_timeout: float = 60.0, max_timeout: float = 600.0) -> Tool:
    """``bash``: run ``command`` in the sandbox, at most ``timeout`` seconds (the agent's, up to ``max_timeout``;
    never past the loop's own time limit)."""

    def run(sandbox: Sandbox, arguments: dict[str, Any], seconds_left: float) -> ExecResult:
        asked = arguments.get("timeout")
        wanted = min(float(asked), max_timeout) if asked is not None and asked > 0 else default_timeout
        return sandbox.exec(["bash", "-c", arguments["command"]], timeout=max(1.0, min(wanted, seconds_left)))

    return Tool(
        name="bash",
        description="Run a bash command in the sandbox and return its exit code, stdout and stderr.",
        parameters={
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "the command line"},
                "timeout": {"type": "number", "description": f"seconds (default {default_timeout:g})"},
            },
            "required": ["command"],
        },
        run=run,
    )


def submit_tool() -> Tool:
    """``submit``: the agent says it is done, with an optional ``answer``."""
    return Tool(
        name="submit",
        description="Call when the task is done; the work is then checked. Optionally give a final answer.",
        parameters={"type": "object", "properties": {"answer": {"type": "string"}}, "required": []},
    )


class ChatClient(BenchClient):
    """The client of the agent loop: sends the request as it is, reads an assistant message back.

    An answer that is a string is the message's ``content``; an object must look like an assistant
    message (``content`` a string or null, ``tool_calls`` a list); anything else is ``AgentBadResponse``.
    """

    expects_text = False

    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        return raw_step_inputs

    def parse_response(self, raw_response: Any) -> dict[str, Any]:
        return {"message": assistant_message(raw_response)}


def assistant_message(answer: Any) -> dict[str, Any]:
    """The agent's answer as an assistant message; ValueError when it is neither text nor a message."""
    if isinstance(answer, str):
        return {"role": "assistant", "content": answer}
    if not isinstance(answer, dict):
        raise ValueError(f"expected an assistant message (an object) or a string, got {type(answer).__name__}")
    content, calls = answer.get("content"), answer.get("tool_calls")
    if content is not None and not isinstance(content, str):
        raise ValueError(f"the message's content must be a string or null, not {type(content).__name__}")
    if calls is not None and not isinstance(calls, list):
        raise ValueError(f"the message's tool_calls must be a list, not {type(calls).__name__}")
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return message


def truncate_for_agent(text: str, limit: int = TOOL_OUTPUT_LIMIT) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else its head and tail with a line saying how much was cut."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    half = limit // 2
    head = data[:half].decode("utf-8", errors="ignore")
    tail = data[-half:].decode("utf-8", errors="ignore")
    return f"{head}\n[... {len(data) - 2 * half:,} bytes cut ...]\n{tail}"


@dataclass
class AgentRun:
    """How a loop ended: ``stop_reason`` and what the agent left.

    ``submission`` is the ``answer`` given to ``submit`` (None without one); ``final_answer`` the content of
    the agent's last message; ``error`` says what went wrong when ``stop_reason`` is ``agent_error``.
    """

    stop_reason: StopReason
    turns: int
    messages: list[dict[str, Any]]
    submission: str | None = None
    final_answer: str | None = None
    error: str | None = None
    tool_calls: int = 0

    @property
    def submitted(self) -> bool:
        return self.stop_reason == "submitted"


@dataclass
class _Call:
    """One tool call of a turn as the transcript records it."""

    id: str
    name: str
    arguments: str
    exit_code: int | None = None
    timed_out: bool = False
    duration: float = 0.0
    output: str = ""
    error: str | None = None

    def line(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self.id, "name": self.name, "arguments": truncate_for_agent(self.arguments)}
        if self.error is not None:
            entry["error"] = self.error
        else:
            entry.update(exit_code=self.exit_code, timed_out=self.timed_out, duration=round(self.duration, 3))
        entry["output"] = self.output
        return entry


@dataclass
class _Loop:
    """The state of one run of :func:`run_agent`."""

    client: ChatClient
    sandbox: Sandbox
    tools: dict[str, Tool]
    task: dict[str, Any]
    deadline: float
    output_limit: int
    max_calls: int
    max_argument_bytes: int
    max_malformed: int
    sample_id: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0
    calls_run: int = 0

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def body(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "tools": [tool.schema() for tool in self.tools.values()],
            "task": self.task,
        }

    def ask(self) -> tuple[dict[str, Any], UsageMeter, float]:
        """One turn's request through the client (retries, limit, cache, time limit), with what it cost.

        The client keeps no transcript line of its own (it would hold the whole history every turn): the
        loop writes one line per turn. Its usage is counted apart first, for that line, then added to the task's.
        """
        meter = UsageMeter()
        started = time.perf_counter()
        try:
            parsed = meter.scope(no_transcript()).run(self.client.get_response, self.body())
        finally:
            current_meter().merge(meter)
        return parsed["message"], meter, time.perf_counter() - started


def run_agent(
    client: ChatClient | str,
    sandbox: Sandbox,
    instruction: str,
    *,
    tools: Iterable[Tool] = (),
    max_turns: int = 50,
    timeout: float = 1800.0,
    system: str | None = DEFAULT_SYSTEM_PROMPT,
    task: Mapping[str, Any] | None = None,
    tool_output_limit: int = TOOL_OUTPUT_LIMIT,
    max_tool_calls_per_turn: int = 64,
    max_argument_bytes: int = 1024 * 1024,
    max_malformed: int = 3,
    sample_id: str | int | None = None,
) -> AgentRun:
    """Ask the agent at ``client`` (a :class:`ChatClient`, or the agent's URL) to do ``instruction`` in ``sandbox``.

    The agent gets the standard tools ``bash`` and ``submit`` and ``tools`` (a bench's own, which may
    replace a standard one by name). Each turn its tool calls run in order in the sandbox and their results
    go back as ``tool`` messages, cut to ``tool_output_limit`` bytes. The loop ends when the agent calls
    ``submit``, answers without a tool call, has had ``max_turns`` turns, or ``timeout`` seconds have
    passed (checked between turns; each command is bounded by the time left); :attr:`AgentRun.stop_reason`
    says which. A malformed tool call (unknown tool, arguments not a JSON object, missing or mistyped
    fields, arguments over ``max_argument_bytes``) is answered as a tool error; ``max_malformed`` of them in a
    row end the loop as ``agent_error``. Calls beyond ``max_tool_calls_per_turn`` in one answer are
    answered "not run".

    Each turn is one line of the task's transcript (``sample_id`` names it). An agent that cannot be reached
    or answers something that is not a message raises ``AgentError``, as any client call does; a sandbox
    that fails raises ``SandboxError``.
    """
    if max_turns < 1 or timeout <= 0 or tool_output_limit < 64:
        raise ValueError("run_agent: max_turns must be >= 1, timeout > 0 and tool_output_limit >= 64")
    by_name = {tool.name: tool for tool in (bash_tool(), submit_tool(), *tools)}
    loop = _Loop(
        client=ChatClient(client) if isinstance(client, str) else client,
        sandbox=sandbox,
        tools=by_name,
        task={"instruction": instruction, **(task or {})},
        deadline=time.monotonic() + timeout,
        output_limit=tool_output_limit,
        max_calls=max_tool_calls_per_turn,
        max_argument_bytes=max_argument_bytes,
        max_malformed=max_malformed,
        sample_id=None if sample_id is None else str(sample_id),
    )
    if system:
        loop.messages.append({"role": "system", "content": system})
    loop.messages.append({"role": "user", "content": instruction})
    return _run(loop, max_turns)


def _run(loop: _Loop, max_turns: int) -> AgentRun:
    new_from = 0  # where this turn's new messages start in the history
    for turn in range(max_turns):
        if loop.seconds_left() <= 0:
            return _ended(loop, "time_limit", turn)
        asked_at = len(loop.messages)
        message, meter, latency = _ask_recorded(loop, turn, new_from)
        _bound_content(message, loop.max_argument_bytes)
        loop.messages.append(message)
        calls: list[_Call] = []
        try:
            outcome = _run_calls(loop, message.get("tool_calls") or [], calls)
        finally:
            _record_turn(loop, turn, new_from, asked_at, message, meter, latency, calls)
        new_from = asked_at + 1
        if outcome is not None:
            kind, detail = outcome
            if kind == "submitted":
                return _ended(loop, "submitted", turn + 1, submission=detail)
            return _ended(loop, "agent_error", turn + 1, error=detail)
        if not message.get("tool_calls"):
            return _ended(loop, "answered", turn + 1)
    return _ended(loop, "max_turns", max_turns)


def _bound_content(message: dict[str, Any], limit: int) -> None:
    # The history goes back to the agent every turn: an answer of megabytes would make every later request so big.
    content = message.get("content")
    if isinstance(content, str) and len(content) > limit // 4 and len(content.encode("utf-8", "replace")) > limit:
        message["content"] = truncate_for_agent(content, limit)


def _ask_recorded(loop: _Loop, turn: int, new_from: int) -> tuple[dict[str, Any], UsageMeter, float]:
    """Ask for the next message; a failure is still a line of the transcript before it is raised."""
    started = time.perf_counter()
    try:
        return loop.ask()
    except Exception as e:
        transcript = current_transcript()
        if transcript is not None:
            transcript.record(
                sample_id=loop.sample_id,
                request=loop.messages[new_from:],
                response=None,
                parsed=None,
                latency=time.perf_counter() - started,
                attempts=None,
                usage=None,
                cached=False,
                error=f"{type(e).__name__}: {e}",
                extra={"step": turn},
            )
        raise


def _ended(
    loop: _Loop, reason: StopReason, turns: int, *, submission: str | None = None, error: str | None = None
) -> AgentRun:
    last = next((m for m in reversed(loop.messages) if m.get("role") == "assistant"), None)
    return AgentRun(
        stop_reason=reason,
        turns=turns,
        messages=loop.messages,
        submission=submission,
        final_answer=last.get("content") if last else None,
        error=error,
        tool_calls=loop.calls_run,
    )


def _run_calls(loop: _Loop, raw_calls: list[Any], calls: list[_Call]) -> tuple[str, str | None] | None:
    """Run one answer's tool calls in order; ("submitted", answer) or ("agent_error", why) when the loop ends."""
    for index, raw in enumerate(raw_calls):
        call_id = _call_id(raw, index)
        if index >= loop.max_calls:
            _reply(
                loop,
                calls,
                _Call(call_id, _name_of(raw), ""),
                f"not run: at most {loop.max_calls} tool calls are run per turn",
                error=True,
            )
            continue
        name, arguments, problem = _parse_call(loop, raw)
        call = _Call(call_id, name, _argument_text(raw))
        if problem is not None:
            _reply(loop, calls, call, problem, error=True)
            loop.malformed += 1
            if loop.malformed >= loop.max_malformed:
                return "agent_error", f"{loop.malformed} malformed tool calls in a row; the last: {problem}"
            continue
        loop.malformed = 0
        tool = loop.tools[name]
        if tool.run is None:  # submit
            answer = arguments.get("answer")
            _reply(loop, calls, call, "submitted")
            return "submitted", answer if isinstance(answer, str) else None
        _execute(loop, tool, arguments, call, calls)
    return None


def _execute(loop: _Loop, tool: Tool, arguments: dict[str, Any], call: _Call, calls: list[_Call]) -> None:
    assert tool.run is not None
    started = time.perf_counter()
    result = tool.run(loop.sandbox, arguments, max(0.0, loop.seconds_left()))
    call.duration = time.perf_counter() - started
    loop.calls_run += 1
    if isinstance(result, ExecResult):
        call.exit_code, call.timed_out = result.exit_code, result.timed_out
        text = _exec_text(result)
    else:
        call.exit_code, text = 0, str(result)
    _reply(loop, calls, call, text)


def _exec_text(result: ExecResult) -> str:
    """A command's result as the agent reads it. Nothing that varies between runs (no duration): the
    history must come out the same when the commands are replayed, for cached steps to be found again."""
    head = f"exit code {result.exit_code}"
    if result.timed_out:
        head += " (timed out: the command and its children were killed)"
    parts = [head]
    if result.stdout:
        parts.append(result.stdout)
    if result.stderr:
        parts.append("[stderr]\n" + result.stderr)
    return "\n".join(parts)


def _reply(loop: _Loop, calls: list[_Call], call: _Call, text: str, *, error: bool = False) -> None:
    """Answer ``call`` to the agent with a ``tool`` message (cut to the limit), and keep it for the transcript."""
    content = truncate_for_agent(("error: " if error else "") + text, loop.output_limit)
    if error:
        call.error = text
    call.output = content
    calls.append(call)
    loop.messages.append({"role": "tool", "tool_call_id": call.id, "content": content})


def _call_id(raw: Any, index: int) -> str:
    given = raw.get("id") if isinstance(raw, dict) else None
    # Every call needs an id for its answer; one the agent left out is made up, the same way every run.
    return given if isinstance(given, str) and given else f"call_{index}"


def _function(raw: Any) -> dict[str, Any]:
    function = raw.get("function") if isinstance(raw, dict) else None
    return function if isinstance(function, dict) else {}


def _name_of(raw: Any) -> str:
    name = _function(raw).get("name")
    return name if isinstance(name, str) else ""


def _argument_text(raw: Any) -> str:
    arguments = _function(raw).get("arguments")
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _parse_call(loop: _Loop, raw: Any) -> tuple[str, dict[str, Any], str | None]:
    """(tool name, arguments, None), or a problem to answer the agent with."""
    function = _function(raw)
    name = _name_of(raw)
    if not function or not name:
        return name, {}, 'a tool call must be {"id", "type": "function", "function": {"name", "arguments"}}'
    if name not in loop.tools:
        return name, {}, f"unknown tool {name[:100]!r}; the tools are: {', '.join(loop.tools)}"
    text = function.get("arguments")
    size = len(text.encode("utf-8", errors="replace")) if isinstance(text, str) else len(json.dumps(text))
    if size > loop.max_argument_bytes:
        _shrink_arguments(raw, size, loop.max_argument_bytes)
        return name, {}, f"the arguments are {size:,} bytes; at most {loop.max_argument_bytes:,} are accepted"
    arguments = _json_object(text)
    if arguments is None:
        return name, {}, f"the arguments of {name} must be a JSON object"
    problem = _check_arguments(loop.tools[name].parameters, arguments)
    return name, arguments, None if problem is None else f"{name}: {problem}"


def _shrink_arguments(raw: dict[str, Any], size: int, limit: int) -> None:
    # The history is sent back every turn: a huge argument kept in it would make every later request huge.
    raw["function"]["arguments"] = _ARGUMENTS_CUT.format(size=size, limit=limit)


def _json_object(text: Any) -> dict[str, Any] | None:
    if isinstance(text, dict):
        return text
    if text is None or text == "":
        return {}
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _check_arguments(schema: Mapping[str, Any], arguments: dict[str, Any]) -> str | None:
    """What is wrong with ``arguments`` for ``schema`` (required fields, the types of the properties), or None."""
    missing = [name for name in schema.get("required", ()) if name not in arguments]
    if missing:
        return f"missing {', '.join(missing)}"
    for name, spec in (schema.get("properties") or {}).items():
        wanted = spec.get("type") if isinstance(spec, dict) else None
        if name not in arguments or wanted not in _TYPES:
            continue
        value = arguments[name]
        if not isinstance(value, _TYPES[wanted]) or (wanted != "boolean" and isinstance(value, bool)):
            return f"{name} must be a {wanted}, not {type(value).__name__}"
    return None


def _record_turn(
    loop: _Loop,
    turn: int,
    new_from: int,
    asked_at: int,
    message: dict[str, Any],
    meter: UsageMeter,
    latency: float,
    calls: Sequence[_Call],
) -> None:
    """One line of the task's transcript: the step, the messages new in its request, the answer, each tool call."""
    transcript = current_transcript()
    if transcript is None:
        return
    transcript.record(
        sample_id=loop.sample_id,
        request=loop.messages[new_from:asked_at],
        response=message,
        parsed=None,
        latency=latency,
        attempts=None,
        usage=(meter.input_tokens, meter.output_tokens) if meter.requests else None,
        cached=meter.cache_hits > 0,
        error=None,
        extra={"step": turn, "tool_calls": [call.line() for call in calls]},
    )


def record_verification(command: str, result: ExecResult, *, sample_id: str | int | None = None) -> None:
    """Keep what the verifier printed in the task's transcript, where the HTML report shows it after the
    agent's trajectory (a line with ``"verifier": true``)."""
    transcript = current_transcript()
    if transcript is None:
        return
    transcript.record(
        sample_id=None if sample_id is None else str(sample_id),
        request=command,
        response=_exec_text(result),
        parsed=None,
        latency=0.0,
        attempts=None,
        usage=None,
        cached=False,
        error=None,
        extra={"verifier": True, "exit_code": result.exit_code, "timed_out": result.timed_out},
    )
