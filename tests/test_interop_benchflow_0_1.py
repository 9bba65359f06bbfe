"""Both directions against the published benchflow==0.1.13: its client to our agent, our client to its agent."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from legacy import legacy_python

from conftest import EchoAgent
from pytest_benchflow import AgentHTTPError, BenchClient


@pytest.fixture(scope="session")
def legacy() -> Path:
    return legacy_python()


LEGACY_CLIENT = """
import json, sys
from benchflow import BenchClient

class Client(BenchClient):
    def prepare_input(self, raw):
        return {"question": raw["q"]}
    def parse_response(self, raw):
        return {"answer": raw}

out = Client(sys.argv[1]).get_response({"q": "from legacy"})
print(json.dumps(out))
"""

LEGACY_AGENT = """
import sys
from benchflow import BaseAgent

class Agent(BaseAgent):
    def call_api(self, task_step_inputs):
        if task_step_inputs.get("fail"):
            raise ValueError("legacy agent failed")
        return "legacy says " + task_step_inputs["question"]

Agent().run_with_endpoint("127.0.0.1", int(sys.argv[1]))
"""


def test_legacy_client_talks_to_our_agent(legacy: Path, tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(LEGACY_CLIENT)
    with EchoAgent().serve() as server:
        out = subprocess.run([str(legacy), str(script), server.url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"answer": "FROM LEGACY", "raw_response": "FROM LEGACY"}


@pytest.fixture
def legacy_agent(legacy: Path, tmp_path: Path) -> Iterator[str]:
    script = tmp_path / "agent.py"
    script.write_text(LEGACY_AGENT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(legacy), str(script), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "legacy agent did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Client(BenchClient):
    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        return raw_step_inputs

    def parse_response(self, raw_response: str) -> dict[str, Any]:
        return {"answer": raw_response}


def test_our_client_talks_to_legacy_agent(legacy_agent: str) -> None:
    client = Client(legacy_agent)
    assert client.get_response({"question": "hi"})["answer"] == "legacy says hi"
    out = client.get_responses([{"question": str(i)} for i in range(20)], max_concurrency=4)
    assert [o["answer"] for o in out] == [f"legacy says {i}" for i in range(20)]


def test_legacy_agent_failure_is_a_clear_http_error(legacy_agent: str) -> None:
    with pytest.raises(AgentHTTPError, match=r"answered HTTP 500 after 2 attempts: .*legacy agent failed"):
        Client(legacy_agent, retries=1, backoff=0.01).get_response({"question": "x", "fail": True})
