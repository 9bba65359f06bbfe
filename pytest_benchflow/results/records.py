"""The results format as types: a task's record, a bench's statistics and summary (docs/results.md)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from ..errors import ResultsFormatError
from ..stats import (
    ClusteredMean,
    clustered_mean,
    clustered_rate,
    mean_and_stderr,
    pass_at_k,
    pass_hat_k,
)
from ..untrusted import printable

__all__ = [
    "OUTCOMES",
    "SCHEMA_VERSION",
    "BenchInfo",
    "BenchStats",
    "BenchSummary",
    "BenchTally",
    "EpochStats",
    "MetricStats",
    "Outcome",
    "SampleRecord",
    "TaskRecord",
    "agent_label",
    "check_version",
    "json_type",
]

#: Bumped whenever a field changes meaning or disappears (adding fields does not bump it).
SCHEMA_VERSION = 1

Outcome = Literal["passed", "failed", "error"]
#: resolved, unresolved, could not be evaluated.
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "error")

_JSON_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


_LABEL_PART = 200


def agent_label(agent: Any) -> str | None:
    """How reports name a run's agent: its URL, and its name and model when it told them (``GET /info``)."""
    if not isinstance(agent, dict):
        return None
    given = agent.get("info")
    info: dict[str, Any] = given if isinstance(given, dict) else {}
    # summary.json may come from anywhere (report, compare): show only printable text of a sane length.
    about = ", ".join(f"{k} {printable(str(info[k]), _LABEL_PART)}" for k in ("model",) if info.get(k))
    name = printable(str(info.get("name") or ""), _LABEL_PART)
    described = f"{name} ({about})" if name and about else name or about
    return printable(str(agent.get("url")), _LABEL_PART) + (f": {described}" if described else "")


def json_type(value: Any) -> str:
    """How a JSON reader would name the type of ``value``."""
    return "null" if value is None else _JSON_NAMES.get(type(value), type(value).__name__)


def check_version(data: Any, where: str) -> dict[str, Any]:
    """``data`` as an object of a schema this reader understands.

    Raises:
        ResultsFormatError: not an object, or a newer schema version.
    """
    if not isinstance(data, dict):
        raise ResultsFormatError(f"{where}: expected a JSON object, found {json_type(data)}")
    version = data.get("schema_version", 1)
    if not isinstance(version, int):
        raise ResultsFormatError(f"{where}: not a pytest-benchflow results record")
    if version > SCHEMA_VERSION:
        raise ResultsFormatError(
            f"{where}: results schema version {version} is newer than this pytest-benchflow understands "
            f"({SCHEMA_VERSION}); upgrade pytest-benchflow to read it"
        )
    return data


def _check_types(data: dict[str, Any], types: dict[str, tuple[type, ...]], where: str) -> None:
    for key, kinds in types.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise ResultsFormatError(f"{where}: {key!r} must be {_JSON_NAMES[kinds[0]]}, not {json_type(value)}")


# A task's usage sums its answers' counts (each below usage.MAX_TOKENS): more than this is a tampered file,
# and a number too large for a float would break the cost.
_MAX_USAGE = 10**18


def _check_usage(usage: Any, where: str) -> None:
    for key, value in (usage or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_USAGE:
            raise ResultsFormatError(f"{where}: 'usage.{key}' must be a whole number from 0 to below 1e18")


@dataclass
class TaskRecord:
    """One finished task: a line of ``results.jsonl``."""

    bench: str
    task_id: str
    outcome: Outcome
    nodeid: str = ""
    is_resolved: bool | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    reason: str | None = None
    results_dir: str = ""
    log_dir: str = ""
    finished_at: float = 0.0
    details: str | None = None
    other: dict[str, Any] | None = None
    notes: list[str] | None = None
    usage: dict[str, int] | None = None
    #: Which run of the task (``--benchflow-epochs``), from 1.
    epoch: int = 1
    #: How many samples the task reported (in ``samples.jsonl``), None when it reported none.
    samples: int | None = None
    #: The Docker engine the task ran on (container runners), None in-process.
    engine: str | None = None

    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "nodeid": (str,),
        "engine": (str,),
        "epoch": (int,),
        "samples": (int,),
        "is_resolved": (bool,),
        "metrics": (dict,),
        "duration": (int, float),
        "reason": (str,),
        "results_dir": (str,),
        "log_dir": (str,),
        "finished_at": (int, float),
        "details": (str,),
        "other": (dict,),
        "notes": (list,),
        "usage": (dict,),
    }

    def to_json(self) -> dict[str, Any]:
        """The record as written, with its schema version; empty optional fields left out."""
        # Shallow on purpose (asdict deep-copies): this runs twice per task, 12,032 times in a large run.
        data = {"schema_version": SCHEMA_VERSION, **self.__dict__}
        for optional in ("details", "other", "notes", "usage", "samples", "engine"):
            if not data[optional]:
                del data[optional]
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> TaskRecord:
        """Validate a record read back (unknown fields ignored).

        Raises:
            ResultsFormatError: naming ``where`` and the field that is missing or of the wrong type.
        """
        data = check_version(data, where)
        if not all(isinstance(data.get(k), str) for k in ("bench", "task_id", "outcome")):
            raise ResultsFormatError(f"{where}: record lacks bench, task_id or outcome (strings)")
        if data["outcome"] not in OUTCOMES:
            raise ResultsFormatError(f"{where}: outcome {data['outcome']!r} is not one of {', '.join(OUTCOMES)}")
        _check_types(data, cls._TYPES, where)
        _check_usage(data.get("usage"), where)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        return cls(**values)


@dataclass
class SampleRecord:
    """One sample of a task's epoch: a line of ``samples.jsonl``."""

    bench: str
    task_id: str
    sample_id: str
    score: float
    epoch: int = 1
    metadata: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if not data["metadata"]:
            del data["metadata"]
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> SampleRecord:
        if not isinstance(data, dict):
            raise ResultsFormatError(f"{where}: expected a JSON object, found {json_type(data)}")
        if not all(isinstance(data.get(k), str) for k in ("bench", "task_id", "sample_id")):
            raise ResultsFormatError(f"{where}: sample lacks bench, task_id or sample_id (strings)")
        score = data.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise ResultsFormatError(f"{where}: 'score' must be a number from 0 to 1, not {score!r}")
        _check_types(data, {"epoch": (int,), "metadata": (dict,)}, where)
        return cls(
            bench=data["bench"],
            task_id=data["task_id"],
            sample_id=data["sample_id"],
            score=float(score),
            epoch=data.get("epoch") or 1,
            metadata=data.get("metadata"),
        )


@dataclass
class EpochStats:
    """A bench run for several epochs: per-epoch rates, pass@k and pass^k over tasks, flaky tasks."""

    epochs: int
    #: The resolution rate of each epoch, and their mean.
    per_epoch: list[float | None]
    mean: float | None
    #: k → the mean over tasks (with at least k epochs) of the unbiased estimator.
    pass_at_k: dict[str, float]
    pass_hat_k: dict[str, float]
    #: Tasks whose outcome differs between epochs.
    flaky: list[str]


def _ks(n: int) -> list[int]:
    """1, 2, 4, … and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return [*ks, n]


def epoch_stats(records: Iterable[TaskRecord]) -> EpochStats | None:
    """The epochs of a bench's records; None when every task ran once."""
    by_task: dict[str, list[TaskRecord]] = {}
    by_epoch: dict[int, list[bool]] = {}
    for record in records:
        by_task.setdefault(record.task_id, []).append(record)
        by_epoch.setdefault(record.epoch, []).append(record.outcome == "passed")
    epochs = max(by_epoch, default=1)
    if epochs < 2:
        return None
    per_epoch = [sum(by_epoch[e]) / len(by_epoch[e]) if by_epoch.get(e) else None for e in range(1, epochs + 1)]
    known = [r for r in per_epoch if r is not None]
    at: dict[str, float] = {}
    hat: dict[str, float] = {}
    for k in _ks(epochs):
        tried = [(len(rs), sum(r.outcome == "passed" for r in rs)) for rs in by_task.values() if len(rs) >= k]
        if tried:
            at[str(k)] = sum(pass_at_k(n, c, k) for n, c in tried) / len(tried)
            hat[str(k)] = sum(pass_hat_k(n, c, k) for n, c in tried) / len(tried)
    return EpochStats(
        epochs=epochs,
        per_epoch=per_epoch,
        mean=sum(known) / len(known) if known else None,
        pass_at_k=at,
        pass_hat_k=hat,
        flaky=sorted(t for t, rs in by_task.items() if len({r.outcome for r in rs}) > 1),
    )


@dataclass
class MetricStats:
    """A metric's macro mean over tasks, its standard error and how many tasks had it."""

    mean: float
    stderr: float
    count: int


@dataclass
class BenchStats:
    """Counts and statistics of one bench's task outcomes."""

    tasks: int = 0
    resolved: int = 0
    failed: int = 0
    errors: int = 0
    resolution_rate: float | None = None
    #: Wilson's interval; with epochs, at the effective sample size of epochs clustered by task.
    resolution_rate_ci95: tuple[float, float] = (0.0, 1.0)
    #: Distinct task ids (``tasks`` counts task runs: tasks × epochs).
    task_ids: int = 0
    #: The most epochs any one task ran (1 without ``--benchflow-epochs``).
    epochs_per_task: int = 1
    metrics: dict[str, MetricStats] = field(default_factory=dict)
    #: Tokens and requests summed over the tasks that reported usage (None when none did); ``cost`` with a price.
    usage: dict[str, Any] | None = None
    #: The mean sample score with its clustered standard error (None when no task reported samples).
    samples: ClusteredMean | None = None
    #: With ``--benchflow-epochs`` above 1: per-epoch rates, pass@k, pass^k, flaky tasks.
    epochs: EpochStats | None = None
    #: Per Docker engine the tasks ran on: ``tasks``, ``errors`` and ``seconds`` (None when none ran in a container).
    engines: dict[str, dict[str, float]] | None = None


@dataclass
class BenchInfo:
    """What the session knew of a bench, written beside its statistics in ``summary.json``."""

    bench_class: str = ""
    runner: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    summary_metrics: list[str] | None = None
    breakdown: dict[str, Any] | None = None

    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "bench_class": (str,),
        "runner": (str,),
        "args": (dict,),
        "summary_metrics": (list,),
        "breakdown": (dict,),
    }

    @classmethod
    def from_json(cls, data: Any, where: str) -> BenchInfo:
        if not isinstance(data, dict):
            raise ResultsFormatError(f"{where} must be an object, not {json_type(data)}")
        _check_types(data, cls._TYPES, where)
        _check_usage(data.get("usage"), where)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and v is not None})


@dataclass
class BenchSummary:
    """A bench in ``summary.json``: its info and statistics, flattened into one object."""

    info: BenchInfo
    stats: BenchStats

    def to_json(self) -> dict[str, Any]:
        stats = asdict(self.stats)
        stats["resolution_rate_ci95"] = list(self.stats.resolution_rate_ci95)
        if self.stats.samples is not None:
            stats["samples"]["ci95"] = list(self.stats.samples.ci95)
        for optional in ("samples", "epochs", "engines"):
            if stats[optional] is None:
                del stats[optional]
        return {**asdict(self.info), **stats}


@dataclass
class BenchTally:
    """One bench's task outcomes and samples: the last record of each task's epoch counts (a resumed
    run reruns errors), with its samples."""

    last: dict[tuple[str, int], TaskRecord] = field(default_factory=dict)
    samples: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def add(self, record: TaskRecord, samples: Iterable[SampleRecord] | None = None) -> None:
        key = (record.task_id, record.epoch)
        self.last.pop(key, None)  # re-inserted: the order is the order tasks finished
        self.last[key] = record
        if samples is not None:
            scores = [s.score for s in samples]
            if scores:
                self.samples[key] = scores
            else:
                self.samples.pop(key, None)

    @property
    def records(self) -> list[dict[str, Any]]:
        """What ``BaseBench.summarize`` receives: one ``{"task_id", "epoch", "outcome", "metrics"}`` per task run."""
        return [
            {"task_id": r.task_id, "epoch": r.epoch, "outcome": r.outcome, "metrics": r.metrics}
            for r in self.last.values()
        ]

    def engines(self) -> dict[str, dict[str, float]] | None:
        """Tasks, errors and seconds per engine, for the task runs that name one."""
        found: dict[str, dict[str, float]] = {}
        for record in self.last.values():
            if record.engine:
                row = found.setdefault(record.engine, {"tasks": 0, "errors": 0, "seconds": 0.0})
                row["tasks"] += 1
                row["errors"] += record.outcome == "error"
                row["seconds"] = round(row["seconds"] + record.duration, 6)
        return found or None

    def sample_stats(self) -> ClusteredMean | None:
        """The mean sample score, its samples clustered by task (all epochs of a task in one cluster)."""
        clusters: dict[str, list[float]] = {}
        for (task_id, _), scores in self.samples.items():
            clusters.setdefault(task_id, []).extend(scores)
        return clustered_mean(list(clusters.values()))

    def usage(self) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for record in self.last.values():
            for key, value in (record.usage or {}).items():
                if isinstance(value, int):
                    total[key] = total.get(key, 0) + value
        return total

    def stats(self, metric_names: Iterable[str] | None = None) -> BenchStats:
        """Counts, the resolution rate with its interval, and the means of ``metric_names`` (None: all)."""
        counts = dict.fromkeys(OUTCOMES, 0)
        metrics: dict[str, list[float]] = {}
        for record in self.last.values():
            counts[record.outcome] += 1
            for name, value in record.metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    metrics.setdefault(name, []).append(float(value))
        tasks, resolved = len(self.last), counts["passed"]
        names = metrics if metric_names is None else metric_names
        # Errors are tasks whose answer we never saw: they count against the rate, as unresolved.
        # The epochs of one task are one cluster: they are not independent evidence about the agent.
        by_task: dict[str, list[bool]] = {}
        for record in self.last.values():
            by_task.setdefault(record.task_id, []).append(record.outcome == "passed")
        rate = clustered_rate(list(by_task.values()))
        return BenchStats(
            tasks=tasks,
            resolved=resolved,
            failed=counts["failed"],
            errors=counts["error"],
            resolution_rate=resolved / tasks if tasks else None,
            resolution_rate_ci95=(rate.low, rate.high),
            task_ids=len(by_task),
            epochs_per_task=max(map(len, by_task.values()), default=1),
            metrics={
                n: MetricStats(*mean_and_stderr(metrics[n]), count=len(metrics[n])) for n in names if n in metrics
            },
            usage=self.usage() or None,
            samples=self.sample_stats(),
            epochs=epoch_stats(self.last.values()),
            engines=self.engines(),
        )
