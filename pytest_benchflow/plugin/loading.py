"""Loading the session from its options: settings, benchmarks (classes, instances, arguments) and runners."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..bench import BaseBench, list_task_ids
from ..bench_lookup import load_bench_class
from ..envnumbers import MAX_SECONDS
from ..errors import BenchflowError, BenchLoadError, ResultsFormatError, RunnerError
from ..redaction import url_secrets
from ..results.reader import RunData, load_run
from ..results.records import SampleRecord, TaskRecord
from ..runners import Runner
from ..runners.bench_container import CONTAINER_METHODS, NO_CONTAINER
from ..runners.registry import default_image_runner, usable_runners
from .items import NODE_PREFIX
from .options import arg_values, choice, positive, value
from .reruns import rerun_policy
from .selection import select_tasks, selected_benches
from .session import BenchContext, BenchflowRun, new_run_id

__all__ = ["MAX_EPOCHS", "MAX_LIMIT", "MAX_TIMEOUT", "load_benches", "load_session", "plan_runs"]

#: More epochs than this is a typo, not an evaluation (each epoch is a test item per task).
MAX_EPOCHS = 1000
#: More tasks than any benchmark has: a larger --benchflow-limit is a typo.
MAX_LIMIT = 10**9
#: Seconds: a longer --benchflow-timeout is a typo, and one past ~10^9 s is no wait a socket or lock can express.
MAX_TIMEOUT = MAX_SECONDS


def load_session(config: pytest.Config) -> BenchflowRun | None:
    """The session's state from its options: settings, benches with arguments and runners; None without benches.

    Every problem is a usage error. On an xdist worker the run id and agent URL come from the controller.
    """
    refs = value(config, "benchflow") or selected_benches(config)
    if not refs:
        return None
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    run_id = workerinput.get("benchflow_run_id") or new_run_id()
    output = Path(value(config, "benchflow_output"))
    if not output.is_absolute():
        output = config.invocation_params.dir / output
    previous = None if workerinput else _previous_run(config)
    if previous is not None:
        run_id, output = previous.path.name, previous.path.parent
    run = BenchflowRun(
        config=config,
        run_id=run_id,
        run_dir=output / run_id,
        split=value(config, "benchflow_split"),
        timeout=positive(
            config, "benchflow_timeout", float, MAX_TIMEOUT, "over three years; leave it out for no limit"
        ),
        limit=positive(config, "benchflow_limit", int, MAX_LIMIT, "more tasks than any benchmark has"),
        epochs=positive(config, "benchflow_epochs", int, MAX_EPOCHS, "each epoch is an item per task") or 1,
        transcripts=choice(config, "benchflow_transcripts", ("on", "off")) == "on",
        rerun=rerun_policy(config),
    )
    runners: dict[str, Runner] = {}

    def make_runner(name: str) -> Runner:
        if name not in runners:
            made = config.hook.pytest_benchflow_make_runner(config=config, name=name, run_id=run_id)
            if made is None:
                raise RunnerError(f"--benchflow-runner {name!r}: no installed runner or plugin provides it")
            runners[name] = made
        return runners[name]

    sandbox = value(config, "benchflow_sandbox") or "docker"
    try:
        run.sandbox_provider = config.hook.pytest_benchflow_make_sandbox_provider(
            config=config, name=sandbox, run_id=run_id
        )
    except BenchflowError as e:
        raise pytest.UsageError(str(e)) from None
    if run.sandbox_provider is None:
        raise pytest.UsageError(f"--benchflow-sandbox {sandbox!r}: no installed provider or plugin provides it")
    run.benches.update(
        load_benches(refs, config.rootpath, arg_values(config), value(config, "benchflow_runner") or None, make_runner)
    )
    for name, ctx in run.benches.items():
        _check_split(name, ctx.bench, run.split)
    # A runner's settings are checked when given, even if no bench of this session uses the runner.
    for name, cls in usable_runners().items():
        if name not in runners and any(value(config, o.name) not in (None, "", o.default) for o in cls.options()):
            try:
                make_runner(name)
            except BenchflowError as e:
                raise pytest.UsageError(str(e)) from None
    stray = [n for n in selected_benches(config) if n not in run.benches]
    if stray:
        raise pytest.UsageError(
            f"node id {NODE_PREFIX}{stray[0]}::… names a benchmark this session does not run "
            f"(running: {', '.join(run.benches)}); give --benchflow for it"
        )
    run.secrets.update(v for ctx in run.benches.values() for v in ctx.bench.args.secret_values())
    if workerinput:
        run.agent_url = workerinput["benchflow_agent_url"]
        run.secrets.update(url_secrets(run.agent_url), workerinput.get("benchflow_secrets", []))
        for bench, task_id, epoch in workerinput.get("benchflow_finished", []):
            run.finished.setdefault(bench, set()).add((task_id, epoch))
    elif previous is not None:
        _check_resumable(previous, run)
        run.resumed, run.resumed_samples = _known_tasks_only(run, previous)
        agent = previous.metadata.get("agent")
        run.resumed_agent = agent if isinstance(agent, dict) else {}
        for record in run.resumed:
            if record.outcome != "error":  # errors are run again: the last record of a task counts
                run.finished.setdefault(record.bench, set()).add((record.task_id, record.epoch))
    return run


def _check_split(name: str, bench: BaseBench, split: str) -> None:
    """A usage error when the bench declares its ``splits`` and ``split`` is not one of them.

    The default (``("test",)``, inherited from BaseBench) declares nothing: a 0.1.x bench takes any split.
    """
    declares = any("splits" in vars(cls) for cls in type(bench).__mro__ if cls is not BaseBench)
    if declares and split not in bench.splits:
        raise pytest.UsageError(
            f"--benchflow-split {split!r}: {name} has no such split (its splits: {', '.join(bench.splits)})"
        )


def plan_runs(config: pytest.Config, run: BenchflowRun) -> dict[str, list[tuple[str, int]]]:
    """Each bench's (task id, epoch) runs this session collects: listed, limited, selected by node ids, without
    those a resumed run finished. Every problem is a usage error naming the bench."""
    plan: dict[str, list[tuple[str, int]]] = {}
    for name, ctx in run.benches.items():
        try:
            task_ids = list_task_ids(ctx.bench, run.split)
        except BenchflowError as e:
            raise pytest.UsageError(f"{name}: {e}") from None
        task_ids = task_ids[: run.limit] if run.limit else task_ids
        # Epoch by epoch: an interrupted (or cost-capped) run has whole epochs first.
        runs = [(t, 1) for t in task_ids] + [(t, e) for e in range(2, run.epochs + 1) for t in task_ids]
        runs = select_tasks(config, name, runs, run.epochs)
        done = run.finished.get(name)
        plan[name] = [r for r in runs if r not in done] if done else runs
    return plan


def _previous_run(config: pytest.Config) -> RunData | None:
    given = value(config, "benchflow_resume")
    if not given:
        return None
    path = Path(given)
    if not path.is_absolute():
        path = config.invocation_params.dir / path
    try:
        return load_run(path)
    except ResultsFormatError as e:
        raise pytest.UsageError(f"--benchflow-resume: {e}") from None


def _known_tasks_only(run: BenchflowRun, previous: RunData) -> tuple[list[TaskRecord], list[SampleRecord]]:
    """The run's records and samples of tasks its benches have, in the epochs this session runs: a line for
    any other task or epoch (a tampered or hand-merged file) would count in the summary as one of them."""
    known: dict[str, set[str]] = {}
    for name, ctx in run.benches.items():
        try:
            known[name] = set(list_task_ids(ctx.bench, run.split))
        except BenchflowError as e:
            raise pytest.UsageError(f"{name}: {e}") from None
    records = [r for r in previous.records if r.task_id in known.get(r.bench, ()) and 1 <= r.epoch <= run.epochs]
    samples = [s for s in previous.samples if s.task_id in known.get(s.bench, ()) and 1 <= s.epoch <= run.epochs]
    return records, samples


def _check_resumable(previous: RunData, run: BenchflowRun) -> None:
    """A usage error unless this session evaluates what the run did: same benches, split and arguments."""
    where = f"--benchflow-resume {previous.path}"
    split = previous.metadata.get("split")
    if split not in (None, run.split):
        raise pytest.UsageError(f"{where}: that run used split {split!r}, this session {run.split!r}")
    earlier = set(previous.bench_info) or {r.bench for r in previous.records}
    if earlier != set(run.benches):
        raise pytest.UsageError(
            f"{where}: that run evaluated {', '.join(sorted(earlier))}, this session {', '.join(sorted(run.benches))}"
        )
    for name, info in previous.bench_info.items():
        bench_class = run.benches[name].info().bench_class
        if info.bench_class and info.bench_class != bench_class:
            raise pytest.UsageError(
                f"{where}: that run's {name} was {info.bench_class}, this session's is {bench_class}; "
                "resume with the same benchmark"
            )
        args = run.benches[name].bench.args.public()
        if info.args != args:
            changed = sorted(k for k in set(info.args) | set(args) if info.args.get(k) != args.get(k))
            raise pytest.UsageError(
                f"{where}: {name} ran with other arguments ({', '.join(changed)}); resume with the same ones"
            )


_ENTRANCE = "a function taking the task's environment, or None (the bench runs only in its container)"
_TEXT = "a non-empty str, or None (no container)"


def _is_entrance(value: object) -> bool:
    return value is None or callable(value)


def _is_text(value: object) -> bool:
    return value is None or (isinstance(value, str) and bool(value))


def _checked_call(bench: BaseBench, name: str, method: str, valid: Callable[[object], bool], expected: str) -> Any:
    """``bench.<method>()``, which takes no task: once, before any task, an error naming the bench when it
    raises or returns something else than ``expected``."""
    call = f"{type(bench).__name__}.{method}()"
    try:
        value = getattr(bench, method)()
    except Exception as e:
        raise BenchLoadError(f"{name}: {call} raised {type(e).__name__}: {e}") from e
    if not valid(value):
        raise BenchLoadError(f"{name}: {call} returned {type(value).__name__} {value!r:.60}; it must return {expected}")
    return value


def _no_container(name: str, runner: str, in_process: bool) -> None:
    """A container runner was chosen for a bench without a container: once, not as an error per task."""
    instead = "run it with --benchflow-runner local" if in_process else "it has no in-process entrance either"
    raise BenchLoadError(f"{name} has no container for the {runner} runner ({NO_CONTAINER}); {instead}")


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
        name = ref if ":" not in ref else cls.__name__
        try:
            entrance = _checked_call(bench, name, "get_entrypoint", _is_entrance, _ENTRANCE)
            chosen = runner_name or ("local" if entrance is not None else default_image_runner())
            ctx = BenchContext(name=name, bench=bench, values={}, runner_name=chosen, runner=make_runner(chosen))
            arg_names = ctx.declared(None).names
            declared.update(arg_names)
            ctx.values = {n: os.environ[n] for n in arg_names if n in os.environ}
            ctx.values.update({k: v for k, v in cli_values.items() if k in arg_names})
            bench.args = ctx.resolve(None)
            if chosen != "local":  # only container runners ask for the container's image and directories
                container = [_checked_call(bench, name, m, _is_text, _TEXT) for m in CONTAINER_METHODS]
                if type(ctx.runner).default_for_images and None in container:
                    _no_container(name, chosen, entrance is not None)
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
