"""``BaseBench``: what a benchmark author implements to describe and evaluate its tasks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from .errors import BenchLoadError, TaskListError, one_line_reason
from .schemas import BenchArgs, BenchmarkResult, ResolvedArgs
from .untrusted import printable

__all__ = [
    "MAX_FINGERPRINT_CHARS",
    "BaseBench",
    "DataFingerprint",
    "Entrance",
    "InputPaths",
    "fingerprint_files",
    "fingerprint_records",
    "list_task_ids",
    "read_fingerprint",
]

#: An in-process evaluation entrance: takes the environment a container would get.
Entrance = Callable[[Mapping[str, str]], Any]
#: A host file (or several) a task reads: what :meth:`BaseBench.get_input_files` gives per argument.
InputPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

#: A fingerprint's digest and its label are short text; longer is a mistake (the data passed instead of its digest).
MAX_FINGERPRINT_CHARS = 256
# Files are hashed in pieces: a data set of gigabytes is never read into memory at once.
_CHUNK = 1 << 20


class DataFingerprint(NamedTuple):
    """What a bench's data is: a short ``digest`` (``sha256:<hex>``) and a ``label`` saying what was hashed.

    Two runs whose digests differ evaluated different data: ``pytest-benchflow compare``, ``--benchflow-baseline``
    and ``--benchflow-resume`` refuse to put them together.
    """

    digest: str
    label: str


#: What ``BaseBench.data_fingerprint`` may return: a fingerprint, a (digest, label) pair, a digest alone, or None.
FingerprintValue = DataFingerprint | tuple[str, str] | str | None


def fingerprint_files(paths: Iterable[str | os.PathLike[str]], label: str | None = None) -> DataFingerprint:
    """The sha256 of the files' contents, in the order given (each one's size first, so that moving bytes from one
    file to the next changes it); the label names them (``sha256 of 2 files: test.json, fewshot.json``)."""
    digest = hashlib.sha256()
    names = []
    for path in map(Path, paths):
        digest.update(f"{path.stat().st_size}\n".encode())
        with path.open("rb") as data:
            while chunk := data.read(_CHUNK):
                digest.update(chunk)
        names.append(path.name)
    described = f"sha256 of {len(names)} file{'s' if len(names) != 1 else ''}: {', '.join(names)}"
    return DataFingerprint(f"sha256:{digest.hexdigest()}", _short(label or described))


def fingerprint_records(records: Any, label: str) -> DataFingerprint:
    """The sha256 of ``records`` (JSON-like data: questions, examples) as canonical JSON: keys sorted, so the
    same data hashes the same wherever it was loaded from (a file, a parquet table, Hugging Face)."""
    text = json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return DataFingerprint(f"sha256:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()}", _short(label))


def _short(text: str) -> str:
    return text if len(text) <= MAX_FINGERPRINT_CHARS else text[: MAX_FINGERPRINT_CHARS - 1] + "…"


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

    #: One line shown by ``pytest-benchflow list`` and in reports.
    description: ClassVar[str] = ""
    #: The splits ``get_all_tasks`` accepts, shown by ``pytest-benchflow list``. A bench that declares them
    #: refuses any other ``--benchflow-split``; inherited (0.1.x benches), any split is passed on.
    splits: ClassVar[tuple[str, ...]] = ("test",)
    #: The metrics the summary averages over tasks (a macro mean); None: every numeric metric.
    #: Leave out bookkeeping figures (counts, totals, standard errors): their mean means nothing.
    summary_metrics: ClassVar[tuple[str, ...] | None] = None
    #: Keys that hold a task's gold answer in the bench's data (``"answer"``, ``"label"``): none of them may
    #: reach the agent. ``pytest-benchflow check`` runs a task and fails when a request holds one, at any depth.
    answer_fields: ClassVar[tuple[str, ...]] = ()

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

    def get_input_files(self, task_id: str) -> Mapping[str, InputPaths]:
        """Host files the task reads, which a container runner copies into its container before it starts:
        ``{argument name: host path, or a list of host paths}``. The default: none.

        In the container each file is at ``/benchflow/inputs/<argument>/<file name>``, and the argument's
        environment variable names it there (several paths joined with ``:``), so the entrance reads
        ``env["DATA_FILE"]`` the same way in-process (where nothing is copied) and in a container. Files
        are copied through the engine's API (no bind mount: remote engines work), at most
        ``BENCHFLOW_MAX_INPUT_BYTES`` in all (default 1 GiB); a file holding a secret argument's value is
        refused, as is anything not a regular file. ``self.args`` holds the session's arguments.
        """
        return {}

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

    def data_fingerprint(self, split: str) -> FingerprintValue:
        """Optional: what the data of ``split`` is, as a :class:`DataFingerprint` (a short digest and a label);
        ``(digest, label)`` or a digest alone are accepted too. None (the default): the bench declares nothing.

        Called once per session, in the controller, after ``get_all_tasks`` could list the tasks (``self.args``
        resolved). It goes into ``summary.json`` and the report; runs whose digests differ are not compared or
        resumed. :func:`fingerprint_files` hashes data files, :func:`fingerprint_records` loaded records.
        When it raises, every task of the bench errors with that one line, and none runs.
        """
        return None


def _fingerprint_problem(value: Any, what: str) -> str | None:
    """Why ``value`` cannot be a fingerprint's ``what`` (digest or label), or None when it can."""
    if not isinstance(value, str):
        return f"a {what} of type {type(value).__name__}"
    if len(value) > MAX_FINGERPRINT_CHARS:
        return f"a {what} of {len(value):,} characters (at most {MAX_FINGERPRINT_CHARS})"
    if what == "digest" and not value.strip():
        return "an empty digest"
    if not value.isprintable():
        return f"a {what} with unprintable characters"
    return None


def read_fingerprint(bench: BaseBench, name: str, split: str) -> DataFingerprint | None:
    """``bench.data_fingerprint(split)``, checked: None or a :class:`DataFingerprint` of short printable strings.

    Raises:
        BenchLoadError: one line naming the bench, when it raised or returned anything else.
    """
    call = f"{name}: {type(bench).__name__}.data_fingerprint({split!r})"
    try:
        value = bench.data_fingerprint(split)
    except Exception as e:
        raise BenchLoadError(
            f"{call} raised {printable(one_line_reason(e), 500)}; "
            "the bench's data cannot be identified, so none of its tasks runs"
        ) from None
    if value is None:
        return None
    expected = "it must return a short digest and a label (a DataFingerprint, e.g. fingerprint_files(paths)), or None"
    if isinstance(value, str):
        digest, label = value, ""
    elif isinstance(value, tuple) and len(value) == 2:
        digest, label = value
    else:
        raise BenchLoadError(f"{call} returned {type(value).__name__}; {expected}")
    problem = _fingerprint_problem(digest, "digest") or _fingerprint_problem(label, "label")
    if problem:
        raise BenchLoadError(f"{call} returned {problem}; {expected}")
    return DataFingerprint(digest, label)


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
