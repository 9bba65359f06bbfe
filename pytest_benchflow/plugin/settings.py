"""The session's settings: every option and ini value, read and validated once into a frozen ``SessionSettings``.

Each field of :class:`SessionSettings` declares its option: the :class:`~pytest_benchflow.configuration.Setting`
(flag, ini name, default, help) and the function that turns the given value into the field's. Registering the
options with pytest (:func:`add_options`) and reading them (:func:`read_settings`) both walk the fields, so
adding an option is one field here; the code that uses it reads ``run.settings.<field>``.
"""

from __future__ import annotations

from argparse import SUPPRESS
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from ..cache import CACHE_MODES
from ..configuration import Setting
from ..envnumbers import MAX_SECONDS, in_range, parse_number, shown_value
from ..errors import ConfigurationError
from ..runners import Runner
from ..runners.registry import usable_runners
from ..sandbox import SandboxProvider
from .progress import MODES as PROGRESS_MODES
from .reruns import RerunPolicy, parse_rerun_kinds, parse_reruns
from .selection import selected_benches

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_EPOCHS",
    "MAX_LIMIT",
    "MAX_TASK_PROCESSES",
    "MAX_TIMEOUT",
    "OPTIONS",
    "SETTINGS_KEY",
    "SessionSettings",
    "add_options",
    "concurrency_value",
    "read_settings",
    "task_processes_value",
]

#: --benchflow-gate-mode: worse: no other agent may be significantly worse than NAME; better: NAME must be
#: significantly better than each.
GATE_MODES = ("worse", "better")

#: More epochs than this is a typo, not an evaluation (each epoch is a test item per task).
MAX_EPOCHS = 1000
#: More tasks than any benchmark has: a larger --benchflow-limit is a typo.
MAX_LIMIT = 10**9
#: Seconds: a longer --benchflow-timeout is a typo, and one past ~10^9 s is no wait a socket or lock can express.
MAX_TIMEOUT = MAX_SECONDS

#: Turns a setting's given value (a string; a list for a ``lines`` setting) into its field's, relative paths
#: against the directory pytest was invoked in; a bad value raises ConfigurationError naming the setting.
Parse = Callable[[Any, Setting, Path], Any]
_DECLARED = "pytest_benchflow.setting"


def _option(name: str, help: str, parse: Parse, default: str = "", *, lines: bool = False) -> dict[str, Any]:
    """The metadata of a :class:`SessionSettings` field read from the flag ``--name-with-dashes`` and the ini
    setting ``name`` (``default`` when neither is given), through ``parse``."""
    return {_DECLARED: (Setting(name, help, default, flag=True, lines=lines), parse)}


#: More tasks at once in one process than this is a typo (and more threads than a process should hold).
MAX_CONCURRENCY = 10_000


def concurrency_value(raw: Any) -> int | str:
    """``--benchflow-concurrency`` as a number of tasks, or ``"auto"``; a usage error naming the value otherwise."""
    return _count_or_auto(
        raw,
        "--benchflow-concurrency",
        MAX_CONCURRENCY,
        wanted="tasks at once (1 runs them one by one) or auto",
        too_few="at least 1 task must run at once",
        too_many=f"at most {MAX_CONCURRENCY:,} tasks at once in one process (add processes with -n for more)",
    )


#: More task processes than this is a typo: each is a copy of the pytest process, and past the machine's cores
#: they only share the same CPUs.
MAX_TASK_PROCESSES = 256


def task_processes_value(raw: Any) -> int | str:
    """``--benchflow-task-processes`` as a number of processes, or ``"auto"`` (one per CPU); a usage error otherwise."""
    return _count_or_auto(
        raw,
        "--benchflow-task-processes",
        MAX_TASK_PROCESSES,
        wanted="processes (1 runs every task in this one) or auto (one per CPU)",
        too_few="at least 1 (this process) runs the tasks",
        too_many=f"at most {MAX_TASK_PROCESSES} (one per CPU is what helps; try auto)",
    )


def _count_or_auto(raw: Any, flag: str, maximum: int, *, wanted: str, too_few: str, too_many: str) -> int | str:
    """A whole number from 1 to ``maximum`` (unset: 1), or ``"auto"``; else a usage error naming ``flag``'s value."""
    text = str(raw if raw not in (None, "") else "1").strip()
    if text.lower() == "auto":
        return "auto"
    number = parse_number(text, int)
    if number is None:
        raise ConfigurationError(f"{flag} {shown_value(text)!r}: give a whole number of {wanted}")
    if number < 1:
        raise ConfigurationError(f"{flag} {number}: {too_few}")
    if number > maximum:
        raise ConfigurationError(f"{flag} {number}: {too_many}")
    return int(number)


def _text(raw: Any, setting: Setting, cwd: Path) -> str:
    return str(raw)


def _optional(raw: Any, setting: Setting, cwd: Path) -> str | None:
    return str(raw) if raw else None


def _items(raw: Any, setting: Setting, cwd: Path) -> tuple[str, ...]:
    return tuple(raw or ())


def _path(raw: Any, setting: Setting, cwd: Path) -> Path | None:
    """A path given relative to where pytest was invoked (not to the rootdir), None when not given."""
    given = raw or setting.default
    if not given:
        return None
    path = Path(given)
    return path if path.is_absolute() else cwd / path


def _path_as_given(raw: Any, setting: Setting, cwd: Path) -> Path | None:
    """A path kept as the user typed it (errors quote it so), None when not given."""
    return Path(raw) if raw else None


def _number(
    kind: type[int] | type[float],
    maximum: int | None,
    why: str,
    raw: Any,
    setting: Setting,
    cwd: Path,
    unset: float | None = None,
) -> Any:
    """A positive finite number (at most ``maximum``, ``why`` saying why); ``unset`` when not given."""
    if raw in (None, ""):
        return unset
    number = parse_number(str(raw), kind)
    if number is None:
        noun = "a whole number" if kind is int else "a number of seconds"
        raise ConfigurationError(f"{setting.shown} {raw!r} is not {noun}")
    if not in_range(number, 0, above=True):
        raise ConfigurationError(f"{setting.shown} must be a positive finite number, got {shown_value(raw)}")
    if maximum is not None and not in_range(number, maximum=maximum):
        reason = f" ({why})" if why else ""
        raise ConfigurationError(f"{setting.shown} {shown_value(raw)}: at most {maximum}{reason}")
    return number


def _choice(choices: tuple[str, ...], raw: Any, setting: Setting, cwd: Path) -> str:
    given = str(raw)
    if given not in choices:
        raise ConfigurationError(f"{setting.shown} {given!r}: choose {', '.join(choices[:-1])} or {choices[-1]}")
    return given


def _switch(raw: Any, setting: Setting, cwd: Path) -> bool:
    return _choice(("on", "off"), raw, setting, cwd) == "on"


def _price(raw: Any, setting: Setting, cwd: Path) -> tuple[float, float] | None:
    """``INPUT,OUTPUT``: the price per million input and output tokens."""
    if not raw:
        return None
    numbers = [parse_number(part, float) for part in str(raw).split(",")]
    prices = [n for n in numbers if n is not None and in_range(n)]
    if len(numbers) != 2 or len(prices) != 2:
        raise ConfigurationError(
            f"{setting.shown} {raw!r}: give INPUT,OUTPUT, the price per million tokens, e.g. 2.5,10"
        )
    return prices[0], prices[1]


def _arguments(raw: Any, setting: Setting, cwd: Path) -> Mapping[str, str]:
    """``NAME=VALUE`` pairs (a later one wins)."""
    values: dict[str, str] = {}
    for item in raw or ():
        name, sep, given = item.partition("=")
        if not sep or not name.strip():
            raise ConfigurationError(f"{setting.shown} {item!r} must be NAME=VALUE")
        values[name.strip()] = given
    return MappingProxyType(values)


@dataclass(frozen=True)
class SessionSettings:
    """Every option and ini value of a benchflow session, read and validated once, when pytest is configured.

    Kept in ``config.stash[SETTINGS_KEY]`` (and as ``BenchflowRun.settings``): a plugin or conftest reads it
    there, and nothing of the session reads an option any other way. Frozen: what the session was told does
    not change while it runs. Each field declares its option (``_option``): adding an option is adding a field.
    """

    #: Benchmarks to run (their references as given, or the benches of node ids given as arguments).
    benches: tuple[str, ...] = field(
        metadata=_option(
            "benchflow",
            "benchmark to run: registered name, package.module:Class or path/file.py:Class",
            _items,
            lines=True,
        )
    )
    #: The agents, as given (``[NAME=]VALUE`` each; see agents_given.py): none means ``$INTELLIGENCE_URL``.
    agent_url: tuple[str, ...] = field(
        metadata=_option(
            "agent_url",
            "[NAME=]URL of an agent to evaluate (repeatable; default: $INTELLIGENCE_URL)",
            _items,
            lines=True,
        )
    )
    agent: tuple[str, ...] = field(
        metadata=_option(
            "agent",
            "[NAME=]module:Class: serve this BaseAgent on a free loopback port (repeatable)",
            _items,
            lines=True,
        )
    )
    agent_cmd: tuple[str, ...] = field(
        metadata=_option(
            "agent_cmd",
            "[NAME=]COMMAND: start an agent, '{port}' replaced by a free port (repeatable)",
            _items,
            lines=True,
        )
    )
    split: str = field(metadata=_option("benchflow_split", "split of the benchmark (default: test)", _text, "test"))
    #: ``--benchflow-arg NAME=VALUE`` pairs.
    args: Mapping[str, str] = field(
        metadata=_option(
            "benchflow_arg", "benchmark argument NAME=VALUE (repeatable; overrides $NAME)", _arguments, lines=True
        )
    )
    #: The runner named by the user; None: local for a bench with an in-process entrance, else the container runner.
    runner: str | None = field(
        metadata=_option(
            "benchflow_runner",
            "where tasks run: any installed runner (`pytest-benchflow list` shows them; default: local if possible)",
            _optional,
        )
    )
    sandbox: str = field(
        metadata=_option(
            "benchflow_sandbox",
            "where env.sandbox() opens a task's sandboxes: any installed sandbox provider (default: docker)",
            _text,
            "docker",
        )
    )
    timeout: float | None = field(
        metadata=_option(
            "benchflow_timeout",
            "seconds a task may run before it errors",
            partial(_number, float, MAX_TIMEOUT, "over three years; leave it out for no limit"),
        )
    )
    limit: int | None = field(
        metadata=_option(
            "benchflow_limit",
            "run only the first N task ids of each benchmark",
            partial(_number, int, MAX_LIMIT, "more tasks than any benchmark has"),
        )
    )
    #: The output directory; each run's directory is below it.
    output: Path = field(
        metadata=_option(
            "benchflow_output", "directory for results and task outputs (default: .benchflow)", _path, ".benchflow"
        )
    )
    progress: str = field(
        metadata=_option(
            "benchflow_progress",
            "live task progress: auto (on a terminal, not in CI), always, never",
            partial(_choice, PROGRESS_MODES),
            "auto",
        )
    )
    html: str | None = field(
        metadata=_option("benchflow_html", "write the run's self-contained HTML report to this file", _optional)
    )
    baseline: str | None = field(
        metadata=_option(
            "benchflow_baseline", "compare with this earlier run; a significant regression fails the session", _optional
        )
    )
    baseline_agent: str | None = field(
        metadata=_option(
            "benchflow_baseline_agent",
            "with a baseline of several agents: the one to compare with (each of this run's agents)",
            _optional,
        )
    )
    cache: str = field(
        metadata=_option(
            "benchflow_cache",
            "reuse agent answers: off, use (answer from the cache, store misses) or refresh",
            partial(_choice, CACHE_MODES),
            "off",
        )
    )
    cache_path: Path | None = field(
        metadata=_option(
            "benchflow_cache_path", "the cache file (default: cache.sqlite in --benchflow-output)", _path_as_given
        )
    )
    resume: Path | None = field(
        metadata=_option(
            "benchflow_resume", "continue this run (a run directory, or an output directory: its newest run)", _path
        )
    )
    #: Per million input and output tokens.
    price: tuple[float, float] | None = field(
        metadata=_option(
            "benchflow_price", "INPUT,OUTPUT: price per million input and output tokens, for a cost line", _price
        )
    )
    max_cost: float | None = field(
        metadata=_option(
            "benchflow_max_cost",
            "start no new task once the run has cost this much (needs --benchflow-price)",
            partial(_number, float, None, ""),
        )
    )
    epochs: int = field(
        metadata=_option(
            "benchflow_epochs",
            "run every task N times, each an item of its own (pass@k, pass^k, flaky tasks)",
            partial(_number, int, MAX_EPOCHS, "each epoch is an item per task", unset=1),
            "1",
        )
    )
    transcripts: bool = field(
        metadata=_option(
            "benchflow_transcripts",
            "keep every agent exchange in each task's transcript.jsonl: on or off",
            _switch,
            "on",
        )
    )
    #: Tasks each pytest process runs at once, or ``"auto"`` (the runner's capacity, resolved at session start).
    concurrency: int | str = field(
        metadata=_option(
            "benchflow_concurrency",
            "tasks each pytest process runs at once: a number (default 1: one by one) or auto (the runner's capacity)",
            lambda raw, setting, cwd: concurrency_value(raw),
            "1",
        )
    )
    #: Processes forked after collection that run the in-process tasks of that pool, or ``"auto"`` (one per CPU).
    task_processes: int | str = field(
        metadata=_option(
            "benchflow_task_processes",
            "processes that run the in-process tasks of --benchflow-concurrency: a number (default 1: this process) "
            "or auto (one per CPU); for thousands of small tasks, which one process's GIL would bind to one core",
            lambda raw, setting, cwd: task_processes_value(raw),
            "1",
        )
    )
    rerun_infra: int = field(
        metadata=_option(
            "benchflow_rerun_infra",
            "run a task that errored with an infrastructure error again, up to N times",
            lambda raw, setting, cwd: parse_reruns(raw),
            "1",
        )
    )
    rerun_kinds: frozenset[str] = field(
        metadata=_option(
            "benchflow_rerun_kinds",
            "the error kinds rerun, comma-separated (e.g. agent,infra)",
            lambda raw, setting, cwd: parse_rerun_kinds(raw),
            "infra",
        )
    )
    gate_agent: str | None = field(
        metadata=_option(
            "benchflow_gate_agent",
            "with several agents: fail the session if another is significantly worse than NAME",
            _optional,
        )
    )
    gate_mode: str = field(
        metadata=_option(
            "benchflow_gate_mode",
            "gate-agent test: worse (no agent worse than it) or better (it beats all)",
            partial(_choice, GATE_MODES),
            "worse",
        )
    )
    #: Node ids given as arguments (``benchflow:<bench>[::<task>]``; see selection.py).
    selected: tuple[str, ...] = ()
    #: Every installed runner's settings by name, as runners receive them (a repeated flag's values joined by spaces).
    runner_options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def rerun(self) -> RerunPolicy:
        """Which errored tasks run again, how often."""
        return RerunPolicy(self.rerun_infra, self.rerun_kinds)

    def runner_values(self, runner: type[Runner] | type[SandboxProvider]) -> dict[str, str]:
        """What ``from_options`` of a runner or sandbox provider receives: each of its settings' value."""
        return {o.name: self.runner_options.get(o.name) or o.default for o in runner.options()}

    def configures(self, runner: type[Runner]) -> bool:
        """Whether the session gives ``runner`` a setting other than its default (checked even when unused)."""
        return any((self.runner_options.get(o.name) or o.default) != o.default for o in runner.options())


SETTINGS_KEY = pytest.StashKey[SessionSettings]()

_FIELDS: list[tuple[str, Setting, Parse]] = [
    (f.name, *f.metadata[_DECLARED]) for f in fields(SessionSettings) if _DECLARED in f.metadata
]
#: The plugin's own options, in the order ``pytest --help`` lists them.
OPTIONS: list[Setting] = [setting for _, setting, _ in _FIELDS]


def add_options(parser: pytest.Parser, runner_settings: Iterable[Setting]) -> None:
    """Register the plugin's options and the installed runners' settings."""
    group = parser.getgroup("benchflow", "benchmarks as test suites (pytest-benchflow)")
    for setting in {s.name: s for s in (*OPTIONS, *runner_settings)}.values():
        if setting.flag:
            group.addoption(
                "--" + (setting.flag_name or setting.name).replace("_", "-"),
                action="append" if setting.repeatable or setting.lines else "store",
                dest=setting.name,
                default=None,
                metavar="VALUE",
                help=setting.help,
            )
        if setting.lines:
            parser.addini(setting.name, setting.help, type="linelist", default=[])
        else:
            parser.addini(setting.name, setting.help, type="string", default=setting.default)
    # Node ids given as arguments end up here (see selection.py).
    group.addoption("--benchflow-select", action="append", dest="benchflow_select", default=[], help=SUPPRESS)


def _given(config: pytest.Config, name: str) -> Any:
    """The command-line value of ``name``, else its ini value."""
    given = config.getoption(name, None)
    return given if given is not None else config.getini(name)


def _runner_options(config: pytest.Config) -> Mapping[str, str]:
    values = {}
    for runner in usable_runners().values():
        for setting in runner.options():
            given = _given(config, setting.name)
            values[setting.name] = " ".join(given) if isinstance(given, list) else str(given or "")
    return MappingProxyType(values)


def read_settings(config: pytest.Config) -> SessionSettings | None:
    """The session's settings, each validated (a bad one raises ConfigurationError naming it, with what to give).

    None when the session runs no benchmark: then the plugin stays out of the way and reads no other option.
    """
    selected = tuple(config.getoption("benchflow_select", None) or ())
    if not (_given(config, "benchflow") or selected):
        return None
    cwd = config.invocation_params.dir
    values = {name: parse(_given(config, setting.name), setting, cwd) for name, setting, parse in _FIELDS}
    values["benches"] = values["benches"] or tuple(selected_benches(selected))
    settings = SessionSettings(**values, selected=selected, runner_options=_runner_options(config))
    if settings.max_cost is not None and settings.price is None:
        raise ConfigurationError("--benchflow-max-cost needs --benchflow-price INPUT,OUTPUT to know what tokens cost")
    return settings
