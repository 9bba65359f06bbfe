"""The task program of the runner conformance kit (``pytest_benchflow.testing``).

Standard library only, so that any image with Python 3 runs it as its entrypoint; in-process the kit
calls :func:`run` with a :class:`~pytest_benchflow.BenchClient` (so the runner's timeout and interrupt
reach it). What it does depends on the task id's first word.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping

#: The task's argument the ``secrets`` check passes as a secret.
SECRET_ARG = "CONFORMANCE_SECRET"
#: How long the hanging tasks wait between two requests to the agent.
TICK = 0.1

Ask = Callable[[str, str], str]
Progress = Callable[[int, int], None]


def run(env: Mapping[str, str], ask: Ask, progress: Progress) -> None:
    """One task: ``ask(task_id, text)`` calls the agent, ``progress(done, total)`` reports progress."""
    task = env["TEST_START_ID"]
    kind = task.split()[0] if task.split() else ""
    results, logs = env["BENCHFLOW_RESULTS_DIR"], env["BENCHFLOW_LOG_DIR"]
    os.makedirs(results, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    if kind == "hang":
        while True:  # until the runner stops it
            ask(task, "tick")
            time.sleep(TICK)
    if kind == "fail":
        print("the task breaks on purpose", file=sys.stderr, flush=True)
        raise RuntimeError("the task broke on purpose")
    if kind == "secret":
        secret = env.get(SECRET_ARG, "")
        # Split over two writes too: a runner masking chunk by chunk must still catch it.
        half = len(secret) // 2
        sys.stdout.write(f"the secret is {secret[:half]}")
        sys.stdout.flush()
        sys.stdout.write(f"{secret[half:]}!\n")
        print(f"the secret again: {secret}", file=sys.stderr, flush=True)
    if kind == "hostile":
        # A link leading out of the task's directory: a runner that copies results must refuse it.
        os.symlink("/etc", os.path.join(results, "etc"))
    answer = ask(task, "ping")
    os.makedirs(os.path.join(results, "nested"), exist_ok=True)
    with open(os.path.join(results, "nested", "deep.txt"), "w", encoding="utf-8") as f:
        f.write("deep")
    with open(os.path.join(results, "result.json"), "w", encoding="utf-8") as f:
        json.dump({"answer": answer, "secret_seen": bool(env.get(SECRET_ARG))}, f)
    with open(os.path.join(logs, "trace.txt"), "w", encoding="utf-8") as f:
        f.write(f"trace of {task}")
    progress(1, 1)
    sys.stdout.flush()


def _ask_over_http(url: str) -> Ask:
    def ask(task: str, text: str) -> str:
        body = json.dumps({"task": task, "say": text}).encode()
        request = urllib.request.Request(
            url.rstrip("/") + "/response", body, {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: str = json.loads(response.read())
            return answer

    return ask


def _print_progress(done: int, total: int) -> None:
    print("BENCHFLOW_PROGRESS " + json.dumps({"done": done, "total": total}), flush=True)


if __name__ == "__main__":
    run(os.environ, _ask_over_http(os.environ["INTELLIGENCE_URL"]), _print_progress)
