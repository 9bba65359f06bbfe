"""The environment a task receives, in-process or in a container, and how it reports progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .schemas import ResolvedArgs
from .usage import token_count

if TYPE_CHECKING:
    from .sandbox import Sandbox, TaskSandboxes

__all__ = ["PROGRESS_PREFIX", "TaskEnvironment", "report_progress", "task_environment"]

#: Prefix of the structured progress line a containerised benchmark prints on stdout.
PROGRESS_PREFIX = "BENCHFLOW_PROGRESS "

ProgressCallback = Callable[[int, int], None]


class TaskEnvironment(dict[str, str]):
    """The environment mapping of one task; in-process it also carries a progress callback."""

    progress_callback: ProgressCallback | None = None
    #: The task's sandboxes (in-process tasks run by pytest-benchflow), or None.
    sandboxes: TaskSandboxes | None = None

    def sandbox(
        self, image: str, *, cpus: float = 1.0, memory_mb: int = 2048, network: str = "none", **settings: Any
    ) -> Sandbox:
        """A new sandbox of ``image`` for this task, labelled with it and closed when the task ends (use it as a
        context manager to close it sooner). ``network="none"`` unless the task needs the internet (``"bridge"``);
        other settings are :class:`~pytest_benchflow.sandbox.SandboxSpec`'s (``pids``, ``workdir``, ``env``…).

        Raises:
            SandboxError: no provider (a task outside pytest-benchflow), a wrong setting, or the sandbox cannot start.
        """
        if self.sandboxes is None:
            from .sandbox import SandboxError

            raise SandboxError(
                "this task has no sandboxes: env.sandbox() works in tasks run in-process by pytest --benchflow"
            )
        return self.sandboxes.open(image, cpus=cpus, memory_mb=memory_mb, network=network, **settings)

    def __repr__(self) -> str:
        return f"TaskEnvironment({sorted(self)})"


def task_environment(
    *,
    agent_url: str,
    task_id: str,
    split: str,
    args: ResolvedArgs,
    results_dir: str,
    log_dir: str,
) -> TaskEnvironment:
    """Build the documented environment of a task (see ``docs/protocol.md``)."""
    env = TaskEnvironment(args)
    env.update(
        {
            "INTELLIGENCE_URL": agent_url,
            "TEST_START_ID": task_id,
            # BenchFlow 0.1.x images read this name.
            "TEST_START_IDX": task_id,
            "BENCHFLOW_SPLIT": split,
            "BENCHFLOW_RESULTS_DIR": results_dir,
            "BENCHFLOW_LOG_DIR": log_dir,
        }
    )
    return env


def report_progress(env: Mapping[str, str], done: int, total: int) -> None:
    """Tell the runner how far the task is: ``done`` of ``total`` units.

    In-process this calls the runner's callback; in a container (``env`` is
    ``os.environ``) it prints one ``BENCHFLOW_PROGRESS {"done": d, "total": t}`` line
    to stdout, which a container runner reads.
    """
    callback = getattr(env, "progress_callback", None)
    if callback is not None:
        callback(done, total)
    else:
        sys.stdout.write(PROGRESS_PREFIX + json.dumps({"done": done, "total": total}) + "\n")
        sys.stdout.flush()


def parse_progress(line: str) -> tuple[int, int] | None:
    """The (done, total) of a structured progress line, or None for any other line."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        data = json.loads(line[len(PROGRESS_PREFIX) :])
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    # Whole numbers within the bound token counts have: a container's 1e999 or 400-digit count would
    # overflow the display's arithmetic, ending the reader of its output (nothing after it saved).
    done, total = token_count(data.get("done")), token_count(data.get("total"))
    return None if done is None or total is None else (done, total)
