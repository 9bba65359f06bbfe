"""``BaseAgent``: an agent developer's ``call_api``, served over HTTP by the standard library."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import socket
import threading
import time
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .envnumbers import MAX_SECONDS, env_number
from .errors import AgentOverloaded
from .redaction import redact
from .usage import USAGE_HEADER, AgentAnswer, AgentMessage

__all__ = ["IDLE_TIMEOUT", "MAX_BODY_BYTES", "MAX_CONNECTIONS", "REQUEST_TIMEOUT", "AgentServer", "BaseAgent"]

logger = logging.getLogger("pytest_benchflow.agent")

#: Largest request body the agent server accepts (413 above it); ``BENCHFLOW_AGENT_MAX_BODY`` overrides.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Seconds a connection may sit idle or half-sent before the server closes it (``BENCHFLOW_AGENT_IDLE_TIMEOUT``).
IDLE_TIMEOUT = 30.0
#: Seconds from a request's first byte to its last (headers and body) before the connection is
#: closed, however steadily it trickles (``BENCHFLOW_AGENT_REQUEST_TIMEOUT``).
REQUEST_TIMEOUT = 60.0
#: Connections served at once, one thread each; beyond, a connection is answered 503 and closed
#: (``BENCHFLOW_AGENT_MAX_CONNECTIONS``).
MAX_CONNECTIONS = 256
# How often the serving loop checks for shutdown: stop() returns within this.
_POLL = 0.05
# ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses.
_DIGITS = re.compile(r"[0-9]+")
_BUSY_BODY = b'{"detail": "too many connections at once (BENCHFLOW_AGENT_MAX_CONNECTIONS)"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class _TooSlow(TimeoutError):
    """A request did not arrive whole within its deadline."""


class _DeadlineReader(io.RawIOBase):
    """A connection's reading side, where a request must arrive whole within ``request_timeout`` of
    its first byte: the socket's per-read timeout alone is reset by every byte a slow client sends."""

    def __init__(self, connection: socket.socket, idle_timeout: float, request_timeout: float) -> None:
        self.connection, self.idle_timeout, self.request_timeout = connection, idle_timeout, request_timeout
        self.deadline: float | None = None
        self.waiting = False

    def readable(self) -> bool:
        return True

    def begin(self) -> None:
        """A request is expected: its deadline starts with its first byte."""
        self.waiting, self.deadline = True, None

    def end(self) -> None:
        """The request was read whole: no deadline until the next one."""
        self.waiting, self.deadline = False, None

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:
            count = self.connection.recv_into(buffer)
            if self.waiting and count:
                self.deadline = time.monotonic() + self.request_timeout
            return count
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _TooSlow(f"request not received whole within {self.request_timeout:g} s")
        self.connection.settimeout(min(left, self.idle_timeout))
        try:
            return self.connection.recv_into(buffer)
        except TimeoutError:
            if left < self.idle_timeout:  # the deadline ran out, not the idle timeout
                raise _TooSlow(f"request not received whole within {self.request_timeout:g} s") from None
            raise
        finally:
            self.connection.settimeout(self.idle_timeout)  # answers are written with the idle timeout


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many benchmark threads connect at once; the default backlog of 5 drops connections.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], agent: BaseAgent) -> None:
        self.agent = agent
        self.max_body = env_number("BENCHFLOW_AGENT_MAX_BODY", MAX_BODY_BYTES, minimum=1)
        # Bounded above: a socket timeout past ~10^9 s overflows, and every connection would be dropped unanswered.
        self.idle_timeout = env_number("BENCHFLOW_AGENT_IDLE_TIMEOUT", IDLE_TIMEOUT, minimum=0.001, maximum=MAX_SECONDS)
        self.request_timeout = env_number(
            "BENCHFLOW_AGENT_REQUEST_TIMEOUT", REQUEST_TIMEOUT, minimum=0.001, maximum=MAX_SECONDS
        )
        self.max_connections = env_number("BENCHFLOW_AGENT_MAX_CONNECTIONS", MAX_CONNECTIONS, minimum=1)
        self.connections = 0
        self._counting = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Counted here, in the accepting thread: beyond the limit no thread is started at all.
        with self._counting:
            busy = self.connections >= self.max_connections
            if not busy:
                self.connections += 1
        if not busy:
            try:
                super().process_request(request, client_address)
            except BaseException:  # no thread started: nothing will count this connection out
                self._count_out()
                raise
            return
        try:
            request.settimeout(0)  # never wait on a client that does not read: it fits the socket buffer
            request.sendall(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._count_out()

    def _count_out(self) -> None:
        with self._counting:
            self.connections -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanished or stalled mid-exchange is routine for a server: no traceback on stderr.
        logger.debug("connection from %s ended abnormally", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "benchflow-agent"
    # Headers and body must leave in one write: separate small writes meet Nagle's
    # algorithm and the client's delayed ACK, costing ~40 ms per keep-alive request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _Server
    _reader: _DeadlineReader

    def setup(self) -> None:
        super().setup()
        # A timeout on every read and write: an idle keep-alive connection, or a client that sends
        # half a request and stops, is closed instead of holding a thread forever; and a deadline on
        # each whole request, so a client sending a byte now and then is closed too.
        server = self.server
        self.connection.settimeout(server.idle_timeout)
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection, server.idle_timeout, server.request_timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.begin()
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if len(self.headers.get_all("Content-Length") or ()) > 1:
            # Which one counts is what request smuggling plays on: neither does.
            self.close_connection = True
            self._send_json(400, {"detail": "more than one Content-Length header"})
            return False
        return True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reader.end()
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send_json(200, {"message": "BenchFlow agent API: POST /response"})
        elif path == "/health":
            self._send_json(200, {"status": "ok"})
        elif path == "/info":
            try:
                self._send_json(200, self.server.agent.info())
            except Exception as e:
                logger.exception("info failed")
                self._send_json(500, {"detail": self._masked(f"{type(e).__name__}: {e}")})
        else:
            self._send_json(404, {"detail": f"no such endpoint: GET {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/response":
            self._discard_body()
            self._send_json(404, {"detail": f"no such endpoint: POST {path}; use POST /response"})
            return
        length = self._body_length()
        if length is None:
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError as e:
            self.close_connection = True
            self._reader.end()  # the answer is written with the idle timeout
            idle = f"request body not received within {self.server.idle_timeout:g} s"
            self._send_json(408, {"detail": str(e) if isinstance(e, _TooSlow) else idle})
            return
        if len(body) < length:
            self.close_connection = True  # the client went away mid-body: nobody to answer
            return
        self._reader.end()
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            self._send_json(400, {"detail": f"body is not valid JSON: {e}"})
            return
        except RecursionError:
            self._send_json(400, {"detail": "body is JSON nested too deeply"})
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
            usage = (
                json.dumps(answer.usage) if isinstance(answer, (AgentAnswer, AgentMessage)) and answer.usage else None
            )
            self._send_json(200, answer, headers={USAGE_HEADER: usage} if usage else None)
        except AgentOverloaded as e:
            retry_after = None if e.retry_after is None else str(max(1, math.ceil(e.retry_after)))
            headers = {"Retry-After": retry_after} if retry_after else None
            self._send_json(e.status, {"detail": self._masked(str(e))}, headers=headers)
        except Exception as e:
            logger.exception("call_api failed")
            self._send_json(500, {"detail": self._masked(f"{type(e).__name__}: {e}")})

    def _masked(self, text: str) -> str:
        """``text`` without the agent's secrets: an error may quote whatever the agent's provider said."""
        return redact(text, self.server.agent.secret_values())

    def _body_length(self) -> int | None:
        """The request's Content-Length, or None after answering why it is unusable (4xx)."""
        keep_alive = not self.close_connection
        self.close_connection = True  # unless the length turns out usable
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            # Any transfer coding (gzip, identity, chunked) beside a Content-Length is the ambiguity request
            # smuggling plays on: which one frames the body? Neither: the request is refused.
            kind = "chunked" if "chunked" in encoding.lower() else f"{encoding.strip()[:40]!r}"
            self._send_json(400, {"detail": f"{kind} transfer encoding is not supported; send Content-Length"})
            return None
        header = self.headers.get("Content-Length")
        if header is None:
            self._send_json(411, {"detail": "Content-Length is required"})
            return None
        if not _DIGITS.fullmatch(header.strip()):
            self._send_json(400, {"detail": f"bad Content-Length: {header!r}"})
            return None
        length = int(header)
        if length > self.server.max_body:
            self._send_json(413, {"detail": f"body of {length} bytes exceeds the limit of {self.server.max_body}"})
            return None
        self.close_connection = not keep_alive
        return length

    def _discard_body(self) -> None:
        header = self.headers.get("Content-Length", "").strip()
        length = int(header) if _DIGITS.fullmatch(header) else -1
        if 0 <= length <= self.server.max_body:
            self.rfile.read(length)
            self._reader.end()
        else:
            self.close_connection = True


class AgentServer:
    """A running agent server: its ``url``, and ``stop()`` (also a context manager)."""

    def __init__(self, agent: BaseAgent, host: str = "127.0.0.1", port: int = 0) -> None:
        self.agent = agent
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
    ``GET /`` and ``GET /health`` answer 200; ``GET /info`` answers :meth:`info`. Requests are served concurrently, one
    thread per connection, so ``call_api`` must be thread-safe.
    """

    @abstractmethod
    def call_api(self, task_step_inputs: dict[str, Any]) -> str | dict[str, Any]:
        """Answer one request of the benchmark; the keys are documented by the benchmark. A multi-step
        request (``messages`` in it) is answered with an assistant message (``AgentMessage``) or a string."""

    def info(self) -> dict[str, Any]:
        """What this agent is, served at ``GET /info`` and kept in the run's summary: its name,
        and for a model its name and settings. Never put secrets here. Default: the class name."""
        return {"name": type(self).__name__}

    def secret_values(self) -> list[str]:
        """Values this agent holds that must never show, such as its provider's API key. The server masks
        them in every error it answers, and a session serving the agent (``--agent``) masks them wherever
        it prints or writes, as it masks secret arguments. Default: none."""
        return []

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
