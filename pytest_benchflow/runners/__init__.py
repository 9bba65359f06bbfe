"""Runners: where a task's evaluation runs (in-process, in a container, or a runner of your own)."""

from .base import Runner, RunnerOption, Setting, TaskSpec, collect_result, prepare_task, task_usage
from .local import LocalRunner, run_task
from .registry import RUNNERS_GROUP, installed_runners, runner_class

__all__ = [
    "RUNNERS_GROUP",
    "LocalRunner",
    "Runner",
    "RunnerOption",
    "Setting",
    "TaskSpec",
    "collect_result",
    "installed_runners",
    "prepare_task",
    "run_task",
    "runner_class",
    "task_usage",
]
