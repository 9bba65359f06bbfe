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
from pytest_benchflow.agent import MAX_BODY_BYTES


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
