"""BenchClient against real HTTP servers on loopback: success, every failure, retries and batches."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import pytest

from conftest import EchoAgent, RawServer, Reply, ScriptedServer, json_reply
from pytest_benchflow import (
    AgentBadResponse,
    AgentHTTPError,
    AgentTimeout,
    AgentUnreachable,
    BenchClient,
)


class QAClient(BenchClient):
    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        return {"question": raw_step_inputs["q"], **raw_step_inputs.get("extra", {})}

    def parse_response(self, raw_response: str) -> dict[str, Any]:
        return {"answer": raw_response}


def fast(url: str, **kw: Any) -> QAClient:
    defaults: dict[str, Any] = {"retries": 2, "backoff": 0.01, "read_timeout": 2, "connect_timeout": 1}
    return QAClient(url, **{**defaults, **kw})


def test_round_trip_carries_raw_response(echo_agent: str) -> None:
    assert QAClient(echo_agent).get_response({"q": "hi"}) == {"answer": "HI", "raw_response": "HI"}


def test_path_prefix_is_kept(scripted: ScriptedServer) -> None:
    QAClient(scripted.url + "/agent/v1/").get_response({"q": "x"})
    assert scripted.requests[0][0] == "/agent/v1/response"


def test_body_is_prepare_input_as_json(scripted: ScriptedServer) -> None:
    QAClient(scripted.url).get_response({"q": "x", "extra": {"k": [1]}})
    assert json.loads(scripted.requests[0][1]) == {"question": "x", "k": [1]}


def test_refused_connection(free_url: str) -> None:
    with pytest.raises(
        AgentUnreachable, match=rf"cannot connect to the agent at {free_url}/response \(3 attempts\).*is it running\?"
    ):
        fast(free_url).get_response({"q": "x"})


def test_timeout_is_retried_then_reported(scripted: ScriptedServer) -> None:
    scripted.script(Reply(delay=1.0))
    with pytest.raises(AgentTimeout, match=r"did not answer within 0.2 s \(2 attempts\)"):
        fast(scripted.url, read_timeout=0.2, retries=1).get_response({"q": "x"})
    assert len(scripted.requests) == 2


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_retried_then_error_names_status_and_body(scripted: ScriptedServer, status: int) -> None:
    scripted.script(Reply(status=status, body=b'{"detail": "model overloaded"}'))
    with pytest.raises(AgentHTTPError, match=rf"answered HTTP {status} after 3 attempts: .*model overloaded") as info:
        fast(scripted.url).get_response({"q": "x"})
    assert info.value.status == status and len(scripted.requests) == 3


def test_5xx_then_success_recovers(scripted: ScriptedServer) -> None:
    scripted.script(Reply(status=503), Reply(status=502), json_reply("fine"))
    assert fast(scripted.url).get_response({"q": "x"})["answer"] == "fine"


def test_429_honours_retry_after(scripted: ScriptedServer) -> None:
    scripted.script(Reply(status=429, headers={"Retry-After": "0.3"}), json_reply("later"))
    assert fast(scripted.url, backoff=0.001).get_response({"q": "x"})["answer"] == "later"
    (_, _, first), (_, _, second) = scripted.requests
    assert second - first >= 0.3


@pytest.mark.parametrize("retry_after", ["0", "-5", "Wed, 21 Oct 2015 07:28:00 GMT"], ids=["zero", "negative", "past"])
def test_a_retry_after_of_no_time_still_backs_off(scripted: ScriptedServer, retry_after: str) -> None:
    # The client's own backoff is the floor: "retry at once" from an overloaded agent is not obeyed.
    scripted.script(*[Reply(status=429, headers={"Retry-After": retry_after})] * 3, json_reply("later"))
    assert fast(scripted.url, backoff=0.4).get_response({"q": "x"})["answer"] == "later"
    times = [at for _, _, at in scripted.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3 and all(gap >= 0.2 for gap in gaps), gaps  # 0.4 s doubled per retry, jitter to half


def test_openai_agent_backs_off_on_a_retry_after_of_no_time(scripted: ScriptedServer) -> None:
    from pytest_benchflow.agents import OpenAIChatAgent

    done = json.dumps({"choices": [{"message": {"content": "ok"}}]}).encode()
    scripted.script(*[Reply(status=429, headers={"Retry-After": "0"})] * 3, Reply(body=done))
    assert OpenAIChatAgent(base_url=scripted.url).call_api({"input_text": "x"}) == "ok"
    times = [at for _, _, at in scripted.requests]
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(times)), times  # its base backoff is 0.5 s


def test_backoff_grows_exponentially_with_jitter() -> None:
    client = QAClient("http://127.0.0.1:1", backoff=1.0)
    for retry in range(5):
        delays = [client.settings.delay(retry, None) for _ in range(50)]
        assert all(min(30.0, 2**retry) / 2 <= d <= min(30.0, 2**retry) for d in delays)
        assert len(set(delays)) > 1


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_4xx_not_retried(scripted: ScriptedServer, status: int) -> None:
    scripted.script(Reply(status=status, body=b"bad request body"))
    with pytest.raises(AgentHTTPError, match=rf"answered HTTP {status}: bad request body"):
        fast(scripted.url).get_response({"q": "x"})
    assert len(scripted.requests) == 1


def test_non_json_body(scripted: ScriptedServer) -> None:
    scripted.script(Reply(body=b"<html>gateway</html>"))
    with pytest.raises(AgentBadResponse, match=r"body that is not JSON: <html>gateway</html>"):
        fast(scripted.url).get_response({"q": "x"})


def test_empty_body(scripted: ScriptedServer) -> None:
    scripted.script(Reply(body=b""))
    with pytest.raises(AgentBadResponse, match=r"answered HTTP 200 with an empty body"):
        fast(scripted.url).get_response({"q": "x"})


def test_object_where_string_expected(scripted: ScriptedServer) -> None:
    scripted.script(json_reply({"action": "click"}))
    with pytest.raises(AgentBadResponse, match=r"a JSON dict where a string was expected: \{\"action\": \"click\"\}"):
        fast(scripted.url).get_response({"q": "x"})


def test_any_json_accepted_when_asked(scripted: ScriptedServer) -> None:
    class AnyClient(QAClient):
        expects_text = False

    scripted.script(json_reply({"action": "click"}))
    assert AnyClient(scripted.url).get_response({"q": "x"})["answer"] == {"action": "click"}


def test_parse_response_raising_is_named(echo_agent: str) -> None:
    class Broken(QAClient):
        def parse_response(self, raw_response: str) -> dict[str, Any]:
            raise ValueError("no action found")

    with pytest.raises(
        AgentBadResponse, match=r"Broken.parse_response failed on the answer of .* \(ValueError: no action found\): HI"
    ):
        Broken(echo_agent).get_response({"q": "hi"})


def test_prepare_input_must_return_a_dict(echo_agent: str) -> None:
    class Listy(QAClient):
        def prepare_input(self, raw_step_inputs: dict[str, Any]) -> Any:
            return ["q"]

    with pytest.raises(TypeError, match=r"Listy.prepare_input returned list, expected a dict"):
        Listy(echo_agent).get_response({"q": "x"})


def test_parse_input_spelling_is_accepted(echo_agent: str) -> None:
    class DocsSpelling(BenchClient):
        def parse_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
            return {"question": raw_step_inputs["q"]}

        def parse_response(self, raw_response: str) -> dict[str, Any]:
            return {"a": raw_response}

    assert DocsSpelling(echo_agent).get_response({"q": "ok"})["a"] == "OK"


def test_subclass_without_init_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHFLOW_READ_TIMEOUT", "7")
    monkeypatch.setenv("BENCHFLOW_RETRIES", "0")
    client = QAClient("http://h/")
    assert (client.settings.read_timeout, client.settings.retries, client.intelligence_url) == (7.0, 0, "http://h")


def test_bad_environment_override_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHFLOW_READ_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="BENCHFLOW_READ_TIMEOUT='soon' must be a finite number"):
        QAClient("http://h")


def test_keep_alive_reuses_one_connection(scripted: ScriptedServer) -> None:
    client = QAClient(scripted.url)
    for _ in range(5):
        client.get_response({"q": "x"})
    assert len(scripted.client_ports) == 5 and len(set(scripted.client_ports)) == 1


class TestBatch:
    def test_results_in_input_order_with_bounded_concurrency(self) -> None:
        in_flight = peak = 0
        lock = threading.Lock()

        class Slow(EchoAgent):
            def call_api(self, task_step_inputs: dict[str, Any]) -> str:
                nonlocal in_flight, peak
                with lock:
                    in_flight += 1
                    peak = max(peak, in_flight)
                time.sleep(0.02 * (int(task_step_inputs["question"]) % 3))
                with lock:
                    in_flight -= 1
                return task_step_inputs["question"]

        with Slow().serve() as server:
            done: list[int] = []
            out = QAClient(server.url).get_responses(
                [{"q": str(i)} for i in range(40)], max_concurrency=4, on_done=lambda d, t: done.append(d)
            )
        assert [r["answer"] for r in out] == [str(i) for i in range(40)]
        assert 2 <= peak <= 4
        assert sorted(done) == list(range(1, 41))

    def test_first_failure_raised_and_rest_not_started(self, echo_agent: str) -> None:
        inputs = [{"q": "a"}, {"q": "b", "extra": {"fail": True}}] + [
            {"q": str(i), "extra": {"sleep": 0.05}} for i in range(50)
        ]
        with pytest.raises(AgentHTTPError, match=r"HTTP 500.*agent exploded"):
            fast(echo_agent, retries=0).get_responses(inputs, max_concurrency=2)

    def test_return_exceptions_keeps_going(self, echo_agent: str) -> None:
        out = fast(echo_agent, retries=0).get_responses(
            [{"q": "a"}, {"q": "b", "extra": {"fail": True}}, {"q": "c"}], return_exceptions=True
        )
        assert out[0]["answer"] == "A" and isinstance(out[1], AgentHTTPError) and out[2]["answer"] == "C"

    def test_shared_client_is_thread_safe(self, echo_agent: str) -> None:
        client = QAClient(echo_agent)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(20):
                    assert client.get_response({"q": f"t{n}-{i}"})["answer"] == f"T{n}-{i}"
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"partial',
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"part',
        b"",
    ],
)
def test_connection_closed_mid_answer_says_so(answer: bytes) -> None:
    server = RawServer(answer)
    with pytest.raises(AgentUnreachable) as caught:
        fast(server.url, retries=1).get_response({"q": "x"})
    message = str(caught.value)
    assert "closed the connection before its answer was complete (2 attempts)" in message
    assert "is it running" not in message
    assert len(server.connections) == 2
    server.close()


def test_body_over_the_cap_is_refused(scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHFLOW_MAX_RESPONSE_BYTES", "1000")
    scripted.script(json_reply("x" * 5000))
    with pytest.raises(AgentBadResponse, match=r"answered with more than 1000 bytes \(BENCHFLOW_MAX_RESPONSE_BYTES\)"):
        fast(scripted.url).get_response({"q": "x"})
    # Without a Content-Length the body is counted as it arrives.
    chunk = b'"' + b"y" * 4000 + b'"'
    server = RawServer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + chunk)
    with pytest.raises(AgentBadResponse, match="more than 1000 bytes"):
        fast(server.url).get_response({"q": "x"})
    server.close()


def test_redirects_are_not_followed(scripted: ScriptedServer, echo_agent: str) -> None:
    scripted.script(Reply(status=307, headers={"Location": echo_agent + "/response"}, body=b""))
    with pytest.raises(AgentHTTPError, match="answered HTTP 307"):
        fast(scripted.url).get_response({"q": "x"})


def test_cancelled_scope_sends_nothing(echo_agent: str) -> None:
    from pytest_benchflow import TaskCancelled
    from pytest_benchflow.client._cancel import cancel_scope

    stop = threading.Event()
    stop.set()
    client = fast(echo_agent)
    with pytest.raises(TaskCancelled, match="not sent: the task was stopped at its time limit"):
        cancel_scope(stop).run(client.get_responses, [{"q": "a"}, {"q": "b"}], max_concurrency=2)


def test_requests_go_through_the_proxy_the_environment_names(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scripted server plays an HTTP forward proxy: it receives the agent's absolute URL.
    monkeypatch.setenv("HTTP_PROXY", scripted.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    scripted.script(json_reply("via proxy"))
    agent = "http://agent-behind-proxy.invalid:8123"
    assert fast(agent).get_response({"q": "hi"})["raw_response"] == "via proxy"
    assert scripted.requests[0][0] == f"{agent}/response"


def test_credentials_in_the_agent_url_are_sent_as_basic_auth(scripted: ScriptedServer) -> None:
    scripted.script(json_reply("ok"))
    url = scripted.url.replace("http://", "http://alice:s3cret@")
    fast(url).get_response({"q": "hi"})
    assert scripted.headers[0]["Authorization"] == "Basic YWxpY2U6czNjcmV0"
    assert scripted.headers[0]["Content-Type"] == "application/json"
    assert int(scripted.headers[0]["Content-Length"]) == len(scripted.requests[0][1])


def test_requests_default_headers_are_sent_as_before(scripted: ScriptedServer) -> None:
    # Session.post sent requests' defaults; an agent or its gateway may compress for, or admit by, them.
    scripted.script(json_reply("ok"))
    fast(scripted.url).get_response({"q": "hi"})
    sent = {k.lower(): v for k, v in scripted.headers[0].items()}
    assert sent["user-agent"].startswith("python-requests/")
    assert "gzip" in sent["accept-encoding"]
    assert sent["accept"] == "*/*"
    assert sent["content-type"] == "application/json"


def test_a_cookie_the_agent_sets_is_sent_back_as_before(scripted: ScriptedServer) -> None:
    # Session.post kept the answer's cookies for the next request (a load balancer's sticky session).
    sticky = json_reply("ok", headers={"Set-Cookie": "AWSALB=node-7; Path=/"})
    scripted.script(sticky, json_reply("ok"))
    client = fast(scripted.url)
    client.get_response({"q": "a"})
    client.get_response({"q": "b"})
    assert "Cookie" not in scripted.headers[0]
    assert scripted.headers[1]["Cookie"] == "AWSALB=node-7"
