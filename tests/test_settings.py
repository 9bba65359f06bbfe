"""One settings object: the session's options are read and validated once into a frozen SessionSettings."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from conftest import TOY
from pytest_benchflow.configuration import Setting
from pytest_benchflow.plugin.settings import OPTIONS, SessionSettings
from pytest_benchflow.runners import RunnerOption
from pytest_benchflow.runners.docker import DockerRunner

#: A plugin of the session under test: counts every SessionSettings built in its process and checks that each
#: hook sees the same one, in the stash, and that it cannot be changed.
WATCHER = """
import dataclasses, json, operator
from pytest_benchflow.plugin.session import RUN_KEY
from pytest_benchflow.plugin.settings import SETTINGS_KEY, SessionSettings

built = []
_init = SessionSettings.__init__


def _counting(self, *args, **kwargs):
    built.append(1)
    _init(self, *args, **kwargs)


SessionSettings.__init__ = _counting
seen = []


def pytest_sessionstart(session):
    seen.append(session.config.stash[SETTINGS_KEY])


def pytest_runtest_setup(item):
    seen.append(item.config.stash[SETTINGS_KEY])


def refused(change):
    try:
        change()
    except (dataclasses.FrozenInstanceError, TypeError):
        return True
    return False


def pytest_unconfigure(config):
    settings = config.stash[SETTINGS_KEY]
    with open("settings.json", "w") as f:
        json.dump(
            {
                "built": len(built),
                "hooks": len(seen),
                "same": all(s is settings for s in seen) and config.stash[RUN_KEY].settings is settings,
                "frozen": refused(lambda: setattr(settings, "timeout", 1.0)),
                "args_frozen": refused(lambda: operator.setitem(settings.args, "MODE", "quiet")),
                "timeout": settings.timeout,
                "epochs": settings.epochs,
                "args": dict(settings.args),
                "output": str(settings.output),
                "pull": settings.runner_options["benchflow_pull"],
            },
            f,
        )
"""


def test_settings_are_built_once_frozen_and_read_from_the_stash(toy: pytest.Pytester) -> None:
    toy.makeconftest(WATCHER)
    toy.makeini("[pytest]\nbenchflow_timeout = 60\nbenchflow_pull = always\n")
    result = toy.runpytest_subprocess(
        *TOY, "--benchflow-arg", "MODE=loud", "--benchflow-timeout=30", "--benchflow-output=out", "-k", "good"
    )
    result.assert_outcomes(passed=1)
    seen = json.loads((toy.path / "settings.json").read_text())
    assert seen == {
        "built": 1,
        "hooks": 2,  # session start and the task's setup
        "same": True,
        "frozen": True,
        "args_frozen": True,
        "timeout": 30.0,  # the command line wins over the ini file
        "epochs": 1,
        "args": {"MODE": "loud"},
        "output": str(toy.path / "out"),
        "pull": "always",  # a runner's setting, as the runner receives it
    }


def test_a_session_without_benchmarks_reads_no_setting(pytester: pytest.Pytester) -> None:
    """Without --benchflow the plugin stays out of the way: a bad benchflow value in an ini file breaks nothing."""
    pytester.makeini("[pytest]\nbenchflow_timeout = soon\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)


def test_one_declaration_type_for_plugin_and_runner_settings() -> None:
    assert RunnerOption is Setting
    assert all(isinstance(o, Setting) for o in [*OPTIONS, *DockerRunner.options()])
    # Every option is a field of SessionSettings, declared once there.
    declared = {f.name for f in fields(SessionSettings)} - {"selected", "runner_options"}
    assert len(OPTIONS) == len(declared) == len({o.name for o in OPTIONS})
