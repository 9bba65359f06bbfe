"""A scripted tool-calling model behind a real OpenAI-compatible HTTP server on loopback.

It answers ``POST /v1/chat/completions`` with the step of its script that the conversation has reached
(the number of assistant messages already in the request's history), so it is stateless as a real
model is: a replayed history gets the same answer. Each step is a list of tool calls ``(name, arguments)``
or a string (an answer with no tool call). Every request is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = str | list[tuple[str, dict[str, Any]]]


def completion(step: Step, turn: int) -> dict[str, Any]:
    """A chat completion answering ``step`` (function calling when it is a list of calls)."""
    if isinstance(step, str):
        message: dict[str, Any] = {"role": "assistant", "content": step}
    else:
        calls = [
            {"id": f"call_{turn}_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(step)
        ]
        message = {"role": "assistant", "content": None, "tool_calls": calls}
    return {
        "id": f"chatcmpl-{turn}",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls_of(message) else "stop"}],
        "usage": {"prompt_tokens": 100 + turn, "completion_tokens": 10, "total_tokens": 110 + turn},
    }


def calls_of(message: dict[str, Any]) -> list[Any]:
    return message.get("tool_calls") or []


class ToolModel:
    """The fake provider. ``fail_from``: from that step on it answers HTTP ``fail_status`` (a provider down)."""

    def __init__(self, script: list[Step]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.fail_from: int | None = None
        self.fail_status = 400
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, answer = outer.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        turn = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        with self.lock:
            self.requests.append(body)
            failing = self.fail_from is not None and turn >= self.fail_from
        if failing:
            return self.fail_status, {"error": {"message": f"scripted failure at step {turn}"}}
        step = self.script[min(turn, len(self.script) - 1)]
        return 200, completion(step, turn)

    def turns_asked(self) -> list[int]:
        """The step of each request received, in order."""
        return [sum(1 for m in r["messages"] if m.get("role") == "assistant") for r in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
