"""Loading the session's benchmarks: classes by reference, instances, resolved arguments, runners."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ..errors import BenchflowError, BenchLoadError
from ..loader import load_bench_class
from ..runners import Runner
from ..runners.registry import default_image_runner
from .session import BenchContext

__all__ = ["load_benches"]


def load_benches(
    refs: list[str],
    rootdir: Path,
    cli_values: dict[str, str],
    runner_name: str | None,
    make_runner: Callable[[str], Runner],
) -> dict[str, BenchContext]:
    """Load, instantiate and resolve the session's arguments of every named benchmark.

    ``cli_values`` are the ``--benchflow-arg`` pairs; the environment supplies what they do not.
    ``runner_name`` None means: local for a bench with an in-process entrance, else the
    installed container runner. Every problem is a usage error naming the bench.
    """
    declared: set[str] = set()
    contexts: dict[str, BenchContext] = {}
    for ref in dict.fromkeys(refs):
        try:
            cls = load_bench_class(ref, rootdir)
        except BenchLoadError as e:
            raise pytest.UsageError(str(e)) from None
        try:
            bench = cls()
        except Exception as e:
            raise pytest.UsageError(f"benchmark {ref!r}: {cls.__name__}() raised {type(e).__name__}: {e}") from None
        arg_names = bench.get_args(None).names
        declared.update(arg_names)
        values = {n: os.environ[n] for n in arg_names if n in os.environ}
        values.update({k: v for k, v in cli_values.items() if k in arg_names})
        name = ref if ":" not in ref else cls.__name__
        try:
            chosen = runner_name or ("local" if bench.get_entrypoint() is not None else default_image_runner())
            ctx = BenchContext(name=name, bench=bench, values=values, runner_name=chosen, runner=make_runner(chosen))
            bench.args = ctx.resolve(None)
        except BenchflowError as e:
            raise pytest.UsageError(str(e)) from None
        contexts[name] = ctx
    unknown = sorted(set(cli_values) - declared)
    if unknown:
        raise pytest.UsageError(
            f"--benchflow-arg: no selected benchmark takes {', '.join(unknown)} "
            f"(known: {', '.join(sorted(declared)) or 'none'})"
        )
    return contexts
