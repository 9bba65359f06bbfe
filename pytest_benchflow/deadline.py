"""A total deadline for a call that only has per-read timeouts (a probe of an agent or an engine)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["within"]

T = TypeVar("T")


def within(seconds: float, call: Callable[[], T], what: str) -> T:
    """``call()``'s result, or ``TimeoutError`` naming ``what`` once ``seconds`` have passed in all.

    Socket timeouts bound each read, so a server that sends a byte now and then keeps a call
    going for ever; this bounds the whole call. The call runs in a daemon thread, abandoned at the
    deadline (it ends with its own timeouts, or with the process); its exception is re-raised.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as e:  # handed to the caller, whatever it is
            failure.append(e)

    thread = threading.Thread(target=run, name=f"benchflow-probe {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if failure:
        raise failure[0]
    if not outcome:
        raise TimeoutError(f"{what} did not answer within {seconds:g} s")
    return outcome[0]
