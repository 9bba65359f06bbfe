"""Start-up probes (the agent's /health and /info, each Docker engine) have a total deadline and a size cap."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import RawServer

BENCH = ["--benchflow=toy_bench.py:ToyBench", "-k", "good", "-p", "no:randomly", "-p", "no:cacheprovider"]
# The status line and headers of an answer that would take minutes at one byte every 0.5 s.
TRICKLED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    + b"X-Pad: "
    + b"p" * 400
    + b"\r\n\r\n{}"
)


class TricklingInfo:
    """An agent that answers /health and /response at once, and /info as told: one byte every 0.5 s,
    or ``info_bytes`` of JSON at once."""

    def __init__(self, info_bytes: int = 0) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != "/info":
                    self._send(b'{"status": "ok"}')
                elif info_bytes:
                    self._send(json.dumps({"name": "big", "pad": "x" * info_bytes}).encode())
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.flush()
                    for _ in range(1000):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.5)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._send(json.dumps(body["question"].upper()).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trickling_health() -> Iterator[RawServer]:
    server = RawServer(TRICKLED, pace=0.5)
    yield server
    server.close()


def test_an_agent_that_trickles_its_health_answer_stops_the_start(
    toy: pytest.Pytester, trickling_health: RawServer
) -> None:
    # One byte every 0.5 s never trips a per-read timeout; the probe's total deadline (5 s) does.
    result = toy.runpytest_subprocess(*BENCH, f"--agent-url={trickling_health.url}", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: agent at {trickling_health.url} did not answer GET /health within 5 s; *"])
    assert not list(toy.path.glob(".benchflow/2*"))


@pytest.mark.parametrize(
    ("info_bytes", "note"),
    [(0, "did not answer GET /info within 5 s"), (200_000, "answered GET /info with more than 65536 bytes")],
)
def test_an_info_that_trickles_or_is_too_large_is_left_out_with_a_note(
    toy: pytest.Pytester, info_bytes: int, note: str
) -> None:
    agent = TricklingInfo(info_bytes)
    try:
        result = toy.runpytest_subprocess(*BENCH, f"--agent-url={agent.url}", timeout=120)
    finally:
        agent.stop()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"agent at {agent.url} {note}: its info is not kept"])
    (summary,) = toy.path.glob(".benchflow/*/summary.json")
    assert json.loads(summary.read_text())["agent"]["info"] is None


def test_an_engine_url_that_trickles_its_answer_stops_the_start(toy: pytest.Pytester, tmp_path: Path) -> None:
    engine = RawServer(TRICKLED, tmp_path / "engine.sock", pace=0.5)
    try:
        result = toy.runpytest_subprocess(
            *BENCH,
            "--agent=toy_bench:UpperAgent",
            "--benchflow-runner=docker",
            f"--benchflow-docker-host={engine.url}",
            timeout=120,
        )
    finally:
        engine.close()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"ERROR: Docker engine not answering: {engine.url} (no whole answer within 5 s); *"])
