"""Token usage: an agent reports it per answer, a task's clients add it up, the summary totals it."""

from __future__ import annotations

import atexit
import contextvars
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "USAGE_FILE",
    "USAGE_HEADER",
    "AgentAnswer",
    "UsageMeter",
    "current_meter",
    "parse_usage",
    "read_usage_file",
]

#: The response header an agent reports an answer's usage in: ``{"input_tokens": n, "output_tokens": m}``.
#: 0.1.x clients ignore it.
USAGE_HEADER = "X-Benchflow-Usage"
#: Where a client in a container leaves its task's usage (in ``BENCHFLOW_LOG_DIR``), for the runner to copy out.
USAGE_FILE = "usage.json"


class AgentAnswer(str):
    """What ``call_api`` may return instead of a plain string: the answer, with its token usage.

    It is a string (so callers comparing answers keep working); the server sends the text as
    the body and ``usage`` in the ``X-Benchflow-Usage`` header.
    """

    usage: dict[str, int]

    def __new__(cls, text: str, usage: Mapping[str, int] | None = None) -> AgentAnswer:
        answer = super().__new__(cls, text)
        answer.usage = {k: int(v) for k, v in (usage or {}).items() if k in ("input_tokens", "output_tokens")}
        return answer


def parse_usage(header: str | None) -> tuple[int, int] | None:
    """(input, output) tokens from a usage header; None when absent or unreadable (it is advisory)."""
    if not header:
        return None
    try:
        data = json.loads(header)
        return max(0, int(data.get("input_tokens", 0))), max(0, int(data.get("output_tokens", 0)))
    except (ValueError, TypeError, AttributeError):
        return None


class UsageMeter:
    """Tokens and answered requests of one task, added to from any thread."""

    def __init__(self) -> None:
        self.input_tokens = self.output_tokens = self.requests = 0
        #: Look-ups in the response cache (``--benchflow-cache``): answered from it, or not.
        self.cache_hits = self.cache_misses = 0
        self._lock = threading.Lock()

    def looked_up(self, hit: bool) -> None:
        """Count a response-cache look-up (a miss then goes to the agent and counts as a request)."""
        with self._lock:
            if hit:
                self.cache_hits += 1
            else:
                self.cache_misses += 1

    def add(self, tokens: tuple[int, int] | None) -> None:
        with self._lock:
            self.requests += 1
            if tokens is not None:
                self.input_tokens += tokens[0]
                self.output_tokens += tokens[1]

    def snapshot(self) -> dict[str, int] | None:
        """The totals as written to results (None when the task made no request)."""
        cache = self.cache_hits + self.cache_misses
        if not self.requests and not cache:
            return None
        totals = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "requests": self.requests,
        }
        if cache:
            totals.update(cache_hits=self.cache_hits, cache_misses=self.cache_misses)
        return totals

    def scope(self, context: contextvars.Context | None = None) -> contextvars.Context:
        """A context (a copy of ``context``, else of the current one) in which clients count into this meter."""
        context = (context or contextvars.copy_context()).copy()
        context.run(_METER.set, self)
        return context


_METER: contextvars.ContextVar[UsageMeter | None] = contextvars.ContextVar("benchflow_usage", default=None)
_PROCESS_METER: UsageMeter | None = None
_PROCESS_LOCK = threading.Lock()


def current_meter() -> UsageMeter:
    """The meter of the task this code runs for: set by the runner in-process; in a container,
    one for the whole process, written to ``$BENCHFLOW_LOG_DIR/usage.json`` when it exits."""
    global _PROCESS_METER
    meter = _METER.get()
    if meter is not None:
        return meter
    with _PROCESS_LOCK:
        if _PROCESS_METER is None:
            _PROCESS_METER = UsageMeter()
            log_dir = os.environ.get("BENCHFLOW_LOG_DIR")
            if log_dir:
                atexit.register(_write_usage, _PROCESS_METER, Path(log_dir))
        return _PROCESS_METER


def _write_usage(meter: UsageMeter, log_dir: Path) -> None:
    totals = meter.snapshot()
    if totals:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / USAGE_FILE).write_text(json.dumps(totals), encoding="utf-8")
        except OSError:
            pass  # usage is advisory; the results are what count


def read_usage_file(log_dir: Path) -> dict[str, int] | None:
    """The usage a container's client left in the task's log directory (None if none, or unreadable)."""
    try:
        data: Any = json.loads((log_dir / USAGE_FILE).read_text(encoding="utf-8"))
        keys = ("input_tokens", "output_tokens", "total_tokens", "requests")
        return {k: max(0, int(data[k])) for k in keys}
    except (OSError, ValueError, KeyError, TypeError):
        return None
