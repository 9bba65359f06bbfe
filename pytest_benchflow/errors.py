"""The exception hierarchy of pytest-benchflow: every error names what failed and where."""

from __future__ import annotations

__all__ = [
    "AgentBadResponse",
    "AgentError",
    "AgentHTTPError",
    "AgentTimeout",
    "AgentUnreachable",
    "ArgumentError",
    "BenchflowError",
    "ResultError",
    "ResultsFormatError",
    "TaskCancelled",
    "TaskError",
    "TaskListError",
    "TaskTimeout",
]


class BenchflowError(Exception):
    """Base class of every error raised by pytest-benchflow."""


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


class ArgumentError(BenchflowError, ValueError):
    """Benchmark arguments are missing, unknown or outside their allowed choices."""


class ResultError(BenchflowError):
    """A benchmark produced no result, or one that is not a valid BenchmarkResult."""


class TaskListError(BenchflowError):
    """``get_all_tasks`` reported an error or returned an unusable list of task ids."""


class TaskError(BenchflowError):
    """A task could not be evaluated (its run broke, as opposed to the agent getting it wrong)."""


class TaskTimeout(TaskError):
    """A task ran past its time limit and was stopped."""


class TaskCancelled(BenchflowError):
    """A request was not sent because its task had already been stopped (at its time limit)."""


class ResultsFormatError(BenchflowError):
    """A results directory is missing, malformed, or written by a newer pytest-benchflow."""
