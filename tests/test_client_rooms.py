"""The client's rooms: a small public face, and request_json, the one request path any conversation with an agent uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import pytest_benchflow
import pytest_benchflow.client
from conftest import Reply, ScriptedServer, json_reply
from pytest_benchflow.client._request import request_json
from pytest_benchflow.client._settings import ClientSettings
from pytest_benchflow.transcript import Transcript
from pytest_benchflow.usage import UsageMeter

ASSISTANT = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "bash"}}]}


def test_the_client_module_exports_its_api_and_keeps_its_machinery_private() -> None:
    assert pytest_benchflow.client.__all__ == ["BenchClient", "ClientOptions", "ClientSettings"]
    assert pytest_benchflow.client.BenchClient is pytest_benchflow.BenchClient  # the 0.1.x import path
    rooms = Path(pytest_benchflow.client.__file__).parent.glob("*.py")
    assert all(room.name == "__init__.py" or room.name.startswith("_") for room in rooms)


def asked(tmp_path: Path, call: Any) -> tuple[Any, UsageMeter, list[dict[str, Any]]]:
    """``call()`` inside a task's usage meter and transcript: (its result or exception, the meter, the lines)."""
    meter, transcript = UsageMeter(), Transcript(tmp_path / "transcript.jsonl")
    context = transcript.scope(meter.scope())
    try:
        outcome = context.run(call)
    except Exception as e:
        outcome = e
    transcript.close()
    lines = [json.loads(line) for line in transcript.path.read_text().splitlines()]
    return outcome, meter, lines


def test_request_json_retries_counts_usage_and_writes_one_transcript_line(
    scripted: ScriptedServer, tmp_path: Path
) -> None:
    # A multi-turn step: any JSON answer (here an assistant message), not only a string.
    usage = {"X-Benchflow-Usage": '{"input_tokens": 30, "output_tokens": 4}'}
    scripted.script(Reply(status=503, body=b"busy"), json_reply(ASSISTANT, headers=usage))
    body = {"messages": [{"role": "user", "content": "fix it"}], "tools": []}
    settings = ClientSettings(backoff=0.01)
    outcome, meter, lines = asked(
        tmp_path, lambda: request_json(scripted.url + "/response", body, settings, sample_id="step-1")
    )
    assert outcome == ASSISTANT
    assert (meter.requests, meter.input_tokens, meter.output_tokens) == (1, 30, 4)
    (line,) = lines
    assert line["sample_id"] == "step-1" and line["request"] == body and line["response"] == ASSISTANT
    assert (line["attempts"], line["parsed"], line["error"], line["cached"]) == (2, None, None, False)
    assert line["usage"] == {"input_tokens": 30, "output_tokens": 4}
    assert [path for path, _, _ in scripted.requests] == ["/response", "/response"]


def test_what_interpret_makes_of_the_answer_or_its_failure_is_in_the_transcript(
    scripted: ScriptedServer, tmp_path: Path
) -> None:
    scripted.script(json_reply("The answer is (B)."))
    settings = ClientSettings()

    def interpret(answer: Any) -> dict[str, Any]:
        return {"choice": answer[-3], "raw_response": answer}

    outcome, _, (line,) = asked(tmp_path, lambda: request_json(scripted.url, {"q": 1}, settings, interpret))
    assert outcome == {"choice": "B", "raw_response": "The answer is (B)."}
    assert line["parsed"] == {"choice": "B"} and line["error"] is None

    def refuse(answer: Any) -> dict[str, Any]:
        raise ValueError("no choice in it")

    outcome, _, (line,) = asked(tmp_path / "2", lambda: request_json(scripted.url, {"q": 2}, settings, refuse))
    assert isinstance(outcome, ValueError)
    assert line["response"] == "The answer is (B)." and line["parsed"] is None
    assert line["error"] == "ValueError: no choice in it"


def test_request_json_outside_a_transcript_returns_the_answer(scripted: ScriptedServer) -> None:
    scripted.script(json_reply([1, 2]))
    assert request_json(scripted.url, {}, ClientSettings(), agent_url="http://agent") == [1, 2]
    with pytest.raises(pytest_benchflow.AgentHTTPError, match="answered HTTP 404"):
        scripted.script(Reply(status=404, body=b"no"))
        request_json(scripted.url, {}, ClientSettings())
