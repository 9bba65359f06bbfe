"""Finding sandbox providers by name: the ``pytest_benchflow.sandboxes`` entry point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from ..bench_lookup import import_object
from ..errors import BenchflowError, RunnerError
from ..sandbox import SandboxProvider

__all__ = ["SANDBOXES_GROUP", "installed_providers", "provider_class"]

#: Installed packages register their SandboxProvider classes under this group, by name.
SANDBOXES_GROUP = "pytest_benchflow.sandboxes"


@cache  # the installed distributions do not change mid-run
def _registered() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=SANDBOXES_GROUP)}


def installed_providers() -> dict[str, str]:
    """Registered provider names and the classes they point to (``module:Class``)."""
    return {name: ep.value for name, ep in _registered().items()}


@cache
def _load(name: str) -> type[SandboxProvider] | RunnerError:
    ep = _registered()[name]
    what = f"sandbox provider {name!r} (from {ep.dist.name if ep.dist is not None else 'an unknown distribution'})"
    try:
        cls = import_object(ep.value, what=what)
    except BenchflowError as e:
        return RunnerError(f"{e}; it is unavailable until that package is fixed or uninstalled")
    if not (isinstance(cls, type) and issubclass(cls, SandboxProvider)):
        return RunnerError(f"{what}: {ep.value} is not a subclass of pytest_benchflow.sandbox.SandboxProvider")
    return cls


def provider_class(name: str) -> type[SandboxProvider]:
    """The provider class registered as ``name``.

    Raises:
        RunnerError: no such provider (listing the installed ones), or one that cannot be imported.
    """
    if name not in _registered():
        installed = ", ".join(sorted(_registered())) or "none"
        raise RunnerError(f"--benchflow-sandbox {name!r}: choose one of {installed}")
    loaded = _load(name)
    if isinstance(loaded, RunnerError):
        raise loaded
    return loaded
