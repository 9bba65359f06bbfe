"""``TaskRun``: what running one task (one epoch of it) gave, whatever the outcome; its record is built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..schemas import BenchmarkResult, SampleResult

__all__ = ["TaskRun"]


@dataclass
class TaskRun:
    """One task's run, returned by the code that ran it (in pytest's thread or a pool's).

    Nothing is parked on the pytest item: the item's setup receives this object, reports from it and
    the record is built from it, so a run made in another thread (``--benchflow-concurrency``) reaches
    its item whole.
    """

    #: The bench's validated result; None when the run broke (``error``) or was interrupted.
    result: BenchmarkResult | None = None
    #: Token usage of every request the task made, whatever the outcome (an errored task's were paid for too).
    usage: dict[str, int] | None = None
    #: Seconds from the task's start to its result or error.
    duration: float = 0.0
    #: Where the task ran, when its runner has several places (a Docker engine's URL, no credentials).
    engine: str | None = None
    #: Why the run broke: a ``BenchflowError`` is the task's error; anything else is a bug, re-raised as is.
    error: Exception | None = None
    #: What the record says about values that were left out (usage reports found unreadable).
    notes: list[str] = field(default_factory=list)
    #: The task was started and then stopped by an interrupt, ``-x`` or ``--maxfail`` before it finished.
    interrupted: bool = False
    #: The attempts before this one, when the task was run again after an error (``TaskRecord.attempts``).
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def samples(self) -> list[SampleResult]:
        """The result's per-sample scores (none without a result)."""
        return list(self.result.samples or []) if self.result is not None else []
