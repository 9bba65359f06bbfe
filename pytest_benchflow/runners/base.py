"""The runner interface and what every runner shares: a task's spec, its directories and environment, its result."""

from __future__ import annotations

import contextvars
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..bench import BaseBench
from ..cache import ResponseCache
from ..configuration import Setting
from ..environment import ProgressCallback, TaskEnvironment, task_environment
from ..errors import BenchflowError, ResultError
from ..runfiles import remove_planted
from ..sandbox import SandboxProvider, TaskSandboxes
from ..schemas import BenchmarkResult, ResolvedArgs, to_result
from ..transcript import TRANSCRIPT_FILE, TRANSCRIPTS_ENV, Transcript, no_transcript
from ..usage import UsageMeter, read_usage_file
from .archive import ensure_task_dir

__all__ = ["Runner", "RunnerOption", "Setting", "TaskSpec", "collect_result", "prepare_task", "task_usage"]


#: The name runners written before :class:`~pytest_benchflow.configuration.Setting` import: the same type.
RunnerOption = Setting


@dataclass
class TaskSpec:
    """Everything needed to run one task of one bench."""

    bench_name: str
    task_id: str
    agent_url: str
    args: ResolvedArgs
    results_dir: Path
    log_dir: Path
    split: str = "test"
    timeout: float | None = None
    progress: ProgressCallback | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: Values to redact from whatever the runner writes (container logs).
    secret_values: list[str] = field(default_factory=list)
    #: Where the task's clients count their tokens (in-process; a container leaves usage.json in its logs).
    usage: UsageMeter = field(default_factory=UsageMeter)
    #: The response cache the task's clients use (in-process runs), or None.
    cache: ResponseCache | None = None
    #: Which run of the task this is (``--benchflow-epochs``), from 1.
    epoch: int = 1
    #: Whether the task's clients keep ``transcript.jsonl`` in its log directory (``--benchflow-transcripts``).
    transcripts: bool = True
    #: Where the task ran, set by a runner that has several places (the Docker engine's URL, no credentials).
    engine: str | None = None
    #: Where earlier attempts of this task failed (``--benchflow-rerun-infra``): a runner with several places
    #: runs this attempt elsewhere when it can.
    avoid_engines: tuple[str, ...] = ()
    #: The run directory the task's directories are below: every level between is checked to be a real directory.
    run_dir: Path | None = None
    #: Where ``env.sandbox(...)`` opens the task's sandboxes (the session's ``--benchflow-sandbox``), or None.
    sandbox_provider: SandboxProvider | None = None
    #: The task's validated result, set by a runner that called ``get_result`` where the task ran (the Ray
    #: runner's in-process tasks, on their node): :func:`collect_result` then returns it instead of asking again.
    result: BenchmarkResult | None = field(init=False, default=None)
    transcript: Transcript | None = field(init=False, default=None)
    sandboxes: TaskSandboxes = field(init=False)

    def __post_init__(self) -> None:
        # One group per task run: its sandboxes share an engine slot (a verifier's never waits for the agent's).
        self.sandboxes = TaskSandboxes(self.sandbox_provider, self.labels, f"{self.task_id}#{self.epoch}#{id(self)}")
        if self.transcripts:
            self.transcript = Transcript(self.log_dir / TRANSCRIPT_FILE, self.secret_values)

    def context(self, base: contextvars.Context | None = None) -> contextvars.Context:
        """The context the task's code runs in: its usage meter, transcript and cache (on top of ``base``)."""
        context = self.usage.scope(base)
        context = self.transcript.scope(context) if self.transcript is not None else no_transcript(context)
        return self.cache.scope(context, self.epoch) if self.cache is not None else context

    def close(self) -> None:
        """The task is over: close its sandboxes (those the bench forgot, a timed-out task's) and its transcript
        (a late answer of an abandoned request is dropped)."""
        self.sandboxes.close()
        if self.transcript is not None:
            self.transcript.close()


class Runner(ABC):
    """Runs a task's evaluation so that its results land in ``spec.results_dir``.

    A runner is found by its ``name`` (entry point group ``pytest_benchflow.runners``, or
    the ``pytest_benchflow_make_runner`` hook) and owns its whole lifecycle, in this order:

    - :meth:`options` — its settings, registered as ini options (and flags) by the plugin;
    - :meth:`from_options` — validate them (raise :class:`~pytest_benchflow.errors.RunnerError`,
      shown as a usage error) and build the runner, once per process, before any task;
    - :meth:`start` — in the controller, before any task, once the agent is known: check what the
      runner needs (engines answering, the agent reachable from them); a ``RunnerError`` is a usage error;
    - :meth:`start_bench` — then once per bench it runs: what that bench needs (its image);
    - :meth:`execute` — one task, in whichever thread pytest runs it (several at once are fine);
    - :meth:`interrupt` — Ctrl-C or SIGTERM arrived: stop what is running now;
    - :meth:`cleanup` — the process is done: release what it holds;
    - :meth:`cleanup_run` — in the controller only, at the end: remove what this run left
      anywhere, including what a crashed worker process could not clean up.
    """

    #: The name users give to ``--benchflow-runner``.
    name: ClassVar[str] = ""
    #: Runs benches that have no in-process entrance when the user names no runner.
    default_for_images: ClassVar[bool] = False
    #: Runs tasks in this process, so their clients use the session's response cache (``--benchflow-cache``).
    in_process: ClassVar[bool] = False

    @classmethod
    def options(cls) -> list[Setting]:
        """The runner's settings (none by default); their values reach :meth:`from_options` as strings."""
        return []

    @classmethod
    @abstractmethod
    def from_options(cls, values: Mapping[str, str], run_id: str) -> Runner:
        """A runner for run ``run_id`` configured from its settings' ``values`` (every option present)."""

    def start(self, agent_url: str) -> None:  # noqa: B027 - optional step of the lifecycle
        """Before any task, in the controller only: raise :class:`~pytest_benchflow.errors.RunnerError`
        when the session cannot work (an engine not answering, an agent its tasks cannot reach)."""

    def start_bench(self, bench: BaseBench) -> None:  # noqa: B027 - optional step of the lifecycle
        """After :meth:`start`, once for each bench that runs here: raise
        :class:`~pytest_benchflow.errors.RunnerError` when none of its tasks could run (its image missing)."""

    @abstractmethod
    def execute(self, bench: BaseBench, spec: TaskSpec, env: TaskEnvironment) -> None:
        """Run one task's evaluation; raise a :class:`~pytest_benchflow.errors.TaskError` when it breaks."""

    def capacity(self) -> int | None:
        """How many tasks this runner runs at once, after :meth:`start` (``--benchflow-concurrency auto``);
        None (the default): it cannot say."""
        return None

    def interrupt(self) -> None:  # noqa: B027 - optional step of the lifecycle
        """Ctrl-C or SIGTERM: stop the tasks running in this process now (``execute`` then unwinds)."""

    def cleanup(self) -> None:  # noqa: B027 - optional step of the lifecycle
        """The process is done with this runner."""

    def cleanup_run(self) -> None:  # noqa: B027 - optional step of the lifecycle
        """After the session, in the controller only: remove whatever this run left anywhere."""


def prepare_task(spec: TaskSpec) -> TaskEnvironment:
    """Create the task's directories (never through a symlink) and build its environment.

    Directories an earlier attempt left (a resumed run) are reused, without the links, FIFOs and
    devices found in them.
    """
    for directory in (spec.results_dir, spec.log_dir):
        if spec.run_dir is not None:
            # Every level below the run directory: a link planted at <bench>/logs since the run began is refused.
            _, created = ensure_task_dir(spec.run_dir, *directory.relative_to(spec.run_dir).parts)
        else:
            _, created = ensure_task_dir(directory.parent, directory.name)
        if not created:  # one made just now is empty
            remove_planted(directory)
    env = task_environment(
        agent_url=spec.agent_url,
        task_id=spec.task_id,
        split=spec.split,
        args=spec.args,
        results_dir=str(spec.results_dir),
        log_dir=str(spec.log_dir),
    )
    if not spec.transcripts:
        env[TRANSCRIPTS_ENV] = "off"  # a client in a container reads it there
    # In-process, progress goes to the runner's callback, never to stdout.
    env.progress_callback = spec.progress or _ignore_progress
    env.sandboxes = spec.sandboxes
    return env


def _ignore_progress(done: int, total: int) -> None:
    pass


def task_usage(spec: TaskSpec) -> tuple[dict[str, int] | None, list[str]]:
    """The task's token usage (counted in-process, else left in its log directory by a container),
    and notes on usage reports that were ignored as unreadable."""
    counted = spec.usage.snapshot()
    if counted:
        return counted, spec.usage.notes()
    return read_usage_file(spec.log_dir)


def collect_result(bench: BaseBench, spec: TaskSpec) -> BenchmarkResult:
    """Point the bench at the task's directories (for this thread) and validate ``get_result``; the result
    the runner already collected where the task ran (``spec.result``), when it did."""
    bench.results_dir = str(spec.results_dir)
    bench.log_files_dir = str(spec.log_dir)
    if spec.result is not None:
        return spec.result
    try:
        raw = bench.get_result(spec.task_id)
    except BenchflowError:
        raise
    except Exception as e:
        raise ResultError(f"task {spec.task_id!r}: get_result raised {type(e).__name__}: {e}") from e
    return to_result(raw, spec.task_id)
