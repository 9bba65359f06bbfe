"""``SharedByGroup``: what the sandboxes of one group share (an engine slot, a Ray actor), made for the
first of them and let go after the last; the sandbox providers' one way of counting a group's users."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["SharedByGroup"]

T = TypeVar("T")


@dataclass
class _Held(Generic[T]):
    thing: T
    users: int = 0


class SharedByGroup(Generic[T]):
    """One ``T`` per sandbox group, held while any sandbox of the group is open, from any thread.

    Making one may wait (for an engine slot, for a node), so it happens outside the lock: when two sandboxes
    of a new group are opened at once, the first one made is the group's and the other is let go at once.
    """

    def __init__(self, let_go: Callable[[T], None]) -> None:
        self._let_go = let_go
        self._lock = threading.Lock()
        self._held: dict[str, _Held[T]] = {}

    def hold(self, group: str, make: Callable[[], T]) -> T:
        """The group's ``T``, one more user of it: the one it has, else ``make()``'s."""
        with self._lock:
            held = self._held.get(group)
            if held is not None:
                held.users += 1
                return held.thing
        made = make()
        with self._lock:
            held = self._held.setdefault(group, _Held(made))
            held.users += 1
        if held.thing is not made:  # another sandbox of the group made one meanwhile: keep theirs
            self._let_go(made)
        return held.thing

    def release(self, group: str) -> None:
        """One user fewer; the group's ``T`` is let go with its last user."""
        with self._lock:
            held = self._held.get(group)
            if held is None:
                return
            held.users -= 1
            if held.users > 0:
                return
            del self._held[group]
        self._let_go(held.thing)

    def take_all(self) -> list[T]:
        """Everything held, forgotten here (the caller ends them its own way): the provider is closing."""
        with self._lock:
            things = [held.thing for held in self._held.values()]
            self._held.clear()
        return things
