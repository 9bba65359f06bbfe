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
    #: What was skipped while reading (a truncated last line, a newer run that never ran).
    warnings: list[str] = field(default_factory=list)

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


OUTCOMES = ("passed", "failed", "error")
# Optional fields of a task record and of a bench's summary entry, with the JSON types they must have.
_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "metrics": (dict,),
    "other": (dict,),
    "duration": (int, float),
    "reason": (str,),
    "details": (str,),
    "nodeid": (str,),
}
_BENCH_FIELDS: dict[str, tuple[type, ...]] = {"args": (dict,), "breakdown": (dict,), "summary_metrics": (list,)}
_JSON_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_NAMES.get(type(value), type(value).__name__)


def _check_fields(data: dict[str, Any], fields: dict[str, tuple[type, ...]], where: str) -> None:
    for key, kinds in fields.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise ResultsFormatError(f"{where}: {key!r} must be {_JSON_NAMES[kinds[0]]}, not {_json_type(value)}")


def _check_version(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ResultsFormatError(f"{where}: expected a JSON object, found {_json_type(data)}")
    version = data.get("schema_version", 1)
    if not isinstance(version, int):
        raise ResultsFormatError(f"{where}: not a pytest-benchflow results record")
    if version > SCHEMA_VERSION:
        raise ResultsFormatError(
            f"{where}: results schema version {version} is newer than this pytest-benchflow understands "
            f"({SCHEMA_VERSION}); upgrade pytest-benchflow to read it"
        )


def _check_record(record: Any, where: str) -> dict[str, Any]:
    _check_version(record, where)
    if not all(isinstance(record.get(k), str) for k in ("bench", "task_id", "outcome")):
        raise ResultsFormatError(f"{where}: record lacks bench, task_id or outcome (strings)")
    if record["outcome"] not in OUTCOMES:
        raise ResultsFormatError(f"{where}: outcome {record['outcome']!r} is not one of {', '.join(OUTCOMES)}")
    _check_fields(record, _RECORD_FIELDS, where)
    return dict(record)


def _check_summary(summary: Any, where: str) -> dict[str, Any]:
    _check_version(summary, where)
    benches = summary.get("benches", {})
    if not isinstance(benches, dict):
        raise ResultsFormatError(f"{where}: 'benches' must be an object, not {_json_type(benches)}")
    for name, info in benches.items():
        if not isinstance(info, dict):
            raise ResultsFormatError(f"{where}: benches.{name} must be an object, not {_json_type(info)}")
        _check_fields(info, _BENCH_FIELDS, f"{where}: benches.{name}")
    _check_fields(summary, {"versions": (dict,)}, where)
    return dict(summary)


def _read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ResultsFormatError(f"{path}: not valid JSON ({e})") from None
    return _check_summary(data, str(path))


def _run_directory(path: Path, warnings: list[str]) -> Path:
    if not path.exists():
        raise ResultsFormatError(f"{path}: no such results directory")
    if (path / "results.jsonl").exists() or (path / "summary.json").exists():
        return path
    runs = sorted(p for p in path.iterdir() if p.is_dir() and (p / "results.jsonl").exists()) if path.is_dir() else []
    for run in reversed(runs):  # run ids sort by start time: the newest run that ran
        status = _read_summary(run).get("exit_status")
        if status in _NEVER_RAN:
            warnings.append(f"skipped {run.name}: that session stopped with exit status {status} before running")
            continue
        return run
    raise ResultsFormatError(
        f"{path}: no benchflow results here (expected results.jsonl or summary.json, or run directories holding them)"
    )


def _read_records(jsonl: Path, warnings: list[str]) -> list[dict[str, Any]]:
    if not jsonl.exists():
        return []
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            if i == last:
                # A run killed while writing leaves half a line: keep every record before it.
                warnings.append(f"{jsonl}:{i + 1}: incomplete last line skipped (the run was cut off while writing)")
                break
            raise ResultsFormatError(f"{jsonl}:{i + 1}: not valid JSON ({e})") from None
        records.append(_check_record(record, f"{jsonl}:{i + 1}"))
    return records


def load_run(path: Path) -> RunData:
    """Read a run directory (or the newest run that ran in an output directory such as ``.benchflow``).

    A run interrupted before its summary was written is read from ``results.jsonl`` alone; a
    truncated last line is skipped with a warning (``RunData.warnings``).

    Raises:
        ResultsFormatError: missing directory, malformed files or fields of the wrong type, or a
        newer schema version.
    """
    warnings: list[str] = []
    run_dir = _run_directory(path, warnings)
    summary = _read_summary(run_dir)
    records = _read_records(run_dir / "results.jsonl", warnings)
    metadata = {k: v for k, v in summary.items() if k not in ("benches", "tasks")}
    metadata.setdefault("run_id", run_dir.name)
    return RunData(
        path=run_dir, metadata=metadata, records=records, bench_info=summary.get("benches", {}), warnings=warnings
    )
