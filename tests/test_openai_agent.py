"""OpenAIChatAgent against an OpenAI-compatible chat-completions server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conftest import RawServer
from pytest_benchflow.agents import OpenAIChatAgent


class CompatServer:
    """Answers like /v1/chat/completions; ``status`` 200 echoes the user message back."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.seen.append((self.path, dict(self.headers), body))
                if outer.status == 200:
                    payload = {
                        "choices": [
                            {"message": {"role": "assistant", "content": "Echo: " + body["messages"][-1]["content"]}}
                        ]
                    }
                else:
                    payload = {"error": {"message": "Incorrect API key provided: sk-test-abcdef123"}}
                data = json.dumps(payload).encode()
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def compat() -> Iterator[CompatServer]:
    server = CompatServer()
    yield server
    server.server.shutdown()


def test_official_single_user_message_by_default(compat: CompatServer) -> None:
    # The MMLU-Pro authors' evaluate_from_api.py: [{"role": "user", "content": instruction + inputs}].
    agent = OpenAIChatAgent(base_url=compat.url)
    agent.call_api({"prompt": "Instruction.\n\n", "input_text": "Question: 1+1?"})
    assert compat.seen[0][2]["messages"] == [{"role": "user", "content": "Instruction.\n\nQuestion: 1+1?"}]
    assert compat.seen[0][2]["temperature"] == 0 and compat.seen[0][2]["max_tokens"] == 4000


def test_bad_message_form_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_MESSAGE_FORM", "assistant")
    with pytest.raises(ValueError, match="OPENAI_MESSAGE_FORM='assistant': choose user or system"):
        OpenAIChatAgent()


def test_system_and_user_messages(compat: CompatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_MESSAGE_FORM", "system")
    monkeypatch.setenv("OPENAI_BASE_URL", compat.url)
    monkeypatch.setenv("OPENAI_MODEL", "local-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-abcdef123")
    monkeypatch.setenv("OPENAI_TEMPERATURE", "0.3")
    agent = OpenAIChatAgent()
    assert agent.call_api({"prompt": "You are careful.", "input_text": "Question: 1+1?"}) == "Echo: Question: 1+1?"
    path, headers, body = compat.seen[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test-abcdef123"
    assert body == {
        "model": "local-model",
        "messages": [{"role": "system", "content": "You are careful."}, {"role": "user", "content": "Question: 1+1?"}],
        "temperature": 0.3,
        "max_tokens": 4000,
    }
    assert "sk-test" not in repr(agent)


def test_error_names_status_without_key(compat: CompatServer) -> None:
    compat.status = 401
    agent = OpenAIChatAgent(base_url=compat.url, api_key="sk-test-abcdef123")
    with pytest.raises(
        RuntimeError, match=r"chat/completions answered HTTP 401: .*Incorrect API key provided: \*\*\*"
    ) as info:
        agent.call_api({"input_text": "x"})
    assert "sk-test-abcdef123" not in str(info.value)


def test_evaluates_mmlu_pro_through_the_plugin(
    compat: CompatServer, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", compat.url)
    result = pytester.runpytest("--benchflow=mmlu_pro", "--agent=pytest_benchflow.agents:OpenAIChatAgent", "-k", "law")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 1 and "errors" not in outcomes
    assert len(compat.seen) == 3 and [m["role"] for m in compat.seen[0][2]["messages"]] == ["user"]


def test_model_and_settings_reach_the_summary_terminal_and_report(
    compat: CompatServer, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", compat.url.replace("http://", "http://u:sk-secret-xyz@"))
    monkeypatch.setenv("OPENAI_MODEL", "local-model")
    result = pytester.runpytest(
        "--benchflow=mmlu_pro",
        "--agent=pytest_benchflow.agents:OpenAIChatAgent",
        "-k",
        "law",
        "--benchflow-html=r.html",
    )
    result.stdout.fnmatch_lines(["agent: http://127.0.0.1:*: OpenAIChatAgent (model local-model)"])
    (summary,) = pytester.path.glob(".benchflow/*/summary.json")
    agent = json.loads(summary.read_text())["agent"]
    assert agent["info"] == {
        "name": "OpenAIChatAgent",
        "model": "local-model",
        "base_url": compat.url,
        "temperature": 0.0,
        "max_tokens": 4000,
        "message_form": "user",
    }
    assert "OpenAIChatAgent (model local-model)" in (pytester.path / "r.html").read_text()
    assert "sk-secret-xyz" not in summary.read_text()


def test_agents_without_info_keep_working(pytester: pytest.Pytester) -> None:
    # A 0.1.x-style agent: GET / and POST /response only (GET /info is a 404).
    from conftest import ScriptedServer, json_reply

    server = ScriptedServer()
    server.script(json_reply("The answer is (A)."))
    try:
        result = pytester.runpytest("--benchflow=mmlu_pro", f"--agent-url={server.url}", "-k", "law")
    finally:
        server.stop()
    assert "errors" not in result.parseoutcomes()
    (summary,) = pytester.path.glob(".benchflow/*/summary.json")
    assert json.loads(summary.read_text())["agent"] == {
        "url": server.url,
        "info": None,
        "given": f"--agent-url {server.url}",
    }


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_a_provider_body_over_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch, declared: bool) -> None:
    # A provider's body is read up to OPENAI_MAX_RESPONSE_BYTES, declared or sent, never whole.
    monkeypatch.setenv("OPENAI_MAX_RESPONSE_BYTES", "100000")
    body = json.dumps({"choices": [{"message": {"content": "x" * 1_000_000}}]}).encode()
    framing = f"Content-Length: {len(body)}" if declared else "Connection: close"
    provider = RawServer(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode() + body)
    try:
        agent = OpenAIChatAgent(base_url=provider.url + "/v1", api_key="sk-test-abcdef123")
        with pytest.raises(
            RuntimeError, match=r"chat/completions answered more than 100000 bytes \(OPENAI_MAX_RESPONSE_BYTES\)"
        ):
            agent.call_api({"input_text": "x"})
    finally:
        provider.close()


def test_bad_body_cap_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_MAX_RESPONSE_BYTES", "lots")
    with pytest.raises(ValueError, match="OPENAI_MAX_RESPONSE_BYTES='lots' must be an integer >= 1"):
        OpenAIChatAgent()
