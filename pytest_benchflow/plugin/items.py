"""Test items: one ``BenchItem`` per task id, under one ``BenchCollector`` per benchmark."""

from __future__ import annotations

import hashlib
import json
import os
import re
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from ..errors import BenchflowError
from ..schemas import BenchmarkResult
from .taskrun import TaskRun

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

__all__ = [
    "NODE_PREFIX",
    "BenchCollector",
    "BenchItem",
    "TaskBroken",
    "TaskUnresolved",
    "item_name",
    "run_names",
    "split_epoch",
    "split_run",
    "task_dir_name",
]

#: Node ids of benchmark tasks start with this: ``benchflow:<bench>::<name>``.
NODE_PREFIX = "benchflow:"

# Frames of pytest-benchflow itself say nothing to a bench's author.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PLAIN = re.compile(r"[\w.\-/@+=,]+(:[\w.\-/@+=,]+)*")
_MAX_PLAIN = 80
_MAX_DIR_NAME = 100
# Characters quote() leaves alone (with "-_.@+=," safe), plus "/", which it encodes as %2F.
_DIR_SAFE = re.compile(r"[A-Za-z0-9_.\-~@+=,/]+")


def item_name(task_id: str) -> str:
    """A node-id-safe name for ``task_id``: the id itself when plain, else a cleaned prefix and a hash.

    Deterministic, so node ids are the same in every run and on every xdist worker.
    """
    segments = task_id.split("/")
    if len(task_id) <= _MAX_PLAIN and _PLAIN.fullmatch(task_id) and not {"", ".", ".."} & set(segments):
        return task_id
    # No "/" in a hashed name, and no leading dots: it is one directory, never a way out of one.
    cleaned = re.sub(r"[^\w.\-@+=,]+", "_", task_id)[:48].strip("_.")
    digest = hashlib.sha1(task_id.encode()).hexdigest()[:10]
    return f"{cleaned}~{digest}" if cleaned else digest


def task_dir_name(task_id: str) -> str:
    """The name of the task's results and log directories: one path segment, unique per task id.

    "/" and "%" are percent-encoded, so ``x`` and ``x/y`` get sibling directories (never one
    inside the other) and no two ids share a name; ids that would be long, empty, ``.`` or
    ``..`` get a prefix and a hash after ``%~``, a pair percent-encoding never produces.
    """
    # The common ids ("law", "biology/70") without quote()'s cost; the result is the same.
    quoted = task_id.replace("/", "%2F") if _DIR_SAFE.fullmatch(task_id) else quote(task_id, safe="-_.@+=,")
    if len(quoted) <= _MAX_DIR_NAME and quoted not in ("", ".", ".."):
        return quoted
    digest = hashlib.sha256(task_id.encode()).hexdigest()[:16]
    return f"{quoted[:48].lstrip('.')}%~{digest}"


_EPOCH = re.compile(r"(.*)\[epoch([1-9][0-9]*)\]")
# An item's suffix with several agents: ``[gpt4o]`` or ``[gpt4o-epoch2]`` (names never end in -epochN).
_AGENT = re.compile(r"(.*)\[([A-Za-z0-9][A-Za-z0-9_.+-]*?)(?:-epoch([1-9][0-9]*))?\]")


def run_names(task_id: str, epoch: int, epochs: int, agent: str = "") -> tuple[str, str]:
    """(item name, directory name) of one epoch of a task: the task's own with one epoch, else
    ``<name>[epoch<k>]`` and ``<dir>%epoch<k>`` (percent-encoding never yields ``%e``). With several
    agents, ``<name>[<agent>]`` or ``<name>[<agent>-epoch<k>]``, and ``%@<agent>`` after the directory's."""
    if not agent:
        if epochs == 1:
            return item_name(task_id), task_dir_name(task_id)
        return f"{item_name(task_id)}[epoch{epoch}]", f"{task_dir_name(task_id)}%epoch{epoch}"
    suffix = f"-epoch{epoch}" if epochs > 1 else ""
    directory = task_dir_name(task_id) + (f"%epoch{epoch}" if epochs > 1 else "")
    return f"{item_name(task_id)}[{agent}{suffix}]", f"{directory}%@{agent}"


def split_epoch(name: str) -> tuple[str, int | None]:
    """An item name's task part and epoch (None without an ``[epoch<k>]`` suffix)."""
    found = _EPOCH.fullmatch(name)
    return (found.group(1), int(found.group(2))) if found else (name, None)


def split_run(name: str, agents: bool) -> tuple[str, int | None, str]:
    """An item name's task part, epoch (None without one) and agent ("" unless ``agents``: a session of several)."""
    if not agents or _EPOCH.fullmatch(name):  # no agent is named epochN
        return (*split_epoch(name), "")
    found = _AGENT.fullmatch(name)
    if not found:
        return name, None, ""
    return found.group(1), int(found.group(3)) if found.group(3) else None, found.group(2)


class TaskUnresolved(Exception):
    """The task ran and the agent did not resolve it: a test failure, not an error."""

    def __init__(self, result: BenchmarkResult) -> None:
        super().__init__(f"task {result.task_id!r} unresolved")
        self.result = result


def _log_excerpt(log: dict[str, Any], limit: int = 600) -> str:
    text = log.get("text") if isinstance(log.get("text"), str) else json.dumps(log, ensure_ascii=False, default=str)
    text = str(text)
    return text if len(text) <= limit else "…" + text[-limit:]


def failure_report(result: BenchmarkResult) -> str:
    """The short report of an unresolved task: its metrics and the end of its log."""
    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.metrics.items())
    lines = [f"task {result.task_id!r} unresolved", f"metrics: {metrics or '(none)'}"]
    if result.log:
        lines.append(f"log: {_log_excerpt(result.log)}")
    return "\n".join(lines)


class TaskBroken(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """Raised from an item's setup when its task could not be evaluated: reported as an error."""

    def __init__(self, error: BenchflowError) -> None:
        message = str(error)
        cause = error.__cause__
        if cause is not None and not isinstance(cause, BenchflowError):
            message += bench_traceback(cause)
        super().__init__(message, pytrace=False)
        self.error = error


def bench_traceback(cause: BaseException) -> str:
    """The part of an error's report that shows where the bench raised ``cause``: only the benchmark's own
    frames (ours say nothing to the bench's author). Kept on ``cause`` once made, so it survives pickling
    (a task process sends its errors back without their tracebacks)."""
    made: str | None = getattr(cause, "_benchflow_traceback", None)
    if made is None:
        frames = [f for f in traceback.extract_tb(cause.__traceback__) if not f.filename.startswith(_PACKAGE_DIR)]
        trace = "".join(traceback.format_list(frames[-10:]))
        exc = "".join(traceback.format_exception_only(type(cause), cause))
        made = "\n\nTraceback (most recent call last):\n" + trace + exc.rstrip()
        cause._benchflow_traceback = made  # type: ignore[attr-defined]
    return made


class BenchCollector(pytest.Collector):
    """The tasks of one benchmark; node id ``benchflow:<bench>``. ``execute`` runs one item's task.

    ``runs`` are (task id, epoch) pairs; with ``epochs`` above 1 each epoch is an item of its own.
    """

    def __init__(
        self,
        *,
        bench_name: str,
        runs: list[tuple[str, int]],
        epochs: int,
        execute: Callable[[BenchItem], None],
        agents: tuple[str, ...] = ("",),
        finished: frozenset[tuple[str, int, str]] = frozenset(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bench_name = bench_name
        self.runs = runs
        self.epochs = epochs
        self.execute = execute
        self.agents = agents
        self.finished = finished

    def collect(self) -> Iterator[BenchItem]:
        # Task by task, each agent's item next to the others': -x or a cost limit stops all agents at one task.
        for task_id, epoch in self.runs:
            for agent in self.agents:
                if (task_id, epoch, agent) in self.finished:
                    continue
                name, dir_name = run_names(task_id, epoch, self.epochs, agent)
                yield BenchItem.from_parent(
                    self,
                    name=name,
                    bench_name=self.bench_name,
                    task_id=task_id,
                    epoch=epoch,
                    dir_name=dir_name,
                    agent=agent,
                )


class BenchItem(pytest.Item):
    """One task (one epoch of it). Its setup runs the task (a broken run is an error); the test checks
    ``is_resolved``."""

    def __init__(
        self, *, bench_name: str, task_id: str, epoch: int, dir_name: str, agent: str = "", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.bench_name = bench_name
        self.task_id = task_id
        self.epoch = epoch
        self.dir_name = dir_name
        #: The agent's name in a session of several ("" with one agent).
        self.agent = agent
        #: The task's run, from its setup until its record is made (then dropped: 12,032 results weigh).
        self.task_run: TaskRun | None = None
        self.add_marker(pytest.mark.benchflow)
        self.keywords[bench_name] = True
        self.user_properties.append(("bench", bench_name))
        self.user_properties.append(("task_id", task_id))
        if agent:
            self.keywords[agent] = True
            self.user_properties.append(("agent", agent))

    @property
    def result(self) -> BenchmarkResult | None:
        """The task's BenchmarkResult (None before the run, when it broke and once reported)."""
        return self.task_run.result if self.task_run is not None else None

    def setup(self) -> None:
        assert isinstance(self.parent, BenchCollector)
        try:
            self.parent.execute(self)
        except BenchflowError as e:
            # A broken run is reported as its one-line reason (plus the bench's own traceback, if any).
            raise TaskBroken(e) from None

    def runtest(self) -> None:
        result = self.result
        assert result is not None
        if not result.is_resolved:
            raise TaskUnresolved(result)

    def repr_failure(self, excinfo: ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        if isinstance(excinfo.value, TaskUnresolved):
            return failure_report(excinfo.value.result)
        if isinstance(excinfo.value, BenchflowError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"{self.bench_name}: {self.task_id}"
