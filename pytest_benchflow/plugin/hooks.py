"""The pytest plugin's hook implementations: wiring that hands each step to the room that does it."""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ..cache import ResponseCache, describe
from ..errors import BenchflowError, ConfigurationError, one_line_reason
from ..redaction import public_url
from ..results.records import agent_label
from ..results.writer import ResultsWriter, finite
from ..runners import Runner, runner_class
from ..runners.registry import broken_runners, usable_runners
from ..runners.sandbox_registry import installed_providers, provider_class
from ..sandbox import SandboxProvider
from . import hookspec
from .agent_set import SessionAgent, start_agents
from .agents_given import agents_given
from .concurrency import AheadScheduling, concurrent_safe
from .gate import AgentGate, baseline_choice, check_baseline_agents, check_gate_agent
from .items import NODE_PREFIX, BenchCollector, BenchItem, TaskBroken
from .loading import load_session, plan_runs
from .process import interrupt_on_sigterm, printable_interrupt, redact_logging
from .progress import ProgressDisplay
from .reporter import ERROR_KIND_ATTRIBUTE, JunitErrorKinds, ResultsReporter, check_baseline_data
from .rootdir import choose_rootdir_again
from .selection import rewrite_node_id_arguments, select_agent_items
from .session import RUN_KEY, BenchflowRun, attach_record, unpacked_record
from .settings import MAX_CONCURRENCY, SETTINGS_KEY, add_options, read_settings
from .task_processes import local_benches
from .tasks_ahead import ConcurrentTasks


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)
    pluginmanager.register(_ConfigurationErrors(), "benchflow-configuration-errors")


@contextmanager
def _usage_errors() -> Iterator[None]:
    """The one place where a :class:`ConfigurationError` becomes a ``pytest.UsageError`` (one ``ERROR:`` line,
    exit code 4, nothing run)."""
    try:
        yield
    except ConfigurationError as e:
        raise pytest.UsageError(str(e)) from None


class _ConfigurationErrors:
    """Around every implementation of the hooks that set a session up, ours and other plugins' (a runner plugin
    raising ``RunnerError`` from its own ``pytest_sessionstart``). ``pytest_configure`` is historic, which
    pluggy does not let a wrapper wrap: our implementation is decorated instead."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionstart(self) -> Generator[None, None, None]:
        with _usage_errors():
            return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(self) -> Generator[None, None, None]:
        with _usage_errors():
            return (yield)


def pytest_addoption(parser: pytest.Parser) -> None:
    runner_options = [option for cls in usable_runners().values() for option in cls.options()]
    add_options(parser, [*runner_options, *_sandbox_options()])


def _sandbox_options() -> list[Any]:
    """The settings of the installed sandbox providers that import (a broken one is reported when chosen)."""
    options = []
    for name in installed_providers():
        try:
            options.extend(provider_class(name).options())
        except BenchflowError:
            continue
    return options


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    flags = [name for option in parser.getgroup("benchflow").options for name in option.names()]
    choose_rootdir_again(early_config, args, flags)
    rewrite_node_id_arguments(early_config, args)


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(trylast=True)
@_usage_errors()
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "benchflow: a benchmark task run by pytest-benchflow")
    if not is_worker(config):
        for reason in broken_runners().values():
            config.issue_config_time_warning(pytest.PytestConfigWarning(reason), stacklevel=2)
    settings = read_settings(config)
    if settings is None:
        return  # no benchmark: the plugin stays out of the way
    config.stash[SETTINGS_KEY] = settings
    run = load_session(config, settings)
    cache = getattr(config, "workerinput", {}).get("benchflow_cache")
    if cache:
        run.cache = _open_cache(run, cache[1], cache[0])
        for name, identity in config.workerinput.get("benchflow_agent_caches", {}).items():  # type: ignore[attr-defined]
            opened = _open_cache(run, identity, cache[0])
            if opened is not None:
                run.agent_caches[name] = opened
    config.stash[RUN_KEY] = run
    redact_logging(config, run.secrets)
    interrupt_on_sigterm()
    config.pluginmanager.register(_RunnerLifecycle(run, controller=not is_worker(config)), "benchflow-runners")
    if is_worker(config):
        run.concurrency = int(config.workerinput.get("benchflow_concurrency", 1))  # type: ignore[attr-defined]
    config.pluginmanager.register(ConcurrentTasks(run, worker=is_worker(config)), "benchflow-concurrency")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(run), "benchflow-xdist")


@pytest.hookimpl(trylast=True)
def pytest_benchflow_make_runner(config: pytest.Config, name: str, run_id: str) -> Runner:
    cls = runner_class(name)
    return cls.from_options(config.stash[SETTINGS_KEY].runner_values(cls), run_id)


@pytest.hookimpl(trylast=True)
def pytest_benchflow_make_sandbox_provider(config: pytest.Config, name: str, run_id: str) -> SandboxProvider:
    cls = provider_class(name)
    values = config.stash[SETTINGS_KEY].runner_values(cls)
    provider = cls.from_options(values, run_id)
    provider.made_from = dict(values)  # a Ray node makes the same provider from them
    return provider


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    run = config.stash.get(RUN_KEY, None)
    if run is None or is_worker(config):
        return
    # The tasks are listed here, in the controller, before any agent or xdist worker starts: a bad
    # argument or node id is then one usage error with or without -n (a worker's collection error
    # would reach the user as "0 items"), and nothing is written.
    run.plan = plan_runs(run)
    # --collect-only runs nothing: no agent is started (a started command would outlive the session).
    if config.option.collectonly:
        _name_agents_unstarted(run)
        return
    _check_output_directory(run.run_dir.parent, run.run_id)
    # Once per bench, before any agent or task: what the data is, and whether the baseline ran on the same.
    run.fingerprint_data()
    choice = baseline_choice(run.settings)
    base = check_baseline_data(run, run.settings.baseline)
    display = ProgressDisplay.create(config, run.settings.progress)
    gate = AgentGate(run.settings.gate_agent, run.settings.gate_mode)
    agents = _start_agents(config, run)
    check_gate_agent(gate, run.agents)
    # Once the agents have their names, before any task: whom each is compared with in the baseline.
    check_baseline_agents(run, base, choice)
    _start_runners(run, agents)
    if display is not None:
        run.progress, run.display = display.callback, display
    concurrency_notes = _choose_concurrency(config, run, run.settings.concurrency, agents[0].info)
    for agent in agents:
        cache = _open_cache(run, describe(agent.info, agent.given))
        if cache is not None and agent.name:
            run.agent_caches[agent.name] = cache
        run.cache = run.cache or cache
    if run.cache is not None:
        _say_where_the_cache_is_unused(config, run)
    described = _described_agents(run, agents)
    reporter = _results_reporter(run, described, gate)
    reporter.baseline_choice = choice
    reporter.notes += [run.redact(a.info_note) for a in agents if a.info_note]
    reporter.notes += concurrency_notes
    reporter.notes += [ctx.fingerprint_problem for ctx in run.benches.values() if ctx.fingerprint_problem]
    config.pluginmanager.register(reporter, "benchflow-results")
    config.pluginmanager.register(JunitErrorKinds(config), "benchflow-junit-error-kinds")


def _name_agents_unstarted(run: BenchflowRun) -> None:
    """For --collect-only: several agents, each named by the user, give the items their names (as a run would).
    An unnamed agent is named once it answers ``GET /info``, which collecting does not ask."""
    settings = run.settings
    given = agents_given(settings.agent_url, settings.agent, settings.agent_cmd)
    if len(given) > 1 and all(g.name for g in given):
        run.agents = {str(g.name): g.value for g in given}


def _start_agents(config: pytest.Config, run: BenchflowRun) -> list[SessionAgent]:
    """Name or start the session's agents (stopped with the session) and check that each answers."""
    settings = run.settings
    agents = start_agents(config, agents_given(settings.agent_url, settings.agent, settings.agent_cmd), run.secrets)
    run.agent_url = agents[0].url
    if len(agents) > 1:
        run.agents = {a.name: a.url for a in agents}
    return agents


def _start_runners(run: BenchflowRun, agents: list[SessionAgent]) -> None:
    """Each runner's and each bench's start, before any task: what would fail every task is one usage error."""
    for runner in run.runners():
        for agent in agents:  # each agent must be reachable from where tasks run
            try:
                runner.start(agent.url)
            except BenchflowError as e:
                raise pytest.UsageError(str(e)) from None
    for ctx in run.benches.values():
        try:
            ctx.runner.start_bench(ctx.bench)
        except BenchflowError as e:
            raise pytest.UsageError(f"{ctx.name}: {e}") from None


def _described_agents(run: BenchflowRun, agents: list[SessionAgent]) -> dict[str, dict[str, Any]]:
    """The agents as the run's summary keeps them, by name ("" for the only one); a usage error when a resumed
    run evaluated other ones."""
    described = {a.name: _described(run, a) for a in agents}
    if not run.agents and run.resumed_agent is not None:
        _check_same_agent(run, run.resumed_agent, described[""])
    elif run.agents and run.resumed_agents is not None:
        _check_same_agents(run, run.resumed_agents, described)
    return described


def _results_reporter(run: BenchflowRun, described: dict[str, dict[str, Any]], gate: AgentGate) -> ResultsReporter:
    """The controller's reporter, with the writer of the run's files (their directory already checked)."""
    settings = run.settings
    metadata: dict[str, Any] = {
        "run_id": run.run_id,
        "split": settings.split,
        "agent_url": run.public_agent_url(),
        "agent": described.get(""),
        "epochs": settings.epochs,
        "argv": [run.redact(a) for a in run.config.invocation_params.args],
    }
    if run.agents:  # several: each under its name, none of them "the" agent
        metadata.update(agent_url=None, agent=None, agents=described)
    try:
        writer = ResultsWriter(
            run.run_dir, metadata, price=settings.price, earlier=run.resumed, earlier_samples=run.resumed_samples
        )
    except OSError as e:  # a link or FIFO planted at results.jsonl or samples.jsonl: never written through
        raise pytest.UsageError(f"--benchflow-output: cannot write the run's results: {e}") from None
    return ResultsReporter(
        run, writer, html=settings.html, baseline=settings.baseline, max_cost=settings.max_cost, gate=gate
    )


def _choose_concurrency(
    config: pytest.Config, run: BenchflowRun, given: int | str, info: dict[str, Any] | None
) -> list[str]:
    """Set how many tasks each process runs at once; the notes saying what was decided for the user."""
    notes: list[str] = []
    if isinstance(given, int):
        run.concurrency = given
    else:
        capacity, how = _capacity(run, info)
        if capacity is None:
            notes.append(f"--benchflow-concurrency auto: {how}; tasks run one at a time")
        run.concurrency = capacity or 1
    if run.concurrency > 1 and config.getoption("dist", None) == "worksteal":
        # worksteal takes items back from a worker that may already be running them.
        run.concurrency = 1
        notes.append("--benchflow-concurrency: --dist worksteal takes queued items back; tasks run one at a time")
    run.task_processes, note = _task_processes(config, run, run.settings.task_processes)
    notes += [note] if note else []
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for name, ctx in run.benches.items():
        if run.concurrency > 1 and not concurrent_safe(ctx.bench) and reporter is not None:
            reporter.write_line(
                f"--benchflow-concurrency {run.concurrency}: {name} declares concurrent_safe = False; "
                "its tasks run one at a time"
            )
    return notes


def _task_processes(config: pytest.Config, run: BenchflowRun, given: int | str) -> tuple[int, str | None]:
    """How many processes run the in-process tasks (``--benchflow-task-processes``), and a note when fewer
    than given: the reason a user who asked for them gets none."""
    wanted = given if isinstance(given, int) else len(os.sched_getaffinity(0))
    if wanted <= 1:
        return 1, None
    shown = f"--benchflow-task-processes {given}"
    if run.concurrency <= 1:
        why = "only tasks run at once (--benchflow-concurrency above 1) are spread over processes"
    elif config.getoption("dist", "no") != "no" or is_worker(config):
        why = "-n already runs the tasks in several processes"
    elif not sys.platform.startswith("linux"):
        why = "task processes are forked, which only Linux does safely"
    elif not local_benches(run):
        why = "no bench here runs in-process (container tasks wait on their containers, not on this process)"
    else:
        return min(wanted, run.concurrency), None
    return 1, f"{shown}: {why}; tasks run in this process"


def _capacity(run: BenchflowRun, info: dict[str, Any] | None) -> tuple[int | None, str]:
    """What ``auto`` means here: the runners' capacity (Docker slots), else the agent's ``max_concurrency``."""
    capacities = [runner.capacity() for runner in run.runners()]
    if capacities and all(c is not None for c in capacities):
        return min(sum(c for c in capacities if c is not None), MAX_CONCURRENCY), "the runners' capacity"
    announced = (info or {}).get("max_concurrency")
    if isinstance(announced, int) and not isinstance(announced, bool) and announced >= 1:
        return min(announced, MAX_CONCURRENCY), "the agent's max_concurrency"
    names = ", ".join(ctx.runner_name for ctx in run.benches.values())
    return (
        None,
        f"the runner ({names}) cannot say how many tasks it runs at once and the agent announces no max_concurrency",
    )


def _described(run: BenchflowRun, agent: SessionAgent) -> dict[str, Any]:
    """An agent as the run's summary keeps it: URL, ``GET /info`` (masked) and how it was given."""
    return {
        "url": public_url(agent.url),
        "info": run.redact_data(agent.info) if agent.info else None,
        "given": agent.given,
    }


def _check_same_agents(run: BenchflowRun, before: dict[str, Any], now: dict[str, dict[str, Any]]) -> None:
    """A usage error unless a resumed run of several agents continues with the same agents, each as it was."""
    if set(before) != set(now):
        raise pytest.UsageError(
            f"--benchflow-resume {run.run_dir}: that run evaluated the agents {', '.join(sorted(before))}, "
            f"this session {', '.join(sorted(now))}; resume with the same agents"
        )
    for name, described in now.items():
        earlier = before[name]
        try:
            _check_same_agent(run, earlier if isinstance(earlier, dict) else {}, described)
        except pytest.UsageError as e:
            raise pytest.UsageError(f"agent {name}: {e}") from None


def _check_same_agent(run: BenchflowRun, before: dict[str, Any], now: dict[str, Any]) -> None:
    """A usage error unless a resumed run continues with the agent it started with: its passes are that agent's."""
    where = f"--benchflow-resume {run.run_dir}"
    if "given" in before:
        if before["given"] != now["given"]:
            raise pytest.UsageError(
                f"{where}: that run evaluated the agent {before['given']}, this session {now['given']}; "
                "resume with the same agent"
            )
    elif before.get("url") not in (None, now["url"]):  # a run written before "given" was kept
        raise pytest.UsageError(f"{where}: that run evaluated the agent at {before['url']}, this session {now['url']}")
    if before.get("info") != finite(now["info"])[0]:  # as that run's summary stored it
        raise pytest.UsageError(
            f"{where}: the agent describes itself differently from that run's (GET /info: {agent_label(before)} "
            f"then, {agent_label(now)} now); resume with the same agent and model"
        )


def _say_where_the_cache_is_unused(config: pytest.Config, run: BenchflowRun) -> None:
    """Once per session: the benches whose tasks run outside this process do not use the cache."""
    outside = sorted(ctx.name for ctx in run.benches.values() if not ctx.runner.in_process)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if outside and reporter is not None:
        reporter.write_line(
            f"--benchflow-cache: {', '.join(outside)} runs outside this process (--benchflow-runner "
            f"{run.benches[outside[0]].runner_name}), where agent answers are neither read from the cache nor stored"
        )


def _open_cache(run: BenchflowRun, identity: str, path: str | None = None) -> ResponseCache | None:
    """The response cache of ``--benchflow-cache`` (a worker opens the file its controller chose), or None."""
    mode = run.settings.cache
    if mode == "off":
        return None
    import sqlite3  # only a session that uses the cache loads SQLite

    where = Path(path) if path else run.settings.cache_path or run.run_dir.parent / "cache.sqlite"
    if where.is_symlink() and not where.exists():
        # SQLite would create the database wherever the dangling link points, outside the output directory.
        raise pytest.UsageError(f"--benchflow-cache: {where} is a link to nothing; remove it or give another path")
    if where.exists() and not where.is_file():
        # A FIFO, a directory or a device: SQLite would call it a "disk I/O error" or fail to open it.
        raise pytest.UsageError(f"--benchflow-cache: {where} is not a regular file; remove it or give another path")
    try:
        return ResponseCache(where, identity, mode, run.secrets)
    except (OSError, sqlite3.Error) as e:
        raise pytest.UsageError(f"--benchflow-cache: cannot use {where}: {e}; remove it or give another path") from None


def _check_output_directory(output: Path, run_id: str) -> None:
    """A usage error, before anything is started, when the run directory could not be written."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".benchflow-write-check-{run_id}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise pytest.UsageError(
            f"--benchflow-output {output}: not a writable directory ({e.strerror or e}); choose another"
        ) from None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # `pytest --benchflow X` from a project root runs the benchmark, not the project's tests.
    if RUN_KEY in config.stash and config.args_source != pytest.Config.ArgsSource.ARGS:
        return True
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return
    bench_items: list[pytest.Item] = []
    # The controller planned the runs at session start; an xdist worker plans its own (the same).
    plan = run.plan if run.plan is not None else plan_runs(run)
    run.plan = None  # used once: at 12,032 tasks the pairs are worth freeing
    for name, runs in plan.items():
        collector = BenchCollector.from_parent(
            session,
            name=f"{NODE_PREFIX}{name}",
            nodeid=f"{NODE_PREFIX}{name}",
            bench_name=name,
            runs=runs,
            epochs=run.epochs,
            execute=run.run_item,
            agents=tuple(run.agents) or ("",),
            finished=frozenset(run.finished.get(name, ())),
        )
        # genitems reports the collector like any other, so "collected N items" counts the tasks.
        bench_items.extend(session.genitems(collector))
    if run.agents:
        bench_items = select_agent_items(config, bench_items)
    items[:0] = bench_items


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not isinstance(item, BenchItem):
        return report
    if call.when != "teardown":
        # JUnit reads properties from the teardown report; copies on the other two phases only
        # cost memory and xdist traffic (a third of the controller's peak at 12,032 tasks).
        report.user_properties = []
    run = item.config.stash[RUN_KEY]
    if call.excinfo is not None and isinstance(call.excinfo.value, TaskBroken):
        _show_reason(report, call.excinfo.value)
    # Secrets reach the bench; whatever it printed or raised is redacted before anyone reports it.
    run.redact_report(report)
    if (call.when == "setup" and report.failed) or call.when == "call":
        record, samples = run.record(item, call, report)
        attach_record(report, record, samples)
        if record.error_kind:
            # The JUnit <error> says why: its type (set where JUnit is written, see JunitErrorKinds) and a property.
            report.__dict__[ERROR_KIND_ATTRIBUTE] = record.error_kind
            item.user_properties.append(("error_kind", record.error_kind))
        item.task_run = None  # reported: at 12,032 tasks, results (with their logs) would pile up in memory
    return report


def _show_reason(report: pytest.TestReport, broken: TaskBroken) -> None:
    """The short summary's line of an errored task ends with its one-line reason, as a failure's does
    (pytest would show the exception's type, ``pytest_benchflow.plugin.items.TaskBroken``, first)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        crash.message = one_line_reason(broken.error)


class _RunnerLifecycle:
    """The runners' last steps: ``interrupt`` on Ctrl-C or SIGTERM (an interrupt pytest can print), ``cleanup`` and
    ``cleanup_run`` at the end."""

    def __init__(self, run: BenchflowRun, controller: bool) -> None:
        self.run = run
        self.controller = controller

    @pytest.hookimpl(tryfirst=True)  # before the terminal reporter formats the interrupt
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        printable_interrupt(excinfo)
        if self.run.sandbox_provider is not None:
            self.run.sandbox_provider.close_all()
        for runner in self.run.runners():
            runner.interrupt()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        cache = self.run.cache
        output: dict[str, Any] | None = getattr(self.run.config, "workeroutput", None)
        if output is not None and cache is not None:  # for the controller's end-of-session note
            output["benchflow_cache_skipped"] = [cache.skipped, cache.problem]
        provider = self.run.sandbox_provider
        if provider is not None:
            provider.close_all()
            if self.controller:  # before the runners': a container runner's sweep may remove the slot directory
                provider.sweep()
        for runner in self.run.runners():
            runner.cleanup()
            # Only the controller: a worker that finishes early must not remove its siblings' work.
            if self.controller:
                runner.cleanup_run()


class _XdistHooks:
    def __init__(self, run: BenchflowRun) -> None:
        self.run = run

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        # xdist's public word that a worker died running this item: the reporter makes it an error record.
        if crashitem.startswith(NODE_PREFIX):
            self.run.crashed.add(crashitem)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        # xdist's "load" gives a worker a few items at a time; a worker running N at once needs 2 × N.
        if self.run.concurrency > 1 and config.getvalue("dist") == "load":
            return AheadScheduling(config, log, self.run.concurrency)
        return None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        run = node.config.stash[RUN_KEY]
        output = getattr(node, "workeroutput", {})
        reporter = node.config.pluginmanager.get_plugin("benchflow-results")
        # Tasks the worker ran ahead and never reported (-x, Ctrl-C): their records are written here.
        for packed in output.get("benchflow_unreported") or []:
            taken = unpacked_record(packed)
            if taken is not None and reporter is not None:
                reporter.writer.add(*taken)
        skipped = output.get("benchflow_cache_skipped")
        if run.cache is not None and skipped:
            run.cache.count_skipped(*skipped)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        run = node.config.stash[RUN_KEY]
        node.workerinput["benchflow_run_id"] = run.run_id
        node.workerinput["benchflow_agent_url"] = run.agent_url
        node.workerinput["benchflow_concurrency"] = run.concurrency
        # What only the controller knows is secret (the served agent's key) is masked by workers too.
        node.workerinput["benchflow_secrets"] = sorted(run.secrets)
        cache = run.cache
        node.workerinput["benchflow_cache"] = [str(cache.path), cache.identity] if cache else None
        node.workerinput["benchflow_agents"] = run.agents
        node.workerinput["benchflow_agent_caches"] = {n: c.identity for n, c in run.agent_caches.items()}
        # Workers collect alone: they must skip exactly the tasks the controller found finished.
        node.workerinput["benchflow_finished"] = [
            [b, t, e, a] for b, tasks in run.finished.items() for t, e, a in sorted(tasks)
        ]
        # Found once in the controller: a worker's tasks of such a bench error with the same line.
        node.workerinput["benchflow_data_problems"] = {
            name: ctx.fingerprint_problem for name, ctx in run.benches.items() if ctx.fingerprint_problem
        }
