"""A bench's container as every container runner sees it: its image, its two directories, its environment.

A bench runs in a container when it gives the three container methods; the task's environment
then names the directories *inside* the container, not the host's task directories (which the
runner copies the container's directories out to).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..bench import BaseBench
from ..errors import TaskError
from .base import TaskSpec

__all__ = ["CONTAINER_METHODS", "NO_CONTAINER", "BenchContainer", "bench_container"]

#: The methods a bench gives to run in a container (each returns a non-empty str, or None for none).
CONTAINER_METHODS = ("get_image_name", "get_results_dir_in_container", "get_log_files_dir_in_container")
#: Why a bench has no container, for error messages.
NO_CONTAINER = f"{', '.join(CONTAINER_METHODS[:-1])} and {CONTAINER_METHODS[-1]} must all be given"


@dataclass(frozen=True)
class BenchContainer:
    """Where a bench's task runs in a container: ``image``, and the directories it leaves results and logs in."""

    image: str
    results_dir: str
    log_dir: str

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The task's environment ``env`` as the container gets it: its directories are the container's."""
        return {**env, "BENCHFLOW_RESULTS_DIR": self.results_dir, "BENCHFLOW_LOG_DIR": self.log_dir}


def bench_container(bench: BaseBench, spec: TaskSpec) -> BenchContainer:
    """The container of ``bench`` for ``spec``'s task.

    Raises:
        TaskError: the bench lacks one of :data:`CONTAINER_METHODS` (it returns None or an empty string).
    """
    image = bench.get_image_name()
    results_dir, log_dir = bench.get_results_dir_in_container(), bench.get_log_files_dir_in_container()
    if not image or not results_dir or not log_dir:
        raise TaskError(f"{spec.bench_name} has no container ({NO_CONTAINER}); run it with --benchflow-runner local")
    return BenchContainer(image, results_dir, log_dir)
