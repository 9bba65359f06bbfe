"""Many tasks at once from one pytest process (``--benchflow-concurrency N``).

pytest's ``runtestprotocol`` still runs item by item in the main thread, in collection order, with its
usual setup/call/teardown reports; what changes is when each task runs. A :class:`TaskPool` of N
threads starts the tasks ahead, in collection order, and each item's setup waits for its own run
(:mod:`.tasks_ahead` wires it into a session).
With N = 1 none of this exists: the item's setup runs its task in pytest's thread, as it always did.

Under xdist each worker runs its own pool over the items it has been given; the controller's
scheduler (:class:`AheadScheduling`) keeps every worker given 2 × N items, so ``-n 2
--benchflow-concurrency 32`` keeps 64 tasks busy until the last ones.
"""

from __future__ import annotations

import importlib
import queue
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from ..client._cancel import cancel_scope
from ..errors import TaskCancelled, TaskError
from .items import BenchItem
from .taskrun import TaskRun

if TYPE_CHECKING:
    from ..bench import BaseBench

__all__ = [
    "AheadScheduling",
    "TaskPool",
    "concurrent_safe",
    "xdist_upcoming",
]

# How often the main thread, waiting for an item's run, looks for items an xdist controller sent since.
_POLL = 0.05
# How long, once the session stops, the runs that were cancelled get to unwind (containers removed, clients stopped).
STOP_GRACE = 60.0


@dataclass(eq=False)
class _Slot:
    """One item's place in the pool: its run once done (None: never started)."""

    item: BenchItem
    done: threading.Event = field(default_factory=threading.Event)
    run: TaskRun | None = None
    started: bool = False
    #: The run ended after the session began stopping: it was cancelled, its outcome is not the agent's.
    cut_short: bool = False


class TaskPool:
    """N threads that run the session's tasks ahead of pytest, in the order items are added.

    ``may_start`` is asked before each task starts (the session stopping: ``-x``, ``--maxfail``, the
    cost limit); ``serial`` names benches that declared ``concurrent_safe = False``: their tasks
    run one at a time. The threads are daemons: a task that ignores its cancellation cannot keep the
    process alive.
    """

    def __init__(
        self,
        size: int,
        execute: Callable[[BenchItem], TaskRun],
        may_start: Callable[[], bool],
        serial: Iterable[str] = (),
        upcoming: Callable[[], list[Any]] | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.size = size
        self._execute = execute
        self._may_start = may_start
        self._upcoming = upcoming
        self._on_change = on_change
        self._serial = {name: threading.Lock() for name in serial}
        self._queue: queue.SimpleQueue[_Slot | None] = queue.SimpleQueue()
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        #: Set when the session stops: no task starts, and the running ones' clients stop sending.
        self.stopped = threading.Event()
        self.running = self.done = self.queued = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"benchflow-task-{i}", daemon=True) for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def status(self) -> str:
        """What the live progress line says of the pool."""
        return f"{self.running} running, {self.done} done, {self.queued} queued"

    def add(self, items: Iterable[Any]) -> None:
        """Queue the benchmark items among ``items`` that are not queued yet, in their order."""
        for item in items:
            if isinstance(item, BenchItem) and item.nodeid not in self._slots:
                slot = self._slots[item.nodeid] = _Slot(item)
                with self._lock:
                    self.queued += 1
                self._queue.put(slot)

    def take(self, item: BenchItem) -> TaskRun:
        """``item``'s run, waiting for it (queued now if it was not)."""
        self._refill()
        slot = self._slots.get(item.nodeid)
        if slot is None:
            self.add([item])
            slot = self._slots[item.nodeid]
        while not slot.done.wait(_POLL):
            self._refill()
        del self._slots[item.nodeid]
        if slot.run is None:
            # The session is stopping: pytest reports no further item, but one asked for is answered.
            return TaskRun(error=TaskCancelled("not started: the session is stopping"), interrupted=True)
        return slot.run

    def _refill(self) -> None:
        if self._upcoming is not None and not self.stopped.is_set():
            self.add(self._upcoming())

    def _work(self) -> None:
        while True:
            slot = self._queue.get()
            if slot is None:
                return
            with self._lock:
                self.queued -= 1
            try:
                if not self.stopped.is_set() and self._may_start():
                    with self._serial.get(slot.item.bench_name) or nullcontext():
                        self._run(slot)
            finally:
                slot.done.set()

    def _run(self, slot: _Slot) -> None:
        if self.stopped.is_set():
            return
        with self._lock:
            self.running += 1
        slot.started = True
        self._changed()
        try:
            # Every client of the task stops sending once the session stops (Ctrl-C, -x).
            slot.run = cancel_scope(self.stopped).run(self._execute, slot.item)
        except BaseException as e:  # SystemExit from a bench: this task's error, not the pool's end
            slot.run = TaskRun(error=TaskError(f"task {slot.item.task_id!r}: {type(e).__name__}: {e}"))
        finally:
            slot.cut_short = self.stopped.is_set()
            with self._lock:
                self.running -= 1
                self.done += 1
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.status())

    def stop(self, grace: float = STOP_GRACE) -> list[tuple[BenchItem, TaskRun]]:
        """Start no further task, let the running ones unwind (at most ``grace`` seconds), end the threads.

        Returns every started task that pytest did not report, with its run: a finished one as it
        finished, a cancelled or still running one marked ``interrupted``.
        """
        self.stopped.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left: list[tuple[BenchItem, TaskRun]] = []
        for slot in list(self._slots.values()):
            if not slot.started:
                continue
            run = slot.run if slot.done.is_set() and slot.run is not None else TaskRun()
            if slot.cut_short or not slot.done.is_set():
                run.interrupted = True
            left.append((slot.item, run))
        self._slots.clear()
        return left


def xdist_upcoming(config: pytest.Config) -> Callable[[], list[Any]] | None:
    """In an xdist worker: the items its controller has sent and it has not started yet, in order.

    xdist has no hook for "items arrived"; its worker keeps them in a queue that it lets be inspected
    under its lock (it does so itself to let a sibling steal work).
    """
    for plugin in config.pluginmanager.get_plugins():
        torun = getattr(plugin, "torun", None)
        session = getattr(plugin, "session", None)
        if torun is None or session is None or not hasattr(torun, "lock"):
            continue

        def upcoming(interactor: Any = plugin, torun: Any = torun) -> list[Any]:
            with torun.lock() as waiting:
                indices = [i for i in waiting if isinstance(i, int)]
            following = getattr(interactor, "nextitem_index", None)
            if isinstance(following, int):
                indices.insert(0, following)
            items = interactor.session.items
            return [items[i] for i in indices]

        return upcoming
    return None


def _load_scheduling() -> type:
    # By name: xdist ships no type information, and is imported only by a session that uses it.
    scheduler: Any = importlib.import_module("xdist.scheduler")
    found: type = scheduler.LoadScheduling
    return found


def AheadScheduling(config: pytest.Config, log: Any, concurrency: int) -> Any:
    """xdist's ``load`` scheduling, keeping each worker given ``2 × concurrency`` items (not its default
    of a few): a worker runs ahead only over items it was given, and reports them in order, so it needs
    N running plus N finished and waiting behind a slow one."""
    base = _load_scheduling()

    class _Ahead(base):  # type: ignore[misc,valid-type]
        ahead = 2 * concurrency

        def check_schedule(self, node: Any, duration: float = 0) -> None:
            if node.shutting_down:
                return
            if not self.pending:
                node.shutdown()
                return
            missing = self.ahead - len(self.node2pending[node])
            if missing > 0:
                self._send_tests(node, missing)

        def schedule(self) -> None:
            super().schedule()
            for node in self.nodes:
                self.check_schedule(node)

    return _Ahead(config, log)


def concurrent_safe(bench: BaseBench) -> bool:
    """Whether ``bench`` lets several of its tasks run at once in one process (``concurrent_safe = False``: not)."""
    return getattr(type(bench), "concurrent_safe", True) is not False
