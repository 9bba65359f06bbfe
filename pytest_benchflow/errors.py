"""The exception hierarchy of pytest-benchflow: every error names what failed and where.

Our exceptions::

    BenchflowError
    ├── ConfigurationError        the session is set up wrong: a pytest usage error (exit 4)
    │   ├── AgentLaunchError      the agent is misnamed, does not start or does not answer
    │   ├── ArgumentError         benchmark arguments missing, unknown or not allowed (also a ValueError)
    │   ├── BenchLoadError        the benchmark cannot be found or does not implement the interface
    │   ├── RunnerError           a runner is unknown or its settings are invalid
    │   └── TaskListError         get_all_tasks reported an error or returned unusable ids
    ├── AgentError                the agent gave no usable answer (has ``url``)
    │   ├── AgentBadResponse      2xx, but the body or its parsing is unusable
    │   ├── AgentHTTPError        an HTTP error status (has ``status``, ``body_excerpt``)
    │   ├── AgentOverloaded       raised by an agent's call_api: answered 429/503 with Retry-After
    │   ├── AgentTimeout          no answer in time
    │   └── AgentUnreachable      no connection
    ├── TaskError                 a task could not be evaluated (its run broke)
    │   ├── BudgetError           not started: the run's cost limit was reached
    │   ├── InfraError            where it ran failed: engine lost, image missing, container not started
    │   │   └── SandboxError      a sandbox did not open or died (defined in pytest_benchflow.sandbox)
    │   ├── SandboxSpecError      a sandbox a bench asked for cannot be (pytest_benchflow.sandbox)
    │   ├── TaskCancelled         a request not sent: its task was already stopped
    │   ├── TaskInterrupted       Ctrl-C or SIGTERM arrived while it ran
    │   ├── TaskTimeout           the task ran past its time limit
    │   ├── UnsafeArchive         a container's archive escaped its directory or was too large
    │   └── VerifierError         a verifier step crashed or timed out (agentic benches)
    ├── ResultError               a benchmark produced no valid BenchmarkResult
    └── ResultsFormatError        a results directory is missing, malformed or newer than this reader

The plugin turns a ConfigurationError raised while the session is set up (``pytest_configure``,
``pytest_sessionstart``, collection) into ``pytest.UsageError`` in one place (``plugin/hooks.py``);
raised while a task runs, any of these makes that task an error, with its one-line reason.

Why a task errored is its error's ``kind`` (one of :data:`ERROR_KINDS`), a class attribute declared
once per class below and read by :func:`error_kind`: ``agent`` (AgentError), ``infra`` (InfraError),
``timeout`` (TaskTimeout, TaskCancelled), ``verifier``, ``budget``, ``interrupted``; everything else,
a non-benchflow exception included, is ``bench`` (the bench's code raised, its result missing or invalid).
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

__all__ = [
    "ERROR_KINDS",
    "INFRASTRUCTURE_KINDS",
    "AgentBadResponse",
    "AgentError",
    "AgentHTTPError",
    "AgentLaunchError",
    "AgentOverloaded",
    "AgentTimeout",
    "AgentUnreachable",
    "ArgumentError",
    "BenchLoadError",
    "BenchflowError",
    "BudgetError",
    "ConfigurationError",
    "ErrorKind",
    "InfraError",
    "ResultError",
    "ResultsFormatError",
    "RunnerError",
    "TaskCancelled",
    "TaskError",
    "TaskInterrupted",
    "TaskListError",
    "TaskTimeout",
    "UnsafeArchive",
    "VerifierError",
    "error_kind",
    "first_line",
    "one_line_reason",
]


ErrorKind = Literal["agent", "infra", "bench", "verifier", "timeout", "budget", "interrupted"]
#: Why a task errored, as its record's ``error_kind`` says (docs/results.md).
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)
#: The kinds that say nothing about the agent: the task was not evaluated for reasons outside it and the
#: bench. The summary's second resolution rate leaves these tasks out.
INFRASTRUCTURE_KINDS: tuple[ErrorKind, ...] = ("infra", "budget", "interrupted")


class BenchflowError(Exception):
    """Base class of every error raised by pytest-benchflow."""

    #: Why a task that raised it errored (``error_kind``): declared once per class, here and below.
    kind: ClassVar[ErrorKind] = "bench"


class ConfigurationError(BenchflowError):
    """The session is set up wrong (an option, the agent, a benchmark, its arguments or runner): reported as a
    pytest usage error. Raise a subclass, or this, from a plugin's setup code to get the same treatment."""


class AgentError(BenchflowError):
    """The agent (the *intelligence*) could not give a usable answer."""

    kind = "agent"

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class AgentUnreachable(AgentError):
    """No connection could be made to the agent."""


class AgentTimeout(AgentError):
    """The agent accepted the request but did not answer in time."""


class AgentHTTPError(AgentError):
    """The agent answered with an HTTP error status."""

    def __init__(self, message: str, *, url: str, status: int, body_excerpt: str) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.body_excerpt = body_excerpt


class AgentBadResponse(AgentError):
    """The agent answered 2xx but the body (or the benchmark's parsing of it) is unusable."""


class AgentOverloaded(AgentError):
    """Raised by an agent's ``call_api`` when it cannot answer now (its model is rate-limited or down).

    The agent server answers ``status`` (429 by default, or 503) with ``Retry-After``, which
    :class:`BenchClient` honours, instead of a 500. ``url`` is optional: the agent raising it is
    the one being called.
    """

    def __init__(self, message: str, *, status: int = 429, retry_after: float | None = None, url: str = "") -> None:
        super().__init__(message, url=url)
        self.status = status
        self.retry_after = retry_after


class ArgumentError(ConfigurationError, ValueError):
    """Benchmark arguments are missing, unknown or outside their allowed choices."""


class ResultError(BenchflowError):
    """A benchmark produced no result, or one that is not a valid BenchmarkResult."""


class TaskListError(ConfigurationError):
    """``get_all_tasks`` reported an error or returned an unusable list of task ids."""


class TaskError(BenchflowError):
    """A task could not be evaluated (its run broke, as opposed to the agent getting it wrong)."""


class TaskTimeout(TaskError):
    """A task ran past its time limit and was stopped."""

    kind = "timeout"


class TaskCancelled(TaskError):
    """A request was not sent because its task had already been stopped (at its time limit)."""

    kind = "timeout"


class InfraError(TaskError):
    """Where the task runs failed it: an engine lost, an image missing or not pulled, a container that
    could not start, a sandbox that died. Rerun by default (``--benchflow-rerun-infra``)."""

    kind = "infra"


class VerifierError(TaskError):
    """A verifier step (the check of an agentic bench's outcome) crashed or timed out."""

    kind = "verifier"


class BudgetError(TaskError):
    """The task was not started: the run's cost limit (``--benchflow-max-cost``) was reached."""

    kind = "budget"


class TaskInterrupted(TaskError):
    """Ctrl-C or SIGTERM arrived while the task ran: it was stopped, not evaluated."""

    kind = "interrupted"


class UnsafeArchive(TaskError):
    """A container's archive tried to write outside its directory, or was too large."""


class ResultsFormatError(BenchflowError):
    """A results directory is missing, malformed, or written by a newer pytest-benchflow."""


class BenchLoadError(ConfigurationError):
    """The named benchmark cannot be found or does not implement the interface."""


class AgentLaunchError(ConfigurationError):
    """The session's agent is misnamed, does not start, or does not answer."""


class RunnerError(ConfigurationError):
    """A runner is unknown, or its settings are invalid (reported as a usage error)."""


def error_kind(error: BaseException) -> ErrorKind:
    """Why ``error`` made its task error: its class's ``kind``. A plain :class:`TaskError` raised from
    another of ours (``raise TaskError(f"task …: {e}") from e``) only adds words: its cause's kind counts.
    An interrupt is ``interrupted``; any other exception is the bench's code raising: ``bench``."""
    while type(error) is TaskError and isinstance(error.__cause__, BenchflowError):
        error = error.__cause__
    if isinstance(error, BenchflowError):
        return error.kind
    return "interrupted" if isinstance(error, KeyboardInterrupt) else "bench"


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (``text`` itself when it has none)."""
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else text


def one_line_reason(error: BaseException) -> str:
    """How an error is shown in one line: our messages as they are, others prefixed by their type."""
    text = str(error) if isinstance(error, BenchflowError) else f"{type(error).__name__}: {error}"
    return first_line(text) if text.strip() else type(error).__name__
