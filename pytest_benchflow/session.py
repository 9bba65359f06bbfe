"""The state of one benchflow session: benches, agent, run directory, results; shared by the hooks."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .bench import BaseBench, list_task_ids
from .environment import ProgressCallback
from .errors import ArgumentError, BenchflowError, TaskError
from .items import BenchItem, item_name, task_dir_name
from .redaction import public_url, redact, redact_data, redact_files
from .runner import LocalRunner, Runner, TaskSpec, collect_result, prepare_task
from .schemas import BenchArgs, ResolvedArgs

__all__ = ["RUN_KEY", "BenchContext", "BenchflowRun", "new_run_id"]


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


@dataclass
class BenchContext:
    """One benchmark of the session: its instance and the user's argument values for it."""

    name: str
    bench: BaseBench
    values: dict[str, str]
    runner_name: str
    runner: Runner | None = None
    _last: tuple[BenchArgs, ResolvedArgs] | None = None

    def resolve(self, task_id: str | None) -> ResolvedArgs:
        try:
            spec = self.bench.get_args(task_id)
            # Most benches declare the same arguments for every task: resolve them once.
            cached = self._last
            if cached is not None and cached[0] == spec:
                return cached[1]
            resolved = spec.resolve(self.values, allow_unknown=True)
            self._last = (spec, resolved)
            return resolved
        except ArgumentError as e:
            where = f"task {task_id!r}" if task_id is not None else "session"
            raise ArgumentError(
                f"{self.name} ({where}): {e}; pass --benchflow-arg NAME=VALUE or set the environment variable"
            ) from None


@dataclass
class BenchflowRun:
    """Everything the hooks share, kept in ``config.stash[RUN_KEY]``."""

    config: pytest.Config
    run_id: str
    run_dir: Path
    split: str
    timeout: float | None
    limit: int | None
    benches: dict[str, BenchContext] = field(default_factory=dict)
    agent_url: str = ""
    progress: Callable[[str, str], ProgressCallback | None] = lambda bench, task: None
    #: Every secret value seen: session and task arguments, credentials of the agent URL.
    secrets: set[str] = field(default_factory=set)
    _runner_lock: threading.Lock = field(default_factory=threading.Lock)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def public_agent_url(self) -> str:
        return public_url(self.agent_url)

    def runner_for(self, ctx: BenchContext) -> Runner:
        with self._runner_lock:
            if ctx.runner is None:
                if ctx.runner_name == "docker":
                    from .docker_runner import DockerRunner

                    ctx.runner = DockerRunner.from_config(self.config, self.run_id)
                else:
                    ctx.runner = LocalRunner()
            return ctx.runner

    def run_item(self, item: BenchItem) -> None:
        """Run ``item``'s task; set its result, duration and JUnit properties."""
        ctx = self.benches[item.bench_name]
        started = time.perf_counter()
        try:
            args = ctx.resolve(item.task_id)
            self.secrets.update(args.secret_values())
            spec = TaskSpec(
                bench_name=ctx.name,
                task_id=item.task_id,
                agent_url=self.agent_url,
                args=args,
                results_dir=self.run_dir / ctx.name / "results" / item.dir_name,
                log_dir=self.run_dir / ctx.name / "logs" / item.dir_name,
                split=self.split,
                timeout=self.timeout,
                progress=self.progress(ctx.name, item.task_id),
                labels={"benchflow.run": self.run_id, "benchflow.bench": ctx.name, "benchflow.task": item.task_id},
                secret_values=sorted(self.secrets),
            )
            env = prepare_task(spec)
            self.config.hook.pytest_benchflow_task_environment(bench=ctx.bench, task_id=item.task_id, env=env)
            try:
                self.runner_for(ctx).execute(ctx.bench, spec, env)
            finally:
                # Logs are files people share: no secret stays in them, whatever the bench wrote.
                redact_files(spec.log_dir, self.secrets)
            result = collect_result(ctx.bench, spec)
            self.config.hook.pytest_benchflow_task_result(bench=ctx.bench, task_id=item.task_id, result=result)
        except ArgumentError as e:
            raise TaskError(str(e)) from None
        finally:
            item.duration = time.perf_counter() - started
            item.user_properties.append(("duration", f"{item.duration:.3f}"))
        item.result = result
        item.user_properties.append(("is_resolved", str(result.is_resolved).lower()))
        for name, value in result.metrics.items():
            item.user_properties.append((f"metric.{name}", self.redact(str(value))))

    def record(self, item: BenchItem, outcome: str, reason: str | None, details: str | None) -> dict[str, Any]:
        """The JSON-lines record of a finished task (secrets redacted)."""
        result = item.result
        record: dict[str, Any] = {
            "bench": item.bench_name,
            "task_id": item.task_id,
            "nodeid": item.nodeid,
            "outcome": outcome,
            "is_resolved": result.is_resolved if result else None,
            "metrics": redact_data(result.metrics, self.secrets) if result else {},
            "duration": round(item.duration or 0.0, 6),
            "reason": self.redact(reason) if reason else None,
            "results_dir": f"{item.bench_name}/results/{item.dir_name}",
            "log_dir": f"{item.bench_name}/logs/{item.dir_name}",
            "finished_at": time.time(),
        }
        if details:
            record["details"] = self.redact(details[-_DETAILS_LIMIT:])
        if result and result.other:
            record["other"] = redact_data(result.other, self.secrets)
        return record

    def crash_record(self, nodeid: str, reason: str) -> dict[str, Any]:
        """The error record of a task whose process died while running it (an xdist worker killed)."""
        bench, _, name = nodeid.removeprefix("benchflow:").partition("::")
        ctx = self.benches.get(bench)
        task_id = name
        if ctx is not None and item_name(name) != name:
            # A hashed node name: the task listing (read only now, on this rare path) says which id it was.
            task_id = next((t for t in list_task_ids(ctx.bench, self.split) if item_name(t) == name), name)
        dir_name = task_dir_name(task_id)
        return {
            "bench": bench,
            "task_id": task_id,
            "nodeid": nodeid,
            "outcome": "error",
            "is_resolved": None,
            "metrics": {},
            "duration": 0.0,
            "reason": self.redact(first_line_of(reason)),
            "results_dir": f"{bench}/results/{dir_name}",
            "log_dir": f"{bench}/logs/{dir_name}",
            "finished_at": time.time(),
        }


RUN_KEY = pytest.StashKey[BenchflowRun]()
# The end of a failure's report kept in results.jsonl: enough to see why, small enough for 12k tasks.
_DETAILS_LIMIT = 4000


def first_line_of(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def first_line(error: BaseException | None) -> str | None:
    if error is None:
        return None
    text = str(error) if isinstance(error, BenchflowError) else f"{type(error).__name__}: {error}"
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
