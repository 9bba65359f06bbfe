"""The authoring subcommands of ``pytest-benchflow``: ``new``, ``build`` and ``check`` (see ``add_commands``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import BenchflowError

__all__ = ["add_commands"]

#: Exit codes: done (every check held); a check did not hold; bad input (the command could not do its work).
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def _say(line: str) -> None:
    print(line, flush=True)


def _refuse(command: str, error: BenchflowError) -> int:
    print(f"pytest-benchflow {command}: {error}", file=sys.stderr)
    return EXIT_ERROR


def _new(args: argparse.Namespace) -> int:
    from .scaffold import new_bench

    try:
        where = new_bench(args.name, Path(args.directory), container=args.container)
    except BenchflowError as e:
        return _refuse("new", e)
    _say(f"wrote the bench package {args.name} in {where}")
    _say(f"next: pip install -e {where} && pytest --benchflow={args.name} --agent {args.name}.agent:ReferenceAgent")
    if args.container:
        _say(f"      pytest-benchflow build {where}   # its image, offline")
    _say(f"      pytest-benchflow check {where}   # the publishing checklist")
    return EXIT_OK


def _build(args: argparse.Namespace) -> int:
    from .build import build_image
    from .project import find_project

    try:
        built = build_image(
            find_project(args.path, args.bench),
            base_image=args.base_image,
            tag=args.tag,
            dockerfile=Path(args.dockerfile) if args.dockerfile else None,
            log=lambda line: print(f"build: {line}", file=sys.stderr, flush=True),
        )
    except BenchflowError as e:
        return _refuse("build", e)
    _say(f"built {built.image} on {built.base} (Python {built.python})")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from .check import run_checklist

    try:
        report = run_checklist(
            args.target, agent=args.agent, build=not args.no_build, base_image=args.base_image, log=_say
        )
    except BenchflowError as e:
        return _refuse("check", e)
    _say(report.summary())
    return EXIT_OK if report.held else EXIT_FAILED


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``new``, ``build`` and ``check`` on the ``pytest-benchflow`` command's subparsers."""
    new = sub.add_parser("new", help="write a working bench package (bench, client, model card, test, tiny agent)")
    new.add_argument("name", help="the bench's name: a Python identifier, also its package and registered name")
    new.add_argument("--container", action="store_true", help="also a Dockerfile and the container methods")
    new.add_argument("--directory", default=".", help="where to create NAME/ (default: here)")
    new.set_defaults(run=_new)
    build = sub.add_parser("build", help="build a bench's image offline (wheels built and downloaded on this machine)")
    build.add_argument("path", nargs="?", default=".", help="the bench's project directory (default: here)")
    build.add_argument(
        "--base-image", help="the image to build on (default: BENCHFLOW_BASE_IMAGE, else the Dockerfile's)"
    )
    build.add_argument("--bench", help="the benchmark to build, when the project registers several")
    build.add_argument("--tag", help="the image's name (default: the bench's get_image_name())")
    build.add_argument("--dockerfile", help="the Dockerfile (default: PATH/Dockerfile)")
    build.set_defaults(run=_build)
    check = sub.add_parser("check", help="run the publishing checklist on a bench: each item held or not, with the fix")
    check.add_argument("target", help="a bench project directory, or a registered bench name")
    check.add_argument(
        "--agent", help="module:Class of the reference agent (default: the bench's agent:ReferenceAgent)"
    )
    check.add_argument("--no-build", action="store_true", help="use the bench's image as it is instead of building it")
    check.add_argument("--base-image", help="the image to build on (as for build)")
    check.set_defaults(run=_check)
