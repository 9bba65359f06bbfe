"""``TaskProcesses``: processes forked from the pytest process that run its in-process tasks
(``--benchflow-task-processes P`` with ``--benchflow-concurrency N``).

N tasks at once in threads share one GIL: thousands of small in-process tasks (MMLU-Pro per question
against a fast model) are then bound by one core, whatever N is. With P task processes the pool's threads
hand each in-process task to one of P processes forked after collection (so the benches, items and
settings are already theirs), each running up to ceil(N / P) tasks in threads, and wait for its
``TaskRun``. Everything else stays here: pytest's reporting, the records, ``-x``, the cost limit, and the
tasks of container runners (they wait on containers, not on the CPU).

Frames are pickles on one socket pair per process. This process sends ``("run", nodeid)`` and
``("stop",)``; a task process answers ``(nodeid, TaskRun, news)``, news being what the pytest process must know of
it since its last answer (secrets found, cache lookups skipped). It ignores Ctrl-C and SIGTERM (this
process stops it with ``stop``), and on end of file (this process ended, however) it stops its tasks and
exits. A task process that dies takes only its own running tasks: they end as errors, and no task is
sent to it again.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, BinaryIO

from ..client._cancel import cancel_scope
from ..client._limit import limit_for
from ..errors import BenchflowError, InfraError, TaskError, TaskInterrupted
from ..sandbox.recipe import ProviderRecipe
from .items import BenchItem, bench_traceback
from .taskrun import TaskRun

if TYPE_CHECKING:
    from .session import BenchflowRun

__all__ = ["TaskProcesses", "local_benches"]

# How long a stopped or orphaned task process gives its running tasks to unwind before it exits anyway.
_GRACE = 60.0
# What stops a session; a task process ignores them and is stopped by the pytest process instead.
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# How long the pytest process waits for a task process to exit once told to, before killing it.
_EXIT_GRACE = 10.0


def local_benches(run: BenchflowRun) -> set[str]:
    """The benches whose tasks a task process runs: those of the in-process runner."""
    return {name for name, ctx in run.benches.items() if ctx.runner_name == "local"}


class _Child:
    """This process's end of one task process: its connection, pid and the tasks sent to it."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.send_lock = threading.Lock()
        self.waiting: dict[str, _Waiter] = {}
        self.alive = True


class _Waiter:
    """A pool thread waiting for the run of task ``task_id``."""

    __slots__ = ("done", "run", "task_id")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.done = threading.Event()
        self.run: TaskRun | None = None


class TaskProcesses:
    """``count`` forked processes running the in-process tasks of ``run`` that :meth:`execute` is given."""

    def __init__(self, run: BenchflowRun, items: Iterable[Any], count: int, concurrency: int) -> None:
        self.run = run
        self._local = local_benches(run)
        self._lock = threading.Lock()
        self._children: list[_Child] = []
        self._stopping = False
        by_id = {item.nodeid: item for item in items if isinstance(item, BenchItem)}
        threads = math.ceil(concurrency / count)
        for _ in range(count):
            ours, theirs = socket.socketpair()
            # Held until the child ignores them: a Ctrl-C in between would run pytest's own ending in the child.
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            with warnings.catch_warnings():
                # Python 3.12+ warns of fork() beside other threads: those alive now (an agent served in-process,
                # the progress display) hold no lock a task process takes, and the child never runs them.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                # Closed for real: close() would keep a socket's descriptor while its reader (made by the
                # receiving thread) exists, and a sibling holding it open never sees the end of file.
                for sock in (ours, *(child.sock for child in self._children)):
                    os.close(sock.detach())
                _serve(run, by_id, theirs, threads)
            theirs.close()
            child = _Child(pid, ours)
            self._children.append(child)
            threading.Thread(target=self._receive, args=(child,), name=f"benchflow-tasks-{pid}", daemon=True).start()

    def execute(self, item: BenchItem) -> TaskRun:
        """``item``'s run: in a task process for an in-process bench, in the calling thread otherwise."""
        if item.bench_name not in self._local:
            return self.run.execute(item)
        waiter = _Waiter(item.task_id)
        with self._lock:
            alive = [child for child in self._children if child.alive]
            if self._stopping:
                return TaskRun(
                    error=TaskError(f"task {item.task_id!r} was not run: the session is stopping"), interrupted=True
                )
            if not alive:
                return TaskRun(error=TaskError(f"task {item.task_id!r} was not run: every task process has ended"))
            child = min(alive, key=lambda c: len(c.waiting))
            child.waiting[item.nodeid] = waiter
        try:
            _send(child, ("run", item.nodeid))
        except OSError:
            self._died(child)
        waiter.done.wait()
        assert waiter.run is not None
        return waiter.run

    def interrupt(self) -> None:
        """Stop the tasks running in every task process (the session is stopping: Ctrl-C, ``-x``)."""
        with self._lock:
            self._stopping = True
        for child in self._children:
            try:
                _send(child, ("stop",))
            except OSError:
                pass

    def close(self, grace: float = _EXIT_GRACE) -> None:
        """End every task process and reap it; one still there after ``grace`` seconds is killed (the pool
        has already waited for every task it will report)."""
        for child in self._children:
            try:
                child.sock.shutdown(socket.SHUT_WR)  # end of file: the process stops what runs and exits
            except OSError:
                pass
        deadline = time.monotonic() + grace
        for child in self._children:
            while True:
                try:
                    done, _ = os.waitpid(child.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(child.pid, signal.SIGKILL)
                    os.waitpid(child.pid, 0)
                    break
                time.sleep(0.02)
            self._died(child)
            child.sock.close()

    def _receive(self, child: _Child) -> None:
        reader = child.sock.makefile("rb")
        while True:
            try:
                nodeid, payload, news = _receive(reader)
            except (EOFError, OSError):
                break
            news.tell(self.run)
            with self._lock:
                waiter = child.waiting.pop(nodeid, None)
            if waiter is not None:
                waiter.run = _unpacked(waiter.task_id, payload)
                waiter.done.set()
        self._died(child)

    def _died(self, child: _Child) -> None:
        """``child`` is gone: each task it still had ends as an ``infra`` error, as on a crashed xdist worker
        (interrupted when the session stops)."""
        with self._lock:
            child.alive = False
            left, child.waiting = child.waiting, {}
            stopping = self._stopping
        for waiter in left.values():
            if stopping:
                waiter.run = TaskRun(error=TaskInterrupted(f"task {waiter.task_id!r} was interrupted while it ran"))
                waiter.run.interrupted = True
            else:
                ended = f"task {waiter.task_id!r}: its task process (pid {child.pid}) ended before the task finished"
                waiter.run = TaskRun(error=InfraError(ended))
            waiter.done.set()


class _News:
    """What a task process learnt that the pytest process's reporting needs (it has its own copy of the run):
    the secrets its tasks resolved, and the lookups and writes its copy of the cache skipped."""

    def __init__(self, run: BenchflowRun) -> None:
        self.secrets: set[str] = set(run.secrets)
        self.cache_skipped = 0
        self.cache_problem: str | None = None

    def since_last(self, run: BenchflowRun) -> _News:
        """What is new since the last call (in the task process; this object keeps the totals sent)."""
        new = _News.__new__(_News)
        new.secrets = run.secrets - self.secrets
        self.secrets.update(new.secrets)
        skipped = run.cache.skipped if run.cache is not None else 0
        new.cache_skipped, self.cache_skipped = skipped - self.cache_skipped, skipped
        new.cache_problem = run.cache.problem if run.cache is not None else None
        return new

    def tell(self, run: BenchflowRun) -> None:
        """Add it to ``run`` (in the pytest process): masked from now on, counted in the session's cache note."""
        if self.secrets:
            run.add_secrets(sorted(self.secrets))
        if self.cache_skipped and run.cache is not None:
            run.cache.count_skipped(self.cache_skipped, self.cache_problem)


def _send(child: _Child, message: tuple[Any, ...]) -> None:
    frame = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    with child.send_lock:
        child.sock.sendall(_framed(frame))


def _framed(frame: bytes) -> bytes:
    return len(frame).to_bytes(4, "big") + frame


def _receive(reader: BinaryIO) -> Any:
    """The next frame's object; ``EOFError`` at the end (or in the middle of a frame: the sender died)."""
    head = reader.read(4)
    frame = reader.read(int.from_bytes(head, "big")) if len(head) == 4 else b""
    if not frame:
        raise EOFError
    return pickle.loads(frame)


def _unpacked(task_id: str, payload: bytes) -> TaskRun:
    """The run a task process sent for ``task_id``; an error run, never an exception, when it does not load
    (the task process checked that it does: this is the last guard against a pool thread waiting forever)."""
    try:
        loaded: tuple[TaskRun, BaseException | None] = pickle.loads(payload)
    except Exception as e:
        return TaskRun(error=TaskError(f"task {task_id!r}: its run could not be read back from its task process ({e})"))
    task_run, cause = loaded
    if cause is not None and task_run.error is not None:
        task_run.error.__cause__ = cause
    return task_run


def _serve(run: BenchflowRun, items: dict[str, BenchItem], connection: socket.socket, threads: int) -> None:
    """A task process: run each task it is sent, answer its ``TaskRun``; exit at end of file."""
    # This process decides when tasks stop: Ctrl-C reaches the whole process group, and a task process that
    # unwound by itself would leave its tasks without records.
    for stop in _STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    status = 0
    try:
        _run_tasks(run, items, connection, threads)
    except BaseException:
        traceback.print_exc()
        status = 70
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # what the bench printed: os._exit would drop it
            except Exception:
                pass
        os._exit(status)  # never pytest's teardown: that belongs to the process that forked this one


def _run_tasks(run: BenchflowRun, items: dict[str, BenchItem], connection: socket.socket, threads: int) -> None:
    # The live display is the pytest process's: a copy here would write over its line with stale counts.
    run.display = None
    run.progress = lambda bench, task: None
    stopped = threading.Event()
    send_lock = threading.Lock()
    news = _News(run)
    provider = run.sandbox_provider
    if provider is not None:
        # A forked provider would share its parent's connections: this process makes its own.
        run.sandbox_provider = ProviderRecipe.of(provider).build(
            run.run_id, "a task process", "run with --benchflow-task-processes 1"
        )
    for url in {run.agent_url, *run.agents.values()}:
        limit_for(url, threads)

    def one(nodeid: str) -> None:
        item = items[nodeid]
        try:
            task_run = cancel_scope(stopped).run(run.execute, item)
        except BaseException as e:
            task_run = TaskRun(error=TaskError(f"task {item.task_id!r}: {type(e).__name__}: {e}"))
        with send_lock:
            connection.sendall(_framed(_packed(nodeid, item.task_id, task_run, news.since_last(run))))

    futures = []
    # Its threads are never joined: the process ends with os._exit once its tasks are answered (or past the grace).
    pool = ThreadPoolExecutor(threads, thread_name_prefix="benchflow-task")
    reader = connection.makefile("rb")
    while True:
        try:
            message = _receive(reader)
        except (EOFError, OSError):
            message = ("end",)
        if message[0] == "run":
            futures.append(pool.submit(one, message[1]))
            continue
        if not stopped.is_set():
            stopped.set()
            for runner in run.runners():
                runner.interrupt()
        if message[0] == "end":
            break
    wait(futures, timeout=_GRACE)
    if run.sandbox_provider is not None:
        run.sandbox_provider.close_all()


def _packed(nodeid: str, task_id: str, task_run: TaskRun, news: _News) -> bytes:
    """The frame answering ``nodeid``: its run, and its error's cause (pickle drops ``__cause__`` and
    tracebacks; the bench's traceback goes along as text), pickled apart from ``nodeid`` so that the pytest
    process can always tell which task a frame answers.

    What does not survive pickling both ways (an exception whose ``__init__`` takes other arguments than its
    ``args``; a lambda) is replaced rather than sent: a cause by a plain exception with the same words and
    traceback, else the whole run by a ``TaskError`` saying so, with the run's usage."""
    error = task_run.error
    cause = error.__cause__ if error is not None else None
    if cause is not None and not isinstance(cause, BenchflowError):
        bench_traceback(cause)
    payload, problem = _pickled(task_run, cause)
    if problem is not None and cause is not None:
        payload, _ = _pickled(task_run, _stand_in(cause))
    if payload is None:
        why = f"{type(problem).__name__} in its task process: {problem}"
        if error is not None:
            shown = f"{type(error).__name__}: {error} (sent back as text: {why})"
        else:
            shown = f"task {task_id!r}: its result could not be sent back ({why})"
        replaced = TaskRun(
            error=TaskError(shown), usage=task_run.usage, duration=task_run.duration, notes=task_run.notes
        )
        payload = pickle.dumps((replaced, None), protocol=pickle.HIGHEST_PROTOCOL)
    return pickle.dumps((nodeid, payload, news), protocol=pickle.HIGHEST_PROTOCOL)


def _pickled(task_run: TaskRun, cause: BaseException | None) -> tuple[bytes | None, Exception | None]:
    """``(task_run, cause)`` pickled, with an error seen to load again (as the pytest process, with the same
    classes, will load it); else None and why. A result holds only what JSON can (schemas), so it loads as
    it pickles: only exceptions are loaded here, and the pytest process's ``_unpacked`` guards the rest."""
    try:
        payload = pickle.dumps((task_run, cause), protocol=pickle.HIGHEST_PROTOCOL)
        if task_run.error is not None:
            pickle.loads(payload)
    except Exception as e:
        return None, e
    return payload, None


def _stand_in(cause: BaseException) -> Exception:
    """A cause that pickles, reported as ``cause`` is: the same words and the bench's traceback text."""
    stand_in = Exception(str(cause))
    traced = getattr(cause, "_benchflow_traceback", None)
    if traced is not None:
        stand_in._benchflow_traceback = traced  # type: ignore[attr-defined]
    return stand_in
