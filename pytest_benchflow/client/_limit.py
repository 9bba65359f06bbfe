"""How many requests one process may have in flight to one agent: one shared limit per agent URL."""

from __future__ import annotations

import threading

__all__ = ["AdaptiveLimit", "limit_for"]

# How often a request waiting for a concurrency slot looks whether its task was stopped.
_CANCEL_POLL = 0.05


class AdaptiveLimit:
    """How many requests may be in flight to one agent from this process, adapting to its 429s.

    Shared by every client of the same agent URL: it halves on a 429 and grows back by one per
    success, never above the largest ``max_concurrency`` asked for, never below one.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = self.limit = ceiling
        self.in_flight = 0
        self._changed = threading.Condition()

    def __enter__(self) -> AdaptiveLimit:
        self.acquire(None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self, cancel: threading.Event | None) -> bool:
        """Take a slot, waiting for one; False, holding none, once ``cancel`` is set (before or while waiting):
        a request queued behind others must not be sent after its task's time limit."""
        with self._changed:
            while self.in_flight >= self.limit and not (cancel is not None and cancel.is_set()):
                self._changed.wait(None if cancel is None else _CANCEL_POLL)
            if cancel is not None and cancel.is_set():
                if self.in_flight < self.limit:
                    # It may have been woken for a free slot it will not take: the next in line must get it
                    # (one waiting outside a task with a time limit is woken by nothing else).
                    self._changed.notify()
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self._changed:
            self.in_flight -= 1
            self._changed.notify()

    def widen(self, ceiling: int) -> None:
        """A wider batch raises the ceiling (and the limit as much); a halving in force stays in force."""
        with self._changed:
            if ceiling > self.ceiling:
                self.limit += ceiling - self.ceiling
                self.ceiling = ceiling
                self._changed.notify_all()

    def record(self, throttled: bool) -> None:
        with self._changed:
            limit = max(1, self.limit // 2) if throttled else min(self.ceiling, self.limit + 1)
            if limit > self.limit:
                self._changed.notify_all()  # only a wider limit lets a waiting request go
            self.limit = limit


_LIMITS: dict[str, AdaptiveLimit] = {}
_LIMITS_LOCK = threading.Lock()


def limit_for(url: str, ceiling: int) -> AdaptiveLimit:
    """The process's limit for the agent at ``url``, made with ``ceiling`` or widened to it."""
    limit = _LIMITS.get(url)
    if limit is not None and limit.ceiling >= ceiling:
        return limit  # every request asks this: no lock shared by all of the process's tasks (ceilings only grow)
    with _LIMITS_LOCK:
        limit = _LIMITS.get(url)
        if limit is None:
            limit = _LIMITS[url] = AdaptiveLimit(ceiling)
        else:
            limit.widen(ceiling)
        return limit
