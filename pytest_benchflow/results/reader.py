"""Reading a run back: records and summary validated, the newest run that ran, truncation tolerated."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ResultsFormatError
from ..runfiles import read_text, split_lines
from .records import (
    BenchInfo,
    BenchSummary,
    BenchTally,
    SampleRecord,
    TaskRecord,
    bench_key,
    check_version,
    json_type,
)
from .writer import NEVER_RAN, group_samples, run_key

__all__ = ["RunData", "load_run"]


@dataclass
class RunData:
    """A run read back from its directory: metadata, per-task records, and per-bench summaries."""

    path: Path
    metadata: dict[str, Any]
    records: list[TaskRecord]
    bench_info: dict[str, BenchInfo]
    #: What was skipped while reading (a truncated last line, a newer run that never ran).
    warnings: list[str] = field(default_factory=list)
    #: The samples of the tasks (``samples.jsonl``), the last of each (bench, task, epoch, sample id).
    samples: list[SampleRecord] = field(default_factory=list)

    def benches(self) -> dict[str, BenchSummary]:
        """Per bench (per ``bench[agent]`` with several agents): the written info (args, breakdown, …) with
        counts and statistics from the records."""
        tallies: dict[str, BenchTally] = {}
        groups = group_samples(self.samples)
        for record in self.records:
            tallies.setdefault(bench_key(record.bench, record.agent), BenchTally()).add(
                record, groups.get(run_key(record), [])
            )
        names = list(dict.fromkeys([*self.bench_info, *tallies]))
        found = {}
        for name in names:
            info = self.bench_info.get(name, BenchInfo())
            found[name] = BenchSummary(info, tallies.get(name, BenchTally()).stats(info.summary_metrics))
        return found


def _read_file(path: Path) -> str | None:
    """The text of a run file, None when there is none; a link or FIFO in its place is refused (never waited on)."""
    try:
        return read_text(path)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsFormatError(f"{path}: cannot be read ({e.strerror if isinstance(e, OSError) else e})") from None


def _read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    text = _read_file(path)
    if text is None:
        return {}
    try:
        summary = check_version(json.loads(text), str(path))
    except ValueError as e:
        raise ResultsFormatError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:  # a planted or corrupted file: a usage error naming it, never a crash
        raise ResultsFormatError(f"{path}: not valid JSON (nested too deeply)") from None
    for key, kind in (("benches", dict), ("versions", dict)):
        if not isinstance(summary.get(key, {}), kind):
            raise ResultsFormatError(f"{path}: {key!r} must be an object, not {json_type(summary[key])}")
    return summary


def _run_directory(path: Path, warnings: list[str]) -> Path:
    if not path.exists():
        raise ResultsFormatError(f"{path}: no such results directory")
    # lexists: a link in place of a run file makes it a run, refused when read (not silently another run).
    if os.path.lexists(path / "results.jsonl") or os.path.lexists(path / "summary.json"):
        return path
    runs = [p for p in path.iterdir() if p.is_dir() and os.path.lexists(p / "results.jsonl")] if path.is_dir() else []
    for run in _newest_first(runs):
        status = _read_summary(run).get("exit_status")
        if status in NEVER_RAN:
            warnings.append(f"skipped {run.name}: that session stopped with exit status {status} before running")
            continue
        return run
    raise ResultsFormatError(
        f"{path}: no benchflow results here (expected results.jsonl or summary.json, or run directories holding them)"
    )


def _newest_first(runs: list[Path]) -> list[Path]:
    """Run directories by start, newest first: run ids sort by the second a run started; runs that
    started in the same second are told apart by their summaries' ``started_at``."""
    seconds = Counter(run.name.partition("-")[0] for run in runs)

    def started(run: Path) -> tuple[str, str]:
        second = run.name.partition("-")[0]
        return second, str(_read_summary(run).get("started_at", "")) if seconds[second] > 1 else ""

    return sorted(runs, key=started, reverse=True)


def _read_lines(path: Path, warnings: list[str]) -> list[tuple[Any, str]]:
    """Each line's JSON value with where it is; an incomplete last line (a run cut off) is skipped with a warning."""
    text = _read_file(path)
    if text is None:
        return []
    # At \n only: U+2028 and the like inside a JSON string (as older writers left them raw) are not line ends.
    lines = split_lines(text)
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    values = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            values.append((json.loads(line), f"{path}:{i + 1}"))
        except RecursionError:  # no writer of ours nests that deep: not a cut-off line, a planted one
            raise ResultsFormatError(f"{path}:{i + 1}: not valid JSON (nested too deeply)") from None
        except ValueError as e:
            if i == last:
                # A run killed while writing leaves half a line: keep every line before it.
                warnings.append(f"{path}:{i + 1}: incomplete last line skipped (the run was cut off while writing)")
                break
            raise ResultsFormatError(f"{path}:{i + 1}: not valid JSON ({e})") from None
    return values


def _read_records(jsonl: Path, warnings: list[str]) -> list[TaskRecord]:
    records = [TaskRecord.from_json(data, where) for data, where in _read_lines(jsonl, warnings)]
    # A resumed run reruns tasks that errored: the last record of a task's epoch is the one that counts.
    latest = {run_key(r): r for r in records}
    return list(latest.values()) if len(latest) < len(records) else records


def _read_samples(jsonl: Path, warnings: list[str]) -> list[SampleRecord]:
    samples = [SampleRecord.from_json(data, where) for data, where in _read_lines(jsonl, warnings)]
    latest = {(s.bench, s.task_id, s.epoch, s.agent, s.sample_id): s for s in samples}
    return list(latest.values()) if len(latest) < len(samples) else samples


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
    samples = _read_samples(run_dir / "samples.jsonl", warnings)
    bench_info = {
        name: BenchInfo.from_json(info, f"{run_dir / 'summary.json'}: benches.{name}")
        for name, info in summary.get("benches", {}).items()
    }
    metadata = {k: v for k, v in summary.items() if k not in ("benches", "tasks")}
    metadata.setdefault("run_id", run_dir.name)
    return RunData(
        path=run_dir, metadata=metadata, records=records, bench_info=bench_info, warnings=warnings, samples=samples
    )
