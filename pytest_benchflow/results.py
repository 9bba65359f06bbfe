"""The results files of a run: ``results.jsonl`` written as tasks finish, ``summary.json`` at the end."""

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

from .errors import ResultsFormatError
from .stats import mean_and_stderr, wilson_interval

__all__ = ["SCHEMA_VERSION", "BenchTally", "ResultsWriter", "RunData", "load_run", "now_iso"]

# pytest's exit codes for a session that stopped before running: INTERNAL_ERROR, USAGE_ERROR.
_NEVER_RAN = (3, 4)
#: Bumped whenever a field changes meaning or disappears (adding fields does not bump it).
SCHEMA_VERSION = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("pytest-benchflow", "pytest", "pytest-xdist", "pydantic", "requests", "docker"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def finite(value: Any, path: str = "") -> tuple[Any, list[tuple[str, float]]]:
    """``value`` with every NaN or infinite float replaced by None, and where each was (JSON has no NaN)."""
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


@dataclass
class BenchTally:
    """Running totals of one bench's task outcomes."""

    tasks: int = 0
    resolved: int = 0
    failed: int = 0
    errors: int = 0
    metrics: dict[str, list[float]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    def add(self, record: Mapping[str, Any]) -> None:
        self.tasks += 1
        outcome = record["outcome"]
        if outcome == "passed":
            self.resolved += 1
        elif outcome == "failed":
            self.failed += 1
        else:
            self.errors += 1
        for name, value in (record.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.metrics.setdefault(name, []).append(float(value))
        self.records.append({"task_id": record["task_id"], "outcome": outcome, "metrics": record.get("metrics") or {}})

    def summary(self, metric_names: Iterable[str] | None = None) -> dict[str, Any]:
        """Counts, the resolution rate with its interval, and the means of ``metric_names`` (None: all)."""
        # Errors are tasks whose answer we never saw: they count against the rate, as unresolved.
        low, high = wilson_interval(self.resolved, self.tasks)
        averaged = (
            self.metrics if metric_names is None else {n: self.metrics[n] for n in metric_names if n in self.metrics}
        )
        return {
            "tasks": self.tasks,
            "resolved": self.resolved,
            "failed": self.failed,
            "errors": self.errors,
            "resolution_rate": self.resolved / self.tasks if self.tasks else None,
            "resolution_rate_ci95": [low, high],
            "metrics": {
                name: dict(zip(("mean", "stderr"), mean_and_stderr(values), strict=True), count=len(values))
                for name, values in averaged.items()
            },
        }


class ResultsWriter:
    """Appends one JSON line per finished task and writes the summary at the end.

    Only one process writes (the xdist controller, or the only process): workers'
    records reach it inside their test reports.
    """

    def __init__(self, run_dir: Path, metadata: dict[str, Any]) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metadata = {"schema_version": SCHEMA_VERSION, **metadata, "started_at": now_iso()}
        self.tallies: dict[str, BenchTally] = {}
        self.durations: list[dict[str, Any]] = []
        self._jsonl: IO[str] = open(run_dir / "results.jsonl", "a", encoding="utf-8")

    def add(self, record: dict[str, Any]) -> None:
        # Only the bench's values can be NaN or infinite; they become null, with a note saying so.
        notes = []
        for key in ("metrics", "other"):
            if key in record:
                record[key], replaced = finite(record[key], key)
                notes += [f"{path} was {value}, stored as null" for path, value in replaced]
        if notes:
            record["notes"] = notes
        line = json.dumps({"schema_version": SCHEMA_VERSION, **record}, ensure_ascii=False, allow_nan=False)
        self._jsonl.write(line + "\n")
        self._jsonl.flush()
        self.tallies.setdefault(record["bench"], BenchTally()).add(record)
        self.durations.append(
            {
                "bench": record["bench"],
                "task_id": record["task_id"],
                "outcome": record["outcome"],
                "duration": record["duration"],
            }
        )

    def finish(
        self,
        *,
        exit_status: int,
        interrupted: bool,
        bench_info: Mapping[str, dict[str, Any]],
        breakdown: Callable[[str, list[dict[str, Any]]], Any],
    ) -> dict[str, Any] | None:
        """Write ``summary.json`` (atomically) and return it.

        A session that ended in a usage or internal error before any task finished leaves no
        run directory (None is returned): ``benchflow compare`` would take it for the newest run.
        """
        self._jsonl.close()
        if not self.durations and exit_status in _NEVER_RAN:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return None
        benches: dict[str, Any] = {}
        for name, info in bench_info.items():
            tally = self.tallies.get(name, BenchTally())
            benches[name] = {
                **info,
                **tally.summary(info.get("summary_metrics")),
                "breakdown": breakdown(name, tally.records),
            }
        summary = {
            **self.metadata,
            "finished_at": now_iso(),
            "exit_status": exit_status,
            "interrupted": interrupted,
            "versions": package_versions(),
            "benches": benches,
            "tasks": self.durations,
        }
        tmp = self.run_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(finite(summary)[0], indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")
        os.replace(tmp, self.run_dir / "summary.json")
        return summary


@dataclass
class RunData:
    """A run read back from its directory: metadata, per-task records, and per-bench summaries."""

    path: Path
    metadata: dict[str, Any]
    records: list[dict[str, Any]]
    bench_info: dict[str, dict[str, Any]]

    def benches(self) -> dict[str, dict[str, Any]]:
        """Per bench: the written metadata (args, breakdown, …) with counts and statistics from the records."""
        tallies: dict[str, BenchTally] = {}
        for record in self.records:
            tallies.setdefault(record["bench"], BenchTally()).add(record)
        names = list(dict.fromkeys([*self.bench_info, *tallies]))
        return {
            name: {
                **self.bench_info.get(name, {}),
                **tallies.get(name, BenchTally()).summary(self.bench_info.get(name, {}).get("summary_metrics")),
            }
            for name in names
        }


def _check_version(data: Any, where: str) -> None:
    version = data.get("schema_version", 1) if isinstance(data, dict) else None
    if not isinstance(version, int):
        raise ResultsFormatError(f"{where}: not a pytest-benchflow results record")
    if version > SCHEMA_VERSION:
        raise ResultsFormatError(
            f"{where}: results schema version {version} is newer than this pytest-benchflow understands "
            f"({SCHEMA_VERSION}); upgrade pytest-benchflow to read it"
        )


def _run_directory(path: Path) -> Path:
    if not path.exists():
        raise ResultsFormatError(f"{path}: no such results directory")
    if (path / "results.jsonl").exists() or (path / "summary.json").exists():
        return path
    runs = sorted(p for p in path.iterdir() if p.is_dir() and (p / "results.jsonl").exists()) if path.is_dir() else []
    if not runs:
        raise ResultsFormatError(
            f"{path}: no benchflow results here "
            "(expected results.jsonl or summary.json, or run directories holding them)"
        )
    return runs[-1]  # run ids sort by start time


def load_run(path: Path) -> RunData:
    """Read a run directory (or the newest run in an output directory such as ``.benchflow``).

    A run interrupted before its summary was written is read from ``results.jsonl`` alone.

    Raises:
        ResultsFormatError: missing directory, malformed files, or a newer schema version.
    """
    run_dir = _run_directory(path)
    summary: dict[str, Any] = {}
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ResultsFormatError(f"{summary_path}: not valid JSON ({e})") from None
        _check_version(summary, str(summary_path))
    records: list[dict[str, Any]] = []
    jsonl = run_dir / "results.jsonl"
    if jsonl.exists():
        with open(jsonl, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as e:
                    raise ResultsFormatError(f"{jsonl}:{number}: not valid JSON ({e})") from None
                _check_version(record, f"{jsonl}:{number}")
                if not {"bench", "task_id", "outcome"} <= record.keys():
                    raise ResultsFormatError(f"{jsonl}:{number}: record lacks bench, task_id or outcome")
                records.append(record)
    metadata = {k: v for k, v in summary.items() if k not in ("benches", "tasks")}
    metadata.setdefault("run_id", run_dir.name)
    return RunData(path=run_dir, metadata=metadata, records=records, bench_info=summary.get("benches", {}))
