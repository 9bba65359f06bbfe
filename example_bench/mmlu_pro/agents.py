"""Agents for MMLU-Pro without a model: a deterministic baseline, and a replay of recorded answers."""

from __future__ import annotations

import json
import os
from typing import Any

from pytest_benchflow import BaseAgent

__all__ = ["LongestOptionAgent", "ReplayAgent"]

_LETTERS = "ABCDEFGHIJ"


class LongestOptionAgent(BaseAgent):
    """Baseline: answers with the longest option (ties: the first), a classic multiple-choice heuristic.

    Deterministic and instant; it reads only the label-free ``question`` the bench sends.
    """

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        options = task_step_inputs["question"]["options"]
        best = max(range(len(options)), key=lambda i: (len(options[i]), -i))
        return f"The longest option is the most specific one. The answer is ({_LETTERS[best]})."


class ReplayAgent(BaseAgent):
    """Answers each question with a recorded response, looked up by ``question_id``.

    ``REPLAY_FILE`` (environment) names one or more ``*_result.json`` files (``os.pathsep``
    separated) holding records with ``question_id`` and ``response``, like the MMLU-Pro
    authors' published results.
    """

    def __init__(self, replay_files: str | None = None) -> None:
        self.responses: dict[str, str] = {}
        for path in (replay_files or os.environ.get("REPLAY_FILE", "")).split(os.pathsep):
            if path:
                with open(path, encoding="utf-8") as f:
                    self.responses.update({str(r["question_id"]): r["response"] for r in json.load(f)})
        if not self.responses:
            raise ValueError("ReplayAgent: set REPLAY_FILE to recorded *_result.json file(s)")

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        question_id = str(task_step_inputs["question"]["question_id"])
        if question_id not in self.responses:
            raise KeyError(f"no recorded response for question {question_id}")
        return self.responses[question_id]
