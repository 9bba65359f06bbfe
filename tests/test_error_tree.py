"""The error hierarchy: the tree errors.py opens with is the real one, usage errors have one parent that the
plugin turns into pytest usage errors in one place, overloaded agents are agent errors, cancelled requests task
errors."""

from __future__ import annotations

import re
import threading

import pytest
import requests

from conftest import TOY
from pytest_benchflow import (
    AgentError,
    AgentOverloaded,
    BaseAgent,
    BenchflowError,
    ConfigurationError,
    TaskCancelled,
    TaskError,
    errors,
)


def documented_tree() -> dict[str, str]:
    """Each class of the tree in errors.py's docstring → its parent there."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^(\s*(?:[│ ]\s*)*(?:[├└]── )?)([A-Z]\w+)(\s|$)", line)
        if not found or not found.group(2).endswith(
            ("Error", "Overloaded", "Cancelled", "Interrupted", "Timeout", "Unreachable", "Response", "Archive")
        ):
            continue
        depth = len(found.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[found.group(2)] = stack[-1][1]
        stack.append((depth, found.group(2)))
    return parents


def test_the_module_docstring_shows_the_whole_hierarchy() -> None:
    from pytest_benchflow import sandbox  # its two errors are drawn in the tree too

    classes = {
        name: cls
        for module in (errors, sandbox)
        for name, cls in vars(module).items()
        if isinstance(cls, type) and issubclass(cls, BenchflowError) and cls is not BenchflowError
    }
    actual = {
        name: next(b for b in cls.__bases__ if issubclass(b, BenchflowError)).__name__ for name, cls in classes.items()
    }
    assert documented_tree() == actual


@pytest.mark.parametrize(
    "name", ["AgentLaunchError", "ArgumentError", "BenchLoadError", "RunnerError", "TaskListError"]
)
def test_setup_errors_share_one_parent(name: str) -> None:
    assert issubclass(getattr(errors, name), ConfigurationError)
    assert issubclass(errors.ArgumentError, ValueError)  # as before


def test_agent_overloaded_is_an_agent_error_built_as_before() -> None:
    error = AgentOverloaded("quota exhausted", status=503, retry_after=2.5)
    assert isinstance(error, AgentError) and not isinstance(error, ConfigurationError)
    assert (str(error), error.status, error.retry_after, error.url) == ("quota exhausted", 503, 2.5, "")
    assert AgentOverloaded("slow down").status == 429


def test_a_served_agent_still_answers_its_overload_status() -> None:
    class Busy(BaseAgent):
        def call_api(self, task_step_inputs: dict[str, object]) -> str:
            raise AgentOverloaded("model busy", status=503, retry_after=2)

    with Busy().serve() as server:
        response = requests.post(server.url + "/response", json={"input_text": "q"}, timeout=30)
    assert (response.status_code, response.headers["Retry-After"]) == (503, "2")
    assert response.json()["detail"] == "model busy"


def test_a_cancelled_request_is_a_task_error(echo_agent: str) -> None:
    from test_client import fast

    from pytest_benchflow.client._cancel import cancel_scope

    stop = threading.Event()
    stop.set()
    # A bench that handles its task's errors (`except TaskError`) sees the cancellation too.
    with pytest.raises(TaskError) as caught:
        cancel_scope(stop).run(fast(echo_agent).get_response, {"q": "a"})
    assert type(caught.value) is TaskCancelled and "not sent: the task was stopped" in str(caught.value)


RAISE_IN_HOOK = """
from pytest_benchflow.errors import ConfigurationError, RunnerError

class CloudNotConfigured(ConfigurationError):
    pass

def {hook}({args}):
    raise {error}("{message}")
"""


@pytest.mark.parametrize(
    ("hook", "args", "error"),
    [
        ("pytest_benchflow_make_runner", "config, name, run_id", "CloudNotConfigured"),
        ("pytest_sessionstart", "session", "CloudNotConfigured"),
        ("pytest_sessionstart", "session", "RunnerError"),
        ("pytest_collection_modifyitems", "session, config, items", "CloudNotConfigured"),
    ],
)
def test_a_configuration_error_from_any_setup_hook_is_a_usage_error(
    toy: pytest.Pytester, hook: str, args: str, error: str
) -> None:
    toy.makeconftest(RAISE_IN_HOOK.format(hook=hook, args=args, error=error, message="cloud: set CLOUD_TOKEN"))
    result = toy.runpytest_subprocess(*TOY)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: cloud: set CLOUD_TOKEN"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_other_errors_of_a_setup_hook_are_not_usage_errors(toy: pytest.Pytester) -> None:
    toy.makeconftest(RAISE_IN_HOOK.format(hook="pytest_sessionstart", args="session", error="ValueError", message="x"))
    assert toy.runpytest_subprocess(*TOY).ret == pytest.ExitCode.INTERNAL_ERROR


def test_a_misnamed_agent_is_still_a_usage_error(toy: pytest.Pytester) -> None:
    result = toy.runpytest_subprocess("--benchflow=toy_bench.py:ToyBench", "--agent=toy_bench:NoSuchAgent")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *NoSuchAgent*"])
