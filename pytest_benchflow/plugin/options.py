"""The plugin's options: one table of names, defaults and help; reading and validating their values."""

from __future__ import annotations

from argparse import SUPPRESS
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from ..envnumbers import in_range, parse_number, shown_value
from ..runners import RunnerOption

__all__ = ["OPTIONS", "Option", "add_options", "arg_values", "choice", "positive", "price", "setting", "value"]


@dataclass(frozen=True)
class Option:
    """A ``--flag-with-dashes`` and the ini setting ``name`` (the command line wins)."""

    name: str
    help: str
    default: Any = None
    repeatable: bool = False
    flag: bool = True
    #: The flag's name when it differs from the ini setting's (e.g. ``benchflow_docker_host``).
    flag_name: str = ""
    #: A repeatable flag whose ini setting is one whitespace-separated string.
    words: bool = False


OPTIONS = [
    Option("benchflow", "benchmark to run: registered name, package.module:Class or path/file.py:Class", [], True),
    Option("agent_url", "URL of the agent to evaluate (default: $INTELLIGENCE_URL)"),
    Option("agent", "serve this BaseAgent (module:Class) on a free loopback port for the session"),
    Option("agent_cmd", "start the agent with this command, '{port}' replaced by a free port"),
    Option("benchflow_split", "split of the benchmark (default: test)", "test"),
    Option("benchflow_arg", "benchmark argument NAME=VALUE (repeatable; overrides $NAME)", [], True),
    Option(
        "benchflow_runner",
        "where tasks run: any installed runner (`benchflow list` shows them; default: local if possible)",
    ),
    Option(
        "benchflow_sandbox",
        "where env.sandbox() opens a task's sandboxes: any installed sandbox provider (default: docker)",
        "docker",
    ),
    Option("benchflow_timeout", "seconds a task may run before it errors"),
    Option("benchflow_limit", "run only the first N task ids of each benchmark"),
    Option("benchflow_output", "directory for results and task outputs (default: .benchflow)", ".benchflow"),
    Option("benchflow_progress", "live task progress: auto (on a terminal, not in CI), always, never", "auto"),
    Option("benchflow_html", "write the run's self-contained HTML report to this file"),
    Option("benchflow_baseline", "compare with this earlier run; a significant regression fails the session"),
    Option("benchflow_cache", "reuse agent answers: off, use (answer from the cache, store misses) or refresh", "off"),
    Option("benchflow_cache_path", "the cache file (default: cache.sqlite in --benchflow-output)"),
    Option("benchflow_resume", "continue this run (a run directory, or an output directory: its newest run)"),
    Option("benchflow_price", "INPUT,OUTPUT: price per million input and output tokens, for a cost line"),
    Option("benchflow_max_cost", "start no new task once the run has cost this much (needs --benchflow-price)"),
    Option("benchflow_epochs", "run every task N times, each an item of its own (pass@k, pass^k, flaky tasks)", "1"),
    Option(
        "benchflow_concurrency",
        "tasks each pytest process runs at once: a number (default 1: one by one) or auto (the runner's capacity)",
        "1",
    ),
    Option("benchflow_transcripts", "keep every agent exchange in each task's transcript.jsonl: on or off", "on"),
    Option("benchflow_rerun_infra", "run a task that errored with an infrastructure error again, up to N times", "1"),
    Option("benchflow_rerun_kinds", "the error kinds rerun, comma-separated (e.g. agent,infra)", "infra"),
]


def add_options(parser: pytest.Parser, runner_options: Iterable[RunnerOption]) -> None:
    """Register the plugin's options and the installed runners' settings."""
    group = parser.getgroup("benchflow", "benchmarks as test suites (pytest-benchflow)")
    options = [
        *OPTIONS,
        *(
            Option(o.name, o.help, o.default, flag=o.flag, flag_name=o.flag_name, words=o.repeatable)
            for o in runner_options
        ),
    ]
    for option in {o.name: o for o in options}.values():
        if option.flag:
            group.addoption(
                "--" + (option.flag_name or option.name).replace("_", "-"),
                action="append" if option.repeatable or option.words else "store",
                dest=option.name,
                default=None,
                metavar="VALUE",
                help=option.help,
            )
        if option.repeatable:
            parser.addini(option.name, option.help, type="linelist", default=option.default)
        else:
            parser.addini(option.name, option.help, type="string", default=option.default)
    # Node ids given as arguments end up here (see selection.py).
    group.addoption("--benchflow-select", action="append", dest="benchflow_select", default=[], help=SUPPRESS)


def value(config: pytest.Config, name: str) -> Any:
    """The command-line value of ``name``, else its ini value."""
    given = config.getoption(name, None)
    return given if given is not None else config.getini(name)


def setting(config: pytest.Config, option: RunnerOption) -> str:
    """A runner setting as the runner receives it: a string, a repeated flag's values joined by spaces."""
    given = value(config, option.name)
    if isinstance(given, list):
        return " ".join(given)
    return str(given or option.default)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def positive(
    config: pytest.Config, name: str, kind: type[int] | type[float], maximum: int | None = None, why: str = ""
) -> Any:
    """The option as a positive finite number (at most ``maximum``, ``why`` saying why), None when unset;
    a usage error otherwise."""
    raw = value(config, name)
    if raw in (None, ""):
        return None
    number = parse_number(str(raw), kind)
    if number is None:
        noun = "a whole number" if kind is int else "a number of seconds"
        raise pytest.UsageError(f"{_flag(name)} {raw!r} is not {noun}")
    if not in_range(number, 0, above=True):
        raise pytest.UsageError(f"{_flag(name)} must be a positive finite number, got {shown_value(raw)}")
    if maximum is not None and not in_range(number, maximum=maximum):
        raise pytest.UsageError(f"{_flag(name)} {shown_value(raw)}: at most {maximum}" + (f" ({why})" if why else ""))
    return number


def choice(config: pytest.Config, name: str, choices: tuple[str, ...]) -> str:
    """The option's value, which must be one of ``choices``."""
    given = str(value(config, name))
    if given not in choices:
        raise pytest.UsageError(f"{_flag(name)} {given!r}: choose {', '.join(choices[:-1])} or {choices[-1]}")
    return given


def price(config: pytest.Config) -> tuple[float, float] | None:
    """``--benchflow-price INPUT,OUTPUT`` (per million tokens), None when unset."""
    raw = value(config, "benchflow_price")
    if not raw:
        return None
    numbers = [parse_number(part, float) for part in str(raw).split(",")]
    prices = [n for n in numbers if n is not None and in_range(n)]
    if len(numbers) != 2 or len(prices) != 2:
        raise pytest.UsageError(
            f"--benchflow-price {raw!r}: give INPUT,OUTPUT, the price per million tokens, e.g. 2.5,10"
        )
    return prices[0], prices[1]


def arg_values(config: pytest.Config) -> dict[str, str]:
    """The ``--benchflow-arg NAME=VALUE`` pairs."""
    values: dict[str, str] = {}
    for item in value(config, "benchflow_arg") or []:
        name, sep, given = item.partition("=")
        if not sep or not name.strip():
            raise pytest.UsageError(f"--benchflow-arg {item!r} must be NAME=VALUE")
        values[name.strip()] = given
    return values
