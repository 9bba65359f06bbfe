"""The state of one benchflow session, and executing a task into its typed record."""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..bench import BaseBench, DataFingerprint, list_task_ids, read_fingerprint
from ..cache import ResponseCache
from ..environment import ProgressCallback
from ..errors import (
    ArgumentError,
    BenchflowError,
    BenchLoadError,
    ErrorKind,
    TaskError,
    TaskInterrupted,
    error_kind,
    first_line,
    one_line_reason,
)
from ..redaction import public_url, redact, redact_data, redact_files
from ..results.records import BenchInfo, Outcome, SampleRecord, TaskRecord
from ..runners import Runner, TaskSpec, collect_result, prepare_task, task_usage
from ..sandbox import SandboxProvider
from ..schemas import BenchArgs, ResolvedArgs
from .concurrency import TaskPool
from .items import (
    NODE_PREFIX,
    BenchItem,
    TaskBroken,
    TaskUnresolved,
    failure_report,
    item_name,
    run_names,
    split_run,
)
from .progress import ProgressDisplay
from .reruns import with_reruns
from .settings import SessionSettings
from .taskrun import TaskRun

__all__ = [
    "INTERRUPTED",
    "RUN_KEY",
    "BenchContext",
    "BenchflowRun",
    "attach_record",
    "new_run_id",
    "packed_record",
    "take_record",
    "unpacked_record",
]

# The end of a failure's report kept in results.jsonl: enough to see why, small enough for 12k tasks.
_DETAILS_LIMIT = 4000
# Where a task's record rides from the process that ran it to the one that writes (plain JSON, as xdist
# serialises every report attribute).
_RECORD_ATTRIBUTE = "benchflow_record"
_SAMPLES_ATTRIBUTE = "benchflow_samples"
#: The reason of a task started ahead and cancelled when the session stopped (Ctrl-C, SIGTERM, -x, --maxfail).
INTERRUPTED = "interrupted: the session stopped while the task ran"


_SECRETS_LOCK = threading.Lock()


def _same(a: Any, b: Any) -> bool:
    return a is b or a == b


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _implementers(config: pytest.Config) -> str:
    """The plugins that implement ``pytest_benchflow_record``, as pytest names them."""
    manager = config.pluginmanager
    implementations = manager.hook.pytest_benchflow_record.get_hookimpls()
    return ", ".join(manager.get_name(impl.plugin) or repr(impl.plugin) for impl in implementations)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def packed_record(record: TaskRecord, samples: list[SampleRecord]) -> dict[str, Any]:
    """``record`` and its samples as plain JSON, to travel from the process that ran the task to the one that writes."""
    packed: dict[str, Any] = {_RECORD_ATTRIBUTE: record.to_json()}
    if samples:
        # Compact: the record names the bench, task and epoch.
        packed[_SAMPLES_ATTRIBUTE] = [[s.sample_id, s.score, s.metadata] for s in samples]
    return packed


def unpacked_record(packed: dict[str, Any]) -> tuple[TaskRecord, list[SampleRecord]] | None:
    """What :func:`packed_record` packed (None when ``packed`` holds no record), removed from ``packed``."""
    data = packed.pop(_RECORD_ATTRIBUTE, None)
    if data is None:
        return None
    # Written by packed_record in one of this session's processes: no need to validate it again.
    record = TaskRecord.from_written(data)
    samples = [
        SampleRecord(record.bench, record.task_id, sample_id, score, record.epoch, metadata or None, record.agent)
        for sample_id, score, metadata in packed.pop(_SAMPLES_ATTRIBUTE, None) or []
    ]
    return record, samples


def attach_record(report: pytest.TestReport, record: TaskRecord, samples: list[SampleRecord]) -> None:
    report.__dict__.update(packed_record(record, samples))


def take_record(report: pytest.TestReport) -> tuple[TaskRecord, list[SampleRecord]] | None:
    """The record and samples attached to ``report``, removed from it (pytest keeps every report until the end)."""
    return unpacked_record(report.__dict__)


@dataclass
class BenchContext:
    """One benchmark of the session: its instance, the user's argument values, and its runner."""

    name: str
    bench: BaseBench
    values: dict[str, str]
    runner_name: str
    runner: Runner
    _last: tuple[BenchArgs, ResolvedArgs] | None = None
    #: What its data is (``data_fingerprint``), known in the controller once :meth:`fingerprint_data` ran.
    fingerprint: DataFingerprint | None = None
    #: Why its data could not be identified (``data_fingerprint`` raised or returned nonsense): every task errors
    #: with this line. Set in the controller, and passed on to xdist workers.
    fingerprint_problem: str | None = None
    _fingerprinted: bool = False

    def fingerprint_data(self, split: str, redact: Callable[[str], str]) -> DataFingerprint | None:
        """The bench's data fingerprint, computed once per session (hashing a data set may take a while)."""
        if not self._fingerprinted:
            self._fingerprinted = True
            try:
                found = read_fingerprint(self.bench, self.name, split)
            except BenchLoadError as e:
                self.fingerprint_problem = redact(str(e))
            else:
                self.fingerprint = found and DataFingerprint(redact(found.digest), redact(found.label))
        return self.fingerprint

    def declared(self, task_id: str | None) -> BenchArgs:
        """What ``get_args(task_id)`` declares; an error naming the bench when it raises or returns something else."""
        call = f"{type(self.bench).__name__}.get_args({task_id!r})"
        try:
            spec = self.bench.get_args(task_id)
        except ArgumentError as e:  # BenchArgs("args.yaml") with the file missing, say
            raise ArgumentError(f"{self.name}: {call}: {e}") from None
        except BenchflowError:
            raise
        except Exception as e:
            raise BenchLoadError(f"{self.name}: {call} raised {type(e).__name__}: {e}") from e
        if not isinstance(spec, BenchArgs):
            raise BenchLoadError(
                f"{self.name}: {call} returned {type(spec).__name__}; it must return a BenchArgs "
                "(BenchArgs(None) when the bench takes no arguments)"
            )
        return spec

    def resolve(self, task_id: str | None) -> ResolvedArgs:
        spec = self.declared(task_id)
        try:
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

    def breakdown(self, tasks: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
        """The bench's ``summarize`` rows and, when it raised or returned something else, a note saying so
        (the summary is written without the rows: the run's results are never lost to it)."""
        call = f"{type(self.bench).__name__}.summarize"
        try:
            rows = self.bench.summarize(tasks)
        except Exception as e:
            return None, f"{self.name}: {call} raised {type(e).__name__}: {e}; the summary has no breakdown"
        if rows is not None and not (isinstance(rows, Mapping) and all(isinstance(r, Mapping) for r in rows.values())):
            return None, (
                f"{self.name}: {call} returned {type(rows).__name__}; it must return a dict of rows "
                "(each a dict of named figures) or None"
            )
        return rows, None

    def info(self) -> BenchInfo:
        bench = type(self.bench)
        metrics = bench.summary_metrics
        return BenchInfo(
            bench_class=f"{bench.__module__}:{bench.__qualname__}",
            runner=self.runner_name,
            args=self.bench.args.public(),
            summary_metrics=None if metrics is None else list(metrics),
            data_fingerprint=self.fingerprint._asdict() if self.fingerprint else None,
        )


@dataclass
class BenchflowRun:
    """Everything the hooks share, kept in ``config.stash[RUN_KEY]``."""

    config: pytest.Config
    #: The session's options, read once (also in ``config.stash[SETTINGS_KEY]``).
    settings: SessionSettings
    run_id: str
    run_dir: Path
    benches: dict[str, BenchContext] = field(default_factory=dict)
    agent_url: str = ""
    progress: Callable[[str, str], ProgressCallback | None] = lambda bench, task: None
    #: Every secret value seen: session and task arguments, credentials of the agent URL.
    secrets: set[str] = field(default_factory=set)
    #: Resuming: each bench's (task, epoch, agent name or "") runs that already have a final record (passed or failed).
    finished: dict[str, set[tuple[str, int, str]]] = field(default_factory=dict)
    #: With several agents: each one's name and URL, in the order given (empty with one agent: ``agent_url``).
    agents: dict[str, str] = field(default_factory=dict)
    #: With several agents and ``--benchflow-cache``: each one's response cache (its identity in the keys).
    agent_caches: dict[str, ResponseCache] = field(default_factory=dict)
    #: The response cache of in-process tasks (--benchflow-cache), or None.
    cache: ResponseCache | None = None
    #: Resuming, in the controller: the records and samples already in the run.
    resumed: list[TaskRecord] = field(default_factory=list)
    resumed_samples: list[SampleRecord] = field(default_factory=list)
    #: Resuming, in the controller: the agent of the run (its summary's ``agent``; empty when it has none).
    resumed_agent: dict[str, Any] | None = None
    #: Resuming a run of several agents, in the controller: its summary's ``agents`` (name → as described).
    resumed_agents: dict[str, Any] | None = None
    #: Node ids of tasks whose xdist worker died while running them (controller; xdist's pytest_handlecrashitem).
    crashed: set[str] = field(default_factory=set)
    #: Each bench's (task, epoch) runs to collect, planned once in the controller at session start.
    plan: dict[str, list[tuple[str, int]]] | None = None
    #: Tasks run at once by this process (``--benchflow-concurrency``, "auto" resolved by the controller).
    concurrency: int = 1
    #: Processes that run this process's in-process tasks (``--benchflow-task-processes``, resolved at start).
    task_processes: int = 1
    #: The threads running tasks ahead of pytest while the items run (None: each item runs its own task).
    pool: TaskPool | None = None
    #: The live progress display, when the session shows one.
    display: ProgressDisplay | None = None
    #: Where in-process tasks open sandboxes (``--benchflow-sandbox``).
    sandbox_provider: SandboxProvider | None = None

    def pool_changed(self, status: str) -> None:
        """A task of the pool started or finished: the live progress line says how many run, are done, wait."""
        if self.display is not None:
            self.display.pool_status(status)

    def add_secrets(self, given: list[str]) -> None:
        """Mask ``given`` too from now on (a task's secret arguments, found when it resolves them)."""
        values = set(given)
        # Tasks run in threads (--benchflow-concurrency) while others iterate the set: it changes under a lock,
        # and only when a task brings a secret not seen yet (rare: most tasks share the session's arguments).
        if not values <= self.secrets:
            with _SECRETS_LOCK:
                self.secrets.update(values)

    # The settings the task path reads (run_item, crash_record), under the names it has always used.
    @property
    def split(self) -> str:
        return self.settings.split

    @property
    def timeout(self) -> float | None:
        return self.settings.timeout

    @property
    def epochs(self) -> int:
        return self.settings.epochs

    @property
    def transcripts(self) -> bool:
        return self.settings.transcripts

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def redact_data(self, value: Any) -> Any:
        # Without secrets (the agent URL's included) there is nothing to mask: skip the walk.
        return redact_data(value, self.secrets) if self.secrets else value

    def fingerprint_data(self) -> None:
        """Each bench's data fingerprint (controller, once): for the summary, the baseline and resume checks."""
        for ctx in self.benches.values():
            ctx.fingerprint_data(self.split, self.redact)

    def public_agent_url(self) -> str:
        return public_url(self.agent_url)

    def runners(self) -> list[Runner]:
        """The session's runners, each once."""
        return list({id(ctx.runner): ctx.runner for ctx in self.benches.values()}.values())

    def run_item(self, item: BenchItem) -> None:
        """Run ``item``'s task (or take its run from the pool running tasks ahead); give the item its
        ``TaskRun`` and JUnit properties; raise the run's error."""
        task_run = self.pool.take(item) if self.pool is not None else self.execute(item)
        item.task_run = task_run
        item.user_properties.append(("duration", f"{task_run.duration:.3f}"))
        if task_run.engine is not None:
            item.user_properties.append(("engine", task_run.engine))
        if task_run.attempts:
            item.user_properties.append(("attempts", str(len(task_run.attempts) + 1)))
        if task_run.interrupted and self.pool is None:
            # Ctrl-C in pytest's thread: this task is recorded as interrupted (not lost) and no other starts.
            item.session.shouldstop = "interrupted: no new task started"
        if task_run.error is not None:
            raise task_run.error
        result = task_run.result
        assert result is not None
        item.user_properties.append(("is_resolved", str(result.is_resolved).lower()))
        for name, value in result.metrics.items():
            item.user_properties.append((f"metric.{name}", self.redact(str(value))))

    def execute(self, item: BenchItem) -> TaskRun:
        """Run ``item``'s task in the calling thread, again after an error its rerun policy allows: its
        ``TaskRun``, whatever the outcome. Usage sums every attempt's: each was paid for."""
        return with_reruns(self.settings.rerun, lambda avoid: self._attempt(item, avoid), self.redact)

    def _attempt(self, item: BenchItem, avoid: tuple[str, ...]) -> TaskRun:
        """One attempt at ``item``'s task, on none of the engines in ``avoid`` where the runner has a choice."""
        ctx = self.benches[item.bench_name]
        if ctx.fingerprint_problem:
            # Found once, before any task: each task says it in one line, and none asks the agent anything.
            return TaskRun(error=BenchLoadError(ctx.fingerprint_problem))
        started = time.perf_counter()
        task_run = TaskRun()
        spec: TaskSpec | None = None
        try:
            args = ctx.resolve(item.task_id)
            self.add_secrets(args.secret_values())
            spec = TaskSpec(
                bench_name=ctx.name,
                task_id=item.task_id,
                agent_url=self.agents[item.agent] if item.agent else self.agent_url,
                args=args,
                results_dir=self.run_dir / ctx.name / "results" / item.dir_name,
                log_dir=self.run_dir / ctx.name / "logs" / item.dir_name,
                split=self.split,
                timeout=self.timeout,
                progress=self.progress(ctx.name, item.task_id),
                labels={"benchflow.run": self.run_id, "benchflow.bench": ctx.name, "benchflow.task": item.task_id},
                secret_values=sorted(self.secrets),
                cache=self.agent_caches.get(item.agent, self.cache) if item.agent else self.cache,
                epoch=item.epoch,
                transcripts=self.transcripts,
                avoid_engines=avoid,
                run_dir=self.run_dir,
                sandbox_provider=self.sandbox_provider,
            )
            env = prepare_task(spec)
            self.config.hook.pytest_benchflow_task_environment(bench=ctx.bench, task_id=item.task_id, env=env)
            try:
                ctx.runner.execute(ctx.bench, spec, env)
            finally:
                spec.close()
                # Logs are files people share: no secret stays in them, whatever the bench wrote.
                redact_files(spec.log_dir, self.secrets)
            task_run.result = collect_result(ctx.bench, spec)
            self.config.hook.pytest_benchflow_task_result(bench=ctx.bench, task_id=item.task_id, result=task_run.result)
        except ArgumentError as e:
            task_run.error = TaskError(str(e))
        except Exception as e:
            task_run.error = e
        except KeyboardInterrupt:
            task_run.error = TaskInterrupted(f"task {item.task_id!r} was interrupted while it ran")
            task_run.interrupted = True
        finally:
            task_run.duration = time.perf_counter() - started
            if spec is not None:  # whatever the outcome: an errored task's requests were paid for too
                task_run.usage, task_run.notes = task_usage(spec)
                task_run.engine = spec.engine
        if task_run.error is not None:
            task_run.result = None  # a result the task_result hook refused is no result
        return task_run

    def record(
        self, item: BenchItem, call: pytest.CallInfo[None], report: pytest.TestReport
    ) -> tuple[TaskRecord, list[SampleRecord]]:
        """The record of ``item``'s finished task, from its final report, and its samples (secrets redacted)."""
        outcome: Outcome
        kind: ErrorKind | None = None
        if report.passed:
            outcome, reason = "passed", None
        elif call.excinfo is not None and isinstance(call.excinfo.value, TaskUnresolved):
            outcome, reason = "failed", "unresolved"
        else:
            outcome = "error" if call.when == "setup" else "failed"
            error = call.excinfo.value if call.excinfo else None
            if isinstance(error, TaskBroken):
                error = error.error
            reason = one_line_reason(error) if error is not None else None
            kind = error_kind(error) if error is not None and outcome == "error" else None
        details = str(report.longrepr) if report.longrepr is not None else None
        return self._build_record(item, item.task_run or TaskRun(), outcome, reason, details, kind)

    def unreported_record(self, item: BenchItem, task_run: TaskRun) -> tuple[TaskRecord, list[SampleRecord]]:
        """The record of a task run ahead that pytest never reported (the session stopped first): as it
        finished, or an ``interrupted`` error when it was cancelled or still running."""
        outcome: Outcome
        kind: ErrorKind | None = None
        if task_run.interrupted:
            outcome, reason, details, kind = "error", INTERRUPTED, None, "interrupted"
            task_run.result = None  # what a cancelled run left says nothing of the agent
        elif task_run.error is not None:
            error = task_run.error
            outcome, reason, kind = "error", one_line_reason(error), error_kind(error)
            details = str(TaskBroken(error)) if isinstance(error, BenchflowError) else reason
        elif task_run.result is not None and not task_run.result.is_resolved:
            outcome, reason, details = "failed", "unresolved", failure_report(task_run.result)
        else:
            outcome, reason, details = "passed", None, None
        return self._build_record(item, task_run, outcome, reason, details, kind)

    def _build_record(
        self,
        item: BenchItem,
        task_run: TaskRun,
        outcome: Outcome,
        reason: str | None,
        details: str | None,
        kind: ErrorKind | None,
    ) -> tuple[TaskRecord, list[SampleRecord]]:
        result = task_run.result
        samples = [
            SampleRecord(
                item.bench_name,
                item.task_id,
                self.redact(s.sample_id),  # ids are made of the data, and the data may hold a key
                s.score,
                item.epoch,
                self.redact_data(s.metadata) if s.metadata else None,
                item.agent or None,
            )
            for s in task_run.samples
        ]
        record = TaskRecord(
            bench=item.bench_name,
            task_id=item.task_id,
            nodeid=item.nodeid,
            outcome=outcome,
            is_resolved=result.is_resolved if result else None,
            metrics=self.redact_data(result.metrics) if result else {},
            duration=round(task_run.duration, 6),
            reason=self.redact(reason) if reason else None,
            results_dir=f"{item.bench_name}/results/{item.dir_name}",
            log_dir=f"{item.bench_name}/logs/{item.dir_name}",
            finished_at=time.time(),
            details=self.redact(details[-_DETAILS_LIMIT:]) if details else None,
            other=self.redact_data(result.other) if result and result.other else None,
            usage=task_run.usage,
            notes=task_run.notes or None,
            epoch=item.epoch,
            engine=task_run.engine,
            error_kind=kind,
            attempts=task_run.attempts or None,
            agent=item.agent or None,
        )
        if self.config.hook.pytest_benchflow_record.get_hookimpls():  # none: nothing to call, copy or check
            self._add_plugin_fields(record, item)
        return record, samples

    def _add_plugin_fields(self, record: TaskRecord, item: BenchItem) -> None:
        """Call ``pytest_benchflow_record``; refuse (restore, warn and note) what it did other than add
        JSON fields under new names to ``record.extra``."""
        declared = copy.deepcopy({k: v for k, v in record.__dict__.items() if k != "extra"})
        self.config.hook.pytest_benchflow_record(record=record, item=item)
        changed = [name for name, value in declared.items() if not _same(record.__dict__[name], value)]
        refused = [f"{name!r} (a declared field)" for name in changed]
        for name in [k for k in record.__dict__ if k not in declared and k != "extra"]:
            refused.append(f"{name!r} (an attribute: use record.extra[{name!r}])")
            del record.__dict__[name]
        record.__dict__.update(declared)  # the record pytest-benchflow decided is the one written
        if not isinstance(record.extra, dict):
            refused.append(f"extra = {type(record.extra).__name__} (it must stay a dict)")
            record.extra = {}
        for name in record.shadowing():
            refused.append(f"{name!r} (a declared field)" if isinstance(name, str) else f"{name!r} (not a string)")
            del record.extra[name]
        for name, value in list(record.extra.items()):
            if not _is_json(value):
                refused.append(f"{name!r} (not JSON: {type(value).__name__})")
                del record.extra[name]
        record.extra = self.redact_data(record.extra)
        if refused:
            message = (
                f"pytest_benchflow_record ({_implementers(self.config)}) may only add fields to record.extra, "
                f"under names of its own and with JSON values; refused: {', '.join(refused)}"
            )
            record.notes = [*(record.notes or []), message]
            warnings.warn(pytest.PytestWarning(message), stacklevel=1)

    def crash_record(self, nodeid: str, reason: str, kind: ErrorKind = "infra") -> TaskRecord:
        """The error record of a task whose process died while running it (an xdist worker killed: ``infra``),
        or of one never started (``budget``)."""
        bench, _, full_name = nodeid.removeprefix(NODE_PREFIX).partition("::")
        name, epoch, agent = split_run(full_name, bool(self.agents))
        ctx = self.benches.get(bench)
        task_id = name
        if ctx is not None and item_name(name) != name:
            # A hashed node name: the task listing (read only now, on this rare path) says which id it was.
            task_id = next((t for t in list_task_ids(ctx.bench, self.split) if item_name(t) == name), name)
        dir_name = run_names(task_id, epoch or 1, self.epochs, agent)[1]
        return TaskRecord(
            bench=bench,
            task_id=task_id,
            nodeid=nodeid,
            outcome="error",
            reason=self.redact(first_line(reason)),
            results_dir=f"{bench}/results/{dir_name}",
            log_dir=f"{bench}/logs/{dir_name}",
            finished_at=time.time(),
            epoch=epoch or 1,
            error_kind=kind,
            agent=agent or None,
        )

    def redact_report(self, report: pytest.TestReport) -> None:
        """Mask secrets in everything ``report`` shows: captured output and the failure text."""
        report.sections = [(title, self.redact(text)) for title, text in report.sections]
        if report.longrepr is not None:
            text = str(report.longrepr)
            redacted = self.redact(text)
            if redacted != text:
                report.longrepr = redacted


RUN_KEY = pytest.StashKey[BenchflowRun]()
