"""Start-up cost: a session loads what it uses, not every module the plugin could need."""

from __future__ import annotations

import json

import pytest

#: Modules only some sessions need: the Docker SDK (container runner), SQLite (--benchflow-cache),
#: the HTML report and the baseline comparison.
ON_DEMAND = ("docker", "sqlite3", "pytest_benchflow.results.html", "pytest_benchflow.results.compare")

RECORD_MODULES = f"""
import json, sys

def pytest_unconfigure(config):
    with open("modules.json", "w") as f:
        json.dump([m for m in {ON_DEMAND!r} if m in sys.modules], f)
"""


def loaded(pytester: pytest.Pytester, *args: str) -> list[str]:
    pytester.makeconftest(RECORD_MODULES)
    pytester.runpytest_subprocess(
        "--benchflow=mmlu_pro",
        "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent",
        "--benchflow-runner=local",
        "-k",
        "law",
        "-p",
        "no:cacheprovider",
        *args,
    )
    return json.loads((pytester.path / "modules.json").read_text())


def test_the_demo_session_loads_no_module_it_does_not_use(pytester: pytest.Pytester) -> None:
    assert loaded(pytester) == []


def test_cache_and_report_load_their_modules_when_asked(pytester: pytest.Pytester) -> None:
    assert loaded(pytester, "--benchflow-cache=use", "--benchflow-html=r.html") == [
        "sqlite3",
        "pytest_benchflow.results.html",
        "pytest_benchflow.results.compare",
    ]
