"""The pytest plugin: options, collection of benchmark tasks, reporting and results files."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from argparse import SUPPRESS
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import hookspec
from .bench import list_task_ids
from .errors import BenchflowError
from .items import BenchCollector, BenchItem, TaskBroken, TaskUnresolved, item_name
from .launch import AgentLaunchError, AgentProcess, check_agent, check_url, serve_agent_class
from .loader import BenchLoadError, load_bench_class
from .progress import ProgressDisplay
from .redaction import RedactingFilter, url_secrets
from .reporting import ResultsReporter
from .results import ResultsWriter
from .session import RUN_KEY, BenchContext, BenchflowRun, first_line, new_run_id

AGENT_KEY = pytest.StashKey[Any]()
#: Node ids of benchmark tasks start with this; given as arguments they select tasks.
NODE_PREFIX = "benchflow:"

# (option, ini type, default, help); every option is also an ini setting of the same name.
_OPTIONS: list[tuple[str, str, Any, str]] = [
    (
        "benchflow",
        "linelist",
        [],
        "benchmark to run: registered name, package.module:Class or path/file.py:Class (repeatable)",
    ),
    ("agent_url", "string", None, "URL of the agent to evaluate (default: $INTELLIGENCE_URL)"),
    ("agent", "string", None, "serve this BaseAgent (module:Class) on a free loopback port for the session"),
    ("agent_cmd", "string", None, "start the agent with this command, '{port}' replaced by a free port"),
    ("benchflow_split", "string", "test", "split of the benchmark (default: test)"),
    ("benchflow_arg", "linelist", [], "benchmark argument NAME=VALUE (repeatable; overrides $NAME)"),
    ("benchflow_runner", "string", None, "local or docker (default: local when the bench has an in-process entrance)"),
    ("benchflow_timeout", "string", None, "seconds a task may run before it errors"),
    ("benchflow_limit", "string", None, "run only the first N task ids of each benchmark"),
    ("benchflow_output", "string", ".benchflow", "directory for results and task outputs (default: .benchflow)"),
    ("benchflow_progress", "string", "auto", "live task progress: auto (on a terminal, not in CI), always, never"),
    ("benchflow_pull", "string", "missing", "docker runner: pull images never, missing or always"),
    ("benchflow_html", "string", None, "write the run's self-contained HTML report to this file"),
    ("benchflow_baseline", "string", None, "compare with this earlier run; a significant regression fails the session"),
]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("benchflow", "benchmarks as test suites (pytest-benchflow)")
    for name, kind, default, help_text in _OPTIONS:
        flag = "--" + name.replace("_", "-")
        if kind == "linelist":
            group.addoption(flag, action="append", dest=name, default=None, metavar="VALUE", help=help_text)
        else:
            group.addoption(flag, dest=name, default=None, metavar="VALUE", help=help_text)
        parser.addini(name, help_text, type=kind, default=default)  # type: ignore[arg-type]
    for name, help_text in [
        ("benchflow_memory", "docker runner: memory limit per container, e.g. 2g (default: 4g)"),
        ("benchflow_cpus", "docker runner: CPUs per container, e.g. 1.5 (default: 2)"),
        ("benchflow_pids", "docker runner: process limit per container (default: 512)"),
        (
            "benchflow_network",
            "docker runner: network of task containers: auto (host for a loopback agent, else bridge) or a name",
        ),
        ("benchflow_user", "docker runner: user (name or uid[:gid]) task containers run as (default: the image's)"),
        (
            "benchflow_cap_drop",
            "docker runner: capabilities to drop, whitespace-separated, or none "
            "(default: NET_RAW MKNOD SYS_CHROOT SETFCAP AUDIT_WRITE)",
        ),
    ]:
        parser.addini(name, help_text, type="string", default="")
    group.addoption("--benchflow-select", action="append", dest="benchflow_select", default=[], help=SUPPRESS)


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # A node id copied from pytest's output ("benchflow:mmlu_pro::biology") is not a path: pytest
    # would answer "file or directory not found". Turn each one into a task selection instead.
    positional = set(getattr(early_config.known_args_namespace, "file_or_dir", None) or [])
    for i, arg in enumerate(args):
        if arg.startswith(NODE_PREFIX) and arg in positional and (i == 0 or args[i - 1] != "--deselect"):
            args[i] = f"--benchflow-select={arg}"


def _selected_benches(config: pytest.Config) -> list[str]:
    """Bench names of the node ids given as arguments (``benchflow:<bench>[::<task>]``)."""
    names = [nodeid[len(NODE_PREFIX) :].partition("::")[0] for nodeid in config.getoption("benchflow_select")]
    return list(dict.fromkeys(names))


def option(config: pytest.Config, name: str) -> Any:
    """The command-line value of ``name``, else its ini value."""
    value = config.getoption(name)
    return value if value is not None else config.getini(name)


def _number(config: pytest.Config, name: str, kind: type) -> Any:
    raw = option(config, name)
    if raw in (None, ""):
        return None
    flag = f"--{name.replace('_', '-')}"
    try:
        value = kind(raw)
    except ValueError:
        noun = "a whole number" if kind is int else "a number of seconds"
        raise pytest.UsageError(f"{flag} {raw!r} is not {noun}") from None
    if not math.isfinite(value) or value <= 0:
        raise pytest.UsageError(f"{flag} must be a positive finite number, got {raw}")
    return value


def _arg_values(config: pytest.Config) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in option(config, "benchflow_arg") or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise pytest.UsageError(f"--benchflow-arg {item!r} must be NAME=VALUE")
        values[name.strip()] = value
    return values


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "benchflow: a benchmark task run by pytest-benchflow")
    names = option(config, "benchflow") or _selected_benches(config)
    if not names:
        return
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    run_id = workerinput.get("benchflow_run_id") or new_run_id()
    output = Path(option(config, "benchflow_output"))
    if not output.is_absolute():
        output = config.invocation_params.dir / output
    run = BenchflowRun(
        config=config,
        run_id=run_id,
        run_dir=output / run_id,
        split=option(config, "benchflow_split"),
        timeout=_number(config, "benchflow_timeout", float),
        limit=_number(config, "benchflow_limit", int),
    )
    run.benches.update(_bench_contexts(config, names))
    run.secrets.update(v for ctx in run.benches.values() for v in ctx.bench.args.secret_values())
    if is_worker(config):
        run.agent_url = workerinput["benchflow_agent_url"]
        run.secrets.update(url_secrets(run.agent_url))
    config.stash[RUN_KEY] = run
    _redact_logging(config, run)
    _interrupt_on_sigterm()
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "benchflow-xdist")


def _bench_contexts(config: pytest.Config, refs: list[str]) -> dict[str, BenchContext]:
    """Load, instantiate and resolve the session's arguments of every named benchmark (usage errors if not)."""
    runner = option(config, "benchflow_runner")
    if runner not in (None, "", "local", "docker"):
        raise pytest.UsageError(f"--benchflow-runner {runner!r}: choose local or docker")
    pull = option(config, "benchflow_pull")
    if pull not in ("never", "missing", "always"):
        raise pytest.UsageError(f"--benchflow-pull {pull!r}: choose never, missing or always")
    cli_values = _arg_values(config)
    declared: set[str] = set()
    contexts: dict[str, BenchContext] = {}
    for ref in dict.fromkeys(refs):
        try:
            cls = load_bench_class(ref, config.rootpath)
            bench = cls()
        except BenchLoadError as e:
            raise pytest.UsageError(str(e)) from None
        except Exception as e:
            raise pytest.UsageError(f"benchmark {ref!r}: {cls.__name__}() raised {type(e).__name__}: {e}") from None
        arg_names = bench.get_args(None).names
        declared.update(arg_names)
        # The environment supplies what the command line does not.
        values = {n: os.environ[n] for n in arg_names if n in os.environ}
        values.update({k: v for k, v in cli_values.items() if k in arg_names})
        name = ref if ":" not in ref else cls.__name__
        ctx = BenchContext(
            name=name,
            bench=bench,
            values=values,
            runner_name=runner or ("local" if bench.get_entrypoint() is not None else "docker"),
        )
        try:
            bench.args = ctx.resolve(None)
        except BenchflowError as e:
            raise pytest.UsageError(str(e)) from None
        contexts[name] = ctx
    stray = [n for n in _selected_benches(config) if n not in contexts]
    if stray:
        raise pytest.UsageError(
            f"node id {NODE_PREFIX}{stray[0]}::… names a benchmark this session does not run "
            f"(running: {', '.join(contexts)}); give --benchflow for it"
        )
    unknown = sorted(set(cli_values) - declared)
    if unknown:
        raise pytest.UsageError(
            f"--benchflow-arg: no selected benchmark takes {', '.join(unknown)} "
            f"(known: {', '.join(sorted(declared)) or 'none'})"
        )
    return contexts


def _redact_logging(config: pytest.Config, run: BenchflowRun) -> None:
    # Live logging (--log-cli-level), --log-file and captured logs all pass through these handlers.
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    redacting = RedactingFilter(run.secrets)
    for name in ("log_cli_handler", "log_file_handler", "caplog_handler", "report_handler"):
        handler = getattr(logging_plugin, name, None)
        if isinstance(handler, logging.Handler):
            handler.addFilter(redacting)


def _interrupt_on_sigterm() -> None:
    # SIGTERM (CI cancelling a job, xdist stopping a worker) then unwinds like Ctrl-C, whatever the
    # runner: every task's `finally` cleans up, the summary and JUnit are written, the agent stopped.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    # Only the controller sweeps: a worker that finishes early must not remove its siblings' containers.
    if (
        run is not None
        and not is_worker(session.config)
        and any(ctx.runner_name == "docker" for ctx in run.benches.values())
    ):
        from .docker_runner import sweep_run

        # Containers left by a crashed worker or an interrupted task: remove what carries this run's label.
        sweep_run(run.run_id)


class _XdistHooks:
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        run = node.config.stash[RUN_KEY]
        node.workerinput["benchflow_run_id"] = run.run_id
        node.workerinput["benchflow_agent_url"] = run.agent_url


def _start_agent(config: pytest.Config, run: BenchflowRun) -> None:
    """Name or start the session's agent; whatever is started is stopped when the session ends, however it ends."""
    url = option(config, "agent_url")
    agent_ref = option(config, "agent")
    command = option(config, "agent_cmd")
    given = [flag for flag, value in (("--agent-url", url), ("--agent", agent_ref), ("--agent-cmd", command)) if value]
    if len(given) > 1:
        raise pytest.UsageError(f"name the agent one way only, not with {' and '.join(given)}")
    if not given:
        url = os.environ.get("INTELLIGENCE_URL")
        if not url:
            raise pytest.UsageError(
                "no agent: give --agent-url URL (or $INTELLIGENCE_URL), --agent module:Class "
                "or --agent-cmd 'COMMAND {port}'"
            )
    try:
        if url:
            run.agent_url = check_url(url)
            run.secrets.update(url_secrets(run.agent_url))
            return
        agent = serve_agent_class(agent_ref) if agent_ref else AgentProcess(command)
    except AgentLaunchError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[AGENT_KEY] = agent
    config.add_cleanup(agent.stop)
    run.agent_url = agent.url


def _output_directory(run: BenchflowRun) -> None:
    """Check that the run directory can be created, before anything is started."""
    output = run.run_dir.parent
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".benchflow-write-check-{run.run_id}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise pytest.UsageError(
            f"--benchflow-output {output}: not a writable directory ({e.strerror or e}); choose another"
        ) from None


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    run = config.stash.get(RUN_KEY, None)
    # --collect-only runs nothing: no agent is started (a started command would outlive the session).
    if run is None or is_worker(config) or config.option.collectonly:
        return
    _output_directory(run)
    display = ProgressDisplay.create(config, option(config, "benchflow_progress"))
    _start_agent(config, run)
    problem = check_agent(run.agent_url)
    if problem:
        raise pytest.UsageError(f"{problem}; start the agent or fix --agent-url before running the benchmark")
    if display is not None:
        run.progress = display.callback
    writer = ResultsWriter(
        run.run_dir,
        {
            "run_id": run.run_id,
            "split": run.split,
            "agent_url": run.public_agent_url(),
            "argv": [run.redact(a) for a in config.invocation_params.args],
        },
    )
    reporter = ResultsReporter(
        run,
        writer,
        html=option(config, "benchflow_html") or None,
        baseline=option(config, "benchflow_baseline") or None,
    )
    config.pluginmanager.register(reporter, "benchflow-results")


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
    selected = set(config.getoption("benchflow_select"))
    for name, ctx in run.benches.items():
        try:
            task_ids = list_task_ids(ctx.bench, run.split)
        except BenchflowError as e:
            raise pytest.UsageError(f"{name}: {e}") from None
        if run.limit:
            task_ids = task_ids[: run.limit]
        if selected:
            task_ids = _select(name, task_ids, selected)
        collector = BenchCollector.from_parent(
            session, name=f"benchflow:{name}", nodeid=f"benchflow:{name}", bench_name=name, task_ids=task_ids
        )
        # genitems reports the collector like any other, so "collected N items" counts the tasks.
        bench_items.extend(session.genitems(collector))
    items[:0] = bench_items


def _select(bench: str, task_ids: list[str], selected: set[str]) -> list[str]:
    """The tasks of ``bench`` that the node ids given as arguments name (all of them for ``benchflow:<bench>``)."""
    prefix = f"{NODE_PREFIX}{bench}"
    if prefix in selected:
        return task_ids
    wanted = {nodeid[len(prefix) + 2 :] for nodeid in selected if nodeid.startswith(prefix + "::")}
    chosen = [t for t in task_ids if item_name(t) in wanted]
    missing = wanted - {item_name(t) for t in chosen}
    if missing:
        raise pytest.UsageError(
            f"{prefix}::{sorted(missing)[0]}: no such task in {bench} ({len(task_ids)} tasks; "
            "`pytest --collect-only -q` lists their node ids)"
        )
    return chosen


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
    report.sections = [(title, run.redact(text)) for title, text in report.sections]
    if report.longrepr is not None:
        text = str(report.longrepr)
        redacted = run.redact(text)
        if redacted != text:
            report.longrepr = redacted
    final = (call.when == "setup" and report.failed) or call.when == "call"
    if final:
        if report.passed:
            outcome, reason = "passed", None
        elif call.excinfo is not None and isinstance(call.excinfo.value, TaskUnresolved):
            outcome, reason = "failed", "unresolved"
        else:
            outcome = "error" if call.when == "setup" else "failed"
            error = call.excinfo.value if call.excinfo else None
            reason = first_line(error.error if isinstance(error, TaskBroken) else error) if error else None
        details = str(report.longrepr) if report.longrepr is not None else None
        report.benchflow = run.record(item, outcome, reason, details)  # type: ignore[attr-defined]
        item.result = None  # reported: at 12,032 tasks, results (with their logs) would pile up in memory
    return report
