"""Agents for the benchmarks: `python perf/agents.py KIND PORT [LATENCY]`, KIND instant, slow or model."""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pytest_benchflow import BaseAgent


class InstantAgent(BaseAgent):
    """Answers at once: what remains is the cost of HTTP and the harness."""

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        return "The answer is (A)."


class SlowAgent(BaseAgent):
    """Answers after a fixed latency, like a model behind an API."""

    def __init__(self, latency: float = 0.1) -> None:
        self.latency = latency

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        time.sleep(self.latency)
        return "The answer is (A)."


class _ModelHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that answers after ``latency`` seconds, as a provider would.

    Like a production server it sends each response in one write with TCP_NODELAY: a stdlib
    handler's separate writes meet Nagle's algorithm and delayed ACKs (~40 ms a request), which
    measured the stall, not the adapter.
    """

    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    latency = 0.1

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST":
            time.sleep(self.latency)
        body = json.dumps(
            {
                "choices": [{"message": {"role": "assistant", "content": "The answer is (A)."}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


def serve_model(port: int, latency: float) -> None:
    _ModelHandler.latency = latency
    server = ThreadingHTTPServer(("127.0.0.1", port), _ModelHandler)
    server.daemon_threads = True
    server.request_queue_size = 512
    server.serve_forever()


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "model":
        serve_model(port, float(sys.argv[3]))
    else:
        agent = SlowAgent(float(sys.argv[3])) if kind == "slow" else InstantAgent()
        agent.run_with_endpoint("127.0.0.1", port)
