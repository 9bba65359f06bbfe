"""Finding runners by name: the ``pytest_benchflow.runners`` entry point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from ..errors import RunnerError
from ..loader import import_object
from .base import Runner

__all__ = ["ENTRY_POINT_GROUP", "default_image_runner", "installed_runners", "runner_class"]

#: Installed packages register their Runner classes under this group, by name.
ENTRY_POINT_GROUP = "pytest_benchflow.runners"


@cache  # scanning every installed distribution costs tens of milliseconds; they do not change mid-run
def installed_runners() -> dict[str, str]:
    """Registered runner names and the classes they point to (``module:Class``)."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def runner_class(name: str) -> type[Runner]:
    """The Runner class registered as ``name``.

    Raises:
        RunnerError: no such runner (listing the installed ones), or not a Runner.
    """
    installed = installed_runners()
    if name not in installed:
        raise RunnerError(f"--benchflow-runner {name!r}: choose one of {', '.join(sorted(installed)) or 'none'}")
    cls = import_object(installed[name], what=f"runner {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Runner)):
        raise RunnerError(f"runner {name!r}: {installed[name]} is not a subclass of pytest_benchflow.runners.Runner")
    return cls


def default_image_runner() -> str:
    """The runner for a bench with no in-process entrance when the user names none."""
    names = [n for n in sorted(installed_runners()) if runner_class(n).default_for_images]
    if not names:
        raise RunnerError("this bench runs only in a container and no container runner is installed")
    return names[0]
