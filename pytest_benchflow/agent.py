"""``BaseAgent``: an agent developer's ``call_api``, served over HTTP by the standard library."""

from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MAX_BODY_BYTES", "AgentServer", "BaseAgent"]

logger = logging.getLogger("pytest_benchflow.agent")

#: Largest request body the agent server accepts (413 above it); ``BENCHFLOW_AGENT_MAX_BODY`` overrides.
MAX_BODY_BYTES = 16 * 1024 * 1024
# How often the serving loop checks for shutdown: stop() returns within this.
_POLL = 0.05


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many benchmark threads connect at once; the default backlog of 5 drops connections.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], agent: BaseAgent) -> None:
        self.agent = agent
        self.max_body = int(os.environ.get("BENCHFLOW_AGENT_MAX_BODY", MAX_BODY_BYTES))
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "benchflow-agent"
    # Headers and body must leave in one write: separate small writes meet Nagle's
    # algorithm and the client's delayed ACK, costing ~40 ms per keep-alive request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send_json(200, {"message": "BenchFlow agent API: POST /response"})
        elif path == "/health":
            self._send_json(200, {"status": "ok"})
        else:
            self._send_json(404, {"detail": f"no such endpoint: GET {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/response":
            self._discard_body()
            self._send_json(404, {"detail": f"no such endpoint: POST {path}; use POST /response"})
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self._send_json(411, {"detail": "Content-Length is required"})
            return
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            self._send_json(400, {"detail": f"bad Content-Length: {length_header!r}"})
            return
        if length > self.server.max_body:
            self.close_connection = True
            self._send_json(413, {"detail": f"body of {length} bytes exceeds the limit of {self.server.max_body}"})
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError) as e:
            self._send_json(400, {"detail": f"body is not valid JSON: {e}"})
            return
        if not isinstance(payload, dict):
            self._send_json(400, {"detail": f"body must be a JSON object, not {type(payload).__name__}"})
            return
        # Older clients wrap the inputs.
        for wrapper in ("env_info", "input_data"):
            if isinstance(payload.get(wrapper), dict):
                payload = payload[wrapper]
                break
        try:
            answer = self.server.agent.call_api(payload)
            self._send_json(200, answer)
        except Exception as e:
            logger.exception("call_api failed")
            self._send_json(500, {"detail": f"{type(e).__name__}: {e}"})

    def _discard_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= self.server.max_body:
            self.rfile.read(length)
        elif length:
            self.close_connection = True


class AgentServer:
    """A running agent server: its ``url``, and ``stop()`` (also a context manager)."""

    def __init__(self, agent: BaseAgent, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), agent)
        address = self._server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> AgentServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": _POLL}, name="benchflow-agent", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self._server.serve_forever(poll_interval=_POLL)
        finally:
            self._server.server_close()

    def stop(self) -> None:
        """Stop accepting requests and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> AgentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BaseAgent(ABC):
    """An agent: implement :meth:`call_api`, then serve it.

    ``run_with_endpoint(host, port)`` serves in the foreground (BenchFlow's name);
    ``serve()`` serves in a background thread on a free loopback port and returns an
    :class:`AgentServer` with the ``url`` to hand to a benchmark.

    The server speaks the protocol in ``docs/protocol.md``: ``POST /response`` with the
    benchmark's JSON object, answered with the JSON encoding of what ``call_api`` returns;
    ``GET /`` and ``GET /health`` answer 200. Requests are served concurrently, one
    thread per connection, so ``call_api`` must be thread-safe.
    """

    @abstractmethod
    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        """Answer one request of the benchmark; the keys are documented by the benchmark."""

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> AgentServer:
        """Serve in a background thread (port 0: a free one); stop with ``.stop()``."""
        return AgentServer(self, host, port).start()

    def run_with_endpoint(self, host: str, port: int) -> None:
        """Serve in the foreground until interrupted."""
        server = AgentServer(self, host, port)
        logger.info("agent %s serving on %s", type(self).__name__, server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
