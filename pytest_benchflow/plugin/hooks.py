"""The pytest plugin's hook implementations: wiring that hands each step to the room that does it."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from ..bench import list_task_ids
from ..cache import CACHE_MODES, ResponseCache, describe
from ..errors import AgentLaunchError, BenchflowError
from ..redaction import url_secrets
from ..results.writer import ResultsWriter
from ..runners import Runner, installed_runners, runner_class
from . import hookspec
from .items import NODE_PREFIX, BenchCollector, BenchItem
from .launch import agent_info, check_agent, provide_agent
from .loading import load_session
from .options import add_options, choice, positive, price, setting, value
from .process import interrupt_on_sigterm, printable_interrupt, redact_logging
from .progress import MODES as PROGRESS_MODES
from .progress import ProgressDisplay
from .reporter import ResultsReporter
from .selection import rewrite_node_id_arguments, select_tasks
from .session import RUN_KEY, BenchflowRun, attach_record


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, [option for name in installed_runners() for option in runner_class(name).options()])


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    rewrite_node_id_arguments(early_config, args)


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "benchflow: a benchmark task run by pytest-benchflow")
    run = load_session(config)
    if run is None:
        return
    cache = getattr(config, "workerinput", {}).get("benchflow_cache")
    if cache:
        run.cache = _open_cache(config, run, cache[1], cache[0])
    config.stash[RUN_KEY] = run
    redact_logging(config, run.secrets)
    interrupt_on_sigterm()
    config.pluginmanager.register(_RunnerLifecycle(run, controller=not is_worker(config)), "benchflow-runners")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "benchflow-xdist")


@pytest.hookimpl(trylast=True)
def pytest_benchflow_make_runner(config: pytest.Config, name: str, run_id: str) -> Runner:
    cls = runner_class(name)
    return cls.from_options({o.name: setting(config, o) for o in cls.options()}, run_id)


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    run = config.stash.get(RUN_KEY, None)
    # --collect-only runs nothing: no agent is started (a started command would outlive the session).
    if run is None or is_worker(config) or config.option.collectonly:
        return
    _check_output_directory(run.run_dir.parent, run.run_id)
    prices, max_cost = price(config), positive(config, "benchflow_max_cost", float)
    if max_cost and not prices:
        raise pytest.UsageError("--benchflow-max-cost needs --benchflow-price INPUT,OUTPUT to know what tokens cost")
    display = ProgressDisplay.create(config, choice(config, "benchflow_progress", PROGRESS_MODES))
    try:
        run.agent_url, agent = provide_agent(
            value(config, "agent_url"), value(config, "agent"), value(config, "agent_cmd")
        )
    except AgentLaunchError as e:
        raise pytest.UsageError(str(e)) from None
    if agent is not None:
        config.add_cleanup(agent.stop)  # whatever happens next, the agent is stopped with the session
    run.secrets.update(url_secrets(run.agent_url))
    problem = check_agent(run.agent_url)
    if problem:
        raise pytest.UsageError(f"{problem}; start the agent or fix --agent-url before running the benchmark")
    for runner in run.runners():
        try:
            runner.start(run.agent_url)
        except BenchflowError as e:
            raise pytest.UsageError(str(e)) from None
    if display is not None:
        run.progress = display.callback
    info = agent_info(run.agent_url)
    run.cache = _open_cache(config, run, describe(info, run.public_agent_url()))
    metadata = {
        "run_id": run.run_id,
        "split": run.split,
        "agent_url": run.public_agent_url(),
        "agent": {"url": run.public_agent_url(), "info": run.redact_data(info) if info else None},
        "epochs": run.epochs,
        "argv": [run.redact(a) for a in config.invocation_params.args],
    }
    reporter = ResultsReporter(
        run,
        ResultsWriter(run.run_dir, metadata, price=prices, earlier=run.resumed, earlier_samples=run.resumed_samples),
        html=value(config, "benchflow_html") or None,
        baseline=value(config, "benchflow_baseline") or None,
        max_cost=max_cost,
    )
    config.pluginmanager.register(reporter, "benchflow-results")


def _open_cache(
    config: pytest.Config, run: BenchflowRun, identity: str, path: str | None = None
) -> ResponseCache | None:
    mode = choice(config, "benchflow_cache", CACHE_MODES)
    if mode == "off":
        return None
    import sqlite3  # only a session that uses the cache loads SQLite

    where = Path(path or value(config, "benchflow_cache_path") or run.run_dir.parent / "cache.sqlite")
    try:
        return ResponseCache(where, identity, mode, run.secrets)
    except (OSError, sqlite3.Error) as e:
        raise pytest.UsageError(f"--benchflow-cache: cannot use {where}: {e}") from None


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
        if done:
            runs = [r for r in runs if r not in done]
        collector = BenchCollector.from_parent(
            session,
            name=f"{NODE_PREFIX}{name}",
            nodeid=f"{NODE_PREFIX}{name}",
            bench_name=name,
            runs=runs,
            epochs=run.epochs,
            execute=run.run_item,
        )
        # genitems reports the collector like any other, so "collected N items" counts the tasks.
        bench_items.extend(session.genitems(collector))
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
    # Secrets reach the bench; whatever it printed or raised is redacted before anyone reports it.
    run.redact_report(report)
    if (call.when == "setup" and report.failed) or call.when == "call":
        attach_record(report, *run.record(item, call, report))
        item.result = None  # reported: at 12,032 tasks, results (with their logs) would pile up in memory
    return report


class _RunnerLifecycle:
    """The runners' last steps: ``interrupt`` on Ctrl-C or SIGTERM (an interrupt pytest can print), ``cleanup`` and
    ``cleanup_run`` at the end."""

    def __init__(self, run: BenchflowRun, controller: bool) -> None:
        self.run = run
        self.controller = controller

    @pytest.hookimpl(tryfirst=True)  # before the terminal reporter formats the interrupt
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        printable_interrupt(excinfo)
        for runner in self.run.runners():
            runner.interrupt()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        for runner in self.run.runners():
            runner.cleanup()
            # Only the controller: a worker that finishes early must not remove its siblings' work.
            if self.controller:
                runner.cleanup_run()


class _XdistHooks:
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        run = node.config.stash[RUN_KEY]
        node.workerinput["benchflow_run_id"] = run.run_id
        node.workerinput["benchflow_agent_url"] = run.agent_url
        cache = run.cache
        node.workerinput["benchflow_cache"] = [str(cache.path), cache.identity] if cache else None
        # Workers collect alone: they must skip exactly the tasks the controller found finished.
        node.workerinput["benchflow_finished"] = [
            [b, t, e] for b, tasks in run.finished.items() for t, e in sorted(tasks)
        ]
