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
    │   ├── TaskCancelled         a request not sent: its task was already stopped
    │   ├── TaskTimeout           the task ran past its time limit
    │   └── UnsafeArchive         a container's archive escaped its directory or was too large
    ├── ResultError               a benchmark produced no valid BenchmarkResult
    └── ResultsFormatError        a results directory is missing, malformed or newer than this reader

The plugin turns a ConfigurationError raised while the session is set up (``pytest_configure``,
``pytest_sessionstart``, collection) into ``pytest.UsageError`` in one place (``plugin/hooks.py``);
raised while a task runs, any of these makes that task an error, with its one-line reason.
"""

from __future__ import annotations

__all__ = [
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
    "ConfigurationError",
    "ResultError",
    "ResultsFormatError",
    "RunnerError",
    "TaskCancelled",
    "TaskError",
    "TaskListError",
    "TaskTimeout",
    "UnsafeArchive",
    "first_line",
    "one_line_reason",
]


class BenchflowError(Exception):
    """Base class of every error raised by pytest-benchflow."""


class ConfigurationError(BenchflowError):
    """The session is set up wrong (an option, the agent, a benchmark, its arguments or runner): reported as a
    pytest usage error. Raise a subclass, or this, from a plugin's setup code to get the same treatment."""


class AgentError(BenchflowError):
    """The agent (the *intelligence*) could not give a usable answer."""

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


class TaskCancelled(TaskError):
    """A request was not sent because its task had already been stopped (at its time limit)."""


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


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (``text`` itself when it has none)."""
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else text


def one_line_reason(error: BaseException) -> str:
    """How an error is shown in one line: our messages as they are, others prefixed by their type."""
    text = str(error) if isinstance(error, BenchflowError) else f"{type(error).__name__}: {error}"
    return first_line(text) if text.strip() else type(error).__name__
