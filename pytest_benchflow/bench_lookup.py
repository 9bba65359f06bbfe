"""Finding classes by reference: a registered benchmark name, ``package.module:Class`` or ``path/file.py:Class``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from .bench import BaseBench
from .errors import BenchLoadError

__all__ = ["BENCHMARKS_GROUP", "import_file", "import_object", "installed_benchmarks", "load_bench_class"]

#: Installed benchmark packages register their BaseBench classes under this group.
BENCHMARKS_GROUP = "pytest_benchflow.benchmarks"


@cache  # scanning every installed distribution costs tens of milliseconds; they do not change mid-run
def installed_benchmarks() -> dict[str, str]:
    """Registered benchmark names and the object references they point to."""
    return {ep.name: ep.value for ep in entry_points(group=BENCHMARKS_GROUP)}


def import_file(path: Path) -> object:
    """The module in ``path``, imported once per process under a name derived from the path."""
    # Stable across processes (hash() is salted per process): a run's bench_class names the same file in
    # every session, so a resumed run can tell its bench from another file's class of the same name.
    name = f"benchflow_bench_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    # As when the file runs as a script, its directory is on the path: it can import its sibling modules.
    _on_path(path.resolve().parent, first=True)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BenchLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _on_path(directory: Path, *, first: bool) -> None:
    entry = str(directory)
    if entry not in sys.path:
        sys.path.insert(0, entry) if first else sys.path.append(entry)


def _import_module(module_ref: str) -> ModuleType:
    """``module_ref`` imported; one that is not found on the path is looked up in the current directory.

    ``python -m pytest`` puts the current directory on the path and the ``pytest`` command does not:
    ``--agent my_agents:MyAgent`` beside ``my_agents.py`` works with both. The directory goes last on
    the path, so it shadows nothing that was found before.
    """
    try:
        return importlib.import_module(module_ref)
    except ModuleNotFoundError as e:
        top = module_ref.partition(".")[0]
        here = Path.cwd()
        # Only when the missing module is the one named (not something it imports) and it is here.
        if e.name != top or not ((here / f"{top}.py").is_file() or (here / top).is_dir()):
            raise
        _on_path(here, first=False)
        return importlib.import_module(module_ref)


def import_object(ref: str, *, what: str, rootdir: Path | None = None) -> object:
    """The object ``module:Name`` or ``path/file.py:Name`` refers to.

    A relative file path is looked up in the working directory, then in ``rootdir``.

    Raises:
        BenchLoadError: a malformed reference, a missing file, an import that fails, a missing name;
        each message starts with ``what``.
    """
    module_ref, sep, attr = ref.rpartition(":")
    if not sep or not module_ref or not attr:
        raise BenchLoadError(f"{what}: expected module:Class or path/file.py:Class")
    try:
        if module_ref.endswith(".py"):
            path = Path(module_ref)
            if not path.is_absolute() and rootdir is not None and not path.exists():
                path = rootdir / path
            if not path.exists():
                raise BenchLoadError(f"{what}: file not found: {module_ref}")
            module = import_file(path)
        else:
            module = _import_module(module_ref)
    except BenchLoadError:
        raise
    except Exception as e:
        raise BenchLoadError(f"{what}: cannot import {module_ref}: {type(e).__name__}: {e}") from e
    found = getattr(module, attr, None)
    if found is None:
        raise BenchLoadError(f"{what}: {module_ref} has no attribute {attr!r}")
    return found


def load_bench_class(ref: str, rootdir: Path | None = None) -> type[BaseBench]:
    """The BaseBench subclass that ``ref`` names.

    Raises:
        BenchLoadError: unknown name (listing the installed ones), import failure, or a
        class that does not implement BaseBench.
    """
    installed = installed_benchmarks()
    target = installed.get(ref, ref)
    if ":" not in target:
        names = ", ".join(sorted(installed)) or "none"
        raise BenchLoadError(
            f"unknown benchmark {ref!r}; installed: {names} (or give package.module:Class or path/file.py:Class)"
        )
    cls = import_object(target, what=f"benchmark {ref!r}", rootdir=rootdir)
    if not (inspect.isclass(cls) and issubclass(cls, BaseBench)):
        raise BenchLoadError(f"benchmark {ref!r}: {target} is not a subclass of pytest_benchflow.BaseBench")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise BenchLoadError(f"benchmark {ref!r}: {cls.__name__} does not implement {missing}")
    return cls
