"""Writing a run's results: ``results.jsonl`` as tasks finish, ``summary.json`` at the end."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

from ..runfiles import escape_surrogates, json_line, open_for_writing
from .records import SCHEMA_VERSION, BenchInfo, BenchSummary, BenchTally, SampleRecord, TaskRecord, bench_key

__all__ = ["NEVER_RAN", "ResultsWriter", "RunSummary", "cost", "finite", "group_samples", "now_iso", "run_key"]

# pytest's exit codes of a session that did not run as asked: INTERNAL_ERROR, USAGE_ERROR.
NEVER_RAN = (3, 4)
_USAGE_ERROR = 4


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("pytest-benchflow", "pytest", "pytest-xdist", "pydantic", "requests"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def finite(value: Any, path: str = "") -> tuple[Any, list[tuple[str, float]]]:
    """``value`` with every NaN or infinite float replaced by None, and where each was (JSON has no NaN)."""
    if isinstance(value, dict) and all(_flat_finite(v) for v in value.values()):
        return value, []  # the common case: a flat dict of strings, integers, booleans and finite floats
    if isinstance(value, float) and not math.isfinite(value):
        return None, [(path.lstrip("."), value)]
    replaced: list[tuple[str, float]] = []
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out[k], found = finite(v, f"{path}.{k}")
            replaced += found
        return out, replaced
    if isinstance(value, (list, tuple)):
        items = []
        for i, v in enumerate(value):
            item, found = finite(v, f"{path}[{i}]")
            items.append(item)
            replaced += found
        return items, replaced
    return value, replaced


_PLAIN = (str, int, bool, type(None))


def _flat_finite(value: Any) -> bool:
    return type(value) in _PLAIN or (type(value) is float and math.isfinite(value))


def cost(usage: dict[str, int], price: tuple[float, float]) -> float:
    """Dollars for ``usage`` at ``price`` (per million input and output tokens)."""
    return (usage.get("input_tokens", 0) * price[0] + usage.get("output_tokens", 0) * price[1]) / 1e6


@dataclass
class RunSummary:
    """What ``summary.json`` says, as the terminal summary uses it."""

    interrupted: bool
    benches: dict[str, BenchSummary] = field(default_factory=dict)


def group_samples(samples: Iterable[SampleRecord]) -> dict[tuple[str, str, int, str], list[SampleRecord]]:
    """Samples by (bench, task, epoch, agent name or ""), in the order read."""
    groups: dict[tuple[str, str, int, str], list[SampleRecord]] = {}
    for sample in samples:
        groups.setdefault((sample.bench, sample.task_id, sample.epoch, sample.agent or ""), []).append(sample)
    return groups


def run_key(record: TaskRecord) -> tuple[str, str, int, str]:
    """What a record is one run of: (bench, task, epoch, agent name or "")."""
    return record.bench, record.task_id, record.epoch, record.agent or ""


class ResultsWriter:
    """Appends one JSON line per finished task to ``results.jsonl`` and one per sample to
    ``samples.jsonl`` (both flushed as written), and writes the summary at the end.

    Only one process writes (the xdist controller, or the only process): workers'
    records reach it inside their test reports.
    """

    def __init__(
        self,
        run_dir: Path,
        metadata: dict[str, Any],
        price: tuple[float, float] | None = None,
        earlier: list[TaskRecord] = [],  # noqa: B006 - read only
        earlier_samples: list[SampleRecord] = [],  # noqa: B006 - read only
    ) -> None:
        """``earlier`` and ``earlier_samples``: what ``run_dir`` already holds when a run is resumed;
        they count in the summary."""
        self.run_dir = run_dir
        self.price = price
        # Only a directory this session made may be removed again: a resumed run's holds work already paid for.
        self._created = not os.path.lexists(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metadata = {"schema_version": SCHEMA_VERSION, **metadata, "started_at": now_iso()}
        if earlier:
            self.metadata["resumed_at"] = self.metadata["started_at"]
        self.tallies: dict[str, BenchTally] = {}
        self._costs: dict[tuple[str, str, int, str], float] = {}
        self.durations: dict[tuple[str, str, int, str], dict[str, Any]] = {}
        self.written = 0
        self._summary: dict[str, Any] = {}
        earlier_groups = group_samples(earlier_samples)
        for record in earlier:
            self._count(record, earlier_groups.get(run_key(record), []))
        self._jsonl: IO[str] = open_for_writing(run_dir / "results.jsonl")
        try:
            self._samples: IO[str] = open_for_writing(run_dir / "samples.jsonl")
        except BaseException:
            self._jsonl.close()
            raise

    def spent(self) -> float:
        """What the tasks written so far cost at ``price`` (0 without a price)."""
        return sum(self._costs.values())

    def add(self, record: TaskRecord, samples: list[SampleRecord] | None = None) -> None:
        """Write a finished task's record and its samples (before the record: a reader that finds
        the record finds its samples)."""
        if samples:
            lines = []
            for sample in samples:
                data = sample.to_json()
                if "metadata" in data:
                    data["metadata"] = finite(data["metadata"])[0]
                lines.append(json_line(data))
            self._samples.write("".join(lines))
            self._samples.flush()
            record.samples = len(samples)
        # Only the bench's values can be NaN or infinite; they become null, with a note saying so.
        notes = list(record.notes or [])
        record.metrics, replaced = finite(record.metrics, "metrics")
        notes += [f"{path} was {value}, stored as null" for path, value in replaced]
        if record.other:
            record.other, replaced = finite(record.other, "other")
            notes += [f"{path} was {value}, stored as null" for path, value in replaced]
        record.notes = notes or None
        self._jsonl.write(json_line(record.to_json()))
        self._jsonl.flush()
        self.written += 1
        self._count(record, samples or [])

    def _count(self, record: TaskRecord, samples: list[SampleRecord]) -> None:
        self.tallies.setdefault(bench_key(record.bench, record.agent), BenchTally()).add(record, samples)
        key = run_key(record)
        if self.price and record.usage:
            self._costs[key] = cost(record.usage, self.price)
        self.durations[key] = {
            "bench": record.bench,
            "task_id": record.task_id,
            "epoch": record.epoch,
            "outcome": record.outcome,
            "duration": record.duration,
        }
        if record.agent:
            self.durations[key]["agent"] = record.agent

    def finish(
        self,
        *,
        exit_status: int,
        interrupted: bool,
        bench_info: Mapping[str, BenchInfo],
        breakdown: Callable[[str, list[dict[str, Any]]], Any],
    ) -> RunSummary | None:
        """Write ``summary.json`` (atomically) and return it.

        A session that ended in a usage error before any task finished leaves no run directory
        (``pytest-benchflow compare`` would take it for the newest run), or a resumed one as it was, whatever
        it holds (None is returned). (Readers also skip runs whose summary records a usage or internal error.)
        """
        self._jsonl.close()
        self._samples.close()
        if not self.written and exit_status == _USAGE_ERROR:
            if self._created:  # a resumed run keeps its directory, untouched: it may hold answers and nothing else
                shutil.rmtree(self.run_dir, ignore_errors=True)
            return None
        result = RunSummary(interrupted=interrupted)
        for name, info in bench_info.items():
            tally = self.tallies.get(name, BenchTally())
            info.breakdown = breakdown(name, tally.records)
            stats = tally.stats(info.summary_metrics)
            if stats.usage and self.price:
                stats.usage["cost"] = round(cost(stats.usage, self.price), 6)
            result.benches[name] = BenchSummary(info, stats)
        summary = {
            **self.metadata,
            "finished_at": now_iso(),
            "exit_status": exit_status,
            "interrupted": interrupted,
            "price": {"input_per_million": self.price[0], "output_per_million": self.price[1]} if self.price else None,
            "versions": package_versions(),
            "benches": {name: bench.to_json() for name, bench in result.benches.items()},
            "tasks": list(self.durations.values()),
        }
        self._summary = summary
        self._write_summary()
        return result

    def add_to_summary(self, key: str, value: Any) -> None:
        """Add ``key`` to the written ``summary.json`` (the leaderboards of a session of several agents)."""
        self._summary[key] = value
        self._write_summary()

    def fail(self, exit_status: int, reason: str) -> None:
        """Record in ``summary.json`` that the session failed after it was written (a baseline gate)."""
        self._summary.update(exit_status=exit_status, exit_reason=reason)
        self._write_summary()

    def _write_summary(self) -> None:
        tmp = self.run_dir / "summary.json.tmp"
        text = json.dumps(finite(self._summary)[0], indent=2, ensure_ascii=False, allow_nan=False)
        text = escape_surrogates(text)  # an argument's byte that is no UTF-8 is a lone surrogate in argv
        tmp.unlink(missing_ok=True)  # a leftover, or a link planted there: removed, never written through
        with open_for_writing(tmp, "w") as out:
            out.write(text)
        os.replace(tmp, self.run_dir / "summary.json")
