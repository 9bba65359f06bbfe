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

from .runfiles import read_text

__all__ = [
    "MAX_TOKENS",
    "USAGE_FILE",
    "USAGE_HEADER",
    "AgentAnswer",
    "AgentMessage",
    "UsageMeter",
    "current_meter",
    "parse_usage",
    "read_usage_file",
    "token_count",
]

#: The response header an agent reports an answer's usage in: ``{"input_tokens": n, "output_tokens": m}``.
#: 0.1.x clients ignore it.
USAGE_HEADER = "X-Benchflow-Usage"
#: Where a client in a container leaves its task's usage (in ``BENCHFLOW_LOG_DIR``), for the runner to copy out.
USAGE_FILE = "usage.json"
#: Token counts from this on are not believed: no answer (or task) uses a million billion tokens, and
#: such a number (or a 400-digit one) would overflow the cost's floating point.
MAX_TOKENS = 10**15
_IGNORED = f"token counts must be whole numbers from 0 to below {MAX_TOKENS:.0e}"


def token_count(value: Any) -> int | None:
    """``value`` as a token count (a whole number, 0 <= n < ``MAX_TOKENS``); None for anything else."""
    if isinstance(value, float) and value.is_integer():  # 12.0 is 12; inf and nan are not integers
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_TOKENS:
        return value
    return None


class AgentAnswer(str):
    """What ``call_api`` may return instead of a plain string: the answer, with its token usage.

    It is a string (so callers comparing answers keep working); the server sends the text as
    the body and ``usage`` in the ``X-Benchflow-Usage`` header.
    """

    #: A count that is not a :func:`token_count` (a provider's ``"many"``, ``1e999``, ``1.5``) is None here: it is
    #: sent as ``null``, so the client ignores the report with a note; the answer itself is never lost over it.
    usage: dict[str, int | None]

    def __new__(cls, text: str, usage: Mapping[str, Any] | None = None) -> AgentAnswer:
        answer = super().__new__(cls, text)
        answer.usage = _counts(usage)
        return answer


class AgentMessage(dict[str, Any]):
    """What ``call_api`` may return to a multi-step request (``messages`` in it): the assistant message
    (``role``, ``content``, ``tool_calls``), with its token usage sent in the ``X-Benchflow-Usage`` header."""

    usage: dict[str, int | None]

    def __init__(self, message: Mapping[str, Any], usage: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.usage = _counts(usage)


def _counts(usage: Mapping[str, Any] | None) -> dict[str, int | None]:
    return {k: token_count(v) for k, v in (usage or {}).items() if k in ("input_tokens", "output_tokens")}


def parse_usage(header: str | None) -> tuple[int, int] | None:
    """(input, output) tokens from a usage header; None when absent or unreadable (it is advisory).

    A count that is not a :func:`token_count` makes the whole header unreadable.
    """
    if not header:
        return None
    try:
        data = json.loads(header)
    except (ValueError, RecursionError):  # not JSON, an integer longer than Python converts, or nested too deep
        return None
    if not isinstance(data, dict):
        return None
    input_tokens, output_tokens = token_count(data.get("input_tokens", 0)), token_count(data.get("output_tokens", 0))
    if input_tokens is None or output_tokens is None:
        return None
    return input_tokens, output_tokens


class UsageMeter:
    """Tokens and answered requests of one task, added to from any thread."""

    def __init__(self) -> None:
        self.input_tokens = self.output_tokens = self.requests = 0
        #: Answers whose usage report was there but unreadable (ignored, and said so in the task's notes).
        self.ignored = 0
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

    def add(self, tokens: tuple[int, int] | None, *, ignored: bool = False) -> None:
        """Count an answered request and its tokens; ``ignored``: it reported usage that was unreadable."""
        with self._lock:
            self.requests += 1
            self.ignored += ignored
            if tokens is not None:
                self.input_tokens += tokens[0]
                self.output_tokens += tokens[1]

    def merge(self, other: UsageMeter) -> None:
        """Add what ``other`` counted (a step counted apart first, as the agent loop does for its transcript)."""
        with self._lock:
            self.requests += other.requests
            self.ignored += other.ignored
            self.input_tokens += other.input_tokens
            self.output_tokens += other.output_tokens
            self.cache_hits += other.cache_hits
            self.cache_misses += other.cache_misses

    def notes(self) -> list[str]:
        """What the task's record says about usage left out (none when every report was readable)."""
        if not self.ignored:
            return []
        answers = "1 answer" if self.ignored == 1 else f"{self.ignored} answers"
        return [f"usage of {answers} ignored: {USAGE_HEADER} unreadable ({_IGNORED})"]

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


def read_usage_file(log_dir: Path) -> tuple[dict[str, int] | None, list[str]]:
    """The usage a container's client left in the task's log directory (None if none, or unreadable),
    and a note when there was a file that had to be ignored."""
    try:
        data: Any = json.loads(read_text(log_dir / USAGE_FILE))  # a FIFO planted there is refused, not waited on
    except FileNotFoundError:
        return None, []
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError included
        return None, [f"{USAGE_FILE} ignored: {e.strerror if isinstance(e, OSError) else type(e).__name__}"]
    keys = ("input_tokens", "output_tokens", "total_tokens", "requests")
    counts = {k: token_count(data.get(k)) for k in keys} if isinstance(data, dict) else {}
    usage = {k: v for k, v in counts.items() if v is not None}
    if len(usage) < len(keys):
        return None, [f"{USAGE_FILE} ignored: {_IGNORED}"]
    return usage, []
