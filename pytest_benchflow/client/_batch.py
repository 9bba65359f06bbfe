"""Many calls, a few in flight at once, results in input order: the engine of ``BenchClient.get_responses``."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["run_batch"]

_In = TypeVar("_In")


def run_batch(
    inputs: list[_In],
    ask: Callable[[int, _In], Any],
    workers: int,
    return_exceptions: bool,
    on_done: Callable[[int, int], None] | None,
    on_result: Callable[[int, Any], None] | None,
) -> list[Any]:
    """``ask(i, inputs[i])`` for every input, ``workers`` at a time; see ``BenchClient.get_responses``."""
    if workers == 1:
        return _serially(inputs, ask, return_exceptions, on_done, on_result)
    results: list[Any] = [None] * len(inputs)
    failures: dict[int, BaseException] = {}
    lock = threading.Lock()
    next_index = done = 0

    def work() -> None:
        nonlocal next_index, done
        while True:
            with lock:
                if next_index >= len(inputs) or (failures and not return_exceptions):
                    return
                i, next_index = next_index, next_index + 1
            try:
                results[i] = ask(i, inputs[i])
            except Exception as e:
                with lock:
                    failures[i] = e
                if not return_exceptions:
                    return
                results[i] = e
            with lock:  # callbacks one at a time, so progress never goes backwards
                done += 1
                if on_result is not None and i not in failures:
                    on_result(i, results[i])
                if on_done is not None:
                    on_done(done, len(inputs))

    # Daemon threads, each in the caller's context: a task abandoned at its time limit
    # (see cancel_scope) neither starts new requests nor keeps the process from exiting.
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(work,), name="benchflow-client", daemon=True)
        for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures and not return_exceptions:
        raise failures[min(failures)]
    return results


def _serially(
    inputs: list[_In],
    ask: Callable[[int, _In], Any],
    return_exceptions: bool,
    on_done: Callable[[int, int], None] | None,
    on_result: Callable[[int, Any], None] | None,
) -> list[Any]:
    # One at a time needs no thread pool (and a one-question task is the common case).
    results: list[Any] = []
    for i, raw in enumerate(inputs):
        try:
            results.append(ask(i, raw))
        except Exception as e:
            if not return_exceptions:
                raise
            results.append(e)
        else:
            if on_result is not None:
                on_result(i, results[i])
        if on_done is not None:
            on_done(i + 1, len(inputs))
    return results
