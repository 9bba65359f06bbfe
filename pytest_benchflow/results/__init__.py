"""Results: the format on disk (typed records), its writer and reader, comparisons, the HTML report, the CLI."""

from .reader import RunData, load_run
from .records import SCHEMA_VERSION, BenchInfo, BenchStats, BenchSummary, MetricStats, TaskRecord
from .writer import ResultsWriter, RunSummary

__all__ = [
    "SCHEMA_VERSION",
    "BenchInfo",
    "BenchStats",
    "BenchSummary",
    "MetricStats",
    "ResultsWriter",
    "RunData",
    "RunSummary",
    "TaskRecord",
    "load_run",
]
