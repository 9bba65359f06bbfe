"""Rate limits never lose answers: the provider adapter retries, the client adapts and waits, both honour Retry-After."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from conftest import Reply, ScriptedServer, json_reply
from pytest_benchflow import AgentHTTPError, AgentOverloaded, BenchClient
from pytest_benchflow.agents import OpenAIChatAgent
from pytest_benchflow.client import _limit
from pytest_benchflow.client._limit import AdaptiveLimit


class QAClient(BenchClient):
    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        return {"question": raw_step_inputs}

    def parse_response(self, raw_response: str) -> dict[str, Any]:
        return {"answer": raw_response}


def completion(text: str) -> Reply:
    return json_reply({"choices": [{"message": {"role": "assistant", "content": text}}]})


def test_openai_agent_waits_out_rate_limits(scripted: ScriptedServer) -> None:
    scripted.script(Reply(status=429, headers={"Retry-After": "1"}), Reply(status=503), completion("(B)"))
    agent = OpenAIChatAgent(base_url=scripted.url, max_retry_seconds=30)
    started = time.monotonic()
    assert agent.call_api({"input_text": "q"}) == "(B)"
    assert len(scripted.requests) == 3 and time.monotonic() - started >= 1.0


def test_openai_agent_gives_up_with_429_and_retry_after(scripted: ScriptedServer) -> None:
    scripted.script(Reply(status=429, headers={"Retry-After": "7"}))
    agent = OpenAIChatAgent(base_url=scripted.url, max_retry_seconds=2)
    with pytest.raises(AgentOverloaded, match=r"answered HTTP 429; gave up after 1 attempts") as caught:
        agent.call_api({"input_text": "q"})
    assert (caught.value.status, caught.value.retry_after) == (429, 7)
    # Served: the benchmark gets 429 with Retry-After, never a bare 500.
    with agent.serve() as server:
        response = requests.post(server.url + "/response", json={"input_text": "q"})
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"


def test_openai_agent_answers_503_when_the_provider_stays_down(free_url: str) -> None:
    with OpenAIChatAgent(base_url=free_url, max_retry_seconds=0.3).serve() as server:
        response = requests.post(server.url + "/response", json={"input_text": "q"})
    assert response.status_code == 503 and "unreachable" in response.json()["detail"]
    assert int(response.headers["Retry-After"]) >= 1


def test_client_retries_429_beyond_its_retry_count(scripted: ScriptedServer) -> None:
    scripted.script(*[Reply(status=429, headers={"Retry-After": "0"})] * 6, json_reply("ok"))
    assert QAClient(scripted.url, retries=1, backoff=0.01).get_response("q")["answer"] == "ok"
    assert len(scripted.requests) == 7


def test_client_gives_up_on_429_after_its_time_budget(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCHFLOW_RATE_LIMIT_SECONDS", "0.5")
    scripted.script(Reply(status=429, headers={"Retry-After": "30"}))
    started = time.monotonic()
    with pytest.raises(AgentHTTPError, match="answered HTTP 429"):
        QAClient(scripted.url, retries=5).get_response("q")
    # The behaviour: a wait past the budget is not started (it would take 30 s).
    assert time.monotonic() - started < 15 and len(scripted.requests) == 1


def test_adaptive_limit_halves_and_grows_back() -> None:
    limit = AdaptiveLimit(8)
    limit.record(throttled=True)
    limit.record(throttled=True)
    assert limit.limit == 2
    for _ in range(10):
        limit.record(throttled=False)
    assert limit.limit == 8
    for _ in range(5):
        limit.record(throttled=True)
    assert limit.limit == 1


def _queued(limit: AdaptiveLimit, count: int) -> None:
    """Wait until ``count`` threads wait for one of ``limit``'s slots."""
    deadline = time.monotonic() + 10
    while len(limit._changed._waiters) < count:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the requests never queued"
        time.sleep(0.005)


@pytest.mark.parametrize("outcome", ["answered", "transport error"])
def test_a_stopped_request_woken_for_a_slot_hands_it_on(outcome: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A queued request whose task stopped takes no slot: the wake-up it used must reach the next in line,
    # which (outside any task with a time limit) waits without polling.
    monkeypatch.setattr(_limit, "_CANCEL_POLL", 60.0)  # the stopped one learns of its stop only by being woken
    limit = AdaptiveLimit(1)
    assert limit.acquire(None)  # a request in flight
    stop = threading.Event()
    got: dict[str, bool] = {}
    stopped = threading.Thread(target=lambda: got.setdefault("stopped", limit.acquire(stop)), daemon=True)
    stopped.start()
    _queued(limit, 1)
    waiting = threading.Thread(target=lambda: got.setdefault("waiting", limit.acquire(None)), daemon=True)
    waiting.start()
    _queued(limit, 2)
    stop.set()
    limit.release()  # the request in flight ends
    if outcome == "answered":
        limit.record(throttled=False)
    waiting.join(5)
    try:
        assert got == {"stopped": False, "waiting": True}
        assert limit.in_flight == 1
    finally:
        with limit._changed:  # never leave a thread behind
            limit.limit = 2
            limit._changed.notify_all()


class CappedAgent:
    """An agent that answers 429 whenever more than ``cap`` requests are in flight.

    With ``gather``, each request first waits (up to 10 s) until ``gather`` requests have been in flight at
    once, so a test of how many a client keeps in flight does not depend on how fast a loaded machine starts
    its threads.
    """

    def __init__(self, cap: int, delay: float = 0.05, gather: int = 0) -> None:
        self.cap, self.in_flight, self.rejected, self.served, self.peak = cap, 0, 0, 0, 0
        lock = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    outer.in_flight += 1
                    outer.peak = max(outer.peak, outer.in_flight)
                    over = outer.in_flight > outer.cap
                    outer.rejected += over
                    lock.notify_all()
                    lock.wait_for(lambda: outer.peak >= gather, timeout=10)
                try:
                    if over:
                        status, payload, headers = 429, b'"slow down"', {"Retry-After": "0"}
                    else:
                        time.sleep(delay)
                        status, payload, headers = 200, json.dumps(json.loads(body)["question"]).encode(), {}
                finally:
                    with lock:
                        outer.in_flight -= 1
                        outer.served += not over
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def capped() -> Iterator[CappedAgent]:
    agent = CappedAgent(cap=2)
    yield agent
    agent.server.shutdown()


def test_a_batch_adapts_to_the_agents_capacity_and_loses_nothing(capped: CappedAgent) -> None:
    questions = [f"q{i}" for i in range(60)]
    answers = QAClient(capped.url, retries=0, backoff=0.01).get_responses(questions, max_concurrency=8)
    assert [a["answer"] for a in answers] == questions
    # Without adapting, six of every eight requests would be turned away, round after round.
    assert capped.rejected < len(questions)


def test_a_wide_batch_keeps_all_its_requests_in_flight() -> None:
    agent = CappedAgent(cap=1000, delay=0.05, gather=24)
    try:
        questions = [f"q{i}" for i in range(48)]
        answers = QAClient(agent.url, max_concurrency=2).get_responses(questions, max_concurrency=24)
    finally:
        agent.server.shutdown()
    assert [a["answer"] for a in answers] == questions
    # The shared limit follows the batch's own max_concurrency (not the client's 2, nor the default 8).
    assert agent.peak == 24
