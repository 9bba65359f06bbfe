"""``BaseBench``: what a benchmark author implements to describe and evaluate its tasks."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .errors import TaskListError
from .schemas import BenchArgs, BenchmarkResult, ResolvedArgs

__all__ = ["BaseBench", "Entrance", "list_task_ids"]

#: An in-process evaluation entrance: takes the environment a container would get.
Entrance = Callable[[Mapping[str, str]], Any]

_local_lock = threading.Lock()


def _task_local(bench: BaseBench) -> threading.local:
    local: threading.local | None = bench.__dict__.get("_benchflow_local")
    if local is None:
        with _local_lock:
            local = bench.__dict__.setdefault("_benchflow_local", threading.local())
    return local


class BaseBench(ABC):
    """One benchmark. Implement the BenchFlow interface: ``get_args``, ``get_all_tasks`` and
    ``get_result``, plus ``get_entrypoint`` to run in-process and/or the three container
    methods (``get_image_name``, ``get_results_dir_in_container``,
    ``get_log_files_dir_in_container``) to run in a container. A bench that runs only
    in-process may leave the container methods out: their defaults say "no container".

    While a task runs, ``self.results_dir`` and ``self.log_files_dir`` are that task's
    host directories, even when several tasks of one instance run at once in threads
    (each thread sees its own). ``self.args`` holds the arguments resolved for the
    session (from ``get_args(None)``) when ``get_all_tasks`` runs.
    """

    #: One line shown by ``benchflow list`` and in reports.
    description: ClassVar[str] = ""
    #: The splits ``get_all_tasks`` accepts, shown by ``benchflow list``. A bench that declares them
    #: refuses any other ``--benchflow-split``; inherited (0.1.x benches), any split is passed on.
    splits: ClassVar[tuple[str, ...]] = ("test",)
    #: The metrics the summary averages over tasks (a macro mean); None: every numeric metric.
    #: Leave out bookkeeping figures (counts, totals, standard errors): their mean means nothing.
    summary_metrics: ClassVar[tuple[str, ...] | None] = None

    #: Whether several of this bench's tasks may run at once in one process (``--benchflow-concurrency``).
    #: A bench that keeps per-task state in module globals or in ``self`` (other than ``results_dir`` and
    #: ``log_files_dir``, which the harness keeps per task thread) sets it to False: its tasks then run one
    #: at a time, and the session says so in one line.
    concurrent_safe: ClassVar[bool] = True

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"benchflow.{type(self).__name__}")
        self.args: ResolvedArgs = ResolvedArgs()

    @property
    def results_dir(self) -> str | None:
        return getattr(_task_local(self), "results_dir", None)

    @results_dir.setter
    def results_dir(self, value: str | None) -> None:
        _task_local(self).results_dir = value

    @property
    def log_files_dir(self) -> str | None:
        return getattr(_task_local(self), "log_files_dir", None)

    @log_files_dir.setter
    def log_files_dir(self, value: str | None) -> None:
        _task_local(self).log_files_dir = value

    @abstractmethod
    def get_args(self, task_id: str | None) -> BenchArgs:
        """The arguments a task takes (``task_id`` is None when resolving for task listing).

        Must return a :class:`BenchArgs` (``BenchArgs(None)`` for none); anything else is an error naming the bench.
        """

    def get_image_name(self) -> str | None:
        """The container image that evaluates one task; None (the default): no container."""
        return None

    def get_results_dir_in_container(self) -> str | None:
        """Where, inside the container, the benchmark writes its results; None without a container."""
        return None

    def get_log_files_dir_in_container(self) -> str | None:
        """Where, inside the container, the benchmark writes logs (traces, trajectories); None without one."""
        return None

    @abstractmethod
    def get_all_tasks(self, split: str) -> dict[str, Any]:
        """``{"task_ids": [...], "error_message": None}`` for ``split``."""

    @abstractmethod
    def get_result(self, task_id: str) -> BenchmarkResult:
        """Read ``self.results_dir`` / ``self.log_files_dir`` and say how the task went.

        A dict is accepted too and validated into a :class:`BenchmarkResult`.
        """

    def get_entrypoint(self) -> Entrance | None:
        """The in-process evaluation function, the same one the image's entrypoint calls.

        It takes the environment mapping the container would get. ``None`` (the
        default): the bench runs only in its container.
        """
        return None

    def summarize(self, tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]] | None:
        """Optional breakdown for the summary: rows of named figures, e.g. accuracy per category.

        ``tasks`` holds one ``{"task_id", "outcome", "metrics"}`` dict per finished task.
        It runs in the process that writes the summary, after all tasks. A row named
        ``overall`` is the pooled total of the others (a micro average); the terminal labels it so.
        """
        return None


def list_task_ids(bench: BaseBench, split: str) -> list[str]:
    """The validated task ids of ``split``.

    Raises:
        TaskListError: ``error_message`` set, not a dict, no ids, duplicates or non-string ids.
    """
    name = type(bench).__name__
    try:
        listing = bench.get_all_tasks(split)
    except TaskListError:
        raise
    except Exception as e:
        raise TaskListError(f"{name}.get_all_tasks({split!r}) raised {type(e).__name__}: {e}") from e
    if not isinstance(listing, Mapping):
        raise TaskListError(f"{name}.get_all_tasks({split!r}) returned {type(listing).__name__}, expected a dict")
    if listing.get("error_message"):
        raise TaskListError(f"{name}.get_all_tasks({split!r}) reported: {listing['error_message']}")
    ids = listing.get("task_ids")
    if not isinstance(ids, (list, tuple)):
        raise TaskListError(f"{name}.get_all_tasks({split!r}) has no 'task_ids' list")
    if not ids:
        raise TaskListError(f"{name}.get_all_tasks({split!r}) returned no tasks")
    bad = [i for i in ids if not isinstance(i, str)]
    if bad:
        raise TaskListError(
            f"{name}.get_all_tasks({split!r}): task ids must be strings, got {type(bad[0]).__name__} {bad[0]!r}"
        )
    seen: set[str] = set()
    dupes = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
    if dupes:
        raise TaskListError(f"{name}.get_all_tasks({split!r}): duplicate task ids: {', '.join(sorted(set(dupes))[:5])}")
    return list(ids)
