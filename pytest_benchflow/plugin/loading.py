"""Loading the session from its settings: benchmarks (classes, instances, arguments), runners, a resumed run."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from ..bench import BaseBench, DataFingerprint, list_task_ids
from ..bench_lookup import load_bench_class
from ..errors import BenchflowError, BenchLoadError, ConfigurationError, ResultsFormatError, RunnerError
from ..harbor.bench import HARBOR_SCHEME, HarborBench, harbor_bench_class
from ..harbor.trial import HARNESS_AGENTS
from ..redaction import url_secrets
from ..results.reader import RunData, load_run
from ..results.records import SampleRecord, TaskRecord
from ..runners import Runner
from ..runners.bench_container import CONTAINER_METHODS, NO_CONTAINER
from ..runners.registry import default_image_runner, usable_runners
from ..sandbox import SandboxProvider
from ..untrusted import printable
from .items import NODE_PREFIX
from .selection import select_tasks, selected_benches
from .session import BenchContext, BenchflowRun, new_run_id
from .settings import SessionSettings

__all__ = ["load_benches", "load_session", "plan_runs"]


def load_session(config: pytest.Config, settings: SessionSettings) -> BenchflowRun:
    """The session's state from its settings: benches with their arguments and runners, and what an earlier run
    of a resumed session or (on an xdist worker) the controller already knows. Every problem is a usage error."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    previous = None if workerinput else _previous_run(settings.resume)
    run_id = workerinput.get("benchflow_run_id") or new_run_id()
    run_dir = previous.path if previous is not None else settings.output / run_id
    run = BenchflowRun(config=config, settings=settings, run_id=run_dir.name, run_dir=run_dir)
    make_runner = _RunnerMaker(config, run.run_id)
    run.sandbox_provider = _sandbox_provider(config, settings.sandbox, run.run_id)
    benches = load_benches(list(settings.benches), config.rootpath, settings.args, settings.runner, make_runner)
    run.benches.update(benches)
    _harness_agent(run.benches, settings.agent)
    for name, ctx in run.benches.items():
        _check_split(name, ctx.bench, settings.split)
    _check_runner_settings(settings, make_runner)
    _check_selected_benches(settings, run)
    run.secrets.update(v for ctx in run.benches.values() for v in ctx.bench.args.secret_values())
    if workerinput:
        _continue_from_controller(run, workerinput)
    elif previous is not None:
        _continue_from_previous(run, previous)
    return run


def _sandbox_provider(config: pytest.Config, name: str, run_id: str) -> SandboxProvider:
    """The provider ``env.sandbox()`` opens the session's sandboxes from (``--benchflow-sandbox``)."""
    try:
        provider: SandboxProvider | None = config.hook.pytest_benchflow_make_sandbox_provider(
            config=config, name=name, run_id=run_id
        )
    except BenchflowError as e:
        raise ConfigurationError(str(e)) from None
    if provider is None:
        raise ConfigurationError(f"--benchflow-sandbox {name!r}: no installed provider or plugin provides it")
    return provider


class _RunnerMaker:
    """Each runner of the session, made once (by the ``pytest_benchflow_make_runner`` hook) when first named."""

    def __init__(self, config: pytest.Config, run_id: str) -> None:
        self.config = config
        self.run_id = run_id
        self.made: dict[str, Runner] = {}

    def __call__(self, name: str) -> Runner:
        if name not in self.made:
            made = self.config.hook.pytest_benchflow_make_runner(config=self.config, name=name, run_id=self.run_id)
            if made is None:
                raise RunnerError(f"--benchflow-runner {name!r}: no installed runner or plugin provides it")
            self.made[name] = made
        return self.made[name]


def _check_runner_settings(settings: SessionSettings, make_runner: _RunnerMaker) -> None:
    """A runner's settings are checked when given, even if no bench of this session uses the runner."""
    for name, cls in usable_runners().items():
        if name not in make_runner.made and settings.configures(cls):
            try:
                make_runner(name)
            except BenchflowError as e:
                raise pytest.UsageError(str(e)) from None


def _check_selected_benches(settings: SessionSettings, run: BenchflowRun) -> None:
    stray = [n for n in selected_benches(settings.selected) if n not in run.benches]
    if stray:
        raise pytest.UsageError(
            f"node id {NODE_PREFIX}{stray[0]}::… names a benchmark this session does not run "
            f"(running: {', '.join(run.benches)}); give --benchflow for it"
        )


def _continue_from_controller(run: BenchflowRun, workerinput: dict[str, Any]) -> None:
    """An xdist worker: the agent, the secrets and the finished tasks of a resumed run are the controller's."""
    run.agent_url = workerinput["benchflow_agent_url"]
    run.agents = dict(workerinput.get("benchflow_agents") or {})
    run.secrets.update(url_secrets(run.agent_url), workerinput.get("benchflow_secrets", []))
    for url in run.agents.values():
        run.secrets.update(url_secrets(url))
    for bench, task_id, epoch, agent in workerinput.get("benchflow_finished", []):
        run.finished.setdefault(bench, set()).add((task_id, epoch, agent))
    for bench, problem in workerinput.get("benchflow_data_problems", {}).items():
        run.benches[bench].fingerprint_problem = problem


def _continue_from_previous(run: BenchflowRun, previous: RunData) -> None:
    """Resuming, in the controller: what the earlier run evaluated must be what this session does."""
    _check_resumable(previous, run)
    run.resumed, run.resumed_samples = _known_tasks_only(run, previous)
    agent = previous.metadata.get("agent")
    run.resumed_agent = agent if isinstance(agent, dict) else {}
    several = previous.metadata.get("agents")
    run.resumed_agents = several if isinstance(several, dict) else {}
    for record in run.resumed:
        if record.outcome != "error":  # errors are run again: the last record of a task counts
            run.finished.setdefault(record.bench, set()).add((record.task_id, record.epoch, record.agent or ""))


def _harbor_class(ref: str, rootdir: Path) -> type[BaseBench]:
    """``harbor:PATH``: the Harbor tasks at or below PATH (relative: to the working directory, else ``rootdir``)."""
    given = ref.removeprefix(HARBOR_SCHEME)
    path = Path(given).expanduser()
    if not path.is_absolute() and not path.exists():
        path = rootdir / path
    if not given or not path.is_dir():
        raise BenchLoadError(f"--benchflow {ref}: {given or 'PATH'} is not a directory of Harbor tasks")
    return harbor_bench_class(path.resolve())


def _harness_agent(benches: dict[str, BenchContext], given: tuple[str, ...]) -> None:
    """``--agent oracle`` / ``--agent nop``: the Harbor bench plays the agent itself; no other bench can."""
    agent = next((a for a in given if a in HARNESS_AGENTS), None)
    if agent is None:
        return
    others = [name for name, ctx in benches.items() if not isinstance(ctx.bench, HarborBench)]
    if others:
        raise pytest.UsageError(f"--agent {agent} runs only harbor:PATH benchmarks, not {', '.join(others)}")
    for ctx in benches.values():
        assert isinstance(ctx.bench, HarborBench)
        ctx.bench.harness_agent = agent  # type: ignore[assignment]


def _check_split(name: str, bench: BaseBench, split: str) -> None:
    """A usage error when the bench declares its ``splits`` and ``split`` is not one of them.

    The default (``("test",)``, inherited from BaseBench) declares nothing: a 0.1.x bench takes any split.
    """
    declares = any("splits" in vars(cls) for cls in type(bench).__mro__ if cls is not BaseBench)
    if declares and split not in bench.splits:
        raise pytest.UsageError(
            f"--benchflow-split {split!r}: {name} has no such split (its splits: {', '.join(bench.splits)})"
        )


def plan_runs(run: BenchflowRun) -> dict[str, list[tuple[str, int]]]:
    """Each bench's (task id, epoch) runs this session collects: listed, limited, selected by node ids, without
    those a resumed run finished. Every problem is a usage error naming the bench."""
    plan: dict[str, list[tuple[str, int]]] = {}
    for name, ctx in run.benches.items():
        try:
            task_ids = list_task_ids(ctx.bench, run.split)
        except BenchflowError as e:
            raise pytest.UsageError(f"{name}: {e}") from None
        task_ids = task_ids[: run.settings.limit] if run.settings.limit else task_ids
        # Epoch by epoch: an interrupted (or cost-capped) run has whole epochs first.
        runs = [(t, 1) for t in task_ids] + [(t, e) for e in range(2, run.epochs + 1) for t in task_ids]
        runs = select_tasks(run.settings.selected, name, runs, run.epochs)
        done = run.finished.get(name)
        # With several agents, each agent's finished runs are left out as items are made (BenchCollector).
        plan[name] = [r for r in runs if (*r, "") not in done] if done else runs
    return plan


def _previous_run(path: Path | None) -> RunData | None:
    if path is None:
        return None
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
    # A run of several agents keys its summary by bench[agent].
    earlier = {name.partition("[")[0] for name in previous.bench_info} or {r.bench for r in previous.records}
    if earlier != set(run.benches):
        raise pytest.UsageError(
            f"{where}: that run evaluated {', '.join(sorted(earlier))}, this session {', '.join(sorted(run.benches))}"
        )
    for key, info in previous.bench_info.items():
        name = key.partition("[")[0]
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
        _check_same_data(where, name, info.data_fingerprint, run.benches[name].fingerprint_data(run.split, run.redact))


def _check_same_data(where: str, name: str, then: dict[str, str] | None, now: DataFingerprint | None) -> None:
    """A usage error when the bench's data changed since the run: its finished tasks answered other questions.

    A run that kept no fingerprint (older, or cut off before its summary) cannot be checked, nor a bench whose
    fingerprint fails now (its tasks error saying why)."""
    if then is None or now is None or then.get("digest") == now.digest:
        return
    raise pytest.UsageError(
        f"{where}: {name}'s data changed since that run ({printable(str(then.get('digest')))} then, "
        f"{now.digest} now); resume only on the same data, or start a new run"
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
    cli_values: Mapping[str, str],
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
            cls = _harbor_class(ref, rootdir) if ref.startswith(HARBOR_SCHEME) else load_bench_class(ref, rootdir)
        except BenchLoadError as e:
            raise pytest.UsageError(str(e)) from None
        try:
            bench = cls()
        except Exception as e:
            raise pytest.UsageError(f"benchmark {ref!r}: {cls.__name__}() raised {type(e).__name__}: {e}") from None
        name = "harbor" if ref.startswith(HARBOR_SCHEME) else ref if ":" not in ref else cls.__name__
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
