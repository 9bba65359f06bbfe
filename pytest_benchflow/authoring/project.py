"""A bench as ``build`` and ``check`` find it: a project directory (its ``pyproject.toml``) or a registered name."""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..bench import BaseBench
from ..bench_lookup import BENCHMARKS_GROUP, load_bench_class
from ..errors import BenchflowError

__all__ = ["BenchProject", "ProjectError", "find_project"]

try:
    import tomllib
except ImportError:  # Python 3.10: the entry point table is read by the fallback below
    tomllib = None  # type: ignore[assignment]


class ProjectError(BenchflowError):
    """The bench cannot be found or loaded."""


@dataclass(frozen=True)
class BenchProject:
    """A bench: its registered name (or reference), its class, and its project directory when it has one."""

    name: str
    cls: type[BaseBench]
    directory: Path | None

    @property
    def dockerfile(self) -> Path | None:
        found = self.directory / "Dockerfile" if self.directory else None
        return found if found is not None and found.is_file() else None

    def readme(self) -> Path | None:
        """The bench's model card: ``README.md`` beside its module, or in a directory above it up to the project."""
        module = inspect.getsourcefile(self.cls)
        start = Path(module).resolve().parent if module else self.directory
        stop = self.directory.resolve() if self.directory else None
        here = start
        while here is not None:
            if (here / "README.md").is_file():
                return here / "README.md"
            if here == stop or here.parent == here or stop is None:
                return None
            here = here.parent
        return None


def _entry_points(pyproject: Path) -> dict[str, str]:
    text = pyproject.read_text(encoding="utf-8")
    if tomllib is not None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ProjectError(f"{pyproject} is not valid TOML: {e}") from None
        table = data.get("project", {}).get("entry-points", {}).get(BENCHMARKS_GROUP, {})
        return {str(k): str(v) for k, v in table.items()}
    header = re.search(rf'^\[project\.entry-points\."{re.escape(BENCHMARKS_GROUP)}"\]\s*$', text, re.M)
    if header is None:
        return {}
    body = text[header.end() :].split("\n[", 1)[0]
    return dict(re.findall(r'^\s*([\w.-]+)\s*=\s*"([^"]+)"', body, re.M))


def find_project(target: str, bench: str | None = None) -> BenchProject:
    """The bench ``target`` names: a project directory whose ``pyproject.toml`` registers one bench under the
    ``pytest_benchflow.benchmarks`` entry point (imported from that directory, installed or not; ``bench``
    picks one of several), else a registered name, ``package.module:Class`` or ``path/file.py:Class``.

    Raises:
        ProjectError: one line saying what is missing.
    """
    path = Path(target)
    if path.is_dir():
        pyproject = path / "pyproject.toml"
        if not pyproject.is_file():
            raise ProjectError(f"{path} has no pyproject.toml: give a bench project directory or a bench name")
        found = _entry_points(pyproject)
        if bench is not None:
            if bench not in found:
                listed = ", ".join(sorted(found)) or "none"
                raise ProjectError(
                    f"--bench {bench!r}: {pyproject} registers no such benchmark (it registers {listed})"
                )
            found = {bench: found[bench]}
        if len(found) != 1:
            what = f"registers {len(found)} benchmarks ({', '.join(sorted(found))})" if found else "registers none"
            hint = "; choose one with --bench NAME" if found else ""
            raise ProjectError(
                f'{pyproject} {what}: expected one under [project.entry-points."{BENCHMARKS_GROUP}"]{hint}'
            )
        ((name, ref),) = found.items()
        directory = path.resolve()
        # The project's own source wins over an installed copy of it (check what is about to be published).
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
        return BenchProject(name, _load(ref, name), directory)
    return BenchProject(target, _load(target, target), None)


def _load(ref: str, name: str) -> type[BaseBench]:
    try:
        return load_bench_class(ref)
    except BenchflowError as e:
        raise ProjectError(str(e)) from None
    except Exception as e:  # importing the bench ran its module: anything can break there
        raise ProjectError(f"benchmark {name!r}: {type(e).__name__}: {e}") from None
