"""pytest-benchflow: run AI benchmarks as pytest test suites, with a BenchFlow-compatible SDK."""

from .agent_server import AgentServer, BaseAgent
from .bench import BaseBench, DataFingerprint, fingerprint_files, fingerprint_records
from .client import BenchClient
from .environment import TaskEnvironment, report_progress
from .errors import (
    AgentBadResponse,
    AgentError,
    AgentHTTPError,
    AgentOverloaded,
    AgentTimeout,
    AgentUnreachable,
    ArgumentError,
    BenchflowError,
    ConfigurationError,
    ResultError,
    TaskCancelled,
    TaskError,
    TaskListError,
    TaskTimeout,
)
from .runners import LocalRunner, TaskSpec, collect_result, prepare_task, run_task
from .schemas import BenchArgs, BenchmarkResult, ResolvedArgs, SampleResult
from .task_threads import TaskExecutor, task_context
from .usage import AgentAnswer

__version__ = "0.2.0"

# `pytest -p pytest_benchflow` (plugin autoload off) loads the plugin through this.
pytest_plugins = ["pytest_benchflow.plugin.hooks"]

__all__ = [
    "AgentAnswer",
    "AgentBadResponse",
    "AgentError",
    "AgentHTTPError",
    "AgentOverloaded",
    "AgentServer",
    "AgentTimeout",
    "AgentUnreachable",
    "ArgumentError",
    "BaseAgent",
    "BaseBench",
    "BenchArgs",
    "BenchClient",
    "BenchflowError",
    "BenchmarkResult",
    "ConfigurationError",
    "DataFingerprint",
    "LocalRunner",
    "ResolvedArgs",
    "ResultError",
    "SampleResult",
    "TaskCancelled",
    "TaskEnvironment",
    "TaskError",
    "TaskExecutor",
    "TaskListError",
    "TaskSpec",
    "TaskTimeout",
    "collect_result",
    "fingerprint_files",
    "fingerprint_records",
    "prepare_task",
    "report_progress",
    "run_task",
    "task_context",
]
