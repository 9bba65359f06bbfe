"""BaseAgent's HTTP server: the protocol, bad requests, failures and concurrency."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from conftest import EchoAgent
from pytest_benchflow import BaseAgent
from pytest_benchflow.agent_server import MAX_BODY_BYTES


def test_get_root_and_health(echo_agent: str) -> None:
    assert requests.get(echo_agent + "/").status_code == 200
    assert requests.get(echo_agent + "/health").json() == {"status": "ok"}


def test_answer_is_json_encoded_return_value(echo_agent: str) -> None:
    r = requests.post(echo_agent + "/response", json={"question": "abc"})
    assert (r.status_code, r.headers["Content-Type"], r.json()) == (200, "application/json", "ABC")


@pytest.mark.parametrize("wrapper", ["env_info", "input_data"])
def test_older_clients_wrapped_bodies(echo_agent: str, wrapper: str) -> None:
    assert requests.post(echo_agent + "/response", json={wrapper: {"question": "w"}}).json() == "W"


def test_malformed_json_is_400_with_reason(echo_agent: str) -> None:
    r = requests.post(echo_agent + "/response", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]


def test_non_object_json_is_400(echo_agent: str) -> None:
    r = requests.post(echo_agent + "/response", json=["a"])
    assert r.status_code == 400 and "JSON object" in r.json()["detail"]


def test_call_api_exception_is_500_and_server_keeps_serving(echo_agent: str) -> None:
    r = requests.post(echo_agent + "/response", json={"fail": True})
    assert r.status_code == 500 and r.json() == {"detail": "RuntimeError: agent exploded"}
    assert requests.post(echo_agent + "/response", json={"question": "again"}).json() == "AGAIN"


def test_oversized_body_is_413(echo_agent: str) -> None:
    parts = urlsplit(echo_agent)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.putrequest("POST", "/response")
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["detail"]


def test_unknown_path_is_404(echo_agent: str) -> None:
    assert requests.post(echo_agent + "/act", json={}).status_code == 404


def test_requests_are_served_concurrently() -> None:
    started = threading.Barrier(8, timeout=5)

    class Gate(BaseAgent):
        def call_api(self, task_step_inputs: dict[str, Any]) -> str:
            started.wait()  # passes only when 8 requests are inside call_api at once
            return "ok"

    with Gate().serve() as server:
        results: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(requests.post(server.url + "/response", json={}).status_code)
            )
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [200] * 8


def test_serve_stops_cleanly_and_frees_port() -> None:
    server = EchoAgent().serve()
    url = server.url
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/health", timeout=1)


def raw_exchange(url: str, request: bytes, timeout: float = 5) -> bytes:
    """Send ``request`` as is on a new connection; everything the server answers before closing."""
    import socket

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received and b"Connection: close" not in received and b"HTTP/1.1 200" in received:
                break
        return received


@pytest.mark.parametrize(
    ("headers", "body", "status", "detail"),
    [
        ("Content-Length: -5", b"{}", b"400", b"bad Content-Length"),
        ("Content-Length: 1e3", b"{}", b"400", b"bad Content-Length"),
        ("Content-Length: 2\r\nTransfer-Encoding: chunked", b"{}", b"400", b"chunked transfer encoding"),
        ("Transfer-Encoding: chunked", b"2\r\n{}\r\n0\r\n\r\n", b"400", b"chunked transfer encoding"),
        ("Content-Length: 2\r\nContent-Length: 200", b"{}", b"400", b"more than one Content-Length"),
        ("Content-Length: 2\r\nContent-Length: 2", b"{}", b"400", b"more than one Content-Length"),
    ],
)
def test_malformed_framing_gets_a_4xx(echo_agent: str, headers: str, body: bytes, status: bytes, detail: bytes) -> None:
    answer = raw_exchange(echo_agent, f"POST /response HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n".encode() + body)
    assert answer.startswith(b"HTTP/1.1 " + status) and detail in answer


def test_a_superscript_digit_in_content_length_is_400(echo_agent: str) -> None:
    # b"\xb2" is "²" in Latin-1, as headers are read: str.isdigit() says yes, int() says no.
    answer = raw_exchange(echo_agent, b"POST /response HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 400") and b"bad Content-Length" in answer
    answer = raw_exchange(echo_agent, b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 404")


def test_json_nested_too_deeply_is_400(echo_agent: str) -> None:
    body = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    r = requests.post(echo_agent + "/response", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"] == "body is JSON nested too deeply"
    assert requests.post(echo_agent + "/response", json={"question": "still up"}).json() == "STILL UP"


def test_unserialisable_answer_is_500(monkeypatch: pytest.MonkeyPatch) -> None:
    class Odd(BaseAgent):
        def call_api(self, task_step_inputs: dict[str, Any]) -> Any:
            return {1, 2}

    with Odd().serve() as server:
        r = requests.post(server.url + "/response", json={})
        assert r.status_code == 500 and "not JSON serializable" in r.json()["detail"]


def test_idle_and_half_sent_connections_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    monkeypatch.setenv("BENCHFLOW_AGENT_IDLE_TIMEOUT", "0.5")
    with EchoAgent().serve() as server:
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=60) as idle:
            started = time.monotonic()
            assert idle.recv(100) == b""  # closed by the server, not by our timeout
            assert time.monotonic() - started < 30
        half = b'POST /response HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"question":'
        answer = raw_exchange(server.url, half, timeout=10)
        assert answer.startswith(b"HTTP/1.1 408") and b"not received within 0.5 s" in answer
        # Keep-alive still works for a client that keeps talking.
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        for word in ("one", "two"):
            conn.request(
                "POST", "/response", body=json.dumps({"question": word}), headers={"Content-Type": "application/json"}
            )
            assert json.loads(conn.getresponse().read()) == word.upper()


def test_bad_idle_timeout_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHFLOW_AGENT_IDLE_TIMEOUT", "forever")
    with pytest.raises(ValueError, match="BENCHFLOW_AGENT_IDLE_TIMEOUT='forever' must be a finite number"):
        EchoAgent().serve()


def test_info_describes_the_agent(echo_agent: str) -> None:
    assert requests.get(echo_agent + "/info").json() == {"name": "EchoAgent"}


def _trickle_headers(url: str, seconds: float) -> float | None:
    """Send a request's headers one byte every 0.2 s for up to ``seconds``; when the server closed the
    connection first, how long that took, else None."""
    import select
    import socket
    import time

    parts = urlsplit(url)
    header = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"s" * 10_000
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        for byte in header:
            if time.monotonic() - started > seconds:
                return None
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return time.monotonic() - started
            if select.select([sock], [], [], 0.2)[0] and sock.recv(100) == b"":
                return time.monotonic() - started
    return None


def test_a_request_trickled_a_byte_at_a_time_is_cut_off_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each byte comes well within the idle timeout (30 s); the whole request must arrive within
    # BENCHFLOW_AGENT_REQUEST_TIMEOUT, or the connection is closed and its thread freed.
    monkeypatch.setenv("BENCHFLOW_AGENT_REQUEST_TIMEOUT", "2")
    with EchoAgent().serve() as server:
        took = _trickle_headers(server.url, 30)
        assert took is not None and took >= 1.5, took
        assert requests.get(server.url + "/health", timeout=10).status_code == 200


def test_a_body_trickled_a_byte_at_a_time_gets_408_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    monkeypatch.setenv("BENCHFLOW_AGENT_REQUEST_TIMEOUT", "2")
    with EchoAgent().serve() as server:
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=0.2) as sock:
            sock.sendall(b"POST /response HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            answer, started = b"", time.monotonic()
            while time.monotonic() - started < 30 and not answer.endswith(b"}"):
                try:
                    sock.sendall(b" ")
                    answer += sock.recv(1000)
                except TimeoutError:
                    continue
                except OSError:
                    break
        assert answer.startswith(b"HTTP/1.1 408") and b"request not received whole within 2 s" in answer


def test_connections_beyond_the_limit_get_503_until_one_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    monkeypatch.setenv("BENCHFLOW_AGENT_MAX_CONNECTIONS", "3")
    with EchoAgent().serve() as server:
        parts = urlsplit(server.url)
        held = [socket.create_connection((parts.hostname, parts.port), timeout=10) for _ in range(3)]
        for sock in held:
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # half a request: each holds its thread
        try:
            refused = raw_exchange(server.url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10)
            assert refused.startswith(b"HTTP/1.1 503") and b"BENCHFLOW_AGENT_MAX_CONNECTIONS" in refused
        finally:
            held.pop().close()
        deadline = time.monotonic() + 20
        while requests.get(server.url + "/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "a freed connection was never taken up again"
            time.sleep(0.1)
        for sock in held:
            sock.close()


def test_bad_connection_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHFLOW_AGENT_MAX_CONNECTIONS", "0")
    with pytest.raises(ValueError, match="BENCHFLOW_AGENT_MAX_CONNECTIONS='0' must be an integer >= 1"):
        EchoAgent().serve()
