"""A bench's own threads inside its task: the task's usage meter, transcript, cache and time limit follow them."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["TaskExecutor", "task_context"]

_T = TypeVar("_T")


def task_context() -> contextvars.Context:
    """A copy of the calling thread's task context; ``task_context().run(fn, *args)`` in another thread
    runs ``fn`` inside the task (its requests counted, transcribed, cached and cancelled at the time limit).

    The state a task's ``BenchClient`` uses is held in context variables, which a plain
    ``threading.Thread`` or ``ThreadPoolExecutor`` does not carry into the threads it starts.
    """
    return contextvars.copy_context()


class TaskExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose work runs in the task context of the thread that submitted it.

    Use it in place of ``ThreadPoolExecutor`` in a bench's evaluation (``submit`` and ``map`` alike).
    """

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        return super().submit(task_context().run, fn, *args, **kwargs)
