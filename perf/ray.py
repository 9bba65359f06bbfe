"""The Ray runner's per-task overhead vs the local runner's, side by side: `python perf/ray.py [ROUNDS]`.

In-process per-question MMLU-Pro items (an instant agent on loopback) at the same
``--benchflow-concurrency``, run by the local runner and by the Ray runner on a local Ray cluster
(a head on 127.0.0.1 with as many logical CPUs as the concurrency, so Ray never queues a task the
local runner would run). Each runner runs SMALL and LARGE items; the per-task cost is the slope
(wall(LARGE) - wall(SMALL)) / (LARGE - SMALL), so the session's fixed costs (pytest's start, Ray's
connect) drop out. Rounds alternate the contenders; figures are medians.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file's name would shadow the ray package: perf/ leaves the path, perf/run.py's helpers load by file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("benchflow_perf_run", HERE / "run.py")
assert _spec is not None and _spec.loader is not None
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
ours, per_question_run, serve, synthetic_questions, timed = (
    _run.ours,
    _run.per_question_run,
    _run.serve,
    _run.synthetic_questions,
    _run.timed,
)

CONCURRENCY = int(os.environ.get("RAY_PERF_CONCURRENCY", "4"))
SMALL, LARGE = 20, int(os.environ.get("RAY_PERF_ITEMS", "400"))


def _check_all_passed(tmp: Path, walls: dict[tuple[str, int], list[float]]) -> None:
    """Every run recorded all its items as passed (a figure of runs that failed fast would mean nothing)."""
    for (name, n), values in walls.items():
        runs = sorted((tmp / f"out-{name}-{n}").glob("*/results.jsonl"))
        assert len(runs) == len(values), (name, n, runs)
        for results in runs:
            outcomes = [json.loads(line)["outcome"] for line in results.read_text().splitlines()]
            assert outcomes == ["passed"] * n, (name, n, results, outcomes[:5])


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False  # loopback only
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"node_ip_address": "127.0.0.1", "num_cpus": CONCURRENCY, "include_dashboard": False},
    )
    argv, port = ours()
    quiet = ["-q", "-p", "no:cacheprovider", "--tb=no", "-rN", "-p", "no:randomly"]
    runners = {
        "local": ["--benchflow-runner=local"],
        "ray": ["--benchflow-runner=ray", f"--benchflow-ray-address={cluster.address}"],
    }
    walls: dict[tuple[str, int], list[float]] = {(r, n): [] for r in runners for n in (SMALL, LARGE)}
    try:
        with serve(argv, port) as url, tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "pytest.ini").write_text("[pytest]\n")
            for n in (SMALL, LARGE):
                (tmp / f"data{n}.json").write_text(json.dumps(synthetic_questions(n, categories=1)))
            for _ in range(rounds):
                for key in random.sample(list(walls), len(walls)):
                    name, n = key
                    command = [
                        *per_question_run(url, tmp / f"data{n}.json", tmp / f"out-{name}-{n}", quiet),
                        *runners[name],
                        f"--benchflow-concurrency={CONCURRENCY}",
                    ]
                    walls[key].append(timed(command, tmp, dict(os.environ))[0])
            _check_all_passed(tmp, walls)
    finally:
        cluster.shutdown()
    median = {key: statistics.median(values) for key, values in walls.items()}
    print(f"per-question items at --benchflow-concurrency {CONCURRENCY}, medians of {rounds} rounds")
    for name in runners:
        per_task = (median[(name, LARGE)] - median[(name, SMALL)]) / (LARGE - SMALL)
        print(
            f"  {name:>5}: {SMALL} items {median[(name, SMALL)]:.2f} s, {LARGE} items {median[(name, LARGE)]:.2f} s, "
            f"per task {per_task * 1000:.0f} ms"
        )
    local = (median[("local", LARGE)] - median[("local", SMALL)]) / (LARGE - SMALL)
    over = (median[("ray", LARGE)] - median[("ray", SMALL)]) / (LARGE - SMALL)
    print(f"  Ray's extra cost per task (slope): {(over - local) * 1000:.0f} ms")
    whole = (median[("ray", LARGE)] - median[("local", LARGE)]) / LARGE
    print(f"  Ray's extra cost per task at {LARGE} items, its session start included: {whole * 1000:.0f} ms")
    for key, values in sorted(walls.items()):
        print(f"  {key[0]:>5} {key[1]:>4} items, every round: {', '.join(f'{v:.2f}' for v in values)} s")


if __name__ == "__main__":
    main()
