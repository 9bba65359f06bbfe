"""Agents for the benchmarks: serve one with `python benchmarks/agents.py KIND PORT [LATENCY]`."""

from __future__ import annotations

import sys
import time
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


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    agent = SlowAgent(float(sys.argv[3])) if kind == "slow" else InstantAgent()
    agent.run_with_endpoint("127.0.0.1", port)
