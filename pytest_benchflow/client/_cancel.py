"""A task's stop signal: once its time limit passes, the task's clients start no request and no retry."""

from __future__ import annotations

import contextvars
import threading

__all__ = ["cancel_scope", "current_cancel"]

# Set by the runner for a task with a time limit: once set, the task's clients start no request.
_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("benchflow_cancel", default=None)


def cancel_scope(event: threading.Event) -> contextvars.Context:
    """A context in which every :class:`BenchClient` call stops starting requests once ``event`` is set.

    Threads that :meth:`BenchClient.get_responses` starts inherit it.
    """
    context = contextvars.copy_context()
    context.run(_CANCEL.set, event)
    return context


def current_cancel() -> threading.Event | None:
    """The stop signal of the task this code runs for, None outside a task with a time limit."""
    return _CANCEL.get()
