"""Finding runners by name: the ``pytest_benchflow.runners`` entry point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from ..bench_lookup import import_object
from ..errors import BenchflowError, RunnerError
from .base import Runner

__all__ = [
    "RUNNERS_GROUP",
    "broken_runners",
    "default_image_runner",
    "installed_runners",
    "runner_class",
    "usable_runners",
]

#: Installed packages register their Runner classes under this group, by name.
RUNNERS_GROUP = "pytest_benchflow.runners"


@cache  # scanning every installed distribution costs tens of milliseconds; they do not change mid-run
def _registered() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=RUNNERS_GROUP)}


def installed_runners() -> dict[str, str]:
    """Registered runner names and the classes they point to (``module:Class``)."""
    return {name: ep.value for name, ep in _registered().items()}


@cache  # imported once per process: a broken runner is reported once, and choosing it repeats the reason
def _load(name: str) -> type[Runner] | RunnerError:
    ep = _registered()[name]
    dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
    try:
        cls = import_object(ep.value, what=f"runner {name!r} (from {dist})")
    except BenchflowError as e:
        return RunnerError(f"{e}; it is unavailable until that package is fixed or uninstalled")
    if not (isinstance(cls, type) and issubclass(cls, Runner)):
        what = f"runner {name!r} (from {dist})"
        return RunnerError(f"{what}: {ep.value} is not a subclass of pytest_benchflow.runners.Runner")
    return cls


def runner_class(name: str) -> type[Runner]:
    """The Runner class registered as ``name``.

    Raises:
        RunnerError: no such runner (listing the installed ones), one that cannot be imported, or not a Runner.
    """
    if name not in _registered():
        installed = ", ".join(sorted(_registered())) or "none"
        raise RunnerError(f"--benchflow-runner {name!r}: choose one of {installed}")
    loaded = _load(name)
    if isinstance(loaded, RunnerError):
        raise loaded
    return loaded


def usable_runners() -> dict[str, type[Runner]]:
    """Every registered runner that imports: one broken package must not break pytest for everyone."""
    return {name: cls for name in sorted(_registered()) if not isinstance(cls := _load(name), RunnerError)}


def broken_runners() -> dict[str, str]:
    """Registered runners that cannot be used, each with the reason (to report once per session)."""
    return {name: str(err) for name in sorted(_registered()) if isinstance(err := _load(name), RunnerError)}


def default_image_runner() -> str:
    """The runner for a bench with no in-process entrance when the user names none."""
    names = [name for name, cls in usable_runners().items() if cls.default_for_images]
    if not names:
        raise RunnerError("this bench runs only in a container and no container runner is installed")
    return names[0]
