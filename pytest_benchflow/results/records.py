"""The results format as types: a task's record, a bench's statistics and summary (docs/results.md)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from types import UnionType
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from ..bench import MAX_FINGERPRINT_CHARS
from ..errors import ERROR_KINDS, INFRASTRUCTURE_KINDS, ErrorKind, ResultsFormatError
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
    "bench_key",
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


def bench_key(bench: str, agent: str | None) -> str:
    """Where a record counts in a summary: its bench, or ``bench[agent]`` in a session of several agents."""
    return f"{bench}[{agent}]" if agent else bench


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


# What an earlier attempt of a rerun task may say (``TaskRecord.attempts``).
_ATTEMPT_TYPES: dict[str, tuple[type, ...]] = {
    "reason": (str,),
    "engine": (str,),
    "duration": (int, float),
    "usage": (dict,),
}


def _check_attempts(attempts: Any, where: str) -> None:
    for i, attempt in enumerate(attempts or []):
        at = f"{where}: 'attempts[{i}]'"
        if not isinstance(attempt, dict):
            raise ResultsFormatError(f"{at} must be an object, not {json_type(attempt)}")
        if attempt.get("error_kind") not in ERROR_KINDS:
            kinds = ", ".join(ERROR_KINDS)
            raise ResultsFormatError(f"{at}.error_kind {attempt.get('error_kind')!r} is not one of {kinds}")
        _check_types(attempt, _ATTEMPT_TYPES, at)
        _check_usage(attempt.get("usage"), at)


# The keys of a field's metadata that the record schema reads (dataclasses.field(metadata=...)).
_OMIT_EMPTY = "benchflow_omit_empty"
_CHECK = "benchflow_check"
_RANGE = "benchflow_range"


def optional(default: Any = None, *, check: Callable[[Any, str], None] | None = None) -> Any:
    """A record field left out of the JSON when empty (None, 0, "", {} or []); ``check(value, where)``
    validates it further on read-back (raising ResultsFormatError)."""
    return field(default=default, metadata={_OMIT_EMPTY: True, _CHECK: check})


def _json_kinds(hint: Any, owner: str, name: str) -> tuple[tuple[type, ...], tuple[Any, ...] | None]:
    """The Python types a JSON reader gives for a field declared ``hint`` (None allowed), and a Literal's values."""
    if get_origin(hint) in (Union, UnionType):
        kinds = [a for a in get_args(hint) if a is not type(None)]
        if len(kinds) != 1:
            raise TypeError(f"{owner}.{name}: a record field has one type (or that type | None), not {hint}")
        hint = kinds[0]
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return (type(choices[0]),), choices
    kind = get_origin(hint) or hint
    if kind is Any or not isinstance(kind, type) or kind not in _JSON_NAMES:
        raise TypeError(
            f"{owner}.{name}: a record field has a JSON type (str, int, float, bool, dict or list), not {hint}"
        )
    # JSON has one kind of number: a float field reads 1 as well as 1.0.
    return ((int, float) if kind is float else (kind,)), None


@dataclass(frozen=True)
class _Schema:
    """What a record class declares, read once from its dataclass fields and type hints."""

    #: Fields without a default: strings (or string Literals) that every line must have.
    required: tuple[str, ...]
    #: Field → the JSON types it may have (checked when the value is not null).
    types: dict[str, tuple[type, ...]]
    #: Literal fields → their allowed values.
    choices: dict[str, tuple[Any, ...]]
    #: Fields left out of the JSON when empty, in declaration order.
    omit_empty: tuple[str, ...]
    #: Further checks, ``check(value, where)``.
    checks: tuple[tuple[str, Callable[[Any, str], None]], ...]
    #: Numbers bounded by ``(low, high)``, both included (required: checked even when missing).
    ranges: tuple[tuple[str, float, float], ...]
    #: The fields a line may carry (``extra`` is not one: its items are merged into the line).
    names: frozenset[str]
    #: Float fields: read back as floats (JSON writes 1.0 as 1 in some writers).
    float_fields: tuple[str, ...]
    #: Whether the class keeps undeclared fields in its ``extra``.
    keeps_extra: bool


def _schema_of(cls: type) -> _Schema:
    hints = get_type_hints(cls)
    required: list[str] = []
    types: dict[str, tuple[type, ...]] = {}
    choices: dict[str, tuple[Any, ...]] = {}
    omit: list[str] = []
    checks: list[tuple[str, Callable[[Any, str], None]]] = []
    ranges: list[tuple[str, float, float]] = []
    floats: list[str] = []
    for f in fields(cls):
        if f.name == "extra":
            continue
        kinds, literal = _json_kinds(hints[f.name], cls.__name__, f.name)
        bounds = f.metadata.get(_RANGE)
        if bounds is not None:
            ranges.append((f.name, *bounds))
        elif f.default is MISSING and f.default_factory is MISSING:
            if kinds != (str,):
                raise TypeError(f"{cls.__name__}.{f.name}: a required record field is a string")
            required.append(f.name)
        else:
            types[f.name] = kinds
        if literal is not None:
            choices[f.name] = literal
        if float in kinds:
            floats.append(f.name)
        if f.metadata.get(_OMIT_EMPTY):
            omit.append(f.name)
        if f.metadata.get(_CHECK) is not None:
            checks.append((f.name, f.metadata[_CHECK]))
    return _Schema(
        required=tuple(required),
        types=types,
        choices=choices,
        omit_empty=tuple(omit),
        checks=tuple(checks),
        ranges=tuple(ranges),
        names=frozenset(f.name for f in fields(cls) if f.name != "extra"),
        float_fields=tuple(floats),
        keeps_extra=any(f.name == "extra" for f in fields(cls)),
    )


def _one_of(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


_R = TypeVar("_R", bound="_Record")


class _Record:
    """A line of a results file, declared once as a dataclass: its JSON form and its read-back
    validation are derived from the declaration (``_schema``, set by :func:`_declared`)."""

    _schema: ClassVar[_Schema]
    #: How an error names a line of this kind ("record lacks …").
    _noun: ClassVar[str]
    #: Whether a line carries ``schema_version``.
    _versioned: ClassVar[bool] = False

    def to_json(self) -> dict[str, Any]:
        """The line as written: schema version first, empty optional fields left out, ``extra`` merged in."""
        # Shallow on purpose (asdict deep-copies): this runs twice per task, 12,032 times in a large run.
        data = {"schema_version": SCHEMA_VERSION, **self.__dict__} if self._versioned else dict(self.__dict__)
        extra = data.pop("extra", None)
        for name in self._schema.omit_empty:
            if not data[name]:
                del data[name]
        if extra:
            data.update(extra)
        return data

    @classmethod
    def from_json(cls: type[_R], data: Any, where: str) -> _R:
        """Validate a line read back; fields this version does not declare are kept in ``extra``
        (when the class has one) and otherwise ignored.

        Raises:
            ResultsFormatError: naming ``where`` and the field that is missing or of the wrong type.
        """
        if cls._versioned:
            data = check_version(data, where)
        elif not isinstance(data, dict):
            raise ResultsFormatError(f"{where}: expected a JSON object, found {json_type(data)}")
        schema = cls._schema
        if not all(isinstance(data.get(k), str) for k in schema.required):
            raise ResultsFormatError(f"{where}: {cls._noun} lacks {_one_of(schema.required)} (strings)")
        for name, allowed in schema.choices.items():
            value = data.get(name)
            if value is not None and value not in allowed:
                raise ResultsFormatError(f"{where}: {name} {value!r} is not one of {', '.join(map(str, allowed))}")
        for name, low, high in schema.ranges:
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ResultsFormatError(f"{where}: {name!r} must be a number from {low:g} to {high:g}, not {value!r}")
        _check_types(data, schema.types, where)
        for name, check in schema.checks:
            check(data.get(name), where)
        values = {k: v for k, v in data.items() if v is not None and k in schema.names}
        for name in schema.float_fields:
            if name in values:
                values[name] = float(values[name])
        if schema.keeps_extra:
            extra = {k: v for k, v in data.items() if k not in schema.names and k != "schema_version"}
            if extra:
                values["extra"] = extra
        return cls(**values)


def _declared(cls: type[_R]) -> type[_R]:
    """Give a record dataclass its schema (read from its fields once, at import)."""
    cls._schema = _schema_of(cls)
    return cls


@_declared
@dataclass
class TaskRecord(_Record):
    """One finished task: a line of ``results.jsonl``.

    Each field is declared once, here: its type is checked when the line is read back, and a field
    declared with :func:`optional` is left out of the line when empty. Adding a field is one line and
    its doc comment (docs/design.md); the schema version is not bumped for a new field.
    """

    _noun = "record"
    _versioned = True

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
    details: str | None = optional()
    other: dict[str, Any] | None = optional()
    notes: list[str] | None = optional()
    usage: dict[str, int] | None = optional(check=_check_usage)
    #: Which run of the task (``--benchflow-epochs``), from 1.
    epoch: int = 1
    #: How many samples the task reported (in ``samples.jsonl``), None when it reported none.
    samples: int | None = optional()
    #: Where the task ran (a container engine, a cluster node), None in-process.
    engine: str | None = optional()
    #: Why the task errored (``error`` outcomes): agent, infra, bench, verifier, timeout, budget or interrupted.
    error_kind: ErrorKind | None = optional()
    #: The attempts before the last, when the task was rerun (``--benchflow-rerun-infra``): each its
    #: ``error_kind``, ``reason``, ``engine``, ``duration`` and ``usage``; ``usage`` above sums all attempts'.
    attempts: list[dict[str, Any]] | None = optional(check=_check_attempts)
    #: The agent's name in a session of several (``--agent-url NAME=URL``, …); None with one agent.
    agent: str | None = optional()
    #: Fields a ``pytest_benchflow_record`` hook added, written at the top level of the line after the
    #: declared ones (whose names they may not take); read back, the fields this version does not declare.
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_written(cls, data: dict[str, Any]) -> TaskRecord:
        """The record that :meth:`to_json` wrote in this session (trusted: not validated again)."""
        data.pop("schema_version", None)
        names = cls._schema.names
        if data.keys() <= names:
            return cls(**data)
        extra = {k: v for k, v in data.items() if k not in names}  # in the order the plugin added them
        return cls(**{k: v for k, v in data.items() if k in names}, extra=extra)

    def shadowing(self) -> list[Any]:
        """The keys of ``extra`` a line cannot carry: the declared fields' names, ``schema_version``, non-strings."""
        reserved = self._schema.names
        return [k for k in self.extra if not isinstance(k, str) or k in reserved or k == "schema_version"]


@_declared
@dataclass
class SampleRecord(_Record):
    """One sample of a task's epoch: a line of ``samples.jsonl``."""

    _noun = "sample"

    bench: str
    task_id: str
    sample_id: str
    score: float = field(metadata={_RANGE: (0, 1)})
    epoch: int = 1
    metadata: dict[str, Any] | None = optional()
    #: The agent's name in a session of several; None with one agent.
    agent: str | None = optional()


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
    #: Per engine (container engine, cluster node): ``tasks``, ``errors``, ``seconds`` (None when all in-process).
    engines: dict[str, dict[str, float]] | None = None
    #: Errors per kind (``error_kind``; ``unknown`` for records written without one).
    error_kinds: dict[str, int] = field(default_factory=dict)
    #: The resolution rate over the task runs without an infrastructure error (kinds infra, budget,
    #: interrupted), with its interval: beside the strict ``resolution_rate``, where every error is unresolved.
    resolution_rate_without_infra: float | None = None
    resolution_rate_without_infra_ci95: tuple[float, float] = (0.0, 1.0)
    #: The task runs that rate leaves out.
    infra_errors: int = 0
    #: Attempts run again after an error (``--benchflow-rerun-infra``); their usage is in ``usage``, once each.
    reruns: int = 0


def _check_fingerprint(value: Any, where: str) -> None:
    # As BaseBench.data_fingerprint may return: a longer one is a planted or broken file.
    if value is None:
        return
    if not (
        isinstance(value, dict)
        and all(isinstance(value.get(k), str) and len(value[k]) <= MAX_FINGERPRINT_CHARS for k in ("digest", "label"))
    ):
        raise ResultsFormatError(
            f"{where}: 'data_fingerprint' must be an object of two strings, 'digest' and 'label', "
            f"of at most {MAX_FINGERPRINT_CHARS} characters each"
        )


@_declared
@dataclass
class BenchInfo(_Record):
    """What the session knew of a bench, written beside its statistics in ``summary.json``."""

    bench_class: str = ""
    runner: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    summary_metrics: list[str] | None = None
    breakdown: dict[str, Any] | None = None
    #: What the bench's data was (``BaseBench.data_fingerprint``): ``{"digest", "label"}``; None when it declares none.
    data_fingerprint: dict[str, str] | None = None

    @classmethod
    def from_json(cls, data: Any, where: str) -> BenchInfo:
        if not isinstance(data, dict):
            raise ResultsFormatError(f"{where} must be an object, not {json_type(data)}")
        _check_types(data, cls._schema.types, where)
        _check_usage(data.get("usage"), where)
        _check_fingerprint(data.get("data_fingerprint"), where)
        return cls(**{k: v for k, v in data.items() if k in cls._schema.names and v is not None})


@dataclass
class BenchSummary:
    """A bench in ``summary.json``: its info and statistics, flattened into one object."""

    info: BenchInfo
    stats: BenchStats

    def to_json(self) -> dict[str, Any]:
        stats = asdict(self.stats)
        stats["resolution_rate_ci95"] = list(self.stats.resolution_rate_ci95)
        stats["resolution_rate_without_infra_ci95"] = list(self.stats.resolution_rate_without_infra_ci95)
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
        kinds, evaluated = self.error_kinds()
        fair = clustered_rate(list(evaluated.values()))
        fair_runs = sum(map(len, evaluated.values()))
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
            error_kinds=kinds,
            resolution_rate_without_infra=fair.rate if fair_runs else None,
            resolution_rate_without_infra_ci95=(fair.low, fair.high),
            infra_errors=tasks - fair_runs,
            reruns=sum(len(r.attempts or ()) for r in self.last.values()),
        )

    def error_kinds(self) -> tuple[dict[str, int], dict[str, list[bool]]]:
        """Errors per kind, and each task's outcomes (resolved or not) over its runs without an infrastructure error."""
        kinds: dict[str, int] = {}
        evaluated: dict[str, list[bool]] = {}
        for record in self.last.values():
            if record.outcome == "error":
                kind = record.error_kind or "unknown"
                kinds[kind] = kinds.get(kind, 0) + 1
                if kind in INFRASTRUCTURE_KINDS:
                    continue
            evaluated.setdefault(record.task_id, []).append(record.outcome == "passed")
        order: dict[str, int] = {kind: i for i, kind in enumerate(ERROR_KINDS)}
        return dict(sorted(kinds.items(), key=lambda kv: order.get(kv[0], len(order)))), evaluated
