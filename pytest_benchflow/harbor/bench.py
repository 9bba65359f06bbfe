"""``HarborBench``: a directory of Harbor task directories as a benchmark (``--benchflow harbor:PATH``), and the
harness-side agents ``--agent oracle`` and ``--agent nop``."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from ..agent_server import BaseAgent
from ..bench import BaseBench, Entrance
from ..errors import ArgumentError
from ..sandbox import SandboxError
from ..schemas import BenchArgs, BenchmarkResult
from .config import find_tasks, load_task
from .trial import HARNESS_AGENTS, HarnessAgent, Trial, run_trial

__all__ = ["HARBOR_SCHEME", "HarborBench", "HarborFieldWarning", "NopAgent", "OracleAgent", "harbor_bench_class"]

#: ``--benchflow harbor:PATH`` names a directory of Harbor tasks.
HARBOR_SCHEME = "harbor:"
_RESULT = "harbor.json"


class HarborFieldWarning(UserWarning):
    """A task.toml sets fields this harness reads and ignores (once per task run)."""


class HarborBench(BaseBench):
    """The Harbor tasks at or below :attr:`root`: each task directory (one holding task.toml) is a task, its id
    the path relative to ``root``. Arguments: ``threshold`` (is_resolved = reward >= it, default 1) and
    ``pass_env`` (host variables a task.toml's ``${VAR}`` may read, comma-separated; none by default)."""

    description = "Harbor / Terminal-Bench 2.0 task directories"
    root: ClassVar[Path] = Path(".")
    #: ``oracle`` or ``nop`` when the session's ``--agent`` names a harness-side agent (set by the loader).
    harness_agent: HarnessAgent | None = None

    def get_args(self, task_id: str | None) -> BenchArgs:
        return BenchArgs({"optional": {"threshold": "1", "pass_env": ""}})

    @cached_property
    def task_dirs(self) -> dict[str, Path]:
        return find_tasks(self.root)

    def get_all_tasks(self, split: str) -> dict[str, Any]:
        self.threshold()  # a wrong threshold is one usage error, before any task
        if not self.root.is_dir():
            return {"task_ids": [], "error_message": f"{self.root} is not a directory"}
        ids = list(self.task_dirs)
        if not ids:
            return {"task_ids": [], "error_message": f"no task directory (with a task.toml) at or below {self.root}"}
        return {"task_ids": ids, "error_message": None}

    def threshold(self) -> float:
        raw = self.args.get("threshold", "1")
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not value == value or value in (float("inf"), float("-inf")):
            raise ArgumentError(f"threshold={raw!r}: expected a number (is_resolved = reward >= threshold)")
        return value

    def get_entrypoint(self) -> Entrance:
        return self.evaluate

    def evaluate(self, env: Mapping[str, str]) -> None:
        """Run one task (``TEST_START_ID``) in a sandbox of the task's environment."""
        task_id = env["TEST_START_ID"]
        task = load_task(self.task_dirs[task_id], task_id)
        if task.ignored:
            warnings.warn(
                HarborFieldWarning(f"{task_id}: task.toml fields not supported, ignored: {', '.join(task.ignored)}"),
                stacklevel=1,
            )
        sandboxes = getattr(env, "sandboxes", None)
        if sandboxes is None:
            raise SandboxError("Harbor tasks need sandboxes: run them with pytest --benchflow harbor:PATH")
        trial = Trial(
            task=task,
            log_dir=Path(env["BENCHFLOW_LOG_DIR"]),
            agent=env["INTELLIGENCE_URL"],
            harness_agent=self.harness_agent,
            threshold=float(env.get("threshold", "1")),
            pass_env=env.get("pass_env", ""),
            environ=os.environ,
        )
        outcome = run_trial(trial, sandboxes)
        result = {
            "rewards": outcome.rewards,
            "resolved": outcome.resolved,
            "agent": outcome.agent_stop,
            "verifier_exit_code": outcome.verifier_exit_code,
            "ignored": list(task.ignored),
        }
        Path(env["BENCHFLOW_RESULTS_DIR"], _RESULT).write_text(json.dumps(result), encoding="utf-8")

    def get_result(self, task_id: str) -> BenchmarkResult:
        data = json.loads(Path(str(self.results_dir), _RESULT).read_text(encoding="utf-8"))
        log = {"agent": data["agent"], "rewards": data["rewards"], "verifier_exit_code": data["verifier_exit_code"]}
        if data["ignored"]:
            log["ignored_fields"] = data["ignored"]
        return BenchmarkResult(is_resolved=data["resolved"], metrics=data["rewards"], log=log)


def harbor_bench_class(path: Path) -> type[HarborBench]:
    """A :class:`HarborBench` class whose tasks are those at or below ``path``."""
    return type("HarborBench", (HarborBench,), {"root": path, "__module__": __name__})


class _HarnessAgent(BaseAgent):
    """A harness-side agent: the Harbor bench plays it itself, so its server is only what the session needs
    (an agent URL, ``/info``). Asked anything, it answers nothing (a task other than Harbor's gets no answer)."""

    name: ClassVar[str] = ""

    def call_api(self, task_step_inputs: dict[str, Any]) -> str | dict[str, Any]:
        return ""

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "harness_side": True}


class OracleAgent(_HarnessAgent):
    """``--agent oracle``: each Harbor task's solution/solve.sh runs in its sandbox."""

    name = "oracle"


class NopAgent(_HarnessAgent):
    """``--agent nop``: nothing is done; a task it resolves is trivial."""

    name = "nop"


assert {OracleAgent.name, NopAgent.name} == set(HARNESS_AGENTS)
