"""Running a task again when it errored for a reason worth another try (``--benchflow-rerun-infra``).

One attempt is a callable returning its ``TaskRun``; :func:`with_reruns` wraps it, so whatever runs a
task (``BenchflowRun.execute``, in pytest's thread or a pool's) keeps its own shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..envnumbers import in_range, parse_number, shown_value
from ..errors import ERROR_KINDS, ConfigurationError, error_kind, one_line_reason
from .taskrun import TaskRun

__all__ = [
    "MAX_RERUNS",
    "RERUNNABLE_KINDS",
    "RerunPolicy",
    "attempt_json",
    "parse_rerun_kinds",
    "parse_reruns",
    "with_reruns",
]

#: More reruns than this is a typo: a task that failed this often on its infrastructure will not pass the next time.
MAX_RERUNS = 10
#: A task not started (budget) or stopped by its user (interrupted) is never run again in the same session.
RERUNNABLE_KINDS = tuple(k for k in ERROR_KINDS if k not in ("budget", "interrupted"))


@dataclass(frozen=True)
class RerunPolicy:
    """How many times a task is run again, and after errors of which kinds."""

    reruns: int = 1
    kinds: frozenset[str] = field(default_factory=lambda: frozenset({"infra"}))

    def allows(self, error: BaseException, done: int) -> bool:
        """Whether a task that already ran ``done`` reruns is run again after ``error``."""
        return done < self.reruns and error_kind(error) in self.kinds


def parse_reruns(raw: Any) -> int:
    """``--benchflow-rerun-infra N``: how many times an errored task is run again (ConfigurationError if invalid)."""
    text = str(raw).strip()
    count = parse_number(text, int)
    if count is None or not in_range(count, maximum=MAX_RERUNS):
        raise ConfigurationError(
            f"--benchflow-rerun-infra {shown_value(text)!r}: give how many times an errored task is run again, "
            f"a whole number from 0 to {MAX_RERUNS}"
        )
    return int(count)


def parse_rerun_kinds(raw: Any) -> frozenset[str]:
    """``--benchflow-rerun-kinds K,K``: the error kinds run again (ConfigurationError if one is unknown)."""
    kinds = [k.strip() for k in str(raw).split(",") if k.strip()]
    unknown = [k for k in kinds if k not in RERUNNABLE_KINDS]
    if unknown or not kinds:
        shown = shown_value(unknown[0]) if unknown else ""
        raise ConfigurationError(
            f"--benchflow-rerun-kinds: {shown!r} is not a kind that can be rerun; choose among "
            f"{', '.join(RERUNNABLE_KINDS)} (comma-separated)"
        )
    return frozenset(kinds)


def with_reruns(
    policy: RerunPolicy, attempt: Callable[[tuple[str, ...]], TaskRun], redact: Callable[[str], str]
) -> TaskRun:
    """The last of ``attempt(avoid)``'s runs, made again while a run errs in a way ``policy`` reruns.

    Each attempt avoids the places (engines) where the earlier ones failed. The last run carries the
    earlier ones in ``attempts`` (their reasons passed through ``redact``) and the usage of all of them.
    """
    earlier: list[TaskRun] = []
    avoid: tuple[str, ...] = ()
    while True:
        run = attempt(avoid)
        if run.error is None or run.interrupted or not policy.allows(run.error, len(earlier)):
            break
        earlier.append(run)
        if run.engine and run.engine not in avoid:
            avoid = (*avoid, run.engine)
    if earlier:
        runs = [*earlier, run]
        run.attempts = [
            attempt_json(r.error, redact(one_line_reason(r.error)), r.engine, r.duration, r.usage)
            for r in earlier
            if r.error is not None
        ]
        run.usage, run.notes = _summed(runs)
        run.duration = sum(r.duration for r in runs)
    return run


def _summed(runs: list[TaskRun]) -> tuple[dict[str, int] | None, list[str]]:
    """The usage of every attempt added up (None when none reported any), and their notes."""
    total: dict[str, int] = {}
    for run in runs:
        for key, count in (run.usage or {}).items():
            total[key] = total.get(key, 0) + count
    return total or None, [note for run in runs for note in run.notes]


def attempt_json(error: BaseException, reason: str, engine: str | None, duration: float, usage: Any) -> dict[str, Any]:
    """What a record keeps of an attempt that was run again (``TaskRecord.attempts``); empty values left out."""
    found: dict[str, Any] = {"error_kind": error_kind(error), "reason": reason, "duration": round(duration, 6)}
    if engine:
        found["engine"] = engine
    if usage:
        found["usage"] = usage
    return found
