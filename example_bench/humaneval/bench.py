"""``HumanEvalBench``: HumanEval's 164 problems as tasks, in the completion form or worked on by an agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_benchflow import BaseBench, BenchArgs, BenchmarkResult
from pytest_benchflow.bench import Entrance

from .data import load_problems
from .evaluate import DEFAULTS, MODES, RESULT_FILE, evaluate

__all__ = ["HumanEvalBench"]


class HumanEvalBench(BaseBench):
    """HumanEval (Chen et al. 2021): a problem is resolved when its hidden ``check()`` passes."""

    description = "HumanEval: 164 Python problems; MODE=completion (one answer) or MODE=agentic (bash in a sandbox)"
    summary_metrics = ("passed",)

    def get_args(self, task_id: str | None) -> BenchArgs:
        return BenchArgs({"optional": dict(DEFAULTS), "choices": {"MODE": list(MODES)}})

    def get_entrypoint(self) -> Entrance:
        return evaluate

    def get_all_tasks(self, split: str) -> dict[str, Any]:
        return {"task_ids": list(load_problems()), "error_message": None}

    def get_result(self, task_id: str) -> BenchmarkResult:
        record = json.loads((Path(str(self.results_dir)) / RESULT_FILE).read_text(encoding="utf-8"))
        log = {"result": record["result"]}
        if "completion" in record:
            log["completion"] = record["completion"][-2000:]
        if "agent" in record:
            log["agent"] = json.dumps(record["agent"])
        return BenchmarkResult(
            task_id=task_id,
            is_resolved=bool(record["passed"]),
            metrics={"passed": float(record["passed"])},
            log=log,
        )
