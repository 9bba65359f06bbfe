"""``check_harbor``: the checklist a task author runs before publishing: every task with the oracle (its
solution must pass) and with the nop agent (doing nothing must not pass)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import BenchflowError, one_line_reason
from ..sandbox import SandboxError, SandboxProvider, TaskSandboxes
from .config import find_tasks, load_task
from .trial import HarnessAgent, Trial, TrialOutcome, run_trial

__all__ = ["Finding", "check_harbor"]

Problem = Literal["broken", "trivial", "error"]


@dataclass(frozen=True)
class Finding:
    """One problem of one task: ``broken`` (the oracle does not pass), ``trivial`` (doing nothing passes),
    ``error`` (the task could not be run)."""

    task_id: str
    problem: Problem
    agent: HarnessAgent
    detail: str

    def line(self) -> str:
        return f"{self.task_id}: {self.problem} ({self.agent}): {self.detail}"


def check_harbor(
    path: Path,
    provider: SandboxProvider | None = None,
    *,
    log_dir: Path | None = None,
    threshold: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> list[Finding]:
    """Run every task at or below ``path`` with ``--agent oracle`` and ``--agent nop``; the problems found,
    in task order (an empty list: every task is solvable by its solution and not by doing nothing).

    ``provider`` opens the sandboxes (default: a Docker provider on ``DOCKER_HOST``, closed at the end); the
    tasks' logs go below ``log_dir`` (default: a temporary directory).
    """
    owned = provider is None
    if provider is None:
        from ..runners.docker_sandbox import DockerSandboxProvider

        provider = DockerSandboxProvider(f"harbor-check-{uuid.uuid4().hex[:8]}")
    findings: list[Finding] = []
    try:
        with tempfile.TemporaryDirectory(prefix="harbor-check-") as scratch:
            logs = log_dir or Path(scratch)
            for task_id, task_dir in find_tasks(path).items():
                if progress is not None:
                    progress(task_id)
                findings += _check_task(task_id, task_dir, provider, logs, threshold)
    finally:
        if owned:
            provider.close_all()
            provider.sweep()
    return findings


def _check_task(task_id: str, task_dir: Path, provider: SandboxProvider, logs: Path, threshold: float) -> list[Finding]:
    found: list[Finding] = []
    for agent in ("oracle", "nop"):
        outcome = _attempt(task_id, task_dir, provider, logs, threshold, agent)
        if isinstance(outcome, str):
            found.append(Finding(task_id, "error", agent, outcome))
            if agent == "oracle":
                found[-1] = Finding(task_id, "broken", agent, outcome)
        elif agent == "oracle" and not outcome.resolved:
            found.append(Finding(task_id, "broken", agent, f"the solution does not pass: rewards {outcome.rewards}"))
        elif agent == "nop" and outcome.resolved:
            found.append(Finding(task_id, "trivial", agent, f"doing nothing passes: rewards {outcome.rewards}"))
    return found


def _attempt(
    task_id: str, task_dir: Path, provider: SandboxProvider, logs: Path, threshold: float, agent: HarnessAgent
) -> TrialOutcome | str:
    """The task's outcome with ``agent``, or why it could not be run."""
    sandboxes = TaskSandboxes(provider, {}, f"check-{uuid.uuid4().hex[:12]}")
    try:
        task = load_task(task_dir, task_id)
        log_dir = logs / agent / task_id.replace("/", "%2F")
        trial = Trial(task, log_dir, agent="", harness_agent=agent, threshold=threshold)
        return run_trial(trial, sandboxes)
    except (BenchflowError, SandboxError) as e:
        return one_line_reason(e)
    finally:
        sandboxes.close()
